"""A sweep's jobs in the trackers, with the real command: one MLflow experiment whose runs
carry the sweep's tag, TensorBoard runs under the sweep dir (basic launcher here; the Ray
launcher in test_ray_cli.py). Needs the extra `tracking`; skips without it."""

from __future__ import annotations

import pytest
from helpers import TINY, run_cli


def check_sweep_in_trackers(sweep_dir, uri: str, jobs: int) -> None:
    """Every job of the sweep is an MLflow run tagged with the sweep, and a TensorBoard
    run under the sweep dir with its final test CRPS."""
    import csv

    import mlflow
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = {r["job"]: r for r in csv.DictReader((sweep_dir / "summary.csv").open())}
    assert len(rows) == jobs
    rows = {job: r for job, r in rows.items() if r["status"] == "ok"}  # the failed have none
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(
        experiment_names=["pce_sine"],
        filter_string=f"tags.`polymix.sweep` = '{sweep_dir}'",
        output_format="list",
    )
    assert sorted(r.data.tags["polymix.job"] for r in runs) == sorted(rows)
    for run in runs:
        job = run.data.tags["polymix.job"]
        assert run.info.status == "FINISHED" and run.info.run_name == f"{sweep_dir.name}/{job}"
        assert run.data.metrics["test/crps"] == pytest.approx(float(rows[job]["test.crps"]))
        reader = EventAccumulator(str(sweep_dir / job / "tensorboard"))
        reader.Reload()
        crps = reader.Scalars("test/crps")[-1].value
        assert crps == pytest.approx(float(rows[job]["test.crps"]), rel=1e-6)


def test_a_sweep_groups_its_jobs_in_mlflow_and_tensorboard(tmp_path):
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    sweep_dir, uri = tmp_path / "sweep", f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(
        "train",
        "-m",
        *TINY,
        "experiment=pce_sine",
        "model.degree=2,3",
        "logger=[tensorboard,mlflow]",
        f"logger.mlflow.tracking_uri={uri}",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert result.returncode == 0, result.stderr + result.stdout[-2000:]
    assert "logger" not in result.stderr  # no logger warned
    check_sweep_in_trackers(sweep_dir, uri, jobs=2)
