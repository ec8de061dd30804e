"""eval.input_distributions: the schema's checks, and Monte Carlo Sobol indices and moments
under each kind of marginal against closed forms (a linear model, whose indices are its
terms' variances weighted by the squared coefficients)."""

from __future__ import annotations

import math

import pytest
import torch

from polymix_cli.config.schema import EvalConfig
from polymix_cli.config.validation import ConfigError, parse_section
from polymix_cli.reporting.input_distributions import matches_basis, outside_mass, to_inputs
from polymix_cli.sensitivity import monte_carlo_sobol


def _entries(*entries: dict) -> list:
    return parse_section(
        EvalConfig, {"input_distributions": list(entries)}, "eval"
    ).input_distributions


def _phi(z: float) -> float:
    return math.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def _cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _truncated_normal(mean: float, std: float, low: float, high: float) -> tuple[float, float]:
    a, b = (low - mean) / std, (high - mean) / std
    z = _cdf(b) - _cdf(a)
    shift = (_phi(a) - _phi(b)) / z
    var = std**2 * (1 + (a * _phi(a) - b * _phi(b)) / z - shift**2)
    return mean + std * shift, var


# (entry, mean, variance) from the textbook formulas
CASES = [
    ({"kind": "uniform", "low": 2.0, "high": 5.0}, 3.5, 9 / 12),
    ({"kind": "normal", "mean": -1.0, "std": 0.7}, -1.0, 0.49),
    (
        {"kind": "lognormal", "log_mean": 0.2, "log_std": 0.3},
        math.exp(0.2 + 0.045),
        (math.exp(0.09) - 1) * math.exp(0.4 + 0.09),
    ),
    (
        {"kind": "truncated_normal", "mean": 0.0, "std": 1.0, "low": -0.5, "high": 2.0},
        *_truncated_normal(0.0, 1.0, -0.5, 2.0),
    ),
    (
        {"kind": "beta", "a": 2.0, "b": 5.0, "low": 1.0, "high": 3.0},
        1 + 2 * 2 / 7,
        4 * (2 * 5) / (7**2 * 8),
    ),
    (
        {"kind": "triangular", "low": 0.0, "mode": 1.0, "high": 4.0},
        5 / 3,
        (0 + 1 + 16 - 0 - 0 - 4) / 18,
    ),
]


def _linear(coeffs: torch.Tensor):
    def predict(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return (x.double() @ coeffs)[None, :, None].expand(params.shape[0], -1, 1)

    return predict


@pytest.mark.parametrize(("entry", "mean", "var"), CASES, ids=[c[0]["kind"] for c in CASES])
def test_indices_and_moments_of_a_linear_model_under_each_kind(entry, mean, var):
    """f = 3 X + 2 U with U ~ U(0, 1): S_X = 9 var / (9 var + 4 / 12)."""
    entries = _entries(entry, {"kind": "uniform", "low": 0.0, "high": 1.0})
    coeffs = torch.tensor([3.0, 2.0], dtype=torch.float64)
    sobol = monte_carlo_sobol(
        _linear(coeffs),
        torch.zeros(1, 1),
        2,
        8192,
        generator=torch.Generator().manual_seed(3),
        transform=to_inputs(entries),
    )
    total_var = 9 * var + 4 / 12
    first = sobol.first_order[0, :, 0].tolist()
    assert first == pytest.approx([9 * var / total_var, (4 / 12) / total_var], abs=0.01)
    assert sobol.total[0, :, 0].tolist() == pytest.approx(first, abs=0.01)
    assert float(sobol.mean[0, 0]) == pytest.approx(3 * mean + 1.0, rel=1e-3)
    assert float(sobol.variance[0, 0]) == pytest.approx(total_var, rel=0.01)


def test_the_issue_check_lognormal_and_uniform():
    """f = x1 + 2 x2, x1 ~ LogNormal(0, 0.25), x2 ~ U(0, 1): S = (0.1708, 0.8292)."""
    entries = _entries(
        {"kind": "lognormal", "log_mean": 0, "log_std": 0.25},
        {"kind": "uniform", "low": 0, "high": 1},
    )
    v1 = (math.exp(0.0625) - 1) * math.exp(0.0625)
    exact = (v1 / (v1 + 1 / 3), (1 / 3) / (v1 + 1 / 3))
    assert exact == pytest.approx((0.1708, 0.8292), abs=1e-4)
    for seed in range(3):
        sobol = monte_carlo_sobol(
            _linear(torch.tensor([1.0, 2.0], dtype=torch.float64)),
            torch.zeros(2, 1),
            2,
            2048,
            generator=torch.Generator().manual_seed(seed),
            transform=to_inputs(entries),
        )
        assert sobol.first_order[0, :, 0].tolist() == pytest.approx(exact, abs=0.02)


def test_transform_maps_into_the_models_domain():
    entries = _entries({"kind": "uniform", "low": 10, "high": 20})
    x = to_inputs(entries, lambda v: (v - 15) / 5)(torch.tensor([[0.0], [0.5], [1.0]]).double())
    assert x[:, 0].tolist() == pytest.approx([-1, 0, 1])


def test_outside_mass_and_basis_match():
    entries = _entries(
        {"kind": "normal", "mean": 0, "std": 1}, {"kind": "uniform", "low": -1, "high": 1}
    )
    bounds = torch.tensor([[-1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)
    mass = outside_mass(entries, bounds)
    assert mass[0] == pytest.approx(2 * (1 - _cdf(1.0)))
    assert mass[1] == pytest.approx(0.0, abs=1e-12)
    shift, scale = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    assert not matches_basis(entries, "uniform", shift, scale)
    uniform = _entries(*[{"kind": "uniform", "low": -1, "high": 1}] * 2)
    assert matches_basis(uniform, "uniform", shift, scale)
    assert not matches_basis(uniform, "uniform", shift, 2 * scale)
    normal = _entries(*[{"kind": "normal", "mean": 0, "std": 1}] * 2)
    assert matches_basis(normal, "normal", shift, scale)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"kind": "gamma", "low": 0},
            (
                "eval.input_distributions[1].kind must be one of ['uniform', 'normal', "
                "'lognormal', 'truncated_normal', 'beta', 'triangular'], got 'gamma'"
            ),
        ),
        (
            {"kind": "lognormal", "log_mean": 0, "std": 1, "log_std": 1},
            (
                "eval.input_distributions[1].std is not a parameter of kind lognormal; it takes "
                "log_mean, log_std"
            ),
        ),
        (
            {"kind": "normal", "mean": 0},
            "eval.input_distributions[1].std is missing: kind normal takes mean, std",
        ),
        (
            {"kind": "normal", "mean": 0, "std": -1},
            "eval.input_distributions[1].std must be a number in (0.0, inf), got -1",
        ),
        (
            {"kind": "beta", "a": 0, "b": 1, "low": 0, "high": 1},
            "eval.input_distributions[1].a must be a number in (0.0, inf), got 0",
        ),
        (
            {"kind": "uniform", "low": 1, "high": 1},
            (
                "eval.input_distributions[1].high must be > eval.input_distributions[1].low "
                "(1.0), got 1.0"
            ),
        ),
        (
            {"kind": "triangular", "low": 0, "mode": 3, "high": 2},
            "eval.input_distributions[1].mode must be in [low, high] = [0.0, 2.0], got 3.0",
        ),
        (
            {"kind": "normal", "mean": "a", "std": 1},
            "eval.input_distributions[1].mean must be a finite number, got 'a'",
        ),
    ],
)
def test_bad_entries_are_named_by_their_path(entry, message):
    with pytest.raises(ConfigError) as err:
        _entries({"kind": "uniform", "low": 0, "high": 1}, entry)
    assert message in err.value.messages
