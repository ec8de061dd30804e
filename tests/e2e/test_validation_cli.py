"""The validation set and early stopping through the real `polymix` command: a sweep that
could not rank its jobs, a sweep whose swept value leaves some jobs without a validation
set, and a run that stops early, then evaluate and predict from its best.pt."""

from __future__ import annotations

import csv
import json

from helpers import TINY, assert_one_line, read_csv_array, run_cli

SWEEP_TINY = [*TINY, "trainer.epochs=5"]


def test_a_sweep_without_validation_set_stops_before_its_first_job(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_cli(
        "train", "-m", *SWEEP_TINY, "data.num_val=0", "seed=1,2", f"hydra.sweep.dir={sweep_dir}"
    )
    assert result.returncode == 2, result.stderr + result.stdout[-2000:]
    assert_one_line(
        result.stderr,
        "polymix: error: sweep.objective=val.crps needs a validation set: set data.num_val > 0",
        "(in every job of the sweep)",
    )
    assert not any(sweep_dir.glob("*/metrics.json"))
    # ranking by another metric is allowed (the jobs then have no val block)
    result = run_cli(
        "train",
        "-m",
        *SWEEP_TINY,
        "data.num_val=0",
        "seed=1,2",
        "sweep.objective=losses.total",
        "sweep.sort_by=losses.total",
        f"hydra.sweep.dir={tmp_path / 'losses'}",
    )
    assert result.returncode == 0, result.stderr + result.stdout[-2000:]
    summary = json.loads((tmp_path / "losses" / "summary.json").read_text())
    assert summary["sort_by"] == "losses.total" and summary["counts"]["ok"] == 2


def test_a_swept_value_without_validation_set_fails_its_job_only(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_cli(
        "train", "-m", *SWEEP_TINY, "data.num_val=0,20", f"hydra.sweep.dir={sweep_dir}"
    )
    assert result.returncode == 0, result.stderr + result.stdout[-2000:]
    with (sweep_dir / "summary.csv").open() as handle:
        rows = {r["data.num_val"]: r for r in csv.DictReader(handle)}
    assert rows["0"]["status"] == "failed" and rows["0"]["rank"] == ""
    assert "sweep.objective=val.crps needs a validation set" in rows["0"]["reason"]
    assert rows["20"]["status"] == "ok" and rows["20"]["rank"] == "1"
    assert float(rows["20"]["val.crps"]) > 0


def test_a_run_stops_early_and_best_pt_is_evaluated_and_predicts(tmp_path):
    run = tmp_path / "run"
    result = run_cli(
        "train",
        *TINY,
        "trainer.epochs=200",
        "trainer.early_stopping.patience=20",
        "trainer.early_stopping.every=5",
        "trainer.early_stopping.min_delta=1e9",
        f"hydra.run.dir={run}",
    )
    assert result.returncode == 0, result.stderr
    assert "early stopping at epoch 25" in result.stdout
    assert "evaluating the best state, of epoch 5" in result.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["early_stopping"]["best_epoch"] == 5
    assert metrics["early_stopping"]["stopped_epoch"] == 25
    assert (run / "checkpoints" / "best.pt").is_file()
    best = run / "checkpoints" / "best.pt"
    result = run_cli("evaluate", f"ckpt={best}", f"hydra.run.dir={tmp_path / 'ev'}")
    assert result.returncode == 0, result.stderr
    again = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert again["val"] == metrics["val"] and again["test"] == metrics["test"]
    (tmp_path / "new.csv").write_text("x1\n-0.5\n0.25\n")
    result = run_cli(
        "predict",
        f"ckpt={best}",
        f"input={tmp_path / 'new.csv'}",
        f"output={tmp_path / 'out.csv'}",
        "predict.num_samples=50",
    )
    assert result.returncode == 0, result.stderr
    header, values = read_csv_array(tmp_path / "out.csv")
    assert header[:2] == ["x1", "y1_mean"] and values.shape[0] == 2
