"""Sweeps: Hydra multirun through the real `polymix` command at tiny sizes, the sweep
summary, the joblib and submitit launchers, an optuna study and `polymix summarize`."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import pytest
import yaml
from conftest import REPO, compose_train, run_cli

from polymix_cli.reporting.sweep import METRICS, metric_value, ranking_score, swept_keys_from_config
from polymix_cli.runs.threads import available_cores, threads_per_job

# A job of a few epochs: each sweep test costs mostly the interpreter and torch imports.
SWEEP_TINY = [
    "trainer.epochs=5",
    "trainer.num_samples=4",
    "trainer.log_every=5",
    "eval.num_samples=16",
    "eval.grid_points=10",
    "data.num_test=50",
]


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


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and min(mpimg.imread(path).shape[:2]) > 200


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
        assert float(row["test.coverage.0.8"]) == pytest.approx(metrics["test"]["coverage"]["0.8"])
        assert float(row["losses.total"]) == pytest.approx(metrics["losses"]["total"], rel=1e-6)
        assert int(row["num_params"]) == metrics["num_params"]
    ranked = sorted(rows, key=lambda r: int(r["rank"]))
    assert [float(r["test.crps"]) for r in ranked] == sorted(float(r["test.crps"]) for r in rows)
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert summary["counts"] == {"ok": 4, "failed": 0, "incomplete": 0}
    assert summary["swept"] == ["model.gate.width", "model.expert.degree"]
    assert summary["best"]["job"] == int(ranked[0]["job"]) and summary["sort_by"] == "test.crps"
    assert is_png(sweep_dir / "plots" / "sweep.png")  # a heatmap over the two swept values
    assert (
        "Sweep summary: 4 jobs (4 ok, 0 failed, 0 incomplete), sorted by test.crps" in result.stdout
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


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["sweep.sort_by=accuracy"], "sweep.sort_by must be one of"),
        (["sweep.objective=r2"], "sweep.objective must be one of"),
        (["hparams_search=moe_optuna"], None),
        (
            ["hparams_search=moe_optuna", "hydra.sweeper.direction=maximize"],
            "hydra.sweeper.direction must be minimize",
        ),
    ],
)
def test_multirun_start_checks_the_sweep_options(overrides, message, tmp_path, capsys):
    from hydra import compose, initialize_config_dir

    from polymix_cli.cli.callbacks import SweepSummaryCallback

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[*overrides, f"hydra.sweep.dir={tmp_path}"],
            return_hydra_config=True,
        )
    if message is None:
        SweepSummaryCallback().on_multirun_start(cfg)
        assert (tmp_path / "multirun.yaml").is_file()  # read back by polymix summarize
        return
    with pytest.raises(SystemExit) as exit_info:
        SweepSummaryCallback().on_multirun_start(cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


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
    assert study["best_value"] == pytest.approx(float(best["test.crps"]), rel=1e-6)
    assert best["rank"] == "1"
    cfg = yaml.safe_load((sweep_dir / study["config"]).read_text())
    assert cfg["model"]["gate"]["width"] == study["best_params"]["model.gate.width"]
    assert cfg["optimizer"]["lr"] == pytest.approx(study["best_params"]["optimizer.lr"])
    assert "optuna best trial: value" in result.stdout and "its config:" in result.stdout
    assert is_png(sweep_dir / "plots" / "sweep.png")  # the objective by trial


# --------------------------------------------------------------------------- configs and units


def test_slurm_launcher_config_composes():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(
            config_name="train", overrides=["hydra/launcher=slurm"], return_hydra_config=True
        )
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert {"partition", "account", "timeout_min", "cpus_per_task", "mem_gb", "setup"} <= set(
        launcher
    )
    assert threads_per_job(None, launcher) == launcher["cpus_per_task"]


def test_sweep_options_are_validated():
    from polymix_cli.config.validation import ConfigError
    from polymix_cli.runs.prepare import prepare

    cfg = compose_train()
    assert cfg["sweep"] == {"sort_by": "test.crps", "objective": "test.crps"}
    assert cfg["trainer"]["num_threads"] is None
    for override, message in (
        (["sweep.objective=r2"], "sweep.objective must be one of"),
        (["trainer.num_threads=0"], "trainer.num_threads must be >= 1"),
    ):
        with pytest.raises(ConfigError, match=message):
            prepare(compose_train(override))


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


def test_help_lists_summarize_without_torch():
    code = (
        "import sys; from polymix_cli.cli.main import main; main(['--help']); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    assert "summarize" in out and out.strip().splitlines()[-1] == "False"
