"""Predictive summaries and metrics from parameter draws, streamed over points.

Parameters are drawn once (``(S, P)``, small) and the surrogate is evaluated on chunks
of points, so memory stays bounded however many points there are.

Two bands:

- the **epistemic** band, from the surrogate's draws alone (the spread of the random
  coefficients);
- the **predictive** band, for new observations: each draw plus Gaussian noise,
  ``mu_s + sigma * eps`` with ``eps`` standard normal from the evaluation's generator.
  Without a learned noise the two are the same.

The negative log predictive density (``nll``) is exact for a model with noise: the
predictive density is the mixture ``(1/S) sum_s N(y | mu_s, sigma^2)`` over the draws,
evaluated with a log-sum-exp. Without noise the draws have no density; their Gaussian
moment match ``N(y | mean, var)`` (``var`` the unbiased variance of the draws) is used
instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from polymix_cli.surrogate_models import SurrogateModel

__all__ = [
    "CALIBRATION_LEVELS",
    "LEVELS",
    "PredictiveSummary",
    "chunk_points",
    "coverage",
    "crps_sorted",
    "point_elements",
    "point_major_normal",
    "predictive_nll",
    "sample_quantiles",
    "summarize_draws",
    "summarize_predictive",
    "summary_metrics",
]

LEVELS = (0.5, 0.8, 0.9, 0.95)
# nominal levels of the central intervals whose coverage gaps make the calibration error
CALIBRATION_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_CHUNK_ELEMENTS = 1 << 22  # draws x points x widest intermediate per chunk (16 MiB in float32)


def sample_quantiles(sorted_draws: Tensor, q: Sequence[float]) -> Tensor:
    """Linear-interpolated quantiles of sorted draws.

    The same as ``torch.quantile``'s default (``interpolation="linear"``).

    Args:
        sorted_draws: Draws sorted along dim 0, shape ``(S, ...)``.
        q: Probabilities in [0, 1].

    Returns:
        The quantiles, shape ``(len(q), ...)``.
    """
    s = sorted_draws.shape[0]
    pos = torch.tensor(q, dtype=torch.float64) * (s - 1)
    lo, hi = pos.floor().long(), pos.ceil().long()
    frac = (pos - lo).to(sorted_draws.dtype).to(sorted_draws.device)
    frac = frac.reshape(-1, *([1] * (sorted_draws.dim() - 1)))
    low, high = sorted_draws[lo.to(sorted_draws.device)], sorted_draws[hi.to(sorted_draws.device)]
    return low + frac * (high - low)


def crps_sorted(sorted_draws: Tensor, y: Tensor) -> Tensor:
    """Continuous ranked probability score of the empirical distribution of draws.

    ``E|X - y| - E|X - X'| / 2``, computed in O(S) per point from the order statistics.

    Args:
        sorted_draws: Draws sorted along dim 0, shape ``(S, ...)``.
        y: Observations, shape ``(...)``.

    Returns:
        The CRPS at each observation, shape ``(...)``.
    """
    s = sorted_draws.shape[0]
    weights = (
        2 * torch.arange(1, s + 1, dtype=sorted_draws.dtype, device=sorted_draws.device) - s - 1
    )
    weights = weights.reshape(-1, *([1] * (sorted_draws.dim() - 1)))
    spread = (weights * sorted_draws).sum(0) * (2.0 / s**2)
    return (sorted_draws - y).abs().mean(0) - 0.5 * spread


@dataclass
class PredictiveSummary:
    """Per-point summaries of the predictive draws at ``N`` points, ``O`` outputs.

    Args:
        mean: Shape ``(N, O)``.
        std: Shape ``(N, O)``.
        probs: The probabilities of the quantiles.
        quantiles: Shape ``(len(probs), N, O)``, at ``probs``.
        crps: Shape ``(N, O)``, or ``None`` without observations.
        nll: The negative log predictive density per point and output, shape
            ``(N, O)``, or ``None`` without observations.
        epistemic: The summary of the surrogate's draws alone when noise was added (its
            ``crps`` and ``nll`` are ``None``); ``None`` when the predictive draws are the
            surrogate's draws (see :meth:`band`).
    """

    mean: Tensor
    std: Tensor
    probs: tuple[float, ...]
    quantiles: Tensor
    crps: Tensor | None
    nll: Tensor | None = None
    epistemic: PredictiveSummary | None = None

    def band(self, kind: str = "predictive") -> PredictiveSummary:
        """The summary whose quantiles make the ``predictive`` or ``epistemic`` band.

        Args:
            kind: ``"predictive"`` or ``"epistemic"``.

        Returns:
            ``self``, or :attr:`epistemic` when ``kind`` is ``"epistemic"`` and there is
            one (without noise the two bands are the same).

        Raises:
            ValueError: If ``kind`` is neither.
        """
        if kind not in ("predictive", "epistemic"):
            raise ValueError(f"kind must be 'predictive' or 'epistemic', got {kind!r}")
        return self.epistemic if kind == "epistemic" and self.epistemic is not None else self

    def interval(self, level: float) -> tuple[Tensor, Tensor]:
        """The central ``level`` interval.

        Args:
            level: The interval's probability, e.g. 0.9 (quantiles 0.05 and 0.95).

        Returns:
            ``(lower, upper)``, each shape ``(N, O)``.

        Raises:
            ValueError: If :attr:`probs` lacks the interval's quantiles (see
                :func:`interval_probs`).
        """
        lo, hi = round((1 - level) / 2, 10), round((1 + level) / 2, 10)
        return self.quantiles[self.probs.index(lo)], self.quantiles[self.probs.index(hi)]


def interval_probs(levels: Sequence[float], extra: Sequence[float] = (0.5,)) -> tuple[float, ...]:
    """Quantile probabilities for the central intervals at ``levels`` plus ``extra``.

    Args:
        levels: Central interval levels, e.g. :data:`LEVELS`.
        extra: Further probabilities (default the median).

    Returns:
        The probabilities, rounded to 10 digits, sorted, without repeats.
    """
    probs = {round(p, 10) for lv in levels for p in ((1 - lv) / 2, (1 + lv) / 2)}
    return tuple(sorted(probs | {round(p, 10) for p in extra}))


def _mixture_nll(draws: Tensor, y: Tensor, noise_std: Tensor) -> Tensor:
    """``-log (1/S) sum_s N(y | draws_s, sigma^2)`` per point and output: draws ``(..., S,
    C, O)`` to ``(..., C, O)``."""
    log_std = noise_std.log()
    log_p = -0.5 * ((y - draws) / noise_std).square() - log_std - _HALF_LOG_2PI  # (..., S, C, O)
    return math.log(draws.shape[-3]) - torch.logsumexp(log_p, dim=-3)


def _moment_nll(mean: Tensor, std: Tensor, y: Tensor) -> Tensor:
    """``-log N(y | mean, std^2)`` per point and output (the Gaussian moment match)."""
    return 0.5 * ((y - mean) / std).square() + std.log() + _HALF_LOG_2PI


def predictive_nll(draws: Tensor, y: Tensor, noise_std: Tensor | None = None) -> Tensor:
    """The negative log predictive density of observations, as ``nll`` in
    :func:`summary_metrics`: the mean over points of its sum over outputs.

    Exact for a model with noise (the mixture over the draws), else the Gaussian moment
    match of the draws (see the module's description). Leading dimensions of ``draws``
    (e.g. replicas of a model) are kept.

    Args:
        draws: The surrogate's draws, shape ``(..., S, N, O)``.
        y: Observations, shape ``(N, O)``.
        noise_std: The Gaussian observation noise in the units of the draws, shape
            ``(O,)`` or ``(..., O)``; ``None``: none.

    Returns:
        Shape ``(...)`` (a 0-dim tensor for ``(S, N, O)`` draws).
    """
    if noise_std is None:
        # the unbiased std in two passes: ten times faster than Tensor.std over the draws
        mean = draws.mean(-3, keepdim=True)
        var = (draws - mean).square().sum(-3) / (draws.shape[-3] - 1)
        per_point = _moment_nll(mean.squeeze(-3), var.sqrt(), y)
    else:
        sigma = noise_std if noise_std.dim() < 2 else noise_std[..., None, None, :]
        per_point = _mixture_nll(draws, y, sigma)
    return per_point.sum(-1).mean(-1)


def summarize_predictive(
    draw_fn: Callable[[Tensor], Tensor],
    x: Tensor,
    probs: Sequence[float],
    y: Tensor | None = None,
    per_point: int | None = None,
    noise_std: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> PredictiveSummary:
    """Summaries of ``draw_fn`` over chunks of the points ``x``.

    With ``noise_std``, the summary is of the predictive draws (each draw plus
    ``noise_std`` times a standard normal from ``generator``, drawn chunk by chunk), its
    mean and std are the exact predictive moments, its ``nll`` the exact mixture density,
    and ``summary.epistemic`` summarises the draws alone. Without it, the ``nll`` is the
    Gaussian moment match (see the module's description).

    Args:
        draw_fn: Draws at a chunk of points, ``(chunk, d) -> (S, chunk, O)``.
        x: The points, shape ``(N, d)``.
        probs: The probabilities of the quantiles.
        y: Observations, shape ``(N, O)``, for ``crps`` and ``nll``; ``None``: neither.
        per_point: Elements a draw function holds per point (draws x widest
            intermediate); chunks are sized to keep that under ``_CHUNK_ELEMENTS``.
            ``None``: one chunk.
        noise_std: A Gaussian observation noise, shape ``(O,)``, in the units of the
            draws; ``None``: none.
        generator: The generator of the noise (see :func:`point_major_normal`).

    Returns:
        The :class:`PredictiveSummary` at the ``N`` points.
    """
    n = x.shape[0]
    chunk = chunk_points(per_point, n)
    # every chunk's results are written into tensors for all points, allocated once: chunks
    # kept in a list and concatenated would pin small blocks between the large, short-lived
    # ones and fragment the heap (several hundred MiB at 1e5 points)
    full: list[Tensor] = []
    for start in range(0, n, chunk):
        draws = draw_fn(x[start : start + chunk])
        y_chunk = y[start : start + chunk] if y is not None else None
        ordered = draws.sort(dim=0).values
        mean, std = draws.mean(0), draws.std(0)
        part = [mean, std, sample_quantiles(ordered, probs)]
        if noise_std is None:
            if y_chunk is not None:
                part += [crps_sorted(ordered, y_chunk), _moment_nll(mean, std, y_chunk)]
        else:
            eps = point_major_normal(draws, generator)
            noisy = torch.addcmul(draws, eps, noise_std).sort(dim=0).values
            part += [(std.square() + noise_std.square()).sqrt(), sample_quantiles(noisy, probs)]
            if y_chunk is not None:
                part += [crps_sorted(noisy, y_chunk), _mixture_nll(draws, y_chunk, noise_std)]
        if not full:
            full = [t.new_empty((*t.shape[:-2], n, t.shape[-1])) for t in part]
        for target, t in zip(full, part, strict=True):
            target[..., start : start + t.shape[-2], :] = t
    cat = full
    scores = cat[-2:] if y is not None else [None, None]
    if noise_std is None:
        return PredictiveSummary(cat[0], cat[1], tuple(probs), cat[2], *scores)
    epistemic = PredictiveSummary(cat[0], cat[1], tuple(probs), cat[2], None)
    return PredictiveSummary(cat[0], cat[3], tuple(probs), cat[4], *scores, epistemic=epistemic)


def coverage(summary: PredictiveSummary, y: Tensor, level: float) -> float:
    """The fraction of observations inside the central ``level`` interval.

    Args:
        summary: A summary with the interval's quantiles.
        y: Observations, shape ``(N, O)``.
        level: The interval's probability.

    Returns:
        The fraction over all points and outputs (bounds included).
    """
    lower, upper = summary.interval(level)
    return ((y >= lower) & (y <= upper)).double().mean().item()


def calibration_error(
    summary: PredictiveSummary, y: Tensor, levels: Sequence[float] = CALIBRATION_LEVELS
) -> float:
    """Mean absolute gap between nominal and empirical coverage over central ``levels``.

    Args:
        summary: A summary with the intervals' quantiles.
        y: Observations, shape ``(N, O)``.
        levels: Central interval levels.

    Returns:
        The mean of ``|coverage - level|`` over ``levels``.
    """
    return sum(abs(coverage(summary, y, lv) - lv) for lv in levels) / len(levels)


def _band_metrics(
    summary: PredictiveSummary,
    y: Tensor,
    levels: Sequence[float],
    calibration_levels: Sequence[float],
) -> dict[str, object]:
    cov = {str(level): coverage(summary, y, level) for level in levels}
    width = {}
    for level in levels:
        lower, upper = summary.interval(level)
        width[str(level)] = (upper - lower).mean().item()
    return {
        "calibration_error": calibration_error(summary, y, calibration_levels),
        "coverage": cov,
        "interval_width": width,
    }


def _r2(ss_res: Tensor, ss_tot: Tensor, y: Tensor) -> float | None:
    """R^2 averaged over the outputs that vary; ``None`` if none does (one row, or a constant
    column: its spread, as rounding leaves it, is no scale to measure errors against)."""
    scale = y.abs().amax(0) if y.shape[0] else torch.zeros_like(ss_tot)
    noise = (torch.finfo(y.dtype).eps * scale).square() * y.shape[0] * 16
    varies = ss_tot > noise
    if not bool(varies.any()):
        return None
    r2 = 1 - ss_res[varies] / ss_tot[varies]
    return r2.mean().item()


def summary_metrics(
    summary: PredictiveSummary,
    y: Tensor,
    levels: Sequence[float] = LEVELS,
    y_true: Tensor | None = None,
    calibration_levels: Sequence[float] = CALIBRATION_LEVELS,
) -> dict[str, object]:
    """Scalar metrics of a summary against observations (averaged over outputs).

    The metrics: rmse, mae, r2, crps, rmse_true (against the noiseless ``y_true``), nll
    (mean over points of the negative log predictive density, summed over outputs),
    calibration_error, and coverage and interval_width keyed by the central level as a
    string; these three of the predictive band, and again of the epistemic band under
    ``epistemic`` (the same numbers for a model without noise).

    Args:
        summary: The summary; it needs the quantiles of every level in ``levels`` and
            ``calibration_levels``.
        y: Observations, shape ``(N, O)``.
        levels: The levels of ``coverage`` and ``interval_width``.
        y_true: The noiseless values, shape ``(N, O)``, or ``None`` (``rmse_true`` is
            then ``None``).
        calibration_levels: The levels of ``calibration_error``.

    Returns:
        The metrics as a dict of floats (``crps``, ``rmse_true`` and ``nll`` ``None`` where
        the summary or ``y_true`` lacks them) and nested dicts.
    """
    err = summary.mean - y
    ss_res = err.square().sum(0)
    ss_tot = (y - y.mean(0)).square().sum(0)
    out: dict[str, object] = {
        "rmse": err.square().mean().sqrt().item(),
        "mae": err.abs().mean().item(),
        "r2": _r2(ss_res, ss_tot, y),
        "crps": summary.crps.mean().item() if summary.crps is not None else None,
        "rmse_true": (summary.mean - y_true).square().mean().sqrt().item()
        if y_true is not None
        else None,
        "nll": summary.nll.sum(1).mean().item() if summary.nll is not None else None,
    }
    out.update(_band_metrics(summary, y, levels, calibration_levels))
    out["epistemic"] = _band_metrics(summary.band("epistemic"), y, levels, calibration_levels)
    return out


def point_major_normal(like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard normal noise shaped like draws, drawn point by point.

    The generator's stream is consumed in the order of the points, so that evaluating the
    points in chunks gives the same numbers as evaluating them at once.

    Args:
        like: Draws, shape ``(S, n, O)`` (their dtype and device are used).
        generator: The generator, or ``None`` for torch's global one.

    Returns:
        The noise, shape ``(S, n, O)`` (a permuted view).
    """
    s, n, o = like.shape
    eps = torch.randn((n, s, o), dtype=like.dtype, device=like.device, generator=generator)
    return eps.permute(1, 0, 2)


def point_elements(surrogate: SurrogateModel, num_draws: int) -> int:
    """Elements a surrogate holds per point when ``num_draws`` draws are evaluated at a chunk
    of points: the draws' widest intermediate (``num_draws`` x
    :meth:`~polymix_cli.surrogate_models.SurrogateModel.work_width`), or the intermediate
    they share if wider (a row of a PCE's basis,
    :meth:`~polymix_cli.surrogate_models.SurrogateModel.shared_width`, held once whatever
    the number of draws). What :func:`chunk_points` sizes every chunk of points by.

    Args:
        surrogate: The surrogate model.
        num_draws: The draws evaluated at once (count a copy the caller keeps, e.g. the
            draws and their noise, as further draws).

    Returns:
        The elements per point, at least 1.
    """
    return max(1, num_draws * surrogate.work_width(), surrogate.shared_width())


def chunk_points(per_point: int | None, n: int) -> int:
    """Points per chunk, so that a chunk holds about ``_CHUNK_ELEMENTS`` elements.

    Args:
        per_point: Elements a draw function holds per point (draws x widest
            intermediate); ``None``: one chunk.
        n: The number of points.

    Returns:
        At least 1; ``n`` when ``per_point`` is ``None``.
    """
    return n if per_point is None else max(1, _CHUNK_ELEMENTS // max(1, per_point))


def summarize_draws(
    draws: Tensor, probs: Sequence[float], y: Tensor | None = None
) -> PredictiveSummary:
    """The summary of draws at ``N`` points, all at once.

    Args:
        draws: Shape ``(S, N, O)``.
        probs: The probabilities of the quantiles.
        y: Observations, shape ``(N, O)``, for the CRPS; ``None``: no CRPS.

    Returns:
        The :class:`PredictiveSummary` (without ``nll`` or ``epistemic``).
    """
    ordered = draws.sort(dim=0).values
    crps = crps_sorted(ordered, y) if y is not None else None
    return PredictiveSummary(
        draws.mean(0), draws.std(0), tuple(probs), sample_quantiles(ordered, probs), crps
    )
