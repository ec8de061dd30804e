"""Leave-one-out validation of a model trained by variational inference, from its posterior
draws: Pareto-smoothed importance sampling (PSIS-LOO, Vehtari, Gelman and Gabry 2017).

Part of the core library: torch only, no files, no plots, no configs.

Refitting a model without point ``i`` changes its posterior from ``p(theta | y)`` to
``p(theta | y_-i)``, proportional to ``p(theta | y) / p(y_i | theta)``. Draws ``theta_s``
of the trained posterior weighted by the ratios ``r_s = 1 / p(y_i | theta_s)`` therefore
estimate the leave-one-out predictive distribution without refitting. The raw ratios can
have a heavy right tail (a point that pulls the posterior hard); PSIS fits a generalised
Pareto distribution to the largest ratios and replaces them by its quantiles, which
stabilises the estimate, and the fitted shape ``k`` tells how far to trust it: below about
0.7 (``min(1 - 1 / log10 S, 0.7)`` for ``S`` draws) the estimate is reliable, above it the
leave-one-out posterior is too far from the trained one for the draws to tell.

polymix treats the variational posterior as the posterior: the ratios do not correct for
the difference between the two, so the estimate is the leave-one-out error of the
variational model, trustworthy where ``k`` is small and the variational fit is good.
The generalised Pareto fit is the empirical-Bayes estimate of Zhang and Stephens (2009),
with the weakly informative prior on ``k`` of Vehtari et al.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "PSISLeaveOneOut",
    "fit_generalized_pareto",
    "k_threshold",
    "pareto_smoothed_log_weights",
    "psis_loo",
    "psis_loo_model",
]


def k_threshold(num_draws: int) -> float:
    """The Pareto ``k`` above which the estimate from ``num_draws`` draws is unreliable:
    ``min(1 - 1 / log10 S, 0.7)``."""
    return min(1.0 - 1.0 / math.log10(max(num_draws, 11)), 0.7)


def fit_generalized_pareto(x: Tensor) -> tuple[Tensor, Tensor]:
    """Fit a generalised Pareto distribution (location 0) to each row of ``x``.

    Zhang and Stephens' (2009) estimator: the profile likelihood of ``b = -k / sigma`` on a
    grid of ``30 + sqrt(M)`` values, averaged with weights proportional to it, then ``k``
    given ``b``; ``k`` is shrunk towards 0.5 by a prior worth 10 observations.

    Args:
        x: Positive exceedances, shape ``(N, M)``, each row sorted ascending (``M >= 5``).

    Returns:
        ``(k, sigma)``, each shape ``(N,)``: the shape (heavier tails for larger ``k``) and
        the scale.
    """
    x = x.to(torch.float64)
    n = x.shape[1]
    grid = 30 + int(math.sqrt(n))
    j = torch.arange(1, grid + 1, dtype=torch.float64)
    quartile = x[:, max(int(n / 4 + 0.5) - 1, 0)].clamp_min(1e-300)
    b = (1.0 - torch.sqrt(grid / (j - 0.5))).unsqueeze(0) / (3.0 * quartile.unsqueeze(1))
    b = b + 1.0 / x[:, -1:].clamp_min(1e-300)  # (N, grid)
    k_b = torch.log1p(-b.unsqueeze(2) * x.unsqueeze(1)).mean(2)  # (N, grid)
    profile = n * (torch.log(-b / k_b) - k_b - 1.0)
    weights = torch.softmax(torch.nan_to_num(profile, nan=-math.inf), dim=1)
    b_hat = (b * weights).sum(1)
    k = torch.log1p(-b_hat.unsqueeze(1) * x).mean(1)
    sigma = -k / b_hat
    k = (n * k + 10 * 0.5) / (n + 10)
    return k, sigma


def pareto_smoothed_log_weights(log_ratios: Tensor) -> tuple[Tensor, Tensor]:
    """Pareto-smoothed importance weights, one set per column.

    The ``M = min(S / 5, 3 sqrt(S))`` largest ratios of each column are replaced by the
    quantiles of a generalised Pareto distribution fitted to them (capped at the largest
    raw ratio), then the weights are normalised.

    Args:
        log_ratios: ``log r``, shape ``(S, N)``: ``S`` draws, ``N`` sets.

    Returns:
        ``(log_weights (S, N), k (N,))``: the normalised log weights and the Pareto shape
        of each column (``inf`` when there are too few draws to fit one, fewer than 25;
        0 when the ratios are all equal).
    """
    lw = log_ratios.to(torch.float64)
    s, n = lw.shape
    lw = lw - lw.max(0, keepdim=True).values
    tail = min(math.ceil(0.2 * s), math.ceil(3.0 * math.sqrt(s)))
    k = torch.full((n,), math.inf, dtype=torch.float64)
    if s >= 25 and tail >= 5:
        ordered, order = lw.sort(0)
        cutoff = ordered[-tail - 1]  # (N,)
        exceed = (ordered[-tail:].exp() - cutoff.exp()).T  # (N, M), ascending
        flat = exceed[:, -1] <= 0  # the largest ratios all equal: nothing to smooth
        k_fit, sigma = fit_generalized_pareto(exceed.clamp_min(1e-300))
        p = (torch.arange(1, tail + 1, dtype=torch.float64) - 0.5) / tail
        kk = k_fit.unsqueeze(1)
        safe = torch.where(kk.abs() < 1e-8, torch.ones_like(kk), kk)
        quantile = torch.where(
            kk.abs() < 1e-8,
            -torch.log1p(-p),
            torch.expm1(-kk * torch.log1p(-p)) / safe,
        ) * sigma.unsqueeze(1)
        smoothed = torch.log(cutoff.exp().unsqueeze(1) + quantile).clamp_max(0.0)  # (N, M)
        usable = torch.isfinite(k_fit) & ~flat & torch.isfinite(smoothed).all(1)
        ordered[-tail:] = torch.where(usable, smoothed.T, ordered[-tail:])
        lw = torch.empty_like(lw).scatter_(0, order, ordered)
        k = torch.where(usable, k_fit, torch.where(flat, torch.zeros_like(k), k))
    return lw - torch.logsumexp(lw, 0, keepdim=True), k


@dataclass(frozen=True)
class PSISLeaveOneOut:
    """PSIS leave-one-out figures of a model with a Gaussian likelihood.

    Args:
        residuals: ``y_i`` minus the leave-one-out predictive mean, shape ``(N, O)``.
        rmse: Their root mean square per output, shape ``(O,)``.
        q2: ``1 - mean(residuals^2) / var(y)`` per output, shape ``(O,)``.
        elpd: The expected log predictive density, ``sum_i log p(y_i | y_-i)``.
        pointwise: ``log p(y_i | y_-i)`` per point, shape ``(N,)``.
        pareto_k: The Pareto shape of each point's weights, shape ``(N,)``.
        threshold: The ``k`` above which a point's estimate is unreliable.
    """

    residuals: Tensor
    rmse: Tensor
    q2: Tensor
    elpd: float
    pointwise: Tensor
    pareto_k: Tensor
    threshold: float

    @property
    def unreliable(self) -> int:
        """The number of points whose ``k`` exceeds the threshold."""
        return int((self.pareto_k > self.threshold).sum())


def psis_loo(draws: Tensor, y: Tensor, noise_std: Tensor, chunk: int = 4096) -> PSISLeaveOneOut:
    """PSIS leave-one-out of a model ``y = f(x, theta) + N(0, diag noise_std^2)``.

    Args:
        draws: ``f(x_i, theta_s)`` at the training points, shape ``(S, N, O)``, for ``S``
            draws of the posterior.
        y: The training outputs, shape ``(N, O)``.
        noise_std: The noise standard deviation per output, shape ``(O,)``.
        chunk: Points handled at once (bounds the memory to ``S x chunk`` values).

    Returns:
        The :class:`PSISLeaveOneOut`.

    Raises:
        ValueError: If the shapes disagree.
    """
    if draws.dim() != 3 or y.shape != draws.shape[1:] or noise_std.shape != y.shape[1:]:
        raise ValueError(
            f"draws must be (S, N, O), y (N, O) and noise_std (O,), got {tuple(draws.shape)}, "
            f"{tuple(y.shape)} and {tuple(noise_std.shape)}"
        )
    s, n, _ = draws.shape
    std = noise_std.detach().to(torch.float64)
    residuals, elpd, ks = [], [], []
    for start in range(0, n, chunk):
        f = draws[:, start : start + chunk].detach().to(torch.float64)
        yy = y[start : start + chunk].detach().to(torch.float64)
        z = (yy - f) / std
        loglik = (-0.5 * z.square() - std.log() - 0.5 * math.log(2 * math.pi)).sum(2)  # (S, B)
        log_w, k = pareto_smoothed_log_weights(-loglik)
        elpd.append(torch.logsumexp(log_w + loglik, 0))
        mean = (log_w.exp().unsqueeze(2) * f).sum(0)  # (B, O)
        residuals.append(yy - mean)
        ks.append(k)
    res = torch.cat(residuals)
    mse = res.square().mean(0)
    var = y.detach().to(torch.float64).var(0, unbiased=False)
    q2 = torch.where(var > 0, 1.0 - mse / var.clamp_min(1e-300), torch.full_like(var, math.nan))
    pointwise = torch.cat(elpd)
    return PSISLeaveOneOut(
        res, mse.sqrt(), q2, float(pointwise.sum()), pointwise, torch.cat(ks), k_threshold(s)
    )


@torch.no_grad()
def psis_loo_model(
    model,
    x: Tensor,
    y: Tensor,
    num_draws: int = 1000,
    generator: torch.Generator | None = None,
    chunk: int | None = None,
) -> PSISLeaveOneOut:
    """PSIS leave-one-out of a :class:`~polymix_cli.StochasticModel` with a learned noise.

    One set of ``num_draws`` parameter draws; the surrogate is evaluated at the training
    points a chunk at a time (at most about 4 million values at once).

    Args:
        model: The trained model; its ``noise`` gives the likelihood.
        x: Training inputs in the model's domain, shape ``(N, d)``.
        y: Training outputs in the model's domain, shape ``(N, O)``.
        num_draws: The posterior draws ``S``.
        generator: The random generator of the draws.
        chunk: Points per chunk (``None``: from the budget above).

    Returns:
        The :class:`PSISLeaveOneOut`, in the model's domain.

    Raises:
        ValueError: If the model has no noise.
    """
    if getattr(model, "noise", None) is None:
        raise ValueError("PSIS leave-one-out needs a likelihood: a model with a learned noise")
    params = model.sample_parameters(num_draws, generator)
    num_out = y.shape[1]
    chunk = chunk or max(1, (1 << 22) // max(num_draws * num_out, 1))
    std = model.noise.log_std.detach().exp().to(torch.float64).cpu()
    parts = [
        psis_loo(model.predict(x[i : i + chunk], params).cpu(), y[i : i + chunk].cpu(), std)
        for i in range(0, x.shape[0], chunk)
    ]
    res = torch.cat([r.residuals for r in parts])
    pointwise = torch.cat([r.pointwise for r in parts])
    mse = res.square().mean(0)
    var = y.detach().to(torch.float64).cpu().var(0, unbiased=False)
    q2 = torch.where(var > 0, 1.0 - mse / var.clamp_min(1e-300), torch.full_like(var, math.nan))
    return PSISLeaveOneOut(
        res,
        mse.sqrt(),
        q2,
        float(pointwise.sum()),
        pointwise,
        torch.cat([r.pareto_k for r in parts]),
        k_threshold(num_draws),
    )
