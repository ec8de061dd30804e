"""Robustness of the real command: exit statuses without a traceback, crafted checkpoints
(given to the command run in process, or to a subprocess), SIGTERM and resume, and a run
that diverges. Each case needs a run in a subprocess (its own or ``tiny_run``)."""

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
from helpers import REPO, TINY, assert_one_line, run_cli

from polymix_cli.cli.apps import parse_config
from polymix_cli.runs.checkpoint import load_checkpoint, save_checkpoint

# ----------------------------------------------------------------------------- bad input


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
    args = [
        "train",
        *TINY,
        f"trainer.epochs={epochs}",
        "trainer.log_every=1",
        "trainer.progress=log",
    ]
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


def test_nan_stops_cleanly_and_keeps_the_last_good_checkpoint(tmp_path):
    # plain SGD with a step size past the stability limit of the quadratic data term grows
    # the parameters geometrically: an overflow after about twenty epochs, whatever the details
    result = run_cli(
        "train",
        *TINY,
        "trainer.epochs=100",
        "optimizer=sgd",
        "optimizer.lr=0.05",
        "scheduler=none",
        "trainer.checkpoint_every=10",
        "trainer.log_every=10",
        "trainer.progress=log",
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
