"""Sweeps composed in process: the sweep callback's checks at the start of a multirun, the
slurm launcher's config and the sweep options."""

from __future__ import annotations

import pytest
from helpers import REPO, compose_train

from polymix_cli.runs.threads import threads_per_job


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


def test_slurm_launcher_config_composes():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(
            config_name="train", overrides=["hydra/launcher=slurm"], return_hydra_config=True
        )
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert launcher["_target_"] == "hydra_plugins.polymix_slurm_launcher.SlurmLauncher"
    assert {"partition", "account", "timeout_min", "cpus_per_task", "mem_gb", "setup"} <= set(
        launcher
    )
    # defaults that fit a small partition, run with the launching Python (no venv to source)
    assert (launcher["cpus_per_task"], launcher["mem_gb"], launcher["tasks_per_node"]) == (1, 2, 1)
    assert launcher["setup"] == [] and launcher["partition"] is None
    assert threads_per_job(None, launcher) == launcher["cpus_per_task"]


def test_sweep_options_are_validated():
    from polymix_cli.config.validation import ConfigError
    from polymix_cli.runs.prepare import prepare

    cfg = compose_train()
    assert cfg["sweep"] == {"sort_by": "val.crps", "objective": "val.crps"}
    assert cfg["trainer"]["num_threads"] is None
    for override, message in (
        (["sweep.objective=r2"], "sweep.objective must be one of"),
        (["trainer.num_threads=0"], "trainer.num_threads must be >= 1"),
    ):
        with pytest.raises(ConfigError, match=message):
            prepare(compose_train(override))


@pytest.mark.filterwarnings("ignore:.*is validated against ConfigStore schema")
def test_ray_launcher_config_composes_and_sets_threads_per_job():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["hydra/launcher=ray", "hydra.launcher.ray.remote.num_cpus=3"],
            return_hydra_config=True,
        )
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert launcher["_target_"] == "hydra_plugins.polymix_ray_launcher.RayLauncher"
    assert launcher["ray"]["init"]["address"] is None  # a local cluster
    assert launcher["ray"]["remote"]["max_calls"] == 1
    # outside a Ray task: the CPUs the task asks for (Ray's default 1 when unset)
    assert threads_per_job(None, launcher, cores=16) == 3
    del launcher["ray"]["remote"]["num_cpus"]
    assert threads_per_job(None, launcher, cores=16) == 1
    assert threads_per_job(2, launcher, cores=16) == 2  # trainer.num_threads wins


def test_ray_launcher_without_its_extra_exits_2(cli, monkeypatch):
    from polymix_cli.cli import main

    monkeypatch.setattr(main, "_has_ray", lambda: False)
    status, err = cli("train", "-m", "hydra/launcher=ray", "model.gate.width=4,8")
    assert status == 2
    assert err.strip() == (
        "polymix: error: hydra/launcher=ray needs the extra ray (hydra-ray-launcher and ray), "
        "which is not installed: pip install 'polymix-cli[ray]'"
    )
