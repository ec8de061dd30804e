"""Sweeps: Hydra multirun through the real `polymix` command at tiny sizes, the sweep
summary, the joblib and submitit launchers, an optuna study and `polymix summarize`
(the sweep's pure functions are in unit/test_sweep.py, its configs in app/test_sweep_runs.py)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO, TINY, is_png, run_cli

from polymix_cli.reporting.sweep import METRICS
from polymix_cli.runs.threads import available_cores

# A job of a few epochs: each sweep test costs mostly the interpreter and torch imports.
SWEEP_TINY = [*TINY, "trainer.epochs=5"]


def sweep(sweep_dir: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return run_cli(
        "train", "-m", *SWEEP_TINY, *args, f"hydra.sweep.dir={sweep_dir}", timeout=timeout
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def job_config(job_dir: Path) -> dict:
    return yaml.safe_load((job_dir / ".hydra" / "config.yaml").read_text())


def status(job_dir: Path) -> dict:
    return json.loads((job_dir / "status.json").read_text())


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A 2 x 2 sweep over gate width and expert degree (basic launcher)."""
    sweep_dir = tmp_path_factory.mktemp("grid") / "sweep"
    result = sweep(
        sweep_dir, "experiment=moe_sign", "model.gate.width=4,8", "model.expert.degree=1,2"
    )
    assert result.returncode == 0, result.stderr + result.stdout[-2000:]
    return sweep_dir, result


# --------------------------------------------------------------------------- a 2 x 2 grid


def test_grid_sweep_leaves_four_complete_run_dirs(grid):
    sweep_dir, _ = grid
    jobs = sorted(p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    for job in jobs:
        for name in (
            "metrics.json",
            "history.csv",
            "train.log",
            "checkpoints/last.pt",
            ".hydra/overrides.yaml",
            "plots/prediction.png",
            "plots/gating.png",
        ):
            assert (job / name).is_file(), f"{job.name}/{name}"
        assert len(read_csv(job / "history.csv")) == 5
        assert status(job)["status"] == "ok" and status(job)["reason"] is None


def test_summary_rows_match_the_job_configs(grid):
    sweep_dir, result = grid
    rows = read_csv(sweep_dir / "summary.csv")
    assert len(rows) == 4
    assert list(rows[0]) == [
        "job",
        "model.gate.width",
        "model.expert.degree",
        "status",
        *METRICS,
        "rank",
        "reason",
        "dir",
    ]
    assert {(r["model.gate.width"], r["model.expert.degree"]) for r in rows} == {
        ("4", "1"),
        ("4", "2"),
        ("8", "1"),
        ("8", "2"),
    }
    for row in rows:
        job = sweep_dir / row["dir"]
        cfg = job_config(job)
        assert int(row["model.gate.width"]) == cfg["model"]["gate"]["width"]
        assert int(row["model.expert.degree"]) == cfg["model"]["expert"]["degree"]
        metrics = json.loads((job / "metrics.json").read_text())
        assert row["status"] == "ok"
        assert float(row["test.crps"]) == pytest.approx(metrics["test"]["crps"], rel=1e-6)
        assert float(row["val.crps"]) == pytest.approx(metrics["val"]["crps"], rel=1e-6)
        assert float(row["test.coverage.0.8"]) == pytest.approx(metrics["test"]["coverage"]["0.8"])
        assert float(row["losses.total"]) == pytest.approx(metrics["losses"]["total"], rel=1e-6)
        assert int(row["num_params"]) == metrics["num_params"]
    ranked = sorted(rows, key=lambda r: int(r["rank"]))
    # ranked by the validation set's crps (the default): the test set chooses nothing
    assert [float(r["val.crps"]) for r in ranked] == sorted(float(r["val.crps"]) for r in rows)
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert summary["counts"] == {"ok": 4, "failed": 0, "incomplete": 0}
    assert summary["swept"] == ["model.gate.width", "model.expert.degree"]
    assert summary["best"]["job"] == int(ranked[0]["job"]) and summary["sort_by"] == "val.crps"
    assert is_png(sweep_dir / "plots" / "sweep.png")  # a heatmap over the two swept values
    assert (
        "Sweep summary: 4 jobs (4 ok, 0 failed, 0 incomplete), sorted by val.crps" in result.stdout
    )
    assert f"best: job {ranked[0]['job']}" in result.stdout


def test_summarize_ranks_by_another_metric_without_torch(grid, tmp_path):
    sweep_dir = tmp_path / "copy"
    shutil.copytree(grid[0], sweep_dir)
    code = (
        "import sys; from polymix_cli.cli.main import main; "
        f"code = main(['summarize', {str(sweep_dir)!r}, '--sort-by', 'test.rmse']); "
        "print(code, 'torch' in sys.modules, 'hydra' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0 False False"
    rows = read_csv(sweep_dir / "summary.csv")
    ranked = sorted(rows, key=lambda r: int(r["rank"]))
    assert [float(r["test.rmse"]) for r in ranked] == sorted(float(r["test.rmse"]) for r in rows)
    assert "sorted by test.rmse" in result.stdout
    assert json.loads((sweep_dir / "summary.json").read_text())["sort_by"] == "test.rmse"


def test_summarize_reports_a_cut_short_job(grid, tmp_path):
    sweep_dir = tmp_path / "copy"
    shutil.copytree(grid[0], sweep_dir)
    for name in ("summary.csv", "summary.json"):
        (sweep_dir / name).unlink()
    (sweep_dir / "2" / "metrics.json").unlink()
    result = run_cli("summarize", str(sweep_dir))
    assert result.returncode == 0, result.stderr
    rows = {r["job"]: r for r in read_csv(sweep_dir / "summary.csv")}
    assert rows["2"]["status"] == "incomplete" and "metrics.json" in rows["2"]["reason"]
    assert rows["2"]["rank"] == "" and rows["2"]["test.crps"] == ""
    assert sorted(r["status"] for r in rows.values()) == ["incomplete", "ok", "ok", "ok"]
    assert "1 incomplete" in result.stdout and "job 2 incomplete" in result.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["/nonexistent/sweep"], "does not exist"),
        ([str(REPO / "configs")], "holds no job dirs"),
        (["DIR", "--sort-by", "accuracy"], "invalid choice"),
    ],
)
def test_summarize_bad_input_exits_2_with_one_line(args, message, tmp_path):
    result = run_cli("summarize", *[str(tmp_path) if a == "DIR" else a for a in args])
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


# --------------------------------------------------------------------------- failures


def test_a_failed_job_does_not_stop_the_sweep(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = sweep(sweep_dir, "model.expert.degree=2,-1")
    assert result.returncode == 0, result.stderr + result.stdout[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    rows = {r["job"]: r for r in read_csv(sweep_dir / "summary.csv")}
    assert rows["0"]["status"] == "ok" and rows["0"]["rank"] == "1"
    assert rows["1"]["status"] == "failed" and rows["1"]["rank"] == ""
    assert rows["1"]["reason"] == "model.expert: degree must be >= 0, got -1"
    failed = status(sweep_dir / "1")
    assert (
        failed["status"] == "failed"
        and failed["exit_status"] == 2
        and failed["error"] == "ConfigError"
    )
    assert "job 1 failed: model.expert: degree must be >= 0" in result.stdout
    assert is_png(sweep_dir / "plots" / "sweep.png")


def test_a_bad_shared_option_exits_2_before_any_job(tmp_path):
    result = sweep(tmp_path / "sweep", "trainer.epochs=0", "model.gate.width=4,8")
    assert result.returncode == 2
    assert "trainer.epochs must be >= 1, got 0 (in every job of the sweep)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "sweep" / "0").exists()


def test_joblib_runs_jobs_in_parallel_worker_processes(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = sweep(
        sweep_dir, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model.gate.width=4,8"
    )
    assert result.returncode == 0, result.stderr + result.stdout[-2000:]
    assert "Traceback" not in result.stderr and "deprecated" not in result.stderr
    rows = read_csv(sweep_dir / "summary.csv")
    assert [(r["job"], r["model.gate.width"], r["status"]) for r in rows] == [
        ("0", "4", "ok"),
        ("1", "8", "ok"),
    ]
    for row in rows:
        assert job_config(sweep_dir / row["job"])["model"]["gate"]["width"] == int(
            row["model.gate.width"]
        )
    # each job ran in a worker process, with cores // 2 torch threads: 2 jobs x threads <= cores
    jobs = [status(sweep_dir / r["job"]) for r in rows]
    assert all(j["pid"] != os.getpid() for j in jobs)
    assert {j["threads"] for j in jobs} == {max(1, available_cores() // 2)}


def test_submitit_local_launcher(tmp_path):
    # one job: each submitit job is a fresh process (~10 s of imports on a busy core)
    sweep_dir = tmp_path / "sweep"
    result = sweep(
        sweep_dir,
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=3",
        "model.gate.width=4",
    )
    assert result.returncode == 0, result.stderr + result.stdout[-2000:]
    rows = read_csv(sweep_dir / "summary.csv")
    assert [(r["job"], r["status"], r["rank"]) for r in rows] == [("0", "ok", "1")]
    assert job_config(sweep_dir / "0")["model"]["gate"]["width"] == 4
    assert (sweep_dir / "0" / "checkpoints" / "last.pt").is_file()
    assert list((sweep_dir / ".submitit").glob("*/*_result.pkl"))  # ran by submitit's executor
    job = status(sweep_dir / "0")
    assert job["threads"] == 1 and job["pid"] != os.getpid()  # cpus_per_task, own process


def test_optuna_study_reports_the_best_trial(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = sweep(sweep_dir, "hparams_search=moe_optuna", "hydra.sweeper.n_trials=3")
    assert result.returncode == 0, result.stderr + result.stdout[-2000:]
    rows = read_csv(sweep_dir / "summary.csv")
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
    study = json.loads((sweep_dir / "summary.json").read_text())["study"]
    params = {
        "model.gate.width",
        "model.gate.depth",
        "model.expert.degree",
        "model.num_experts",
        "optimizer.lr",
        "trainer.weight_factor",
    }
    assert set(study["best_params"]) == params
    best = next(r for r in rows if r["job"] == str(study["job"]))
    assert study["best_value"] == pytest.approx(float(best["val.crps"]), rel=1e-6)
    assert best["rank"] == "1"
    cfg = yaml.safe_load((sweep_dir / study["config"]).read_text())
    assert cfg["model"]["gate"]["width"] == study["best_params"]["model.gate.width"]
    assert cfg["optimizer"]["lr"] == pytest.approx(study["best_params"]["optimizer.lr"])
    assert "optuna best trial: value" in result.stdout and "its config:" in result.stdout
    assert is_png(sweep_dir / "plots" / "sweep.png")  # the objective by trial


@pytest.mark.filterwarnings("ignore:.*declarative_base")
def test_optuna_study_is_stored_and_continued(tmp_path):
    """hydra.sweeper.storage=sqlite:///...: the study is written to the file, and a second
    sweep with the same storage continues it (the plugin needs SQLAlchemy < 2)."""
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    for n in (1, 2):
        result = sweep(
            tmp_path / f"sweep{n}",
            "hparams_search=moe_optuna",
            "hydra.sweeper.n_trials=1",
            f"hydra.sweeper.storage={storage}",
        )
        assert result.returncode == 0, result.stderr + result.stdout[-2000:]
        assert "Traceback" not in result.stderr
        study = optuna.load_study(study_name="moe_optuna", storage=storage)
        assert [t.state.name for t in study.trials] == ["COMPLETE"] * n


# --------------------------------------------------------------------------- help


def test_help_lists_summarize_without_torch():
    code = (
        "import sys; from polymix_cli.cli.main import main; main(['--help']); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    assert "summarize" in out and out.strip().splitlines()[-1] == "False"
