"""Sweeps on a local Ray cluster (hydra/launcher=ray, the extra `ray`), started and stopped
by the sweep: the jobs, their threads, the summary and the trackers. Skips without the
extra; CI installs it (.ci/run)."""

from __future__ import annotations

import json

import pytest
from helpers import TINY, run_cli
from test_tracking_cli import check_sweep_in_trackers

from polymix_cli.runs.threads import available_cores


@pytest.fixture(autouse=True)
def _needs_ray():
    pytest.importorskip("ray", reason="the extra `ray` is not installed (pip install '.[ray]')")
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="hydra-ray-launcher missing")


def test_a_sweep_on_a_local_ray_cluster(tmp_path):
    """Two jobs that succeed and one that fails, each a Ray task."""
    tracking = all(_installed(m) for m in ("mlflow", "tensorboard"))
    sweep_dir, uri = tmp_path / "sweep", f"sqlite:///{tmp_path / 'mlflow.db'}"
    cpus = 2 if available_cores() >= 2 else 1
    result = run_cli(
        "train",
        "-m",
        "hydra/launcher=ray",
        f"hydra.launcher.ray.remote.num_cpus={cpus}",
        *TINY,
        "experiment=pce_sine",
        "model.degree=2,3,-1",  # job 2 fails: recorded, and the sweep goes on
        *(["logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={uri}"] if tracking else []),
        f"hydra.sweep.dir={sweep_dir}",
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-2000:]
    assert "Traceback" not in result.stderr
    assert "deprecated" not in result.stderr
    failed = json.loads((sweep_dir / "2" / "status.json").read_text())
    assert failed["status"] == "failed" and failed["exit_status"] == 2
    assert "degree must be >= 0" in failed["reason"]
    for job in ("0", "1"):
        status = json.loads((sweep_dir / job / "status.json").read_text())
        # each job ran in a Ray worker, with the CPUs of its task as its torch threads
        assert status["status"] == "ok" and status["threads"] == cpus
        assert (sweep_dir / job / "checkpoints" / "last.pt").is_file()
    assert (sweep_dir / "summary.json").is_file() and "sweep summary" in result.stdout
    if tracking:
        check_sweep_in_trackers(sweep_dir, uri, jobs=3)


def test_an_optuna_study_on_a_local_ray_cluster(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_cli(
        "train",
        "-m",
        "hparams_search=moe_optuna",
        "hydra/launcher=ray",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        *TINY,
        f"hydra.sweep.dir={sweep_dir}",
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-2000:]
    study = json.loads((sweep_dir / "summary.json").read_text())["study"]
    assert study["job"] in (0, 1) and "optuna best trial: value" in result.stdout


def test_a_lost_ray_task_is_recorded_as_failed(tmp_path):
    """A task that ends without a result (its worker killed) becomes a failed job with
    the reason, and returns the worst objective; the sweep goes on."""
    from omegaconf import OmegaConf

    from polymix_cli.cli.ray import RayLauncher
    from polymix_cli.reporting.sweep import read_status

    launcher = RayLauncher(ray=OmegaConf.create({"init": {}, "remote": {}}))
    launcher.config = OmegaConf.create({"hydra": {"job": {"name": "train"}}})
    ret = launcher._failed(
        1, ["model.degree=3"], tmp_path / "1", RuntimeError("The worker died unexpectedly")
    )
    assert ret.return_value == float("inf")
    status = read_status(tmp_path / "1")
    assert status["status"] == "failed" and status["error"] == "RuntimeError"
    assert "The worker died unexpectedly" in status["reason"]
    assert OmegaConf.load(tmp_path / "1" / ".hydra" / "overrides.yaml") == ["model.degree=3"]


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_more_cpus_than_the_local_cluster_has_exits_2(tmp_path):
    result = run_cli(
        "train",
        "-m",
        "hydra/launcher=ray",
        "hydra.launcher.ray.remote.num_cpus=1000",
        *TINY,
        "experiment=pce_sine",
        "model.degree=2,3",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        timeout=300,
    )
    assert result.returncode == 2
    assert (
        "polymix: error: hydra.launcher.ray.remote.num_cpus=1000 asks for more CPUs than the "
        "local Ray cluster has" in result.stderr
    )
    assert not (tmp_path / "sweep" / "0").exists()
