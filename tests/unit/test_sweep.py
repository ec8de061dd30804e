"""Sweeps without Hydra: threads per job, the swept keys of a multirun config, metric values
and scores, and the sweep plot."""

from __future__ import annotations

import pytest
from helpers import is_png

from polymix_cli.reporting.sweep import metric_value, ranking_score, swept_keys_from_config
from polymix_cli.runs.threads import threads_per_job


def test_threads_per_job_never_oversubscribes():
    assert threads_per_job(3, {"n_jobs": 8}, cores=16) == 3  # trainer.num_threads wins
    assert threads_per_job(None, None, cores=16) is None  # torch's default
    assert threads_per_job(None, {"n_jobs": 2}, cores=16) == 8
    assert threads_per_job(None, {"n_jobs": -1}, cores=16) == 1
    assert threads_per_job(None, {"n_jobs": 32}, cores=16) == 1
    assert threads_per_job(None, {"n_jobs": -2}, cores=16) == 1  # joblib: all cores but one
    assert threads_per_job(None, {"cpus_per_task": 4, "_target_": "x.SlurmLauncher"}, cores=16) == 4
    assert (
        threads_per_job(None, {"cpus_per_task": None, "_target_": "x.submitit.Local"}, cores=16)
        is None
    )


def test_swept_keys_from_a_multirun_config():
    cfg = {
        "hydra": {
            "overrides": {
                "task": [
                    "trainer.epochs=5",
                    "model.gate.width=8,16",
                    "model.expert.degree=range(1,4)",
                    "layout.rules=[{match: a}, {match: b}]",
                    "name='a,b'",
                    "experiment=moe_sign",
                ]
            },
            "sweeper": {"params": {"optimizer.lr": "interval(0.001, 0.1)"}},
        }
    }
    assert swept_keys_from_config(cfg) == [
        "model.gate.width",
        "model.expert.degree",
        "optimizer.lr",
    ]
    assert swept_keys_from_config(None) == []


def test_metric_values_and_scores():
    metrics = {"test": {"crps": 0.5, "coverage": {"0.8": 0.7}, "rmse_true": None}, "num_params": 74}
    assert metric_value(metrics, "test.crps") == 0.5 and metric_value(metrics, "num_params") == 74
    assert (
        metric_value(metrics, "test.rmse_true") is None and metric_value(None, "test.crps") is None
    )
    assert ranking_score("test.coverage.0.8", 0.7) == pytest.approx(0.1)  # distance to the level
    assert ranking_score("test.crps", 0.5) == 0.5
    with pytest.raises(ValueError, match="metric must be one of"):
        metric_value(metrics, "accuracy")


def test_plot_sweep_line_and_heatmap(tmp_path):
    from polymix_cli.reporting.plots import plot_sweep

    line = plot_sweep(
        tmp_path / "line.png",
        "test.crps",
        "model.gate.width",
        [8, 16, 32],
        [0.3, None, 0.25],
        failed=[False, True, False],
    )
    heat = plot_sweep(
        tmp_path / "heat.png",
        "test.coverage.0.8",
        "width",
        [8, 16, 8, 16],
        [0.7, 0.9, None, 0.8],
        failed=[False, False, True, False],
        y_name="degree",
        y_values=[2, 2, 3, 3],
        target=0.8,
    )
    trials = plot_sweep(
        tmp_path / "trials.png", "test.crps", "trial", [0, 1, 2], [0.5, 0.3, 0.4], running_best=True
    )
    assert all(is_png(p) for p in (line, heat, trials))
    with pytest.raises(ValueError, match="one entry per job"):
        plot_sweep(tmp_path / "bad.png", "test.crps", "w", [1, 2], [0.1])
    with pytest.raises(ValueError, match="given together"):
        plot_sweep(tmp_path / "bad.png", "test.crps", "w", [1, 2], [0.1, 0.2], y_name="d")
