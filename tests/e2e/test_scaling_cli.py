"""Data maps end to end: a mapped run reports user units, evaluate uses the stored maps."""

from __future__ import annotations

import json

import torch
from helpers import TINY, run_cli

from polymix_cli.runs.checkpoint import load_checkpoint, stored_maps


def test_mapped_run_reports_user_units_and_evaluate_uses_the_stored_maps(tmp_path):
    """Inputs on [0, 4] (two periods of sin(pi x)): trained on the unit domain, reported in
    user units, and `evaluate` with another training-data seed (whose outputs would give
    other maps if they were fitted again) reproduces the test metrics from the stored maps."""
    run = tmp_path / "run"
    opts = [
        "experiment=pce_sine",
        "data.bounds=[[0.0,4.0]]",
        "data.output_scaling=standardize",
        *TINY,
        "trainer.epochs=400",
        "model.degree=7",
    ]
    result = run_cli("train", *opts, f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr + result.stdout
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    maps = stored_maps(state, "last.pt")
    assert maps is not None and torch.allclose(
        maps.inputs.shift, torch.tensor([2.0], dtype=torch.float64)
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["rmse_true"] < 0.3  # the target spans [-1, 1] over two periods
    again = tmp_path / "eval"
    result = run_cli(
        "evaluate",
        f"ckpt={run / 'checkpoints' / 'last.pt'}",
        "data.seed=99",
        f"hydra.run.dir={again}",
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert json.loads((again / "metrics.json").read_text())["test"] == metrics["test"]


def test_tiny_default_run_stores_identity_maps(tiny_run):
    maps = stored_maps(load_checkpoint(tiny_run / "checkpoints" / "last.pt"), "last.pt")
    assert maps is not None and maps.inputs.is_identity and maps.outputs.is_identity
