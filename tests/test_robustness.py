"""Robustness and safety: bad input, safe checkpoints, interrupt and resume, numerical faults.

Most bad-input cases call the real entry point, ``polymix_cli.cli.main.main``, in this
process (same code as the ``polymix`` command, without paying torch's import per case);
the cases about processes (exit status of the real command, signals, files that must not
appear) run ``python -m polymix_cli`` in a subprocess.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY, compose_train, run_cli

from polymix_cli.cli.apps import parse_config
from polymix_cli.config.validation import ConfigError, validate_train_config
from polymix_cli.runs.checkpoint import load_checkpoint, save_checkpoint
from polymix_cli.runs.prepare import check_output_dir, prepare
from polymix_cli.runs.train import RunInterrupted, resume_config, train
from polymix_cli.training.interrupts import stop_on_signals
from polymix_cli.training.loop import (
    History,
    NonFiniteLoss,
    Trainer,
    TrainSettings,
    build_optimizer,
    build_scheduler,
)

# Tiny settings for the runs that train (evaluation kept small as well).
SMALL = [
    "trainer.num_samples=8",
    "eval.num_samples=16",
    "eval.grid_points=25",
    "data.num_test=50",
    "trainer.progress=log",
]


def assert_one_line(stderr: str, *needles: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("polymix: "), stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in stderr, (needle, stderr)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args,needles",
    [
        (
            ["experiment=nope"],
            [
                "experiment=nope is not an option",
                "moe_sign",
                "moe_sign_nll",
                "nn_sincos",
                "pce_file",
                "pce_sine",
            ],
        ),
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
        (
            ["trainer.loss=huber"],
            ["trainer.loss must be one of ['mse_sum', 'gaussian_nll'], got 'huber'"],
        ),
        (
            ["trainer.gradients=manual"],
            ["trainer.gradients must be one of ['auto', 'autograd'], got 'manual'"],
        ),
        (
            ["experiment=moe_sign_nll", "trainer.noise.prior=gamma"],
            [
                "trainer.noise.prior must be one of ['none', 'log_normal', 'half_cauchy'], got 'gamma'"
            ],
        ),
        (
            ["trainer.noise.init_std=0"],
            ["trainer.noise.init_std must be a number in (0.0, inf), got 0"],
        ),
        (
            ["trainer.noise.sigma=1"],
            ["unknown option trainer.noise.sigma", "init_std, prior, prior_scale, prior_log_std"],
        ),
        (["eval.num_samples=0"], ["eval.num_samples must be >= 1"]),
        (["optimizer.lr=0"], ["optimizer.lr must be a number in (0.0, inf)", "got 0"]),
        (["optimizer.lr=-1"], ["optimizer.lr must be", "got -1"]),
        (["eval.band=1.0"], ["eval.band must be a number in (0.0, 1.0)"]),
        (["eval.band=0"], ["eval.band must be"]),
        (["eval.levels=[0.5,1.5]"], ["eval.levels.1 must be a number in (0.0, 1.0)", "1.5"]),
        (
            ["eval.sensitivity=yes"],
            ["eval.sensitivity must be one of", "'monte_carlo', 'off'], got 'yes'"],
        ),
        (
            ["eval.sensitivity=pce"],
            ["eval.sensitivity=pce needs model.kind=pce", "got model.kind='moe'"],
        ),
        (
            ["eval.sensitivity_samples=2000"],
            ["eval.sensitivity_samples must be null or an integer in [1, "],
        ),
        (
            ["layout.rules.0.match=nothing*"],
            ["layout.rules[0] ('nothing*') matches no parameter block", "experts.0.coeffs"],
        ),
        (
            ["layout.rules.1.match=experts.0.coeffs"],
            ["layout.rules[1]", "overlaps layout.rules[0]"],
        ),
        (
            ['layout.rules.0.match="experts.*.coeffs[:9]"'],
            ["slice [:9] is out of range for a block of 4 rows"],
        ),
        (["resume=/no/such/last.pt"], ["checkpoint /no/such/last.pt does not exist"]),
        (["resume=3"], ["resume must be the path of a polymix checkpoint"]),
    ],
)
def test_bad_config_exits_2_with_one_line(cli, tmp_path, args, needles):
    status, err = cli("train", *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert status == 2
    assert_one_line(err, *needles)
    assert not (tmp_path / "run" / "history.csv").exists()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["model=foo"], "allowed: moe, nn, pce"),
        (["foo.bar=1"], "unknown option foo; allowed keys at the top level"),
        (["trainer.epochs=0"], "trainer.epochs must be >= 1"),
    ],
)
def test_real_command_exits_2_without_traceback(tmp_path, args, needle):
    result = run_cli("train", *args, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert_one_line(result.stderr, needle)


def test_debug_shows_the_traceback(tmp_path):
    env = {**os.environ, "POLYMIX_DEBUG": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "polymix_cli", "train", "model=foo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
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
    assert (tmp_path / "new" / "checkpoints").is_dir() and not list(
        (tmp_path / "new" / "plots").iterdir()
    )
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


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda c, p: p, "does not exist"),
        (_truncated, "is truncated or corrupt"),
        (lambda c, p: (p.write_bytes(os.urandom(4096)), p)[1], "is truncated or corrupt"),
        (
            lambda c, p: (torch.save({"weights": torch.ones(3)}, p), p)[1],
            "is not a polymix checkpoint",
        ),
        (lambda c, p: _rewritten(c, p, format_version=99), "has format version 99; this polymix"),
        (lambda c, p: _rewritten(c, p, model=None), "is incomplete: 'model' is missing"),
        (lambda c, p: _rewritten(c, p, config="a: [unclosed"), "holds an unreadable config"),
    ],
)
@pytest.mark.parametrize("command", ["evaluate", "train"])
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
    torch.save(
        {"format": "polymix-checkpoint", "format_version": 1, "model": _CreatesFile(marker)}, path
    )
    result = run_cli("evaluate", f"ckpt={path}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert_one_line(
        result.stderr,
        f"checkpoint {path} was refused",
        "holds objects other than tensors and plain data",
    )
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


@pytest.mark.parametrize("command", ["evaluate", "train"])
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
    path = save_checkpoint(
        tmp_path / "last.pt", {"epoch": 1, "config": "", "model": {}, "history": {}}
    )
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # e.g. killed while writing

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"epoch": 2, "config": "", "model": {}, "history": {}})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


# ----------------------------------------------------------------------------- interrupt and resume


def _popen(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("POLYMIX_DEBUG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "polymix_cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigterm_then_resume_matches_the_uninterrupted_run(tmp_path):
    epochs = 400
    args = ["train", f"trainer.epochs={epochs}", "trainer.log_every=1", *SMALL]
    full = run_cli(*args, f"hydra.run.dir={tmp_path / 'full'}")
    assert full.returncode == 0, full.stderr

    kill_after = random.Random().randint(10, 150)  # a random epoch, reported on failure
    proc = _popen(*args, f"hydra.run.dir={tmp_path / 'cut'}")
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(f"Epoch {kill_after:5d} |"):
            proc.send_signal(signal.SIGTERM)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, (kill_after, err)
    stopped = int(
        re.search(r"interrupted at epoch (\d+); resume with: polymix train resume=(\S+)", err)[1]
    )
    assert kill_after <= stopped < epochs, (kill_after, stopped)
    ckpt = tmp_path / "cut" / "checkpoints" / "last.pt"
    assert_one_line(err, f"resume with: polymix train resume={ckpt}")
    cut = load_checkpoint(ckpt)
    assert cut["epoch"] == stopped and len(cut["history"]["epoch"]) == stopped
    assert len((tmp_path / "cut" / "history.csv").read_text().splitlines()) == stopped + 1

    resumed = run_cli(
        "train", f"resume={ckpt}", "trainer.progress=log", f"hydra.run.dir={tmp_path / 'resumed'}"
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"at epoch {stopped} of {epochs}" in resumed.stdout
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert a["epoch"] == b["epoch"] == epochs
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), (key, kill_after, stopped)
    assert (
        torch.equal(a["history"]["losses"], b["history"]["losses"])
        and a["history"]["lr"] == b["history"]["lr"]
    )
    metrics_a = json.loads((tmp_path / "full" / "metrics.json").read_text())
    metrics_b = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert metrics_a["losses"] == metrics_b["losses"] and metrics_a["test"] == metrics_b["test"]
    assert (tmp_path / "full" / "history.csv").read_text() == (
        tmp_path / "resumed" / "history.csv"
    ).read_text()


class _SignalAt:
    """A UI whose progress hook sends ``signum`` to this process at ``epoch``."""

    def __init__(self, signum: int, epoch: int):
        self.signum, self.epoch = signum, epoch

    def groups(self, specs, num_params):
        pass

    def training(self, trainer):
        def hook(tr):
            if tr.epoch == self.epoch:
                os.kill(os.getpid(), self.signum)

        return hook

    def finished(self):
        pass

    def summary(self, metrics, run_dir):
        pass


def test_sigint_saves_the_current_epoch_and_restores_handlers(tmp_path):
    cfg = compose_train([*TINY, "trainer.epochs=50"])
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(RunInterrupted) as exc:
        train(cfg, tmp_path, "{}", _SignalAt(signal.SIGINT, 7))
    assert exc.value.exit_status == 130 and exc.value.epoch == 7
    assert signal.getsignal(signal.SIGINT) is before
    assert load_checkpoint(exc.value.checkpoint)["epoch"] == 7
    assert f"resume with: polymix train resume={tmp_path / 'checkpoints' / 'last.pt'}" in str(
        exc.value
    )


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


def test_resume_keeps_the_checkpoint_config():
    stored = compose_train(["scheduler=onecycle"])
    requested = compose_train(["model.gate.width=8", "trainer.progress=bar", f"resume={'ck.pt'}"])
    cfg = resume_config(stored, requested, ["resume", "trainer.progress"], epoch=5)
    assert cfg["trainer"]["progress"] == "bar" and cfg["resume"] == "ck.pt"
    assert cfg["model"] == stored["model"]  # not overridden on the command line: the checkpoint's
    with pytest.raises(ConfigError, match="model.gate.width cannot be changed on resume"):
        resume_config(stored, requested, ["model.gate.width"], epoch=5)
    with pytest.raises(ConfigError, match="model cannot be changed on resume"):
        resume_config(stored, requested, ["model"], epoch=5)
    longer = compose_train(["trainer.epochs=20000"])
    with pytest.raises(
        ConfigError, match="trainer.epochs=20000 cannot change on resume: the onecycle"
    ):
        resume_config(stored, longer, ["trainer.epochs"], epoch=5)
    constant = compose_train(["scheduler=none"])
    assert (
        resume_config(constant, longer, ["trainer.epochs"], epoch=5)["trainer"]["epochs"] == 20000
    )


def test_resume_needs_the_optimizer_state(cli, tiny_run, tmp_path):
    path = _rewritten(
        tiny_run / "checkpoints" / "last.pt", tmp_path / "weights_only.pt", optimizer=None
    )
    status, err = cli("train", f"resume={path}", f"hydra.run.dir={tmp_path / 'run'}")
    assert status == 2
    assert_one_line(err, f"checkpoint {path} cannot be resumed: it holds no optimizer state")


def test_resume_refuses_a_changed_model(cli, tiny_run, tmp_path):
    status, err = cli(
        "train",
        f"resume={tiny_run / 'checkpoints' / 'last.pt'}",
        "model.gate.width=8",
        f"hydra.run.dir={tmp_path}",
    )
    assert status == 2
    assert_one_line(err, "model.gate.width cannot be changed on resume")


# ----------------------------------------------------------------------------- numerical faults


@pytest.mark.parametrize("gradients", ["auto", "autograd"])
def test_non_finite_loss_leaves_the_state_untouched(gradients):
    cfg = compose_train(["trainer.num_samples=4"])
    p = prepare(cfg)
    optimizer = build_optimizer(p.cfg.optimizer, p.model.parameters())
    scheduler = build_scheduler(p.cfg.scheduler, optimizer, 10)
    settings = TrainSettings(10, 4, gradients=gradients)
    trainer = Trainer(p.model, p.data.x_train, p.data.y_train, settings, optimizer, scheduler)
    assert trainer.gradient_path == ("analytic" if gradients == "auto" else "autograd")
    trainer.fit([lambda tr: setattr(tr, "stop_requested", tr.epoch == 3)])
    model = {k: v.clone() for k, v in p.model.state_dict().items()}
    adam = {k: [t.clone() for t in v] for k, v in optimizer.state_dict()["buffers"].items()}
    lr, rng = trainer.current_lr(), torch.get_rng_state()
    trainer.y = torch.full_like(trainer.y, float("nan"))  # a NaN loss and NaN gradients
    trainer.stop_requested = False
    with pytest.raises(NonFiniteLoss, match="non-finite loss at epoch 4"):
        trainer.fit()
    assert all(torch.equal(model[k], v) for k, v in p.model.state_dict().items())
    assert all(
        torch.equal(a, b)
        for k, v in optimizer.state_dict()["buffers"].items()
        for a, b in zip(adam[k], v)
    )
    assert trainer.current_lr() == lr and torch.equal(torch.get_rng_state(), rng)
    assert trainer.epoch == 3 and len(trainer.history.losses) == 3


def test_history_round_trips_through_a_checkpoint_state():
    history = History(
        [1, 2], [0.1, 0.2], [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 5.0, 6.0])]
    )
    again = History.from_state(history.state())
    assert again.rows() == history.rows() and again.last() == history.last()
    assert History().last()["total"] != History().last()["total"]  # NaN before the first epoch
    with pytest.raises(ValueError, match="equally long"):
        History.from_state({"epoch": [1], "lr": [], "losses": torch.zeros(1, 3)})


def test_nan_stops_cleanly_and_keeps_the_last_good_checkpoint(tmp_path):
    # plain SGD with a step size past the stability limit of the quadratic data term grows
    # the parameters geometrically: an overflow after about twenty epochs, whatever the details
    result = run_cli(
        "train",
        "trainer.epochs=100",
        "optimizer=sgd",
        "optimizer.lr=0.05",
        "scheduler=none",
        "trainer.checkpoint_every=10",
        "trainer.log_every=10",
        *SMALL,
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 1, result.stderr
    ckpt = tmp_path / "checkpoints" / "last.pt"
    match = re.fullmatch(
        r"polymix: error: non-finite loss at epoch (\d+); last good checkpoint: (\S+) "
        r"\(epoch (\d+)\); try a smaller optimizer.lr",
        result.stderr.strip(),
    )
    assert match and match[2] == str(ckpt), result.stderr
    bad, good = int(match[1]), int(match[3])
    assert good == bad - 1 and good > 10
    for path in (tmp_path / "checkpoints").iterdir():  # every checkpoint complete and finite
        state = load_checkpoint(path)
        assert all(
            torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point()
        )
        assert torch.isfinite(state["history"]["losses"]).all()
    assert load_checkpoint(ckpt)["epoch"] == good
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == sorted(
        [f"epoch_{e}.pt" for e in range(10, good + 1, 10)] + ["last.pt"]
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    last_row = (tmp_path / "history.csv").read_text().strip().splitlines()[-1].split(",")
    assert int(last_row[0]) == good and metrics["losses"]["total"] == pytest.approx(
        float(last_row[4])
    )
    assert (tmp_path / "plots" / "prediction.png").is_file() and (
        tmp_path / "plots" / "loss.png"
    ).is_file()


def test_validation_refuses_before_building():
    cfg = compose_train()
    cfg["model"]["experts"] = [{"kind": "pce"}, 3]
    with pytest.raises(
        ConfigError, match=re.escape("model.experts[1] must be a mapping of options, got 3")
    ):
        validate_train_config(cfg)
