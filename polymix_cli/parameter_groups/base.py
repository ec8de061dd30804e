"""The parameter-group interface: a variational distribution over one contiguous part of
a surrogate's parameter vector, with a prior."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, MultivariateNormal, kl_divergence

from ..priors import GaussianPrior, IIDGaussianPrior, Prior

__all__ = ["ParameterGroup"]


class ParameterGroup(nn.Module):
    """Base class: a distribution over a named block of ``num_params`` parameters.

    Subclasses implement :meth:`sample`, returning ``(num_samples, num_params)``, and
    :meth:`distribution_loss`, returning a scalar (a KL divergence to the prior, or a
    negative log prior density for point estimates). The default prior is i.i.d.
    standard normal.

    Args:
        name: The group's name (non-empty).
        num_params: The number of parameters it covers (>= 1).
        prior: The prior over them (``None``: i.i.d. standard normal), of size
            ``num_params`` or broadcasting to any size.

    Raises:
        TypeError: If ``name`` is not a non-empty string, ``num_params`` not an integer,
            or ``prior`` not a :class:`~polymix_cli.priors.Prior`.
        ValueError: If ``num_params`` is below 1 or the prior has another size.
    """

    def __init__(self, name: str, num_params: int, prior: Prior | None = None):
        super().__init__()
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty string, got {name!r}")
        if isinstance(num_params, bool) or not isinstance(num_params, int):
            raise TypeError(f"num_params of group {name!r} must be an integer, got {num_params!r}")
        if num_params < 1:
            raise ValueError(f"num_params of group {name!r} must be >= 1, got {num_params}")
        prior = IIDGaussianPrior() if prior is None else prior
        if not isinstance(prior, Prior):
            raise TypeError(f"prior of group {name!r} must be a Prior, got {type(prior).__name__}")
        prior.check_size(num_params, owner=f"group {name!r}")
        self.name = name
        self._num_params = num_params
        self.prior = prior

    def num_params(self) -> int:
        """The number of parameters the group covers."""
        return self._num_params

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw parameter vectors (reparameterised: differentiable in the group's tensors).

        Args:
            num_samples: The number of draws ``S``.
            generator: The random generator of the draws (``None``: torch's global one).

        Returns:
            The draws, shape ``(S, num_params)``.
        """
        raise NotImplementedError

    def distribution_loss(self) -> Tensor:
        """The group's regulariser: KL(q || prior), or ``-log prior`` of a point estimate.

        Returns:
            A scalar (0-dim tensor), differentiable in the group's tensors.
        """
        raise NotImplementedError

    def _noise(
        self, shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        return torch.randn(shape, dtype=like.dtype, device=like.device, generator=generator)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_params={self._num_params}"


def prior_as_gaussian(prior: Prior, size: int) -> MultivariateNormal | None:
    """The prior as a ``MultivariateNormal`` if it is Gaussian.

    Args:
        prior: A prior.
        size: The number of parameters it describes.

    Returns:
        A ``MultivariateNormal`` with event shape ``(size,)`` for a
        :class:`~polymix_cli.priors.GaussianPrior` or
        :class:`~polymix_cli.priors.IIDGaussianPrior`, else ``None``.
    """
    if isinstance(prior, GaussianPrior):
        return prior.distribution(size)  # type: ignore[return-value]
    if isinstance(prior, IIDGaussianPrior):
        loc, scale = prior.loc.expand(size), prior.scale.expand(size)
        return MultivariateNormal(loc, scale_tril=torch.diag(scale))
    return None


def kl_to_prior(q: Distribution, prior: Prior, size: int, latest: Tensor | None) -> Tensor:
    """KL(q || prior): analytic for Gaussian priors, else a Monte Carlo estimate.

    Args:
        q: The variational distribution, event shape ``(size,)``.
        prior: The prior.
        size: The number of parameters.
        latest: The latest draws of ``q``, shape ``(num_samples, size)``, for the Monte
            Carlo estimate (``None``: 64 fresh reparameterised draws).

    Returns:
        The divergence, a scalar (0-dim tensor).
    """
    gaussian = prior_as_gaussian(prior, size)
    if gaussian is not None:
        try:
            return kl_divergence(q, gaussian)
        except NotImplementedError:
            pass
    theta = latest if latest is not None else q.rsample((64,))
    return (q.log_prob(theta) - prior.log_prob(theta)).mean()
