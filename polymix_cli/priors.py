"""Priors over a parameter group's vector.

A prior is an ``nn.Module`` whose parameters are buffers, so ``.to(device)`` and
``.double()`` move it with the model. ``log_prob(theta)`` takes ``theta`` of shape
``(num_samples, size)`` and returns ``(num_samples,)``. ``size`` is ``None`` for a
prior that broadcasts to any group size (scalar mean and std).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Laplace, MultivariateNormal, Normal

__all__ = ["GaussianPrior", "IIDGaussianPrior", "LaplacePrior", "Prior"]


def _as_vector(value: float | Tensor, name: str) -> Tensor:
    tensor = torch.as_tensor(value, dtype=torch.get_default_dtype())
    if tensor.dim() > 1:
        raise ValueError(f"{name} must be a scalar or a vector, got shape {tuple(tensor.shape)}")
    return tensor.clone()


class Prior(nn.Module):
    """Base class: a distribution over a vector of ``size`` parameters.

    ``size`` is ``None`` for a prior that broadcasts to any group size. Subclasses
    implement :meth:`distribution`.
    """

    size: int | None = None

    def distribution(self, size: int) -> Distribution:
        """The prior as a ``torch.distributions`` object.

        Args:
            size: The number of parameters it describes.

        Returns:
            A distribution with event shape ``(size,)``.

        Raises:
            ValueError: If the prior has a fixed size other than ``size``.
        """
        raise NotImplementedError

    def log_prob(self, theta: Tensor) -> Tensor:
        """The log density of parameter vectors.

        Args:
            theta: Parameter vectors, shape ``(num_samples, size)``.

        Returns:
            The log densities, shape ``(num_samples,)``.

        Raises:
            ValueError: If the prior has a fixed size other than ``size``.
        """
        return self.distribution(theta.shape[-1]).log_prob(theta)

    def check_size(self, size: int, owner: str = "group") -> None:
        """Check that this prior can describe ``size`` parameters.

        Args:
            size: The number of parameters.
            owner: What has them, for the message (e.g. ``"group 'coeffs'"``).

        Raises:
            ValueError: If the prior has a fixed size other than ``size``.
        """
        if self.size is not None and self.size != size:
            raise ValueError(
                f"{type(self).__name__} has size {self.size} but {owner} has {size} parameters"
            )


class _LocScalePrior(Prior):
    """Shared machinery of the factorised priors (one location and scale per coordinate)."""

    def __init__(self, loc: float | Tensor, scale: float | Tensor, loc_name: str, scale_name: str):
        super().__init__()
        loc_t, scale_t = _as_vector(loc, loc_name), _as_vector(scale, scale_name)
        if (scale_t <= 0).any():
            raise ValueError(f"{scale_name} must be positive, got {scale}")
        sizes = {t.numel() for t in (loc_t, scale_t) if t.dim() == 1}
        if len(sizes) > 1:
            raise ValueError(
                f"{loc_name} and {scale_name} have mismatched sizes "
                f"{loc_t.numel()} and {scale_t.numel()}"
            )
        self.size = sizes.pop() if sizes else None
        self.register_buffer("loc", loc_t)
        self.register_buffer("scale", scale_t)

    def _expanded(self, size: int) -> tuple[Tensor, Tensor]:
        self.check_size(size)
        return self.loc.expand(size), self.scale.expand(size)


class IIDGaussianPrior(_LocScalePrior):
    """Independent ``N(mean, std^2)`` per coordinate.

    Scalars broadcast to any size; vectors fix the size. :meth:`log_prob` is computed in
    closed form.

    Args:
        mean: The mean, a scalar or a vector of shape ``(size,)``.
        std: The standard deviation (> 0), a scalar or a vector of shape ``(size,)``.

    Raises:
        ValueError: If ``std`` is not positive, an argument has more than one dimension,
            or the two vectors differ in size.
    """

    def __init__(self, mean: float | Tensor = 0.0, std: float | Tensor = 1.0):
        super().__init__(mean, std, "mean", "std")

    @property
    def mean(self) -> Tensor:
        """The mean, shape ``()`` or ``(size,)`` (the buffer ``loc``)."""
        return self.loc

    @property
    def std(self) -> Tensor:
        """The standard deviation, shape ``()`` or ``(size,)`` (the buffer ``scale``)."""
        return self.scale

    def distribution(self, size: int) -> Distribution:
        return Independent(Normal(*self._expanded(size)), 1)

    def log_prob(self, theta: Tensor) -> Tensor:
        # Closed form, cheaper than building a distribution object every step.
        loc, scale = self._expanded(theta.shape[-1])
        z = (theta - loc) / scale
        const = theta.shape[-1] * 0.5 * math.log(2 * math.pi)
        return -0.5 * (z * z).sum(-1) - scale.log().sum() - const


class LaplacePrior(_LocScalePrior):
    """Independent ``Laplace(loc, scale)`` per coordinate (a sparsity-promoting prior).

    Args:
        loc: The location, a scalar or a vector of shape ``(size,)``.
        scale: The scale (> 0), a scalar or a vector of shape ``(size,)``.

    Raises:
        ValueError: If ``scale`` is not positive, an argument has more than one dimension,
            or the two vectors differ in size.
    """

    def __init__(self, loc: float | Tensor = 0.0, scale: float | Tensor = 1.0):
        super().__init__(loc, scale, "loc", "scale")

    def distribution(self, size: int) -> Distribution:
        return Independent(Laplace(*self._expanded(size)), 1)


class GaussianPrior(Prior):
    """A multivariate normal with a full covariance.

    The covariance is given by exactly one of ``covariance_matrix`` or its Cholesky factor
    ``scale_tril``; the prior's size is fixed by ``mean``.

    Args:
        mean: The mean, shape ``(size,)``.
        covariance_matrix: The covariance, shape ``(size, size)``, positive definite.
        scale_tril: The lower-triangular Cholesky factor of the covariance, shape
            ``(size, size)`` (only its lower triangle is used).

    Raises:
        ValueError: If both or neither of ``covariance_matrix`` and ``scale_tril`` are
            given, the matrix is not ``(size, size)``, or the covariance is not positive
            definite.
    """

    def __init__(
        self,
        mean: Tensor,
        covariance_matrix: Tensor | None = None,
        scale_tril: Tensor | None = None,
    ):
        super().__init__()
        if (covariance_matrix is None) == (scale_tril is None):
            raise ValueError("GaussianPrior needs exactly one of covariance_matrix or scale_tril")
        mean_t = _as_vector(mean, "mean").reshape(-1)
        matrix = covariance_matrix if covariance_matrix is not None else scale_tril
        name = "covariance_matrix" if covariance_matrix is not None else "scale_tril"
        matrix = torch.as_tensor(matrix, dtype=mean_t.dtype)
        n = mean_t.numel()
        if matrix.shape != (n, n):
            raise ValueError(
                f"GaussianPrior: {name} has shape {tuple(matrix.shape)}, expected ({n}, {n}) "
                f"to match mean of size {n}"
            )
        if covariance_matrix is not None:
            try:
                matrix = torch.linalg.cholesky(matrix)
            except RuntimeError as err:
                raise ValueError(
                    "GaussianPrior: covariance_matrix is not positive definite"
                ) from err
        self.size = n
        self.register_buffer("loc", mean_t)
        self.register_buffer("scale_tril", matrix.tril())

    @property
    def mean(self) -> Tensor:
        """The mean, shape ``(size,)`` (the buffer ``loc``)."""
        return self.loc

    def distribution(self, size: int) -> Distribution:
        self.check_size(size)
        return MultivariateNormal(self.loc, scale_tril=self.scale_tril)
