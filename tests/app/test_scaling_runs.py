"""Data maps in prepared runs: identity maps for the seed data, mapped training data, the
option, and checkpoints without maps."""

from __future__ import annotations

import pytest
import torch
from helpers import compose_train

from polymix_cli.config.validation import ConfigError
from polymix_cli.runs.prepare import prepare


def test_seed_data_keep_identity_maps():
    p = prepare(compose_train())
    assert p.maps.inputs.is_identity and p.maps.outputs.is_identity
    assert p.x_train is p.data.x_train and p.y_train is p.data.y_train


def test_prepare_trains_on_mapped_data_and_keeps_user_units_in_the_dataset():
    p = prepare(
        compose_train(["data=sine", "data.bounds=[[0.0,4.0]]", "data.output_scaling=standardize"])
    )
    assert p.data.x_train.min() >= 0 and p.data.x_train.max() <= 4 and p.data.x_train.max() > 1
    assert p.x_train.min() >= -1 and p.x_train.max() <= 1
    assert torch.allclose(p.y_train.mean(0), torch.zeros(1), atol=1e-5)
    assert torch.allclose(p.maps.outputs.inverse(p.y_train), p.data.y_train, atol=1e-5)


def test_bad_scaling_option_is_named():
    with pytest.raises(ConfigError, match="data.output_scaling must be one of"):
        prepare(compose_train(["data.output_scaling=zscore"]))


def test_checkpoint_without_maps_is_evaluated_on_raw_inputs():
    """A checkpoint written before maps were stored holds a model trained on raw data:
    its maps are identities even where the config would now map the inputs."""
    from polymix_cli.runs.checkpoint import checkpoint_maps

    cfg = compose_train(["data=sine", "data.bounds=[[0.0,4.0]]", "data.output_scaling=standardize"])
    assert checkpoint_maps({"extra": {}}, cfg, "old.pt") is None
    p = prepare(cfg)
    assert p.maps.inputs.is_identity and p.maps.outputs.is_identity
