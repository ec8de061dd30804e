"""Shared fixtures: composing the real Hydra configs and running the real CLI."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

# Tiny settings that keep an end-to-end run to a few seconds.
TINY = [
    "trainer.epochs=30",
    "trainer.num_samples=8",
    "trainer.log_every=10",
    "eval.num_samples=64",
    "eval.grid_points=25",
    "data.num_test=200",
]


def compose_train(overrides: list[str] | None = None) -> dict:
    """The resolved train config as a plain dict, as `polymix train` would see it (a
    ConfigError listing every option that Hydra refuses while composing)."""
    from polymix_cli.config.compose import compose

    return compose("train", overrides or [], str(CONFIGS))


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run `python -m polymix_cli ARGS` in a subprocess (the real console entry)."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    env.pop("POLYMIX_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "polymix_cli", *args],
        check=False,
        cwd=cwd or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One real `polymix train` run at tiny sizes; returns its run dir."""
    run_dir = tmp_path_factory.mktemp("train") / "run"
    result = run_cli("train", *TINY, "trainer.checkpoint_every=10", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr + result.stdout
    return run_dir


@pytest.fixture
def cli(capsys, monkeypatch):
    """``cli(*args)`` runs ``polymix ARGS`` in this process (the real entry point, without
    paying an interpreter and torch import per case); returns (exit status, stderr)."""
    from polymix_cli.cli.main import main

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


class QuietUI:
    """A run's terminal output, silenced: for calling ``run.train`` directly."""

    def groups(self, specs, num_params):
        pass

    def training(self, trainer):
        return None

    def finished(self):
        pass

    def summary(self, metrics, run_dir):
        pass
