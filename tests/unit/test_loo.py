"""PSIS leave-one-out: the generalised Pareto fit, the smoothed weights, and the leave-one-out
predictive of a linear Gaussian model against brute-force refitting without each point."""

from __future__ import annotations

import math

import pytest
import torch

from polymix_cli.loo import (
    fit_generalized_pareto,
    k_threshold,
    pareto_smoothed_log_weights,
    psis_loo,
)


@pytest.mark.parametrize("shape", [0.2, 0.5, 0.9])
def test_generalized_pareto_fit_recovers_the_shape(shape):
    gen = torch.Generator().manual_seed(0)
    u = torch.rand(4, 2000, generator=gen, dtype=torch.float64)
    sigma = 2.0
    x = (sigma * torch.expm1(-shape * torch.log1p(-u)) / shape).sort(1).values
    k, s = fit_generalized_pareto(x)
    assert torch.allclose(k, torch.full_like(k, shape), atol=0.1)
    assert torch.allclose(s, torch.full_like(s, sigma), rtol=0.15)


def test_smoothed_weights_are_normalised_and_keep_light_tails():
    gen = torch.Generator().manual_seed(1)
    light = torch.randn(1000, 3, generator=gen, dtype=torch.float64) * 0.3
    log_w, k = pareto_smoothed_log_weights(light)
    assert torch.allclose(log_w.exp().sum(0), torch.ones(3, dtype=torch.float64))
    assert bool((k < 0.5).all())
    # a heavy tail (log-ratios of a Pareto with k = 1.5) is flagged
    heavy = -1.5 * torch.log(torch.rand(1000, 1, generator=gen, dtype=torch.float64))
    _, k_heavy = pareto_smoothed_log_weights(heavy)
    assert float(k_heavy[0]) > k_threshold(1000)
    # equal ratios: uniform weights, k = 0; too few draws: k = inf, raw weights
    log_w, k = pareto_smoothed_log_weights(torch.zeros(100, 1))
    assert float(k[0]) == 0.0 and torch.allclose(log_w.exp().float(), torch.full((100, 1), 0.01))
    _, k = pareto_smoothed_log_weights(torch.randn(10, 2, generator=gen))
    assert bool(torch.isinf(k).all())


def _posterior(phi, y, prior_var, noise_var):
    precision = phi.T @ phi / noise_var + torch.eye(phi.shape[1], dtype=phi.dtype) / prior_var
    cov = torch.linalg.inv(precision)
    return cov @ phi.T @ y / noise_var, cov


def test_psis_loo_matches_brute_force_refitting():
    """Exact posterior draws of a Bayesian linear model (a cubic in 1 input, 15 points): where
    the Pareto k says the estimate is reliable, the PSIS leave-one-out means and log predictive
    densities agree with refitting the model without each point (the exact posterior of the
    other 14); the points it flags are those of highest leverage."""
    gen = torch.Generator().manual_seed(3)
    n, noise = 15, 0.3
    x = torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1
    phi = torch.stack([x**0, x, x**2, x**3], 1)
    y = 1.0 + 2.0 * x - x**3 + noise * torch.randn(n, generator=gen, dtype=torch.float64)
    mean, cov = _posterior(phi, y, 4.0, noise**2)
    chol = torch.linalg.cholesky(cov)
    theta = mean + torch.randn(20000, 4, generator=gen, dtype=torch.float64) @ chol.T
    draws = (theta @ phi.T).unsqueeze(2)  # (S, N, 1)
    got = psis_loo(draws, y.unsqueeze(1), torch.tensor([noise], dtype=torch.float64), chunk=4)
    expected_res, expected_lpd = [], []
    for i in range(n):
        keep = torch.arange(n) != i
        m_i, c_i = _posterior(phi[keep], y[keep], 4.0, noise**2)
        pred_mean = float(phi[i] @ m_i)
        pred_var = float(phi[i] @ c_i @ phi[i]) + noise**2
        expected_res.append(float(y[i]) - pred_mean)
        expected_lpd.append(
            -0.5 * (math.log(2 * math.pi * pred_var) + (float(y[i]) - pred_mean) ** 2 / pred_var)
        )
    expected = torch.tensor(expected_res, dtype=torch.float64)
    lpd = torch.tensor(expected_lpd, dtype=torch.float64)
    good = got.pareto_k < 0.5  # "good" in Vehtari et al.'s terms; up to the threshold "ok"
    ok = got.pareto_k <= got.threshold
    assert int(good.sum()) >= n - 3
    assert torch.allclose(got.residuals[good, 0], expected[good], atol=0.01)
    assert torch.allclose(got.pointwise[good], lpd[good], atol=0.05)
    assert got.elpd == pytest.approx(float(got.pointwise.sum()))
    # the flagged points are the ones the fit leans on most (largest leverage)
    leverage = ((phi @ cov) * phi).sum(1) / noise**2
    flagged = (~ok).nonzero().squeeze(1)
    assert set(flagged.tolist()) <= set(leverage.argsort(descending=True)[:3].tolist())
    # even there the smoothed estimate stays close; the figures over all points agree
    assert torch.allclose(got.residuals[:, 0], expected, atol=0.05)
    rmse = float(expected.square().mean().sqrt())
    assert float(got.rmse[0]) == pytest.approx(rmse, rel=0.03)
    assert float(got.q2[0]) == pytest.approx(1 - rmse**2 / float(y.var(unbiased=False)), abs=0.01)
    # the in-sample residuals are smaller: LOO is not the training error
    assert rmse > float((y - phi @ mean).square().mean().sqrt())


def test_psis_loo_flags_a_point_the_posterior_hangs_on():
    """One far outlier among few points: leaving it out moves the posterior far, k is large."""
    gen = torch.Generator().manual_seed(4)
    n, noise = 8, 0.05
    x = torch.linspace(-1, 1, n, dtype=torch.float64)
    phi = torch.stack([x**0, x], 1)
    y = 0.5 * x
    y[-1] += 3.0
    mean, cov = _posterior(phi, y, 100.0, noise**2)
    theta = (
        mean
        + torch.randn(4000, 2, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    )
    got = psis_loo((theta @ phi.T).unsqueeze(2), y.unsqueeze(1), torch.tensor([noise]))
    assert float(got.pareto_k[-1]) > got.threshold and got.unreliable >= 1


def test_psis_loo_refuses_bad_shapes():
    with pytest.raises(ValueError, match="draws must be"):
        psis_loo(torch.zeros(10, 3), torch.zeros(3, 1), torch.ones(1))
