"""Space-filling designs and the greedy, spread-out batch of polymix suggest."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from polymix_cli.runs.design import (
    auto_min_distance,
    condition_draws,
    design_points,
    pick_batch,
)


@pytest.mark.parametrize("n", [1, 7, 32])
def test_latin_hypercube_has_one_point_in_each_slice_of_each_input(n):
    bounds = np.array([[0.0, 10.0], [100.0, 200.0], [-1.0, 1.0]])
    x = design_points(n, bounds, "lhs", seed=3)
    assert x.shape == (n, 3)
    u = (x - bounds[:, 0]) / (bounds[:, 1] - bounds[:, 0])
    for j in range(3):
        assert sorted(np.floor(u[:, j] * n).astype(int).tolist()) == list(range(n))


def test_designs_are_seeded_and_sobol_fills_the_box():
    bounds = np.array([[0.0, 1.0], [0.0, 1.0]])
    a = design_points(64, bounds, "sobol", seed=1)
    assert np.array_equal(a, design_points(64, bounds, "sobol", seed=1))
    assert not np.array_equal(a, design_points(64, bounds, "sobol", seed=2))
    assert not np.array_equal(
        design_points(8, bounds, "lhs", seed=1), design_points(8, bounds, "lhs", seed=2)
    )
    # a (0, m, 2)-net: every quarter-by-quarter cell holds 64 / 16 points
    cells = np.floor(a * 4).astype(int)
    counts = np.bincount(cells[:, 0] * 4 + cells[:, 1], minlength=16)
    assert counts.tolist() == [4] * 16


def _independent(stds: torch.Tensor) -> torch.Tensor:
    """Draws ``(2M, M, 1)`` with these stds, centred and exactly uncorrelated."""
    m = stds.shape[0]
    f = torch.zeros(2 * m, m, 1, dtype=torch.float64)
    scale = stds * math.sqrt((2 * m - 1) / 2)
    f[2 * torch.arange(m), torch.arange(m), 0] = scale
    f[2 * torch.arange(m) + 1, torch.arange(m), 0] = -scale
    return f


def test_picks_are_the_best_scores_kept_apart():
    grid = torch.linspace(0, 1, 101, dtype=torch.float64).unsqueeze(1)
    draws = _independent(1 - (grid[:, 0] - 0.5).abs())  # best at 0.5, falling off both ways
    assert draws.std(dim=0)[:, 0].tolist() == pytest.approx((1 - (grid[:, 0] - 0.5).abs()).tolist())
    existing = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    picks, used = pick_batch(draws, grid, existing, 3, radius=0.095)
    x = grid[picks, 0].tolist()
    assert x[0] == pytest.approx(0.5)
    assert sorted(x[1:]) == pytest.approx([0.4, 0.6])
    assert used == 0.095


@pytest.mark.parametrize("acquisition", ["epistemic_std", "integrated_variance"])
def test_the_believer_update_spreads_a_line_over_its_ends(acquisition):
    """f = a + b x with a, b ~ N(0, 1): the variance 1 + x^2 is largest at the ends; once
    one end is observed, the line is pinned there and the other end is the most unsure.
    The integrated variance is reduced most by the centre."""
    x = torch.linspace(-1, 1, 201, dtype=torch.float64)
    coeffs = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    draws = (coeffs[:, :1] + coeffs[:, 1:] * x).unsqueeze(2)  # (S, M, 1)
    unit = ((x + 1) / 2).unsqueeze(1)
    picks, _ = pick_batch(draws, unit, torch.empty(0, 1), 2, radius=0.0, acquisition=acquisition)
    if acquisition == "epistemic_std":
        assert sorted(x[picks].tolist()) == pytest.approx([-1, 1])
    else:  # one point: integral of (1 + x r)^2 dr / (1 + x^2) = (2 + 2 x^2 / 3) / (1 + x^2)
        assert float(x[picks[0]]) == pytest.approx(0.0, abs=0.02)


def test_picks_never_land_on_a_training_input_and_shrink_the_radius_when_full():
    grid = torch.linspace(0, 1, 11, dtype=torch.float64).unsqueeze(1)
    draws = _independent(torch.ones(11, dtype=torch.float64))
    existing = grid[::2]  # 0, 0.2, ..., 1: every other candidate
    picks, used = pick_batch(draws, grid, existing, 5, radius=0.5)
    assert used < 0.5
    chosen = grid[picks, 0]
    assert torch.cdist(chosen[:, None], existing).min() > 0.05
    assert len(set(picks.tolist())) == 5
    with pytest.raises(ValueError, match="only 5 candidate"):
        pick_batch(draws, grid, existing, 6, radius=0.5)


def test_auto_min_distance_is_half_the_even_spacing():
    assert auto_min_distance(6, 3, 1) == pytest.approx(0.5 / 9)
    assert auto_min_distance(12, 4, 2) == pytest.approx(0.5 / 4)


def test_conditioning_on_observed_points_is_the_gaussian_posterior():
    """Draws of f = a + b x + c x^2 (independent coefficients): conditioned on noisy
    observations at three points, their covariance is C - C_xn (C_nn + s2 I)^-1 C_nx."""
    x = torch.linspace(-1, 1, 21, dtype=torch.float64)
    xn = torch.tensor([-0.9, 0.2, 0.3], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    coeffs = torch.randn(3000, 3, generator=gen, dtype=torch.float64) * torch.tensor([1, 0.7, 0.5])
    basis = lambda t: torch.stack([torch.ones_like(t), t, t * t], dim=1)
    draws = (coeffs @ basis(x).T).unsqueeze(2)
    observed = (coeffs @ basis(xn).T).unsqueeze(2)
    s2 = torch.tensor([0.01], dtype=torch.float64)
    f = condition_draws(draws, observed, s2)[:, :, 0]
    # the same from the ensemble's own covariances (exact algebra, not sampling)
    z = torch.cat([draws, observed], dim=1)[:, :, 0]
    z = z - z.mean(dim=0)
    c = z.T @ z / (z.shape[0] - 1)
    cmm, cmn, cnn = c[:21, :21], c[:21, 21:], c[21:, 21:]
    expected = cmm - cmn @ torch.linalg.solve(cnn + s2 * torch.eye(3), cmn.T)
    torch.testing.assert_close(f.T @ f / (f.shape[0] - 1), expected, rtol=0, atol=1e-10)
    assert f.mean(dim=0).abs().max() < 1e-12


def test_a_mean_field_spread_conditioned_on_the_training_inputs_finds_the_gap():
    """A mean-field posterior of f = sum c_k P_k(x) (independent coefficients, as variational
    inference with a factorised Gaussian learns it) has its largest spread towards the ends,
    whatever the design: it does not see that the training inputs crowd both ends.
    Conditioned on them (observed=...), the spread is largest in the empty middle and the
    pick goes there; without, it lands beside the training inputs."""
    x = torch.linspace(-1, 1, 201, dtype=torch.float64)
    xn = torch.tensor([-1.0, -0.9, -0.8, 0.8, 0.9, 1.0], dtype=torch.float64)
    legendre = lambda t: torch.stack([torch.ones_like(t), t, (3 * t * t - 1) / 2], dim=1)
    gen = torch.Generator().manual_seed(1)
    coeffs = torch.randn(4000, 3, generator=gen, dtype=torch.float64) * 0.1
    draws = (coeffs @ legendre(x).T).unsqueeze(2)
    observed = (coeffs @ legendre(xn).T).unsqueeze(2)
    unit = ((x + 1) / 2).unsqueeze(1)
    existing = ((xn + 1) / 2).unsqueeze(1)
    noise = torch.tensor([0.05**2], dtype=torch.float64)
    for acquisition in ("epistemic_std", "integrated_variance"):
        aware, _ = pick_batch(draws, unit, existing, 1, 0.02, acquisition, noise, observed=observed)
        assert abs(float(x[aware[0]])) < 0.3, acquisition  # in the gap
    plain, _ = pick_batch(draws, unit, existing, 1, 0.02, "epistemic_std", noise)
    assert abs(float(x[plain[0]])) > 0.7  # beside the training inputs
