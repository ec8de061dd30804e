"""Settings and helpers shared by the tests of every level (tests/unit, tests/app, tests/e2e).

Import them with ``from helpers import ...`` (pyproject puts tests/ on pytest's path); the
fixtures (``tiny_run``, ``cli``, ``one_thread``) live in tests/conftest.py.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np

from polymix_cli.runs.prepare import SilentUI

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

# The one set of tiny settings: they keep an end-to-end run to a few seconds. A test that
# needs another value of one of them appends it after TINY (the last override wins).
TINY = [
    "trainer.epochs=30",
    "trainer.num_samples=8",
    "trainer.log_every=10",
    "eval.num_samples=64",
    "eval.grid_points=25",
    "data.num_test=200",
]
# TINY for data=file, which has no data.num_test (its test split comes from the file)
TINY_FILE = [option for option in TINY if not option.startswith("data.")]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- configs and runs


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


QuietUI = SilentUI  # a run's terminal output, silenced: for calling ``run.train`` directly


def assert_one_line(stderr: str, *needles: str) -> None:
    """``stderr`` is one ``polymix: ...`` line without a traceback, holding every needle."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("polymix: "), stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in stderr, (needle, stderr)


# ----------------------------------------------------------------------------- files


def is_png(path: Path, min_side: int = 200) -> bool:
    """``path`` is a PNG whose height and width are both above ``min_side`` pixels."""
    return path.read_bytes()[:8] == PNG_SIGNATURE and min(mpimg.imread(path).shape[:2]) > min_side


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def read_csv_array(path: Path) -> tuple[list[str], np.ndarray]:
    """A numeric CSV file (e.g. `polymix predict`'s output): its header and its values."""
    with path.open() as handle:
        rows = list(csv.reader(handle))
    return rows[0], np.array(rows[1:], dtype=float)


def truth(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The data=file tests' function of two inputs (a on [0, 10], b on [100, 200]): two
    outputs in user units, around 1000 and around 6."""
    return np.stack([1000 + 2 * np.sin(a / 3) + 0.01 * (b - 150), 5 + (a / 10) * (b / 100)], axis=1)


# ----------------------------------------------------------------------------- ishigami

# Published indices of the Ishigami function (a = 7, b = 0.1).
ISHIGAMI_FIRST = (0.3139, 0.4424, 0.0)
ISHIGAMI_TOTAL = (0.5576, 0.4424, 0.2437)


def ishigami_errors(metrics: dict) -> tuple[float, float]:
    """The largest error of the reported first-order and total indices of a run's
    metrics.json against the published ones."""
    sens = metrics["sensitivity"]
    first = [sens["first_order"]["y1"][f"x{i}"]["mean"] for i in (1, 2, 3)]
    total = [sens["total"]["y1"][f"x{i}"]["mean"] for i in (1, 2, 3)]
    return (
        max(abs(a - b) for a, b in zip(first, ISHIGAMI_FIRST, strict=True)),
        max(abs(a - b) for a, b in zip(total, ISHIGAMI_TOTAL, strict=True)),
    )


def schema_classes() -> set[type]:
    """Every config schema class: those of the YAML files, their nested sections (found
    through their defaults) and the layout rule."""
    import dataclasses

    from polymix_cli.config import schema

    found: set[type] = set()
    todo = [*schema.SCHEMAS.values(), schema.ExpertConfig, schema.GateConfig, schema.RuleConfig]
    while todo:
        cls = todo.pop()
        if cls in found:
            continue
        found.add(cls)
        for f in dataclasses.fields(cls):
            default = f.default_factory() if callable(f.default_factory) else f.default
            if dataclasses.is_dataclass(default):
                todo.append(type(default))
    return found


def train_then_resume(
    cfg: dict, root: Path, checkpoint: str, run_dirs: tuple[str, str] = ("full", "resumed")
) -> tuple[dict, dict]:
    """Train ``cfg`` in ``root/<run_dirs[0]>``, then resume from that run's
    ``checkpoints/<checkpoint>`` in ``root/<run_dirs[1]>`` (``polymix train ...
    resume=PATH`` in process): the two runs' metrics."""
    from polymix_cli.runs.checkpoint import load_checkpoint
    from polymix_cli.runs.train import train

    first = train(cfg, root / run_dirs[0], "{}", QuietUI())
    path = root / run_dirs[0] / "checkpoints" / checkpoint
    resumed = train(
        {**cfg, "resume": str(path)},
        root / run_dirs[1],
        "{}",
        QuietUI(),
        resume=load_checkpoint(path),
    )
    return first, resumed


def main_in_process(args: list[str]) -> int | str | None:
    """Run ``polymix ARGS`` through the real entry point in this process and return its exit
    status; the logging Hydra configures for the run is undone afterwards."""
    import logging

    from polymix_cli.cli.main import main

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return main(list(args))
    except SystemExit as exc:
        return exc.code
    finally:  # Hydra configures logging for each run: undo it
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
