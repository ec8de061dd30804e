"""Predictive summaries and metrics from parameter draws, streamed over points.

Parameters are drawn once (``(S, P)``, small) and the surrogate is evaluated on chunks
of points, so memory stays bounded however many points there are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["LEVELS", "Summary", "chunk_points", "crps_sorted", "metrics", "sample_quantiles", "summarize",
           "summarize_draws"]

LEVELS = (0.5, 0.8, 0.9, 0.95)
_CHUNK_ELEMENTS = 1 << 22  # draws x points x widest intermediate per chunk (16 MiB in float32)


def sample_quantiles(sorted_draws: Tensor, q: Sequence[float]) -> Tensor:
    """Linear-interpolated quantiles of draws sorted along dim 0 ``(S, ...)`` -> ``(len(q), ...)``
    (the same as ``torch.quantile``'s default)."""
    s = sorted_draws.shape[0]
    pos = torch.tensor(q, dtype=torch.float64) * (s - 1)
    lo, hi = pos.floor().long(), pos.ceil().long()
    frac = (pos - lo).to(sorted_draws.dtype).to(sorted_draws.device)
    frac = frac.reshape(-1, *([1] * (sorted_draws.dim() - 1)))
    low, high = sorted_draws[lo.to(sorted_draws.device)], sorted_draws[hi.to(sorted_draws.device)]
    return low + frac * (high - low)


def crps_sorted(sorted_draws: Tensor, y: Tensor) -> Tensor:
    """Continuous ranked probability score of the empirical distribution of draws
    ``(S, ...)`` (sorted along dim 0) at observations ``y`` ``(...)``:
    ``E|X - y| - E|X - X'| / 2``, computed in O(S) per point from the order statistics."""
    s = sorted_draws.shape[0]
    weights = (2 * torch.arange(1, s + 1, dtype=sorted_draws.dtype, device=sorted_draws.device) - s - 1)
    weights = weights.reshape(-1, *([1] * (sorted_draws.dim() - 1)))
    spread = (weights * sorted_draws).sum(0) * (2.0 / s**2)
    return (sorted_draws - y).abs().mean(0) - 0.5 * spread


@dataclass
class Summary:
    """Per-point summaries of the predictive draws at ``N`` points, ``O`` outputs.

    ``mean``, ``std``: ``(N, O)``; ``quantiles``: ``(len(probs), N, O)`` at ``probs``;
    ``crps``: ``(N, O)`` or ``None`` without observations."""

    mean: Tensor
    std: Tensor
    probs: tuple[float, ...]
    quantiles: Tensor
    crps: Tensor | None

    def interval(self, level: float) -> tuple[Tensor, Tensor]:
        """The central ``level`` interval ``(lower, upper)``, each ``(N, O)``."""
        lo, hi = round((1 - level) / 2, 10), round((1 + level) / 2, 10)
        return self.quantiles[self.probs.index(lo)], self.quantiles[self.probs.index(hi)]


def interval_probs(levels: Sequence[float], extra: Sequence[float] = (0.5,)) -> tuple[float, ...]:
    """Quantile probabilities for the central intervals at ``levels`` plus ``extra``."""
    probs = {round(p, 10) for lv in levels for p in ((1 - lv) / 2, (1 + lv) / 2)}
    return tuple(sorted(probs | {round(p, 10) for p in extra}))


def summarize(
    draw_fn: Callable[[Tensor], Tensor],
    x: Tensor,
    probs: Sequence[float],
    y: Tensor | None = None,
    per_point: int | None = None,
) -> Summary:
    """Summaries of ``draw_fn(x_chunk)`` -> ``(S, chunk, O)`` over chunks of ``x`` ``(N, d)``.

    ``per_point``: elements a draw function holds per point (draws x widest intermediate);
    chunks are sized to keep that under ``_CHUNK_ELEMENTS``. ``None``: one chunk."""
    n = x.shape[0]
    chunk = n
    if per_point is not None:
        chunk = max(1, _CHUNK_ELEMENTS // max(1, per_point))
    parts: list[tuple[Tensor, ...]] = []
    for start in range(0, n, chunk):
        draws = draw_fn(x[start : start + chunk])
        ordered = draws.sort(dim=0).values
        part = [draws.mean(0), draws.std(0), sample_quantiles(ordered, probs)]
        if y is not None:
            part.append(crps_sorted(ordered, y[start : start + chunk]))
        parts.append(tuple(part))
    cat = [torch.cat([p[i] for p in parts], dim=1 if i == 2 else 0) for i in range(len(parts[0]))]
    return Summary(cat[0], cat[1], tuple(probs), cat[2], cat[3] if y is not None else None)


def metrics(
    summary: Summary,
    y: Tensor,
    levels: Sequence[float] = LEVELS,
    y_true: Tensor | None = None,
) -> dict[str, object]:
    """Scalar metrics of a summary against observations ``y`` ``(N, O)`` (averaged over
    outputs): rmse, mae, r2, crps, rmse_true (against the noiseless ``y_true``), and
    coverage and interval_width keyed by the central level as a string."""
    err = summary.mean - y
    ss_res = err.square().sum(0)
    ss_tot = (y - y.mean(0)).square().sum(0)
    out: dict[str, object] = {
        "rmse": err.square().mean().sqrt().item(),
        "mae": err.abs().mean().item(),
        "r2": (1 - ss_res / ss_tot.clamp_min(torch.finfo(y.dtype).tiny)).mean().item(),
        "crps": summary.crps.mean().item() if summary.crps is not None else None,
        "rmse_true": (summary.mean - y_true).square().mean().sqrt().item() if y_true is not None else None,
    }
    coverage, width = {}, {}
    for level in levels:
        lower, upper = summary.interval(level)
        coverage[str(level)] = ((y >= lower) & (y <= upper)).double().mean().item()
        width[str(level)] = (upper - lower).mean().item()
    out["coverage"], out["interval_width"] = coverage, width
    return out


def chunk_points(per_point: int | None, n: int) -> int:
    """Points per chunk so that a chunk holds about ``_CHUNK_ELEMENTS`` elements when a
    draw function holds ``per_point`` per point (draws x widest intermediate); ``None``: ``n``."""
    return n if per_point is None else max(1, _CHUNK_ELEMENTS // max(1, per_point))


def summarize_draws(draws: Tensor, probs: Sequence[float], y: Tensor | None = None) -> Summary:
    """The summary of draws ``(S, N, O)`` at ``N`` points (and the CRPS against ``y`` ``(N, O)``)."""
    ordered = draws.sort(dim=0).values
    crps = crps_sorted(ordered, y) if y is not None else None
    return Summary(draws.mean(0), draws.std(0), tuple(probs), sample_quantiles(ordered, probs), crps)
