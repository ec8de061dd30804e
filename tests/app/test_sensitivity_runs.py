"""Sobol sensitivity through the configs: the options and their defaults, and
experiment=ishigami_pce trained in process."""

from __future__ import annotations

import math

import pytest
from helpers import TINY, QuietUI, compose_train, ishigami_errors

from polymix_cli.config.validation import ConfigError, validate_train_config
from polymix_cli.runs.prepare import prepare
from polymix_cli.runs.train import train

# ----------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "eval.sensitivity=sobol",
            "eval.sensitivity must be one of ['auto', 'pce', 'monte_carlo', 'off'], got 'sobol'",
        ),
        ("eval.sensitivity=pce", "eval.sensitivity=pce needs model.kind=pce"),
        (
            "eval.sensitivity_samples=0",
            "eval.sensitivity_samples must be null or an integer in [1, eval.num_samples=1000]",
        ),
        (
            "eval.sensitivity_samples=1001",
            "eval.sensitivity_samples must be null or an integer in [1, eval.num_samples=",
        ),
        ("eval.sensitivity_samples=1.5", "eval.sensitivity_samples must be null or an integer"),
        ("eval.sensitivity_base_samples=1", "eval.sensitivity_base_samples must be >= 2, got 1"),
        (
            "eval.sensitivity_base_samples=abc",
            "eval.sensitivity_base_samples must be an integer >= 2",
        ),
    ],
)
def test_bad_sensitivity_options_are_named(override, message):
    with pytest.raises(ConfigError) as err:
        validate_train_config(compose_train([override]))
    assert message in str(err.value)


def test_sensitivity_options_have_defaults_and_older_configs_get_them():
    cfg = compose_train()
    assert (
        cfg["eval"]["sensitivity"],
        cfg["eval"]["sensitivity_samples"],
        cfg["eval"]["sensitivity_base_samples"],
    ) == ("auto", None, 2048)
    validate_train_config(
        compose_train(
            ["experiment=pce_sine", "eval.sensitivity=pce", "eval.sensitivity_samples=10"]
        )
    )
    old = compose_train([*TINY])
    for key in ("sensitivity", "sensitivity_samples", "sensitivity_base_samples"):
        del old["eval"][key]
    assert prepare(old).cfg.eval.sensitivity == "auto"


# ----------------------------------------------------------------------------- ishigami


def test_ishigami_pce_short_training_recovers_the_indices(tmp_path):
    """experiment=ishigami_pce for a third of its epochs (about 2 s of training)."""
    cfg = compose_train(
        [
            "experiment=ishigami_pce",
            "trainer.epochs=1000",
            "eval.num_samples=200",
            "data.num_test=200",
            "trainer.log_every=1000",
        ]
    )
    metrics = train(cfg, tmp_path, "{}", QuietUI())
    first_err, total_err = ishigami_errors(metrics)
    assert first_err < 0.03 and total_err < 0.03, metrics["sensitivity"]
    sens = metrics["sensitivity"]
    assert sens["method"] == "pce" and sens["inputs"] == ["x1", "x2", "x3"]
    assert sens["mean"]["y1"]["mean"] == pytest.approx(
        3.5, abs=0.1
    )  # user units: outputs were standardised
    assert sens["variance"]["y1"]["mean"] == pytest.approx(13.84, rel=0.05)
    assert sens["input_distribution"]["kind"] == "uniform"
    assert sens["input_distribution"]["low"] == pytest.approx([-math.pi] * 3)
    assert (tmp_path / "plots" / "sobol.png").is_file()
