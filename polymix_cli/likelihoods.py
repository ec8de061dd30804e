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
    """Base class: a prior over a noise standard deviation, evaluated on its logarithm.

    Subclasses set ``kind`` (their name in :data:`NOISE_PRIORS`) and implement
    :meth:`neg_log_prob`.
    """

    kind = ""

    def neg_log_prob(self, log_std: Tensor) -> Tensor:
        """The negative log prior density of ``log sigma``, summed over outputs.

        Args:
            log_std: The log noise standard deviations ``log sigma``, shape ``(O,)``.

        Returns:
            ``-sum log p(log sigma)``, a scalar (0-dim tensor), including the change of
            variables from ``sigma`` to ``log sigma``.
        """
        raise NotImplementedError


class LogNormalNoisePrior(NoisePrior):
    """A log-normal prior: ``log sigma ~ N(log median, log_std^2)``.

    Sigma is log-normal with that median; on ``log sigma`` (what is optimised) the density
    is simply a Gaussian.

    Args:
        median: The prior median of sigma, in the model's output units (> 0, finite).
        log_std: The standard deviation of ``log sigma`` (> 0, finite).

    Raises:
        ValueError: If ``median`` or ``log_std`` is not a positive finite number.
    """

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
    """A half-Cauchy prior: ``sigma ~ half-Cauchy(scale)``.

    ``p(sigma) = 2 / (pi scale (1 + (sigma / scale)^2))`` for ``sigma > 0``: a weakly
    informative prior with a heavy tail. On ``log sigma`` the density vanishes both as
    ``sigma -> 0`` and ``sigma -> inf`` (it keeps the noise from collapsing) and is
    maximal at ``sigma = scale``.

    Args:
        scale: The scale of the half-Cauchy, in the model's output units (> 0, finite).

    Raises:
        ValueError: If ``scale`` is not a positive finite number.
    """

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
    """Additive Gaussian observation noise with a learned standard deviation per output.

    The model is ``y = f(x) + sigma * eps`` with ``eps ~ N(0, 1)``. The only state is the
    parameter ``log_std``, shape ``(O,)``; ``sigma = exp(log_std)`` stays positive.

    Args:
        num_outputs: The surrogate's number of outputs ``O`` (>= 1).
        init_std: The initial sigma: a number, or a list of ``O`` numbers (each > 0).
        prior: A :class:`NoisePrior` over sigma, or ``None`` (maximum likelihood for sigma).

    Raises:
        ValueError: If ``num_outputs`` is not a positive integer, or ``init_std`` has
            another length than ``O`` or a value that is not a positive finite number.
        TypeError: If ``prior`` is neither a :class:`NoisePrior` nor ``None``.

    Example:
        ```python
        import torch
        from polymix_cli.likelihoods import GaussianNoise, HalfCauchyNoisePrior

        noise = GaussianNoise(2, init_std=0.1, prior=HalfCauchyNoisePrior(scale=0.5))
        y_hat, y = torch.zeros(8, 50, 2), torch.zeros(50, 2)  # (S, B, O) and (B, O)
        loss = noise.neg_log_likelihood(y_hat, y) + noise.distribution_loss()  # scalar
        ```
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
        """The number of outputs ``O``, one standard deviation each."""
        return self.log_std.shape[0]

    @property
    def std(self) -> Tensor:
        """The noise standard deviation per output, ``exp(log_std)``, shape ``(O,)``."""
        return self.log_std.exp()

    def neg_log_likelihood(self, y_hat: Tensor, y: Tensor) -> Tensor:
        """The Gaussian negative log likelihood, summed over every draw, point and output.

        ``-sum log N(y | y_hat, sigma^2)``. Vectorised: one squared residual, its sum over
        draws and points, and an ``(O,)`` dot product.

        Args:
            y_hat: Draws of the surrogate, shape ``(S, B, O)``.
            y: Observations, shape ``(B, O)``, in the same units.

        Returns:
            The negative log likelihood, a scalar (0-dim tensor).
        """
        sq = (y_hat - y).square().sum((0, 1))  # (O,)
        return self.nll_from_squared_errors(sq, y_hat.shape[0] * y_hat.shape[1])

    def nll_from_squared_errors(self, sq: Tensor, count: int) -> Tensor:
        """:meth:`neg_log_likelihood` from squared residuals already summed per output.

        Args:
            sq: The squared residuals ``(y_hat - y)^2`` summed over draws and points, per
                output, shape ``(O,)``.
            count: The number of (draw, point) pairs summed over, ``S * B``.

        Returns:
            The negative log likelihood, a scalar (0-dim tensor).
        """
        return 0.5 * (sq * torch.exp(-2 * self.log_std)).sum() + count * (
            self.log_std.sum() + self.num_outputs * _HALF_LOG_2PI
        )

    def log_prob(self, y: Tensor, mean: Tensor) -> Tensor:
        """The elementwise Gaussian log density ``log N(y | mean, sigma^2)``.

        Args:
            y: Observations, shape ``(..., O)``, e.g. ``(B, O)``.
            mean: Means, broadcastable with ``y``, e.g. draws ``(S, B, O)``.

        Returns:
            The log densities, the broadcast shape of ``y`` and ``mean`` (e.g.
            ``(S, B, O)``); not summed.
        """
        z = (y - mean) * torch.exp(-self.log_std)
        return -0.5 * z.square() - self.log_std - _HALF_LOG_2PI

    def distribution_loss(self) -> Tensor | None:
        """The negative log prior of the noise level, ``-log p(log sigma)``.

        Returns:
            A scalar (0-dim tensor) summed over outputs, or ``None`` without a prior.
        """
        return None if self.prior is None else self.prior.neg_log_prob(self.log_std)

    def extra_repr(self) -> str:
        return f"num_outputs={self.num_outputs}, prior={self.prior!r}"
