"""Robustness and safety: bad input, safe checkpoints, the training loop's guards.

Most bad-input cases call the real entry point, ``polymix_cli.cli.main.main``, in this
process (same code as the ``polymix`` command, without paying torch's import per case);
the cases about processes (exit status of the real command, files that must not appear)
run ``python -m polymix_cli`` in a subprocess.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY, compose_train, run_cli

from polymix_cli.checkpoint import load_checkpoint, save_checkpoint
from polymix_cli.cli.apps import parse_config
from polymix_cli.cli.main import main
from polymix_cli.config import ConfigError, validate_train_config
from polymix_cli.interrupts import stop_on_signals
from polymix_cli.run import check_output_dir, prepare
from polymix_cli.training import (
    History,
    NonFiniteLoss,
    Trainer,
    TrainSettings,
    build_optimizer,
    build_scheduler,
)


@pytest.fixture
def cli(capsys, monkeypatch):
    """``cli(*args)`` runs ``polymix ARGS`` in-process; returns (exit status, stderr)."""
    monkeypatch.delenv("POLYMIX_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", list(sys.argv))

    def run(*args: str) -> tuple[int, str]:
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        capsys.readouterr()
        try:
            status = main(list(args))
        except SystemExit as exc:
            status = exc.code
        finally:  # Hydra configures logging for each run: undo it
            for handler in root.handlers:
                if handler not in handlers:
                    handler.close()
            root.handlers[:] = handlers
            root.setLevel(level)
        return status, capsys.readouterr().err

    return run


def assert_one_line(stderr: str, *needles: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("polymix: "), stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in stderr, (needle, stderr)


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("args,needles", [
    (["experiment=nope"], ["experiment=nope is not an option", "moe_sign, nn_sincos, pce_sine"]),
    (["model=foo"], ["model=foo is not an option", "allowed: moe, nn, pce"]),
    (["model.gate.widht=3"], ["unknown option model.gate.widht", "width, depth, activation"]),
    (["model.gate.width=[1"], ["invalid override 'model.gate.width=[1'"]),
    (["model.gate.width=abc"], ["width must be an integer", "'abc'"]),
    (["model.gate=3"], ["model.gate must be a mapping", "got 3"]),
    (["model.expert.degree=-1"], ["degree must be >= 0", "-1"]),
    (["model.gate.width=0"], ["width must be >= 1", "got 0"]),
    (["model.gate.depth=0"], ["depth must be >= 1", "got 0"]),
    (["model=nn", "model.width=0"], ["width must be >= 1"]),
    (["model=nn", "model.depth=0"], ["depth must be >= 1"]),
    (["model.num_experts=0"], ["model.num_experts must be an integer >= 1", "got 0"]),
    (["trainer.epochs=0"], ["trainer.epochs must be >= 1", "got 0"]),
    (["trainer.num_samples=0"], ["trainer.num_samples must be >= 1"]),
    (["eval.num_samples=0"], ["eval.num_samples must be >= 1"]),
    (["optimizer.lr=0"], ["optimizer.lr must be a number in (0.0, inf)", "got 0"]),
    (["optimizer.lr=-1"], ["optimizer.lr must be", "got -1"]),
    (["eval.band=1.0"], ["eval.band must be a number in (0.0, 1.0)"]),
    (["eval.band=0"], ["eval.band must be"]),
    (["eval.levels=[0.5,1.5]"], ["eval.levels.1 must be a number in (0.0, 1.0)", "1.5"]),
    (["layout.rules.0.match=nothing*"], ["layout.rules[0] ('nothing*') matches no parameter block",
                                         "experts.0.coeffs"]),
    (["layout.rules.1.match=experts.0.coeffs"], ["layout.rules[1]", "overlaps layout.rules[0]"]),
    (['layout.rules.0.match="experts.*.coeffs[:9]"'], ["slice [:9] is out of range for a block of 4 rows"]),
])
def test_bad_config_exits_2_with_one_line(cli, tmp_path, args, needles):
    status, err = cli("train", *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert status == 2
    assert_one_line(err, *needles)
    assert not (tmp_path / "run" / "history.csv").exists()


@pytest.mark.parametrize("args,needle", [
    (["model=foo"], "allowed: moe, nn, pce"),
    (["foo.bar=1"], "unknown option foo; allowed keys at the top level"),
    (["trainer.epochs=0"], "trainer.epochs must be >= 1"),
])
def test_real_command_exits_2_without_traceback(tmp_path, args, needle):
    result = run_cli("train", *args, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert_one_line(result.stderr, needle)


def test_debug_shows_the_traceback(tmp_path):
    env = {**os.environ, "POLYMIX_DEBUG": "1"}
    result = subprocess.run([sys.executable, "-m", "polymix_cli", "train", "model=foo"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_unwritable_output_dir_exits_2(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    status, err = cli("train", "trainer.epochs=1", f"hydra.run.dir={blocker / 'run'}")
    assert status == 2
    assert_one_line(err, f"{blocker / 'run'}", "hydra.run.dir=PATH")


def test_unwritable_checkpoint_dir_is_found_before_training(cli, tmp_path):
    (tmp_path / "checkpoints").write_text("a file where the checkpoints folder should be")
    status, err = cli("train", *TINY, f"hydra.run.dir={tmp_path}")
    assert status == 2
    assert_one_line(err, "is not writable", f"{tmp_path / 'checkpoints'}", "hydra.run.dir=PATH")
    assert "Epoch" not in (tmp_path / "train.log").read_text()
    assert not (tmp_path / "history.csv").exists()


def test_check_output_dir(tmp_path):
    check_output_dir(tmp_path / "new", ("checkpoints", "plots"), ("metrics.json",))
    assert (tmp_path / "new" / "checkpoints").is_dir() and not list((tmp_path / "new" / "plots").iterdir())
    (tmp_path / "new" / "metrics.json").mkdir()
    with pytest.raises(ConfigError, match="metrics.json: is a folder"):
        check_output_dir(tmp_path / "new", (), ("metrics.json",))


# ----------------------------------------------------------------------------- checkpoints

def _truncated(ckpt: Path, path: Path) -> Path:
    data = ckpt.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _rewritten(ckpt: Path, path: Path, **changes) -> Path:
    state = load_checkpoint(ckpt)
    state.update(changes)
    torch.save(state, path)
    return path


@pytest.mark.parametrize("make,needle", [
    (lambda c, p: p, "does not exist"),
    (_truncated, "is truncated or corrupt"),
    (lambda c, p: (p.write_bytes(os.urandom(4096)), p)[1], "is truncated or corrupt"),
    (lambda c, p: (torch.save({"weights": torch.ones(3)}, p), p)[1], "is not a polymix checkpoint"),
    (lambda c, p: _rewritten(c, p, format_version=99), "has format version 99; this polymix"),
    (lambda c, p: _rewritten(c, p, model=None), "is incomplete: 'model' is missing"),
    (lambda c, p: _rewritten(c, p, config="a: [unclosed"), "holds an unreadable config"),
])
@pytest.mark.parametrize("command", ["evaluate"])
def test_bad_checkpoint_exits_2(cli, tiny_run, tmp_path, make, needle, command):
    path = make(tiny_run / "checkpoints" / "last.pt", tmp_path / "bad.pt")
    arg = f"ckpt={path}" if command == "evaluate" else f"resume={path}"
    status, err = cli(command, arg, f"hydra.run.dir={tmp_path / 'run'}")
    assert status == 2
    assert_one_line(err, needle, str(path))


class _CreatesFile:
    """Unpickling this object would create ``path``."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_code_is_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "polymix-checkpoint", "format_version": 1, "model": _CreatesFile(marker)}, path)
    result = run_cli("evaluate", f"ckpt={path}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert_one_line(result.stderr, f"checkpoint {path} was refused",
                    "holds objects other than tensors and plain data")
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live: a plain unpickling runs it
    assert marker.exists()


def test_target_on_the_command_line_is_refused(cli, tmp_path):
    for override in ("+model._target_=os.system", "+hydra.callbacks.x._target_=os.getcwd"):
        status, err = cli("train", override, f"hydra.run.dir={tmp_path}")
        assert status == 2
        assert_one_line(err, f"override '{override}' is refused")


@pytest.mark.parametrize("where", [("model",), ("layout", "rules", 0), ("data",)])
def test_target_in_a_config_is_refused(where):
    cfg = compose_train()
    node = cfg
    for key in where:
        node = node[key]
    node["_target_"] = "os.system"
    path = ".".join(str(k) if isinstance(k, str) else f"[{k}]" for k in where).replace(".[", "[")
    with pytest.raises(ConfigError, match=re.escape(f"{path}._target_='os.system' is refused")):
        prepare(cfg)


@pytest.mark.parametrize("command", ["evaluate"])
def test_target_in_a_checkpoint_is_refused(cli, tiny_run, tmp_path, command):
    marker = tmp_path / "pwned"
    state = load_checkpoint(tiny_run / "checkpoints" / "last.pt")
    cfg = parse_config(state["config"])
    cfg["model"].update({"_target_": "os.system", "_args_": [f"touch {marker}"]})
    from omegaconf import OmegaConf

    path = tmp_path / "target.pt"
    save_checkpoint(path, {**state, "config": OmegaConf.to_yaml(OmegaConf.create(cfg))})
    arg = f"ckpt={path}" if command == "evaluate" else f"resume={path}"
    status, err = cli(command, arg, f"hydra.run.dir={tmp_path / 'run'}")
    assert status == 2
    assert_one_line(err, f"checkpoint {path} was refused", "model._target_='os.system'")
    assert not marker.exists()


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last.pt", {"epoch": 1, "config": "", "model": {}, "history": {}})
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # e.g. killed while writing

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"epoch": 2, "config": "", "model": {}, "history": {}})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


# ----------------------------------------------------------------------------- interrupt and resume

def test_a_second_signal_stops_at_once():
    calls = []
    with pytest.raises(SystemExit) as exc, stop_on_signals(calls.append) as received:
        os.kill(os.getpid(), signal.SIGTERM)
        assert received == [signal.SIGTERM] and calls == [signal.SIGTERM]
        os.kill(os.getpid(), signal.SIGTERM)
    assert exc.value.code == 143 and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with pytest.raises(KeyboardInterrupt), stop_on_signals(calls.append):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
    assert calls == [signal.SIGTERM, signal.SIGINT]


# ----------------------------------------------------------------------------- numerical faults

def test_non_finite_loss_leaves_the_state_untouched():
    cfg = compose_train(["trainer.num_samples=4"])
    p = prepare(cfg)
    optimizer = build_optimizer(cfg["optimizer"], p.model.parameters())
    scheduler = build_scheduler(cfg["scheduler"], optimizer, 10)
    trainer = Trainer(p.model, p.data.x_train, p.data.y_train, TrainSettings(10, 4), optimizer, scheduler)
    trainer.fit([lambda tr: setattr(tr, "stop_requested", tr.epoch == 3)])
    model = {k: v.clone() for k, v in p.model.state_dict().items()}
    adam = {k: v.clone() for k, v in optimizer.state_dict()["state"][0].items()}
    lr, rng = trainer.current_lr(), torch.get_rng_state()
    real = trainer.losses
    trainer.losses = lambda: tuple(t * float("nan") for t in real())
    trainer.stop_requested = False
    with pytest.raises(NonFiniteLoss, match="non-finite loss at epoch 4"):
        trainer.fit()
    assert all(torch.equal(model[k], v) for k, v in p.model.state_dict().items())
    assert all(torch.equal(adam[k], v) for k, v in optimizer.state_dict()["state"][0].items())
    assert trainer.current_lr() == lr and torch.equal(torch.get_rng_state(), rng)
    assert trainer.epoch == 3 and len(trainer.history.losses) == 3


def test_history_round_trips_through_a_checkpoint_state():
    history = History([1, 2], [0.1, 0.2], [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 5.0, 6.0])])
    again = History.from_state(history.state())
    assert again.rows() == history.rows() and again.last() == history.last()
    assert History().last()["total"] != History().last()["total"]  # NaN before the first epoch
    with pytest.raises(ValueError, match="equally long"):
        History.from_state({"epoch": [1], "lr": [], "losses": torch.zeros(1, 3)})


def test_validation_refuses_before_building():
    cfg = compose_train()
    cfg["model"]["experts"] = [{"kind": "pce"}, 3]
    with pytest.raises(ConfigError, match=re.escape("model.experts[1] must be a mapping of options, got 3")):
        validate_train_config(cfg)

