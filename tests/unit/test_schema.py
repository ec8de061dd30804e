"""The typed schema: every option documented, ranges next to the fields, and the
migration of configs stored by older checkpoints (no Hydra, no torch run)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
from helpers import schema_classes

from polymix_cli.config import schema
from polymix_cli.config.migrate import CURRENT_VERSION, MigrationError, migrate
from polymix_cli.config.validation import ConfigError, config_dict, parse_train_config


def test_every_option_has_a_one_line_doc():
    for cls in schema_classes():
        for f in dataclasses.fields(cls):
            doc = f.metadata.get("doc")
            assert isinstance(doc, str) and doc and "\n" not in doc, (cls.__name__, f.name)


def test_every_schema_default_is_valid():
    """The defaults pass their own checks (a train config of the default groups)."""
    config = schema.TrainConfig(
        data=schema.SyntheticDataConfig(),
        model=schema.MoeModelConfig(),
        layout=schema.LayoutConfig(),
        optimizer=schema.AdamWConfig(),
        scheduler=schema.OneCycleConfig(),
    )
    assert parse_train_config(config_dict(config)) == config


# --------------------------------------------------------------------------- migrate

# the config of a run of the first release (format version 1, before the options that
# came later: data scaling, trainer batch_size/num_threads/compile/gradients/noise,
# eval.sensitivity*, resume, sweep)
FIRST_RELEASE = {
    "data": {
        "generator": "sign_sine",
        "num_train": 50,
        "num_test": 1000,
        "noise_std": 0.05,
        "bounds": [[-1.0, 1.0]],
        "seed": 1234,
        "test_seed": 4321,
    },
    "model": {
        "kind": "moe",
        "num_experts": 2,
        "expert": {
            "kind": "pce",
            "degree": 3,
            "basis": "legendre",
            "q_norm": 1.0,
            "width": 16,
            "depth": 1,
            "activation": "tanh",
        },
        "experts": None,
        "gate": {"width": 16, "depth": 1, "activation": "tanh"},
    },
    "layout": {
        "default": {
            "kind": "deterministic",
            "prior": {"kind": "iid_gaussian", "mean": 0.0, "std": 1.0},
        },
        "rules": [
            {"match": "experts.*.coeffs[:2]", "kind": "iid_gaussian"},
            {"match": "gate.output.*", "kind": "iid_gaussian"},
        ],
    },
    "optimizer": {"name": "adamw", "lr": 0.01, "weight_decay": 0.0001},
    "scheduler": {"name": "onecycle", "max_lr_factor": 10.0, "pct_start": 0.3},
    "trainer": {
        "epochs": 10000,
        "num_samples": 100,
        "weight_factor": 0.1,
        "loss": "mse_sum",
        "log_every": 1000,
        "checkpoint_every": 0,
        "device": "cpu",
        "progress": "auto",
    },
    "eval": {"num_samples": 1000, "band": 0.8, "levels": [0.5, 0.8, 0.9, 0.95], "grid_points": 200},
    "name": "moe_sign",
    "seed": 1234,
}


def test_migrate_fills_what_version_1_configs_lack_with_what_they_meant():
    before = copy.deepcopy(FIRST_RELEASE)
    out = migrate(FIRST_RELEASE, 1)
    assert FIRST_RELEASE == before  # a copy: the stored config is left alone
    assert out["data"]["input_scaling"] == "auto" and out["data"]["output_scaling"] == "none"
    trainer = out["trainer"]
    assert (trainer["batch_size"], trainer["num_threads"], trainer["compile"]) == (
        None,
        None,
        False,
    )
    assert trainer["gradients"] == "auto" and trainer["noise"]["init_std"] == 0.1
    assert out["eval"]["sensitivity"] == "auto" and out["eval"]["sensitivity_samples"] is None
    assert out["eval"]["sensitivity_base_samples"] == 2048
    assert out["resume"] is None and out["sweep"]["objective"] == "test.crps"
    config = parse_train_config(out)
    # nothing left to a schema default: the migrated config names every option itself
    # (what the first release meant does not move when a default changes)
    for section in ("data", "trainer", "eval"):
        assert set(config_dict(config)[section]) - {"generator"} <= set(out[section]) | {
            "generator"
        }


def test_migrate_keeps_what_version_1_configs_hold():
    stored = copy.deepcopy(FIRST_RELEASE)
    stored["data"]["output_scaling"] = "standardize"
    stored["trainer"]["gradients"] = "autograd"
    stored["eval"]["sensitivity"] = "off"
    out = migrate(stored, 1)
    assert out["data"]["output_scaling"] == "standardize"
    assert out["trainer"]["gradients"] == "autograd" and out["eval"]["sensitivity"] == "off"
    for section, values in stored.items():  # every stored value is kept as it was
        if isinstance(values, dict):
            assert {k: out[section][k] for k in values} == values, section
        else:
            assert out[section] == values


def test_migrate_of_the_current_version_is_a_copy():
    config = config_dict(parse_train_config(migrate(FIRST_RELEASE, 1)))
    assert migrate(config, CURRENT_VERSION) == config
    assert migrate(config, CURRENT_VERSION) is not config


@pytest.mark.parametrize("version", [0, CURRENT_VERSION + 1, "1", None, True])
def test_migrate_refuses_unknown_versions(version):
    with pytest.raises(MigrationError, match="format version"):
        migrate(FIRST_RELEASE, version)


def test_migrate_leaves_broken_sections_to_validation():
    broken = {**copy.deepcopy(FIRST_RELEASE), "trainer": 3}
    out = migrate(broken, 1)
    assert out["trainer"] == 3
    with pytest.raises(ConfigError, match="trainer must be a mapping of options, got 3"):
        parse_train_config(out)
