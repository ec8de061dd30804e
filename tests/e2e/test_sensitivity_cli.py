"""Sobol sensitivity end to end: experiment=ishigami_pce through the real command (slow),
a tiny ishigami run that evaluate analyses again by another method, and the one-input
mixture of the tiny run."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import TINY, QuietUI, ishigami_errors, run_cli

from polymix_cli.runs.evaluate import evaluate_checkpoint


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1234, 1, 2])
def test_ishigami_pce_experiment_recovers_the_indices(tmp_path, seed):
    """The full experiment through the CLI, as documented in the README."""
    result = run_cli(
        "train", "experiment=ishigami_pce", f"seed={seed}", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr + result.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    first_err, total_err = ishigami_errors(metrics)
    assert first_err < 0.03 and total_err < 0.03, metrics["sensitivity"]


def test_tiny_ishigami_run_writes_sensitivity_and_evaluate_can_switch_method(tmp_path):
    run = tmp_path / "run"
    result = run_cli(
        "train", "experiment=ishigami_pce", *TINY, "data.num_train=200", f"hydra.run.dir={run}"
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "Sobol indices (closed form" in result.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    sens = metrics["sensitivity"]
    assert sens["method"] == "pce" and sens["num_samples"] == 64 and sens["outputs"] == ["y1"]
    assert set(sens["first_order"]["y1"]) == {"x1", "x2", "x3"}
    assert set(sens["total"]["y1"]["x2"]) == {"mean", "std", "lower", "upper"}
    assert (run / "plots" / "sobol.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = tmp_path / "eval"
    result = run_cli(
        "evaluate",
        f"ckpt={run / 'checkpoints' / 'last.pt'}",
        "eval.sensitivity=monte_carlo",
        "eval.sensitivity_samples=16",
        "eval.sensitivity_base_samples=512",
        f"hydra.run.dir={again}",
    )
    assert result.returncode == 0, result.stderr + result.stdout
    mc = json.loads((again / "metrics.json").read_text())["sensitivity"]
    assert mc["method"] == "monte_carlo" and mc["num_samples"] == 16 and mc["base_samples"] == 512
    for name in ("x1", "x2", "x3"):  # the same model: Monte Carlo near the closed form
        assert mc["total"]["y1"][name]["mean"] == pytest.approx(
            sens["total"]["y1"][name]["mean"], abs=0.1
        )
    off = tmp_path / "off"  # in-process, as `polymix evaluate ... eval.sensitivity=off` runs it
    metrics = evaluate_checkpoint(
        run / "checkpoints" / "last.pt",
        {"eval": {"sensitivity": "off"}},
        off,
        QuietUI(),
        yaml.safe_load,
    )
    assert "sensitivity" not in metrics and "sensitivity" not in json.loads(
        (off / "metrics.json").read_text()
    )
    assert not (off / "plots" / "sobol.png").exists()


def test_one_input_mixture_reports_moments_and_unit_indices_without_a_plot(tiny_run):
    sens = json.loads((tiny_run / "metrics.json").read_text())["sensitivity"]
    assert (
        sens["method"] == "monte_carlo"
        and sens["inputs"] == ["x1"]
        and sens["base_samples"] == 2048
    )
    assert (
        sens["first_order"]["y1"]["x1"]["mean"] == 1.0 and sens["total"]["y1"]["x1"]["std"] == 0.0
    )
    assert sens["variance"]["y1"]["mean"] > 0
    assert sens["input_distribution"] == {"kind": "uniform", "low": [-1.0], "high": [1.0]}
    assert not (tiny_run / "plots" / "sobol.png").exists()
