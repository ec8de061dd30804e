"""Every file of every config group composes against its typed schema and validates, and
bad options are reported all at once. The files are discovered from configs/, so a new
file is covered without touching this test."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from helpers import CONFIGS, REPO, compose_train

from polymix_cli.config import schema
from polymix_cli.config.compose import compose
from polymix_cli.config.schema import LOGGER_PACKAGES
from polymix_cli.config.validation import ConfigError, parse_section, parse_train_config
from polymix_cli.runs.prepare import prepare

# the train config's groups (folders of configs/ named in train.yaml's defaults list)
TRAIN_GROUPS = ("data", "model", "layout", "optimizer", "scheduler", "trainer", "eval", "logger")
# what some options need on top of their file (a data file is named on the command line)
FILE_DATA = [
    f"data.path={REPO / 'examples' / 'heat.csv'}",
    "data.inputs=[power,flow]",
    "data.outputs=[temperature]",
]
NEEDS = {"data=file": FILE_DATA, "experiment=pce_file": FILE_DATA}


def _options(group: str) -> list[str]:
    return sorted(f"{group}={p.stem}" for p in (CONFIGS / group).glob("*.yaml"))


def _all_options(groups) -> list[str]:
    return [option for group in groups for option in _options(group)]


def test_every_group_folder_is_covered():
    folders = {p.name for p in CONFIGS.iterdir() if p.is_dir()}
    assert folders == {*TRAIN_GROUPS, "experiment", "hparams_search", "hydra"}
    assert all(_options(group) for group in folders - {"hydra"})


@pytest.mark.parametrize("choice", _all_options(TRAIN_GROUPS))
def test_every_group_option_composes_and_validates(choice):
    """Each option of each group, on the train config without an experiment (the groups'
    files alone): typed by its schema, every option valid."""
    group, _, name = choice.partition("=")
    if group == "logger" and name in LOGGER_PACKAGES:  # the extra `tracking`
        pytest.importorskip(LOGGER_PACKAGES[name])
    cfg = compose_train(["~experiment", choice, *NEEDS.get(choice, [])])
    config = parse_train_config(cfg)
    section = getattr(config, group)
    assert dataclasses.is_dataclass(section)
    if group in ("data", "model", "optimizer", "scheduler"):  # the option names its class
        expected = {"data": "generator", "model": "kind"}.get(group, "name")
        # a data option is its generator's, or refines one (ishigami_small: fewer, noisy runs)
        named = {"data=file": "file", "data=ishigami_small": "ishigami"}.get(choice, name)
        assert getattr(section, expected) == named or (group == "data" and name == "sign_sine")


@pytest.mark.parametrize("choice", _options("experiment"))
def test_every_experiment_composes_validates_and_builds(choice):
    p = prepare(compose_train([choice, *NEEDS.get(choice, [])]))
    assert p.model.num_params() > 0 and p.cfg.name == choice.partition("=")[2]


@pytest.mark.parametrize("choice", _options("hparams_search"))
def test_every_hparams_search_composes(choice):
    parse_train_config(compose_train([choice]))


@pytest.mark.parametrize("choice", _options("hydra/launcher") + _options("hydra/job_logging"))
def test_every_hydra_option_composes(choice):
    """Hydra's own groups (launchers, logging): composed with the run's hydra config."""
    from hydra.types import RunMode

    from polymix_cli.config.compose import _loader

    cfg = _loader(str(CONFIGS)).load_configuration("train", [choice], run_mode=RunMode.MULTIRUN)
    group, _, name = choice.partition("=")
    node = cfg.hydra.launcher if group == "hydra/launcher" else cfg.hydra.job_logging
    assert node is not None and cfg.hydra.runtime.choices[group] == name


def test_evaluate_and_predict_configs_compose_against_their_schemas():
    evaluate = parse_section(
        schema.EvaluateConfig, compose("evaluate", ["ckpt=a.pt"], str(CONFIGS))
    )
    assert evaluate.data.num_test is None and evaluate.name == "evaluate"
    predict = parse_section(
        schema.PredictConfig,
        compose("predict", ["ckpt=a.pt", "input=in.csv", "output=out.npz"], str(CONFIGS)),
    )
    assert predict.predict.quantiles == [0.05, 0.5, 0.95] and predict.trainer.device is None


def test_every_yaml_names_its_schema_first():
    """Every file of a train group lists its schema (schema/<group>/...) in `defaults`."""
    for group in TRAIN_GROUPS:
        for path in (CONFIGS / group).glob("*.yaml"):
            text = path.read_text()
            # a logger's file puts its schema under its own key (logger.<name>), so that
            # several loggers merge into the group: logger=[tensorboard,mlflow]
            package = f"@{path.stem}" if group == "logger" and path.stem != "none" else "@_here_"
            assert f"- /schema/{group}/" in text and package in text, path
    for name in ("train", "evaluate", "predict", "inspect", "export"):
        assert f"- /schema/{name}@_here_" in (CONFIGS / f"{name}.yaml").read_text()


def test_no_group_file_restates_a_schema_default():
    """A value set in a group file differs from its schema's default."""
    import yaml

    classes = {
        "data": lambda d: schema.DataConfig.variants()[d.get("generator", "sign_sine")],
        "model": lambda d: schema.ModelConfig.variants()[Path(d["_file"]).stem],
        "optimizer": lambda d: schema.OptimizerConfig.variants()[Path(d["_file"]).stem],
        "scheduler": lambda d: schema.SchedulerConfig.variants()[Path(d["_file"]).stem],
        "trainer": lambda d: schema.TrainerConfig,
        "eval": lambda d: schema.EvalConfig,
    }
    for group, pick in classes.items():
        for path in (CONFIGS / group).glob("*.yaml"):
            values = yaml.safe_load(path.read_text()) or {}
            values.pop("defaults", None)
            cls = pick({**values, "_file": str(path)})
            if group == "data" and path.stem == "file":
                cls = schema.FileDataConfig
            defaults = dataclasses.asdict(cls())
            for key, value in values.items():
                assert value != defaults[key], f"{path.name}: {key}: {value} is the default"


# ----------------------------------------------------------------- errors, all at once


def test_every_bad_option_is_reported_at_once(cli, tmp_path):
    status, err = cli(
        "train",
        "model.gate.width=0",
        "trainer.epochs=0",
        "eval.band=2",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 3, err
    assert all(line.startswith("polymix: error: ") for line in lines)
    assert "model.gate.width must be >= 1, got 0" in lines[0]
    assert "trainer.epochs must be >= 1, got 0" in lines[1]
    assert "eval.band must be a number in (0.0, 1.0)" in lines[2]
    # checked before Hydra makes the run dir: nothing is written, not even .hydra/ or a log
    assert not (tmp_path / "run").exists()


def test_type_errors_are_reported_together_with_the_rest(cli, tmp_path):
    status, err = cli(
        "train",
        "trainer.epochs=abc",
        "model.expert.degree=x",
        "eval.num_samples=0",
        "trainer.epoch=3",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 4, err
    assert "model.expert.degree must be an integer >= 0, got 'x'" in err
    assert "trainer.epochs must be an integer >= 1, got 'abc'" in err
    assert "unknown option trainer.epoch; allowed keys in trainer" in err
    assert "eval.num_samples must be >= 2, got 0" in err
    assert not (tmp_path / "run").exists()  # refused while composing: Hydra made nothing


def test_type_errors_of_evaluate_and_predict_are_reported_at_once(cli, tmp_path):
    status, err = cli(
        "predict",
        "ckpt=a.pt",
        "input=in.csv",
        "output=out.csv",
        "predict.num_samples=many",
        "seed=x",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert status == 2 and len(err.strip().splitlines()) == 2, err
    assert "predict.num_samples must be an integer >= 2, got 'many'" in err
    assert "seed must be an integer >= 0, got 'x'" in err
    status, err = cli("evaluate", "ckpt=a.pt", "eval.band=wide", f"hydra.run.dir={tmp_path}")
    assert status == 2 and "eval.band must be a number in (0.0, 1.0), got 'wide'" in err


def test_a_plain_config_reports_every_bad_option():
    cfg = compose_train()
    cfg["model"]["gate"]["width"] = "wide"
    cfg["trainer"]["loss"] = "huber"
    cfg["data"]["path"] = "x.csv"
    cfg["optimizer"]["betas"] = [0.9, 0.99]
    with pytest.raises(ConfigError) as err:
        parse_train_config(cfg)
    assert err.value.messages == [
        (
            "data.path applies only to data from a file (data=file); these data come from the "
            "generator 'sign_sine'"
        ),
        "model.gate.width must be an integer >= 1, got 'wide'",
        "unknown option optimizer.betas; allowed keys in optimizer: name, lr, weight_decay",
        "trainer.loss must be one of ['mse_sum', 'gaussian_nll'], got 'huber'",
    ]


def test_absent_options_take_the_schema_default():
    config = parse_train_config(
        {
            "data": {"generator": "sine"},
            "model": {"kind": "pce"},
            "layout": {},
            "optimizer": {"name": "sgd"},
            "scheduler": {"name": "none"},
        }
    )
    assert config.data == schema.SyntheticDataConfig(generator="sine")
    assert config.model == schema.PceModelConfig()
    assert config.optimizer == schema.SGDConfig() and config.trainer == schema.TrainerConfig()
    with pytest.raises(ConfigError, match="missing option layout"):
        parse_train_config({k: v for k, v in compose_train().items() if k != "layout"})
