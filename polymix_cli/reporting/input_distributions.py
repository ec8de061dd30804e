"""The inputs' distributions of ``eval.input_distributions``: inverse CDFs for the Monte
Carlo Sobol indices and the output's moments, the share of each distribution outside the
training bounds, and whether a polynomial chaos expansion's closed form applies.

The marginals are scipy.stats distributions: their inverse CDFs (the beta's in
particular, which torch lacks) are exact to rounding and vectorised over points.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polymix_cli.config.schema import InputDistributionConfig
from polymix_cli.config.validation import ConfigError

__all__ = [
    "OUTSIDE_WARNING",
    "check_input_distributions",
    "distributions_json",
    "marginal",
    "matches_basis",
    "outside_mass",
    "pce_mismatch_message",
    "to_inputs",
]

log = logging.getLogger("polymix")

# the share of a distribution outside the training bounds above which a warning names it
OUTSIDE_WARNING = 0.01


def marginal(entry: InputDistributionConfig) -> Any:
    """The scipy.stats (frozen) distribution of one entry.

    Args:
        entry: A validated entry of ``eval.input_distributions``.

    Returns:
        The frozen distribution (``ppf``, ``cdf``, ``sf``, ``mean``, ``var``).
    """
    from scipy import stats

    p = entry.parameters()
    kind = entry.kind
    if kind == "uniform":
        return stats.uniform(loc=p["low"], scale=p["high"] - p["low"])
    if kind == "normal":
        return stats.norm(loc=p["mean"], scale=p["std"])
    if kind == "lognormal":
        return stats.lognorm(s=p["log_std"], scale=math.exp(p["log_mean"]))
    if kind == "truncated_normal":
        mean, std = p["mean"], p["std"]
        return stats.truncnorm(
            (p["low"] - mean) / std, (p["high"] - mean) / std, loc=mean, scale=std
        )
    if kind == "beta":
        return stats.beta(p["a"], p["b"], loc=p["low"], scale=p["high"] - p["low"])
    if kind == "triangular":
        width = p["high"] - p["low"]
        return stats.triang((p["mode"] - p["low"]) / width, loc=p["low"], scale=width)
    raise ValueError(f"unknown input distribution kind {kind!r}")


def to_inputs(
    entries: Sequence[InputDistributionConfig],
    to_model: Callable[[Tensor], Tensor] | None = None,
) -> Callable[[Tensor], Tensor]:
    """The map from points uniform on ``(0, 1)^d`` to inputs with these marginals.

    Args:
        entries: One distribution per input.
        to_model: The map from the user's units to the model's domain (default: none).

    Returns:
        A function of ``u`` ``(N, d)`` (float64, in ``(0, 1)``) to inputs ``(N, d)``
        float64: column ``i`` through the inverse CDF of input ``i``, then ``to_model``.
    """
    dists = [marginal(e) for e in entries]

    def transform(u: Tensor) -> Tensor:
        values = u.detach().cpu().double().numpy()
        x = np.stack([dist.ppf(values[:, i]) for i, dist in enumerate(dists)], axis=1)
        out = torch.from_numpy(np.ascontiguousarray(x))
        return to_model(out) if to_model is not None else out

    return transform


def outside_mass(entries: Sequence[InputDistributionConfig], bounds: Tensor) -> list[float]:
    """The probability each distribution gives to values outside the training bounds.

    Args:
        entries: One distribution per input.
        bounds: The training bounds, shape ``(d, 2)``.

    Returns:
        ``P(X_i < low_i) + P(X_i > high_i)`` per input.
    """
    b = bounds.detach().cpu().double().numpy()
    out = []
    for i, e in enumerate(entries):
        dist = marginal(e)
        out.append(float(dist.cdf(b[i, 0]) + dist.sf(b[i, 1])))
    return out


def matches_basis(
    entries: Sequence[InputDistributionConfig], kind: str, shift: Tensor, scale: Tensor
) -> bool:
    """Whether the distributions are those a basis is orthogonal under, in the user's units.

    Args:
        entries: One distribution per input.
        kind: The basis's distribution in the model's domain: ``uniform`` (U[-1, 1]) or
            ``normal`` (N(0, 1)).
        shift: The input map's shift per input (the model's 0 in the user's units).
        scale: Its scale per input.

    Returns:
        True when every input is ``uniform`` on ``[shift - scale, shift + scale]``
        (Legendre) or ``normal`` with mean ``shift`` and std ``scale`` (Hermite), to
        rounding.
    """

    def same(a: float, b: float, width: float) -> bool:
        return abs(a - b) <= 1e-9 * max(abs(width), abs(a), abs(b), 1e-300)

    for e, c, s in zip(entries, shift.double().tolist(), scale.double().tolist(), strict=True):
        if kind == "uniform":
            ok = e.kind == "uniform" and same(e.low, c - s, s) and same(e.high, c + s, s)
        else:
            ok = e.kind == "normal" and same(e.mean, c, s) and same(e.std, s, s)
        if not ok:
            return False
    return True


def pce_mismatch_message(kind: str) -> str:
    """Why ``eval.sensitivity=pce`` cannot take these distributions."""
    basis = (
        "Legendre basis: uniform over the training bounds"
        if kind == "uniform"
        else ("Hermite basis: normal with the input map's mean and std")
    )
    return (
        f"eval.sensitivity=pce (the closed form) holds only for the distribution of the "
        f"expansion's basis ({basis}); eval.input_distributions differ, so use "
        f"eval.sensitivity=auto or monte_carlo"
    )


def check_input_distributions(
    entries: Sequence[InputDistributionConfig] | None,
    input_names: Sequence[str],
    bounds: Tensor,
) -> list[float] | None:
    """Check ``eval.input_distributions`` against the data and warn about extrapolation.

    Args:
        entries: The option (``None``: not set).
        input_names: The model's inputs.
        bounds: The training bounds, shape ``(d, 2)``.

    Returns:
        The share of each distribution outside the bounds (see :func:`outside_mass`), or
        ``None`` when the option is not set.

    Raises:
        ConfigError: If there is not one entry per input.
    """
    if entries is None:
        return None
    if len(entries) != len(input_names):
        raise ConfigError(
            f"eval.input_distributions must have one entry per input ({len(input_names)}: "
            f"{', '.join(input_names)}), got {len(entries)}"
        )
    mass = outside_mass(entries, bounds)
    b = bounds.detach().cpu().double().tolist()
    for name, share, (low, high) in zip(input_names, mass, b, strict=True):
        if share > OUTSIDE_WARNING:
            log.warning(
                "polymix: warning: eval.input_distributions: %.3g%% of the distribution of %s lies "
                "outside its training bounds [%g, %g]; the surrogate extrapolates there",
                100 * share,
                name,
                low,
                high,
            )
    return mass


def distributions_json(
    entries: Sequence[InputDistributionConfig], input_names: Sequence[str], bounds: Tensor
) -> list[dict[str, Any]]:
    """The distributions as ``metrics.json`` echoes them: per input its name, kind,
    parameters, and the share of it outside the training bounds (``outside_bounds``)."""
    mass = outside_mass(entries, bounds)
    return [
        {"input": name, "kind": e.kind, **e.parameters(), "outside_bounds": share}
        for name, e, share in zip(input_names, entries, mass, strict=True)
    ]
