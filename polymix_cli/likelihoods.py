"""Observation noise: a learned Gaussian likelihood with one standard deviation per output.

``GaussianNoise`` holds ``log_std`` ``(O,)``, an unconstrained parameter, so
``std = exp(log_std)`` stays positive. It is attached to a
:class:`~polymix_cli.StochasticModel` (``noise=``) and then travels with its
``state_dict``, ``parameters()`` and ``.to()``. Its optional prior is over the noise
standard deviation; what enters the distribution loss is the negative log density of
the optimised quantity, ``log std``:

    -log p(log sigma) = -log p_sigma(sigma) - log sigma

(the change of variables; for a log-normal prior this is simply a Gaussian in
``log sigma``). With a half-Cauchy prior this density vanishes both as ``sigma -> 0`` and
``sigma -> inf``, so the prior also keeps the noise from collapsing; it is minimal at
``sigma = scale``.

Everything here is in the model's own output units.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "NOISE_PRIORS",
    "GaussianNoise",
    "HalfCauchyNoisePrior",
    "LogNormalNoisePrior",
    "NoisePrior",
]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _positive(value: float, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


class NoisePrior:
    """A prior over a noise standard deviation, evaluated on its logarithm."""

    kind = ""

    def neg_log_prob(self, log_std: Tensor) -> Tensor:
        """``-log p(log sigma)`` summed over outputs: a scalar."""
        raise NotImplementedError


class LogNormalNoisePrior(NoisePrior):
    """``log sigma ~ N(log median, log_std^2)``: sigma is log-normal with that median."""

    kind = "log_normal"

    def __init__(self, median: float = 1.0, log_std: float = 1.0):
        self.median, self.log_std = _positive(median, "median"), _positive(log_std, "log_std")
        self._loc, self._const = math.log(self.median), math.log(self.log_std) + _HALF_LOG_2PI

    def neg_log_prob(self, log_std: Tensor) -> Tensor:
        z = (log_std - self._loc) / self.log_std
        return 0.5 * z.square().sum() + log_std.numel() * self._const

    def __repr__(self) -> str:
        return f"LogNormalNoisePrior(median={self.median:g}, log_std={self.log_std:g})"


class HalfCauchyNoisePrior(NoisePrior):
    """``sigma ~ half-Cauchy(scale)``: ``p(sigma) = 2 / (pi scale (1 + (sigma / scale)^2))``
    for ``sigma > 0``; a weakly informative prior with a heavy tail."""

    kind = "half_cauchy"

    def __init__(self, scale: float = 1.0):
        self.scale = _positive(scale, "scale")
        self._log_scale = math.log(self.scale)
        self._const = math.log(math.pi * self.scale / 2)

    def neg_log_prob(self, log_std: Tensor) -> Tensor:
        # -log p(sigma) - log sigma, with log(1 + (sigma/s)^2) = softplus(2 (log sigma - log s))
        u = 2 * (log_std - self._log_scale)
        return (torch.nn.functional.softplus(u) - log_std).sum() + log_std.numel() * self._const

    def __repr__(self) -> str:
        return f"HalfCauchyNoisePrior(scale={self.scale:g})"


NOISE_PRIORS = {"log_normal": LogNormalNoisePrior, "half_cauchy": HalfCauchyNoisePrior}


class GaussianNoise(nn.Module):
    """Additive Gaussian observation noise ``y = f(x) + sigma * eps`` with a learned
    ``sigma`` per output.

    ``num_outputs``: the surrogate's outputs ``O``; ``init_std``: the initial sigma (a
    number, or one per output); ``prior``: a :class:`NoisePrior` or ``None`` (maximum
    likelihood for sigma). The only state is the parameter ``log_std`` ``(O,)``.
    """

    def __init__(
        self, num_outputs: int, init_std: float | list[float] = 0.1, prior: NoisePrior | None = None
    ):
        super().__init__()
        if isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs < 1:
            raise ValueError(f"num_outputs must be a positive integer, got {num_outputs!r}")
        values = list(init_std) if isinstance(init_std, (list, tuple)) else [init_std] * num_outputs
        if len(values) != num_outputs:
            raise ValueError(
                f"init_std must be a number or {num_outputs} numbers, got {len(values)}"
            )
        values = [_positive(v, "init_std") for v in values]
        if prior is not None and not isinstance(prior, NoisePrior):
            raise TypeError(f"prior must be a NoisePrior or None, got {type(prior).__name__}")
        self.log_std = nn.Parameter(torch.tensor(values, dtype=torch.get_default_dtype()).log())
        self.prior = prior

    @property
    def num_outputs(self) -> int:
        return self.log_std.shape[0]

    @property
    def std(self) -> Tensor:
        """The noise standard deviation per output ``(O,)``."""
        return self.log_std.exp()

    def neg_log_likelihood(self, y_hat: Tensor, y: Tensor) -> Tensor:
        """``-sum log N(y | y_hat, sigma^2)`` over every draw, point and output: a scalar.

        ``y_hat`` ``(S, B, O)`` (draws of the surrogate), ``y`` ``(B, O)``. Vectorised: one
        squared residual, its sum over draws and points, and an ``(O,)`` dot product."""
        sq = (y_hat - y).square().sum((0, 1))  # (O,)
        return self.nll_from_squared_errors(sq, y_hat.shape[0] * y_hat.shape[1])

    def nll_from_squared_errors(self, sq: Tensor, count: int) -> Tensor:
        """:meth:`neg_log_likelihood` from the squared residuals summed per output ``sq``
        ``(O,)`` over ``count`` (draw, point) pairs."""
        return 0.5 * (sq * torch.exp(-2 * self.log_std)).sum() + count * (
            self.log_std.sum() + self.num_outputs * _HALF_LOG_2PI
        )

    def log_prob(self, y: Tensor, mean: Tensor) -> Tensor:
        """Elementwise ``log N(y | mean, sigma^2)``, broadcast over leading axes of ``mean``."""
        z = (y - mean) * torch.exp(-self.log_std)
        return -0.5 * z.square() - self.log_std - _HALF_LOG_2PI

    def distribution_loss(self) -> Tensor | None:
        """``-log p(log sigma)`` under the prior (a scalar), or ``None`` without a prior."""
        return None if self.prior is None else self.prior.neg_log_prob(self.log_std)

    def extra_repr(self) -> str:
        return f"num_outputs={self.num_outputs}, prior={self.prior!r}"
