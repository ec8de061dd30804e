"""Data maps: user units <-> the model's domain, fitted per run and stored in checkpoints."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import compose_train, run_cli

from polymix_cli.config.schema import ModelConfig
from polymix_cli.config.validation import ConfigError, parse_config
from polymix_cli.data.scaling import AffineMap, DataMaps, fit_maps
from polymix_cli.data.scaling import input_domain as _input_domain
from polymix_cli.runs.checkpoint import load_checkpoint, stored_maps
from polymix_cli.runs.prepare import prepare


def test_interval_map_sends_bounds_to_unit_interval_and_back():
    bounds = torch.tensor([[0.0, 2.0], [-math.pi, math.pi], [10.0, 30.0]])
    m = AffineMap.to_interval(bounds)
    corners = torch.stack([bounds[:, 0], bounds[:, 1]]).double()
    assert torch.allclose(
        m.forward(corners), torch.tensor([[-1.0] * 3, [1.0] * 3], dtype=torch.float64)
    )
    x = torch.rand(7, 3, dtype=torch.float64) * 20
    assert torch.allclose(m.inverse(m.forward(x)), x)


def test_standardize_gives_zero_mean_unit_std_and_keeps_constant_columns():
    values = torch.stack([torch.randn(500) * 3 + 7, torch.full((500,), 4.0)], dim=1).double()
    m = AffineMap.standardize(values)
    z = m.forward(values)
    assert torch.allclose(z[:, 0].mean(), torch.tensor(0.0, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(z[:, 0].std(), torch.tensor(1.0, dtype=torch.float64))
    assert m.scale[1] == 1.0 and torch.all(z[:, 1] == 0)


def test_identity_map_returns_the_same_tensor_and_float32_stays_float32():
    x = torch.rand(5, 1)
    assert AffineMap.identity(1).forward(x) is x
    m = AffineMap.to_interval(torch.tensor([[0.0, 4.0]]))
    assert m.forward(x).dtype == torch.float32


def test_state_round_trip_and_refusal_of_bad_states():
    maps = DataMaps(
        AffineMap.to_interval(torch.tensor([[0.0, 2.0]])),
        AffineMap.standardize(torch.randn(20, 2)),
        torch.tensor([[0.0, 2.0]]),
    )
    again = DataMaps.from_state(json.loads(json.dumps(maps.state())))
    assert torch.equal(again.inputs.shift, maps.inputs.shift) and torch.equal(
        again.outputs.scale, maps.outputs.scale
    )
    with pytest.raises(ValueError):
        AffineMap.from_state({"shift": [0.0], "scale": [0.0]})
    with pytest.raises(ValueError):
        DataMaps.from_state({**maps.state(), "bounds": [[0, 1], [0, 1]]})


def test_input_domain_follows_the_basis():
    def input_domain(model):  # the model section as a typed config
        return _input_domain(parse_config(ModelConfig, model, "model"))

    assert input_domain({"kind": "pce", "basis": "hermite"}) == "hermite"
    assert input_domain({"kind": "pce", "basis": "legendre"}) == "interval"
    assert input_domain({"kind": "nn"}) == "interval"
    assert input_domain({"kind": "moe", "expert": {"kind": "pce", "basis": "hermite"}}) == "hermite"
    mixed = [{"kind": "pce", "basis": "hermite"}, {"kind": "pce", "basis": "legendre"}]
    assert input_domain({"kind": "moe", "experts": mixed}) == "interval"


def test_fit_maps_hermite_standardises_inputs():
    x = torch.rand(100, 2) * 4 + 1
    maps = fit_maps(
        x, torch.rand(100, 1), torch.tensor([[1.0, 5.0], [1.0, 5.0]]), "hermite", "auto", "none"
    )
    z = maps.inputs.forward(x)
    assert torch.allclose(z.mean(0), torch.zeros(2), atol=1e-5) and maps.outputs.is_identity


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


def test_mapped_run_reports_user_units_and_evaluate_uses_the_stored_maps(tmp_path):
    """Inputs on [0, 4] (two periods of sin(pi x)): trained on the unit domain, reported in
    user units, and `evaluate` with another training-data seed (whose outputs would give
    other maps if they were fitted again) reproduces the test metrics from the stored maps."""
    run = tmp_path / "run"
    opts = [
        "experiment=pce_sine",
        "data.bounds=[[0.0,4.0]]",
        "data.output_scaling=standardize",
        "trainer.epochs=400",
        "trainer.num_samples=8",
        "eval.num_samples=64",
        "eval.grid_points=25",
        "data.num_test=200",
        "model.degree=7",
    ]
    result = run_cli("train", *opts, f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr + result.stdout
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    maps = stored_maps(state, "last.pt")
    assert maps is not None and torch.allclose(
        maps.inputs.shift, torch.tensor([2.0], dtype=torch.float64)
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["rmse_true"] < 0.3  # the target spans [-1, 1] over two periods
    again = tmp_path / "eval"
    result = run_cli(
        "evaluate",
        f"ckpt={run / 'checkpoints' / 'last.pt'}",
        "data.seed=99",
        f"hydra.run.dir={again}",
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert json.loads((again / "metrics.json").read_text())["test"] == metrics["test"]


def test_tiny_default_run_stores_identity_maps(tiny_run):
    maps = stored_maps(load_checkpoint(tiny_run / "checkpoints" / "last.pt"), "last.pt")
    assert maps is not None and maps.inputs.is_identity and maps.outputs.is_identity


def test_checkpoint_without_maps_is_evaluated_on_raw_inputs():
    """A checkpoint written before maps were stored holds a model trained on raw data:
    its maps are identities even where the config would now map the inputs."""
    from polymix_cli.runs.checkpoint import checkpoint_maps

    cfg = compose_train(["data=sine", "data.bounds=[[0.0,4.0]]", "data.output_scaling=standardize"])
    assert checkpoint_maps({"extra": {}}, cfg, "old.pt") is None
    p = prepare(cfg)
    assert p.maps.inputs.is_identity and p.maps.outputs.is_identity
