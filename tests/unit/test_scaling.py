"""Data maps: user units <-> the model's domain, fitted per run and stored in checkpoints
(the maps alone; in runs: app/test_scaling_runs.py, e2e/test_scaling_cli.py)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from polymix_cli.config.schema import ModelConfig
from polymix_cli.config.validation import parse_section
from polymix_cli.data.scaling import AffineMap, DataMaps, fit_maps
from polymix_cli.data.scaling import input_domain as _input_domain


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
        return _input_domain(parse_section(ModelConfig, model, "model"))

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
