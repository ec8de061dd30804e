"""Sobol sensitivity: the closed form of a PCE, the Monte Carlo estimator, the report in
metrics.json, plots/sobol.png and the ishigami generator (the options and runs are in
app/test_sensitivity_runs.py and e2e/test_sensitivity_cli.py)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import ISHIGAMI_FIRST, ISHIGAMI_TOTAL

from polymix_cli import StochasticModel
from polymix_cli.config.schema import EvalConfig
from polymix_cli.data.dataset import Dataset
from polymix_cli.data.scaling import AffineMap, DataMaps
from polymix_cli.data.synthetic import GENERATORS, ishigami_indices, make_dataset
from polymix_cli.parameter_groups import DeterministicGroup, IIDGaussianGroup
from polymix_cli.reporting.evaluation import sensitivity_report
from polymix_cli.sensitivity import (
    SobolIndices,
    basis_norms,
    input_distribution,
    monte_carlo_sobol,
    pce_sobol,
    sample_inputs,
    sobol_design,
)
from polymix_cli.surrogate_models import GatingNetwork, MixtureOfExperts, PolynomialChaosExpansion
from polymix_cli.surrogate_models.basis import univariate_table


def _coeffs(
    pce: PolynomialChaosExpansion, terms: dict[tuple[int, ...], list[float]]
) -> torch.Tensor:
    """``(T, O)`` coefficients with the given ``{multi-index: [per output]}`` entries, 0 elsewhere."""
    rows = {tuple(r): t for t, r in enumerate(pce.multi_indices.tolist())}
    c = torch.zeros(pce.num_terms, pce.num_outputs, dtype=torch.float64)
    for alpha, values in terms.items():
        c[rows[alpha]] = torch.tensor(values, dtype=torch.float64)
    return c


# f1 = 0.5 + x1 + 2 x1 x2 + B2(x3), f2 = 3 B1(x2), with B_n = P_n (Legendre) or He_n (Hermite)
KNOWN = {
    (0, 0, 0): [0.5, 0.0],
    (1, 0, 0): [1.0, 0.0],
    (1, 1, 0): [2.0, 0.0],
    (0, 0, 2): [1.0, 0.0],
    (0, 1, 0): [0.0, 3.0],
}
# Hand-derived, from E[P_n^2] = 1 / (2n + 1) on U[-1, 1] and E[He_n^2] = n! on N(0, 1):
#   legendre: partial variances x1: 1/3, x1 x2: 4/9, x3: 1/5, total 44/45; f2: 9/3 = 3
#   hermite:  x1: 1, x1 x2: 4, x3: 2, total 7; f2: 9
EXPECTED = {
    "legendre": {
        "variance": [44 / 45, 3.0],
        "first": [15 / 44, 0.0, 9 / 44],
        "total": [35 / 44, 20 / 44, 9 / 44],
    },
    "hermite": {
        "variance": [7.0, 9.0],
        "first": [1 / 7, 0.0, 2 / 7],
        "total": [5 / 7, 4 / 7, 2 / 7],
    },
}


# ----------------------------------------------------------------------------- closed form


@pytest.mark.parametrize("basis", ["legendre", "hermite"])
def test_closed_form_of_a_known_polynomial(basis):
    pce = PolynomialChaosExpansion(3, 2, degree=2, basis=basis)
    c = _coeffs(pce, KNOWN)
    r = pce_sobol(c.unsqueeze(0), pce.multi_indices, basis)
    want = EXPECTED[basis]
    assert r.mean.shape == (1, 2) and r.variance.shape == (1, 2)
    assert r.first_order.shape == (1, 3, 2) and r.total.shape == (1, 3, 2)
    torch.testing.assert_close(r.mean[0], torch.tensor([0.5, 0.0], dtype=torch.float64))
    torch.testing.assert_close(r.variance[0], torch.tensor(want["variance"], dtype=torch.float64))
    torch.testing.assert_close(
        r.first_order[0, :, 0], torch.tensor(want["first"], dtype=torch.float64)
    )
    torch.testing.assert_close(r.total[0, :, 0], torch.tensor(want["total"], dtype=torch.float64))
    # the second output depends on x2 alone
    torch.testing.assert_close(
        r.first_order[0, :, 1], torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    )
    torch.testing.assert_close(r.total[0, :, 1], torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("basis", ["legendre", "hermite"])
def test_basis_norms_agree_with_gauss_quadrature(basis):
    """The squared norms match E[B_n(X)^2] of basis.py's own polynomials, integrated exactly."""
    degree = 6
    if basis == "legendre":
        nodes, weights = np.polynomial.legendre.leggauss(degree + 1)
        weights = weights / 2  # the density of U[-1, 1]
    else:
        nodes, weights = np.polynomial.hermite_e.hermegauss(degree + 1)
        weights = weights / math.sqrt(2 * math.pi)  # the density of N(0, 1)
    table = univariate_table(torch.tensor(nodes), degree, basis).numpy()  # (nodes, degree + 1)
    quadrature = (weights[:, None] * table**2).sum(0)
    indices = torch.arange(degree + 1).unsqueeze(1)
    np.testing.assert_allclose(basis_norms(indices, basis).numpy(), quadrature, rtol=1e-10)
    # multivariate terms: the product over inputs
    pair = torch.tensor([[2, 3]])
    np.testing.assert_allclose(
        basis_norms(pair, basis).numpy(), [quadrature[2] * quadrature[3]], rtol=1e-10
    )


def test_closed_form_is_per_draw_and_vectorised_over_draws():
    torch.manual_seed(0)
    pce = PolynomialChaosExpansion(4, 2, degree=3)
    coeffs = torch.randn(7, pce.num_terms, 2, dtype=torch.float64)
    batch = pce_sobol(coeffs, pce.multi_indices, "legendre")
    for s in range(7):
        single = pce_sobol(coeffs[s : s + 1], pce.multi_indices, "legendre")
        torch.testing.assert_close(batch.total[s], single.total[0])
        torch.testing.assert_close(batch.first_order[s], single.first_order[0])
    # first-order indices never exceed total ones, and their sum is at most 1
    assert bool((batch.first_order <= batch.total + 1e-12).all())
    assert bool((batch.first_order.sum(1) <= 1 + 1e-12).all())
    assert bool((batch.total.sum(1) >= 1 - 1e-12).all())


def test_constant_model_has_undefined_indices():
    pce = PolynomialChaosExpansion(2, 1, degree=2)
    r = pce_sobol(_coeffs(pce, {(0, 0): [2.0]}).unsqueeze(0), pce.multi_indices, "legendre")
    assert r.variance.item() == 0 and r.mean.item() == 2.0
    assert bool(torch.isnan(r.first_order).all() and torch.isnan(r.total).all())


def test_rescaled_moves_the_moments_and_keeps_the_indices():
    r = SobolIndices(
        torch.tensor([[1.0, 0.0]]),
        torch.tensor([[2.0, 1.0]]),
        torch.full((1, 3, 2), 0.2),
        torch.full((1, 3, 2), 0.4),
    )
    u = r.rescaled(torch.tensor([10.0, -1.0]), torch.tensor([3.0, 0.5]))
    torch.testing.assert_close(u.mean, torch.tensor([[13.0, -1.0]]))
    torch.testing.assert_close(u.variance, torch.tensor([[18.0, 0.25]]))
    assert u.first_order is r.first_order and u.total is r.total


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="basis must be one of"):
        basis_norms(torch.zeros(1, 2, dtype=torch.long), "chebyshev")
    with pytest.raises(ValueError, match="coeffs must be"):
        pce_sobol(torch.zeros(2, 5, 1), torch.zeros(4, 2, dtype=torch.long), "legendre")
    with pytest.raises(ValueError, match="base_samples must be"):
        monte_carlo_sobol(lambda x, p: x, torch.zeros(1, 1), 2, 1)
    with pytest.raises(ValueError, match="distribution must be one of"):
        sample_inputs(4, 2, "beta")


# ----------------------------------------------------------------------------- Monte Carlo


def test_design_picks_one_column_of_b_per_block():
    a, b = torch.zeros(5, 3), torch.ones(5, 3)
    x = sobol_design(a, b)
    assert x.shape == (25, 3)
    assert torch.equal(x[:5], a) and torch.equal(x[5:10], b)
    for i in range(3):
        block = x[10 + 5 * i : 15 + 5 * i]
        assert torch.equal(block[:, i], b[:, i]) and block.sum() == 5  # only column i from B
    assert torch.equal(sobol_design(a[:, :1], b[:, :1]), a[:, :1])  # one input: A alone


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
def test_inputs_follow_the_distribution_and_the_generator(distribution):
    x = sample_inputs(4096, 2, distribution, torch.Generator().manual_seed(3), dtype=torch.float64)
    again = sample_inputs(
        4096, 2, distribution, torch.Generator().manual_seed(3), dtype=torch.float64
    )
    other = sample_inputs(
        4096, 2, distribution, torch.Generator().manual_seed(4), dtype=torch.float64
    )
    assert torch.equal(x, again) and not torch.equal(x, other)
    if distribution == "uniform":
        assert bool((x.abs() <= 1).all())
        torch.testing.assert_close(
            x.var(0), torch.full((2,), 1 / 3, dtype=torch.float64), atol=2e-3, rtol=0
        )
    else:
        assert bool(torch.isfinite(x).all())
        torch.testing.assert_close(x.var(0), torch.ones(2, dtype=torch.float64), atol=2e-2, rtol=0)
    torch.testing.assert_close(x.mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-2, rtol=0)


def _standard_errors(y: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Standard errors of the first-order and total estimates ``(S, d, O)`` for independent
    points, from the model's values ``y`` ``(S, (d + 2) n, O)`` on the pick-freeze design:
    the standard deviation of each estimator's summands over sqrt(n), over the variance."""
    y = y - y[:, : 2 * n].mean(1, keepdim=True)
    f_a, f_b, f_ab = y[:, :n], y[:, n : 2 * n], y[:, 2 * n :].unflatten(1, (-1, n))
    variance = y[:, : 2 * n].var(1, correction=0).unsqueeze(1)
    first = f_b.unsqueeze(1) * (f_ab - f_a.unsqueeze(1))
    total = (f_a.unsqueeze(1) - f_ab).square() / 2
    return first.std(2) / math.sqrt(n) / variance, total.std(2) / math.sqrt(n) / variance


@pytest.mark.parametrize("basis", ["legendre", "hermite"])
def test_monte_carlo_agrees_with_the_closed_form(basis):
    """The pick-freeze estimator on random PCE draws, against their closed form, within three
    standard errors of independent sampling (quasi-random points do better than that)."""
    torch.manual_seed(1)
    pce = PolynomialChaosExpansion(3, 2, degree=3, basis=basis)
    scale = basis_norms(pce.multi_indices, basis).sqrt().unsqueeze(1)  # each term of unit variance
    coeffs = torch.randn(6, pce.num_terms, 2, dtype=torch.float64) / scale
    exact = pce_sobol(coeffs, pce.multi_indices, basis)
    n, dist = 4096, input_distribution(pce)
    mc = monte_carlo_sobol(
        pce, coeffs.flatten(1), 3, n, dist, torch.Generator().manual_seed(0), dtype=torch.float64
    )
    ab = sample_inputs(
        n, 6, dist, torch.Generator().manual_seed(0), dtype=torch.float64
    )  # the same design
    se_first, se_total = _standard_errors(
        pce(sobol_design(ab[:, :3], ab[:, 3:]), coeffs.flatten(1)), n
    )
    assert float(se_first.median()) < 0.05 and float(se_total.median()) < 0.05  # a test with teeth
    assert bool(((mc.first_order - exact.first_order).abs() <= 3 * se_first + 1e-3).all())
    assert bool(((mc.total - exact.total).abs() <= 3 * se_total + 1e-3).all())
    torch.testing.assert_close(mc.variance, exact.variance, rtol=0.05, atol=0)
    torch.testing.assert_close(
        mc.mean, exact.mean, atol=0.05 * exact.variance.sqrt().max().item(), rtol=0
    )


def test_monte_carlo_chunks_over_draws_give_the_same_numbers():
    torch.manual_seed(2)
    pce = PolynomialChaosExpansion(2, 1, degree=2)
    params = torch.randn(9, pce.num_terms, dtype=torch.float64)
    whole = monte_carlo_sobol(
        pce,
        params,
        2,
        256,
        generator=torch.Generator().manual_seed(5),
        dtype=torch.float64,
        max_elements=None,
    )
    chunked = monte_carlo_sobol(
        pce,
        params,
        2,
        256,
        generator=torch.Generator().manual_seed(5),
        dtype=torch.float64,
        max_elements=3 * 256 * 4,
    )  # 3 draws per chunk
    for field in ("mean", "variance", "first_order", "total"):
        torch.testing.assert_close(getattr(chunked, field), getattr(whole, field))


@pytest.mark.parametrize("num_inputs", [1, 4])
def test_monte_carlo_streams_a_design_too_wide_for_one_draw(num_inputs):
    # a basis row wider than the budget allows for every design point: the design is
    # streamed over chunks of points (all draws at once) and a few inputs at a time
    torch.manual_seed(4)
    pce = PolynomialChaosExpansion(num_inputs, 2, degree=3)
    params = torch.randn(6, pce.num_params(), dtype=torch.float64)
    calls = []

    def predict(x, p):
        calls.append(x.shape[0])
        return pce(x, p)

    def run(max_elements, shared):
        return monte_carlo_sobol(
            predict,
            params,
            num_inputs,
            64,
            generator=torch.Generator().manual_seed(5),
            dtype=torch.float64,
            max_elements=max_elements,
            width=pce.work_width(),
            shared=shared,
        )

    whole = run(None, 0)
    calls.clear()
    budget = 6 * 64 * 2 * 2  # two inputs' AB_i of every draw at a time
    streamed = run(budget, pce.shared_width())
    rows = (num_inputs + 2) * 64 if num_inputs > 1 else 64
    assert sum(calls) == rows and max(calls) * pce.shared_width() <= budget
    for field in ("mean", "variance", "first_order", "total"):
        torch.testing.assert_close(getattr(streamed, field), getattr(whole, field))


def test_monte_carlo_of_a_one_input_mixture_gives_unit_indices_and_its_moments():
    torch.manual_seed(3)
    experts = [PolynomialChaosExpansion(1, 1, degree=3) for _ in range(2)]
    surrogate = MixtureOfExperts(experts, GatingNetwork(1, 2, width=8, depth=1))
    model = StochasticModel(surrogate, [IIDGaussianGroup("all", surrogate.num_params())])
    params = model.sample_parameters(5)
    mc = monte_carlo_sobol(
        model.predict, params, 1, 8192, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(mc.first_order, torch.ones(5, 1, 1, dtype=torch.float64))
    assert torch.equal(mc.total, mc.first_order)
    grid = torch.linspace(-1, 1, 20001).unsqueeze(1)  # the moments by a fine Riemann sum
    values = model.predict(grid, params).double()
    torch.testing.assert_close(mc.mean, values.mean(1), atol=1e-2, rtol=0)
    torch.testing.assert_close(mc.variance, values.var(1, correction=0), rtol=2e-2, atol=1e-4)


def test_input_distribution_follows_the_bases():
    legendre, hermite = (
        PolynomialChaosExpansion(2, 1, 2),
        PolynomialChaosExpansion(2, 1, 2, basis="hermite"),
    )
    assert input_distribution(legendre) == "uniform" and input_distribution(hermite) == "normal"
    gate = GatingNetwork(2, 2, width=4, depth=1)
    assert input_distribution(MixtureOfExperts([hermite, legendre], gate)) == "uniform"
    assert (
        input_distribution(
            MixtureOfExperts([hermite, PolynomialChaosExpansion(2, 1, 3, basis="hermite")], gate)
        )
        == "normal"
    )


# ----------------------------------------------------------------------------- report


def _dataset(num_inputs: int, num_outputs: int) -> Dataset:
    x, y = torch.zeros(4, num_inputs), torch.zeros(4, num_outputs)
    bounds = torch.tensor([[0.0, 4.0]] * num_inputs)
    return Dataset("test", x, y, x, y, bounds, input_names=("a", "b", "c")[:num_inputs])


EVAL = EvalConfig(num_samples=200, band=0.8, levels=[0.8], grid_points=2)


def _pce_model(random: bool) -> StochasticModel:
    pce = PolynomialChaosExpansion(3, 2, degree=2)
    group = (IIDGaussianGroup if random else DeterministicGroup)("coeffs", pce.num_params())
    model = StochasticModel(pce, [group])
    with torch.no_grad():
        model.mean_field.loc.copy_(_coeffs(pce, KNOWN).flatten().float())
    return model


def test_report_of_deterministic_coefficients_has_no_spread_and_user_units():
    model = _pce_model(random=False)
    params = model.sample_parameters(200, generator=torch.Generator().manual_seed(0))
    maps = DataMaps(
        AffineMap.to_interval(torch.tensor([[0.0, 4.0]] * 3)),
        AffineMap(
            torch.tensor([1.0, 2.0], dtype=torch.float64),
            torch.tensor([10.0, 2.0], dtype=torch.float64),
        ),
        torch.tensor([[0.0, 4.0]] * 3, dtype=torch.float64),
    )
    sens = sensitivity_report(model, params, _dataset(3, 2), EVAL, 0, maps)
    js = sens.to_json()
    assert js["method"] == "pce" and js["num_samples"] == 200 and js["base_samples"] is None
    assert js["inputs"] == ["a", "b", "c"] and js["outputs"] == ["y1", "y2"]
    assert js["input_distribution"] == {"kind": "uniform", "low": [0.0] * 3, "high": [4.0] * 3}
    want = EXPECTED["legendre"]
    # moments in user units: y = 10 f + 1 (first output), 2 f + 2 (second)
    assert js["mean"]["y1"]["mean"] == pytest.approx(10 * 0.5 + 1) and js["mean"]["y2"][
        "mean"
    ] == pytest.approx(2.0)
    assert js["variance"]["y1"]["mean"] == pytest.approx(100 * want["variance"][0], rel=1e-6)
    assert js["variance"]["y2"]["mean"] == pytest.approx(4 * want["variance"][1], rel=1e-6)
    for k, name in enumerate("abc"):
        entry = js["first_order"]["y1"][name]
        assert entry["mean"] == pytest.approx(want["first"][k], abs=1e-6)
        assert entry["std"] == pytest.approx(0.0, abs=1e-9) and entry["lower"] == pytest.approx(
            entry["upper"]
        )
        assert js["total"]["y1"][name]["mean"] == pytest.approx(want["total"][k], abs=1e-6)
    assert js["first_order"]["y2"]["b"]["mean"] == pytest.approx(1.0)
    json.dumps(js)  # plain JSON


def test_report_of_random_coefficients_has_a_spread_around_the_closed_form():
    model = _pce_model(random=True)
    params = model.sample_parameters(200, generator=torch.Generator().manual_seed(0))
    js = sensitivity_report(
        model, params, _dataset(3, 2), replace(EVAL, sensitivity_samples=150), 0
    ).to_json()
    assert js["num_samples"] == 150
    for key in ("first_order", "total"):
        for name in "abc":
            entry = js[key]["y1"][name]
            assert entry["std"] > 1e-3 and entry["lower"] < entry["upper"]
    assert js["variance"]["y1"]["std"] > 0 and js["mean"]["y2"]["std"] > 0
    closed = pce_sobol(
        params[:150].double().reshape(150, -1, 2), model.surrogate_model.multi_indices, "legendre"
    )
    assert js["total"]["y1"]["a"]["mean"] == pytest.approx(closed.total[:, 0, 0].mean().item())
    assert js["total"]["y1"]["a"]["std"] == pytest.approx(closed.total[:, 0, 0].std().item())


def test_report_methods_and_off():
    model = _pce_model(random=True)
    params = model.sample_parameters(20, generator=torch.Generator().manual_seed(0))
    data = _dataset(3, 2)
    assert sensitivity_report(model, params, data, replace(EVAL, sensitivity="off"), 0) is None
    mc = sensitivity_report(
        model,
        params,
        data,
        replace(EVAL, sensitivity="monte_carlo", sensitivity_base_samples=1024),
        0,
    )
    closed = sensitivity_report(model, params, data, EVAL, 0)
    assert mc.method == "monte_carlo" and mc.base_samples == 1024 and closed.method == "pce"
    torch.testing.assert_close(mc.indices.total, closed.indices.total, atol=0.05, rtol=0)
    mixture = MixtureOfExperts(
        [PolynomialChaosExpansion(3, 2, 2)] * 2, GatingNetwork(3, 2, width=4, depth=1)
    )
    moe = StochasticModel(mixture, [DeterministicGroup("all", mixture.num_params())])
    with pytest.raises(ValueError, match="eval.sensitivity=pce needs a polynomial chaos expansion"):
        sensitivity_report(moe, moe.sample_parameters(2), data, replace(EVAL, sensitivity="pce"), 0)
    assert sensitivity_report(moe, moe.sample_parameters(2), data, EVAL, 0).method == "monte_carlo"


# ----------------------------------------------------------------------------- ishigami


def test_ishigami_generator_and_exact_indices():
    gen = GENERATORS["ishigami"]
    assert (gen.num_inputs, gen.num_outputs) == (3, 1)
    x = torch.tensor([[math.pi / 2, math.pi / 2, 1.0], [0.0, 0.0, 2.0], [-math.pi / 2, 0.0, 2.0]])
    torch.testing.assert_close(gen.fn(x), torch.tensor([[1 + 7 + 0.1], [0.0], [-1 - 1.6]]))
    exact = ishigami_indices()
    assert exact["mean"] == 3.5 and exact["variance"] == pytest.approx(13.8446, abs=1e-4)
    assert exact["first_order"] == pytest.approx(ISHIGAMI_FIRST, abs=1e-4)
    assert exact["total"] == pytest.approx(ISHIGAMI_TOTAL, abs=1e-4)
    data = make_dataset("ishigami", 20000, 10, 0.0, [[-math.pi, math.pi]] * 3, 0, 1)
    assert bool((data.x_train.abs() <= math.pi).all())
    assert data.y_train.mean().item() == pytest.approx(3.5, abs=0.1)
    assert data.y_train.var().item() == pytest.approx(13.84, rel=0.03)


# ----------------------------------------------------------------------------- plot


def _sobol_args(d: int, o: int) -> dict:
    rng = np.random.default_rng(0)
    first = rng.uniform(0, 0.4, (d, o))
    total = first + rng.uniform(0, 0.3, (d, o))
    return {
        "first_order": first,
        "first_lower": first - 0.05,
        "first_upper": first + 0.05,
        "total": total,
        "total_lower": total - 0.05,
        "total_upper": total + 0.05,
    }


def test_plot_sobol_writes_one_panel_per_output(tmp_path):
    import matplotlib.image as mpimg

    from polymix_cli.reporting import plots

    one = plots.plot_sobol(
        tmp_path / "one.png",
        **_sobol_args(3, 1),
        input_names=["a", "b", "c"],
        panel_notes=["mean 1, variance 2"],
    )
    two = plots.plot_sobol(
        tmp_path / "two.png", **_sobol_args(3, 2), output_names=["u", "v"], band_level=0.9
    )
    h1, w1 = mpimg.imread(one).shape[:2]
    w2 = mpimg.imread(two).shape[1]
    assert h1 > 100 and w2 > w1
    args = _sobol_args(4, 1)  # Monte Carlo estimates may be negative or undefined
    args["first_order"][0, 0], args["first_lower"][0, 0], args["total"][1, 0] = -0.02, -0.08, np.nan
    assert plots.plot_sobol(tmp_path / "odd.png", **args).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"total": np.zeros((2, 1))}, r"total must have shape \(d, O\) = \(3, 1\), got \(2, 1\)"),
        ({"input_names": ["a"]}, "input_names must have one name per input"),
        ({"panel_notes": ["x", "y"]}, "panel_notes must have one entry per output"),
        ({"band_level": 1.5}, "band_level must lie strictly between 0 and 1"),
    ],
)
def test_plot_sobol_names_bad_arguments(tmp_path, change, pattern):
    import matplotlib.pyplot as plt

    from polymix_cli.reporting import plots

    before = len(plt.get_fignums())
    with pytest.raises(ValueError, match=pattern):
        plots.plot_sobol(tmp_path / "bad.png", **{**_sobol_args(3, 1), **change})
    assert len(plt.get_fignums()) == before and not (tmp_path / "bad.png").exists()
