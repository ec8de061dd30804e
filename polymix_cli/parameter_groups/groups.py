"""Point-estimate and Gaussian variational groups."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Independent, LowRankMultivariateNormal, MultivariateNormal, Normal

from ..priors import IIDGaussianPrior, Prior, ScaleMixturePrior
from .base import ParameterGroup, kl_to_prior

__all__ = ["DeterministicGroup", "GaussianGroup", "IIDGaussianGroup", "LowRankGaussianGroup"]


def _inverse_softplus(value: float) -> float:
    return value + math.log(-math.expm1(-value))


class _Packable(ParameterGroup):
    """A group whose tensors can be moved into a model's flat storage
    (:class:`~polymix_cli.parameter_groups.mean_field.MeanFieldParameters`).

    Standalone, the group owns its ``nn.Parameter`` s under their usual names; once
    packed, the same attributes return differentiable slices of the flat parameters and
    the group owns none (the optimiser then updates two tensors instead of dozens)."""

    _packed_names: tuple[str, ...] = ()

    def _tensor(self, name: str) -> Tensor:
        packed = self.__dict__.get("_packed")
        if packed is not None:
            store, attr, start, stop = packed[name]
            return getattr(store, attr)[start:stop]
        param = self.__dict__["_parameters"].get(name)
        if param is None:
            raise AttributeError(name)
        return param

    def pack(self, views: dict[str, tuple[nn.Module, str, int, int]]) -> None:
        """Hand this group's tensors over to flat storage.

        Args:
            views: ``views[name] = (store, attr, start, stop)`` makes parameter ``name``
                the slice ``store.attr[start:stop]``; the group's own parameter is dropped.
        """
        for name in self._packed_names:
            self._parameters.pop(name, None)
        object.__setattr__(self, "_packed", views)


class DeterministicGroup(_Packable):
    """A point estimate ``theta``: every draw is ``theta``.

    ``value`` ``(num_params,)`` is initialised from N(0, 1). Its loss is ``-log p(theta)``
    under the prior (MAP regularisation). :meth:`sample` returns an expanded view
    ``(num_samples, num_params)`` of ``value``.

    Args:
        name: The group's name (non-empty).
        num_params: The number of parameters it covers (>= 1).
        prior: The prior (``None``: i.i.d. standard normal).

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``num_params`` is below 1 or the prior has another size.
    """

    _packed_names = ("value",)

    def __init__(self, name: str, num_params: int, prior: Prior | None = None):
        super().__init__(name, num_params, prior)
        self.value = nn.Parameter(torch.randn(num_params))

    value = property(lambda self: self._tensor("value"))  # type: ignore[assignment]

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        return self.value.expand(num_samples, -1)

    def distribution_loss(self) -> Tensor:
        return -self.prior.log_prob(self.value.unsqueeze(0)).squeeze(0)


class IIDGaussianGroup(_Packable):
    """Mean-field ``q = N(mean, exp(log_std)^2)`` per coordinate.

    ``mean`` ``(num_params,)`` starts from N(0, 1), ``log_std`` ``(num_params,)`` at
    ``init_log_std``. The KL to an i.i.d. Gaussian prior, and to an ARD or horseshoe
    prior at its optimal scales (:class:`~polymix_cli.priors.ScaleMixturePrior`), is
    computed in closed form; other priors use :func:`~polymix_cli.parameter_groups.base.kl_to_prior`.

    Args:
        name: The group's name (non-empty).
        num_params: The number of parameters it covers (>= 1).
        prior: The prior (``None``: i.i.d. standard normal).
        init_log_std: The initial log standard deviation of every coordinate.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``num_params`` is below 1 or the prior has another size.
    """

    _packed_names = ("mean", "log_std")

    def __init__(
        self, name: str, num_params: int, prior: Prior | None = None, init_log_std: float = -0.5
    ):
        super().__init__(name, num_params, prior)
        self.mean = nn.Parameter(torch.randn(num_params))
        self.log_std = nn.Parameter(torch.full((num_params,), float(init_log_std)))
        self._latest_noise: Tensor | None = None

    mean = property(lambda self: self._tensor("mean"))  # type: ignore[assignment]
    log_std = property(lambda self: self._tensor("log_std"))  # type: ignore[assignment]

    def variational(self) -> Independent:
        """The variational distribution ``q``, event shape ``(num_params,)``."""
        return Independent(Normal(self.mean, self.log_std.exp()), 1)

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        noise = self._noise((num_samples, self.num_params()), self.mean, generator)
        self._latest_noise = noise
        return self.mean + self.log_std.exp() * noise

    def distribution_loss(self) -> Tensor:
        if isinstance(self.prior, ScaleMixturePrior):  # ARD, horseshoe: closed form
            return self.prior.kl_from_gaussian(
                self.mean, torch.exp(2 * self.log_std), 2 * self.log_std.sum()
            )
        if isinstance(self.prior, IIDGaussianPrior):
            n = self.num_params()
            p_loc, p_scale = self.prior.loc.expand(n), self.prior.scale.expand(n)
            var_ratio = torch.exp(2 * (self.log_std - p_scale.log()))
            mahalanobis = ((self.mean - p_loc) / p_scale) ** 2
            return (
                0.5 * (var_ratio + mahalanobis - 1.0).sum() - (self.log_std - p_scale.log()).sum()
            )
        q = MultivariateNormal(self.mean, scale_tril=torch.diag(self.log_std.exp()))
        latest = (
            None
            if self._latest_noise is None
            else self.mean + self.log_std.exp() * self._latest_noise
        )
        return kl_to_prior(q, self.prior, self.num_params(), latest)


class GaussianGroup(ParameterGroup):
    """Full-covariance Gaussian ``q = N(mean, L L^T)``.

    ``L`` is lower triangular with a softplus diagonal plus ``jitter`` (its free
    parameter is ``raw_scale_tril`` ``(num_params, num_params)``); it starts as
    ``init_scale * I`` with the mean at zero.

    Args:
        name: The group's name (non-empty).
        num_params: The number of parameters it covers (>= 1).
        prior: The prior (``None``: i.i.d. standard normal).
        init_scale: The initial diagonal of ``L`` (> ``jitter``).
        jitter: Added to the diagonal of ``L`` to keep it positive.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``num_params`` is below 1, the prior has another size, or
            ``init_scale <= jitter``.
    """

    def __init__(
        self,
        name: str,
        num_params: int,
        prior: Prior | None = None,
        init_scale: float = 0.1,
        jitter: float = 1e-6,
    ):
        super().__init__(name, num_params, prior)
        if init_scale <= jitter:
            raise ValueError(f"init_scale must exceed jitter={jitter}, got {init_scale}")
        self.jitter = float(jitter)
        self.mean = nn.Parameter(torch.zeros(num_params))
        raw = torch.zeros(num_params, num_params)
        raw.diagonal().fill_(_inverse_softplus(init_scale - jitter))
        self.raw_scale_tril = nn.Parameter(raw)
        self._latest_noise: Tensor | None = None

    def scale_tril(self) -> Tensor:
        """The Cholesky factor ``L`` of the covariance, shape ``(num_params, num_params)``."""
        raw = self.raw_scale_tril
        diagonal = F.softplus(raw.diagonal()) + self.jitter
        return raw.tril(-1) + torch.diag_embed(diagonal)

    def variational(self) -> MultivariateNormal:
        """The variational distribution ``q``, event shape ``(num_params,)``."""
        return MultivariateNormal(self.mean, scale_tril=self.scale_tril())

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        noise = self._noise((num_samples, self.num_params()), self.mean, generator)
        self._latest_noise = noise
        return self.mean + noise @ self.scale_tril().T

    def distribution_loss(self) -> Tensor:
        if isinstance(self.prior, ScaleMixturePrior):  # ARD, horseshoe: closed form
            tril = self.scale_tril()
            return self.prior.kl_from_gaussian(
                self.mean, tril.square().sum(1), 2 * tril.diagonal().log().sum()
            )
        latest = None
        if self._latest_noise is not None:
            latest = self.mean + self._latest_noise @ self.scale_tril().T
        return kl_to_prior(self.variational(), self.prior, self.num_params(), latest)


class LowRankGaussianGroup(ParameterGroup):
    """Gaussian with covariance ``U U^T + diag(d)``, ``U`` of shape ``(num_params, rank)``.

    Starts with the mean at zero, ``U`` (``cov_factor``) from N(0, 0.01 / rank) and
    ``d = 0.01`` (a marginal standard deviation of about 0.14); ``d`` is a softplus of a
    free parameter (``raw_cov_diag``).

    Args:
        name: The group's name (non-empty).
        num_params: The number of parameters it covers (>= 1).
        rank: The rank of ``U``, an integer in ``[1, num_params]``.
        prior: The prior (``None``: i.i.d. standard normal).

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``num_params`` is below 1, the prior has another size, or
            ``rank`` is out of range.
    """

    def __init__(self, name: str, num_params: int, rank: int = 1, prior: Prior | None = None):
        super().__init__(name, num_params, prior)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= num_params:
            raise ValueError(
                f"rank of group {name!r} must be an integer in [1, {num_params}], got {rank!r}"
            )
        self.rank = rank
        self.mean = nn.Parameter(torch.zeros(num_params))
        self.cov_factor = nn.Parameter(torch.randn(num_params, rank) * (0.1 / math.sqrt(rank)))
        self.raw_cov_diag = nn.Parameter(torch.full((num_params,), _inverse_softplus(0.01)))
        self._latest_noise: tuple[Tensor, Tensor] | None = None

    def cov_diag(self) -> Tensor:
        """The diagonal ``d`` of the covariance, shape ``(num_params,)``."""
        return F.softplus(self.raw_cov_diag)

    def variational(self) -> LowRankMultivariateNormal:
        """The variational distribution ``q``, event shape ``(num_params,)``."""
        return LowRankMultivariateNormal(self.mean, self.cov_factor, self.cov_diag())

    def _draw(self, noise: tuple[Tensor, Tensor]) -> Tensor:
        low, diag = noise
        return self.mean + low @ self.cov_factor.T + self.cov_diag().sqrt() * diag

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        noise = (
            self._noise((num_samples, self.rank), self.mean, generator),
            self._noise((num_samples, self.num_params()), self.mean, generator),
        )
        self._latest_noise = noise
        return self._draw(noise)

    def distribution_loss(self) -> Tensor:
        latest = None if self._latest_noise is None else self._draw(self._latest_noise)
        return kl_to_prior(self.variational(), self.prior, self.num_params(), latest)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}"
