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

__all__ = [
    "ARDPrior",
    "GaussianPrior",
    "HorseshoePrior",
    "IIDGaussianPrior",
    "LaplacePrior",
    "Prior",
    "ScaleMixturePrior",
]


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


class ScaleMixturePrior(Prior):
    """A hierarchical Gaussian scale mixture: ``theta_t ~ N(0, v_t)`` with a learned
    variance ``v_t`` per coordinate and a hyperprior ``p(v_t)``.

    The variances are not sampled: they are set to the value that minimises, for a
    Gaussian variational ``q = N(m, Sigma)`` of the coordinates,

        KL(q || N(0, diag v)) - log p(v)

    (type-II maximum likelihood, or maximum a posteriori with a hyperprior), which is
    closed form per coordinate in ``E_t = m_t^2 + Sigma_tt``. :meth:`kl_from_gaussian`
    returns the objective at that optimum, and stores the optimum in the buffer ``scale``
    (``sqrt(v)``, shape ``(size,)``), so that :meth:`log_prob`, the prior draws and a
    checkpoint see the fitted scales. A coordinate whose variance goes to zero is pruned:
    the data decide which terms of an expansion are active.

    Args:
        size: The number of coordinates (>= 1).
        init_std: The initial prior standard deviation of every coordinate (> 0).
        penalty: For the closed-form fit of a linear model
            (:class:`~polymix_cli.sparsity.FastSparseBayes`): the log prior odds
            against including a term, in nats per active term; ``None``: ``0.5 log N``
            (the BIC's), with ``N`` the number of data points.

    Raises:
        ValueError: If ``size`` is not a positive integer or ``init_std`` is not positive.
    """

    def __init__(self, size: int, init_std: float = 1.0, penalty: float | None = None):
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive integer, got {size!r}")
        if not init_std > 0:
            raise ValueError(f"init_std must be positive, got {init_std}")
        if penalty is not None and not penalty >= 0:
            raise ValueError(f"penalty must be >= 0 or None, got {penalty}")
        self.size = size
        self.penalty = None if penalty is None else float(penalty)
        self.register_buffer("scale", torch.full((size,), float(init_std)))

    def distribution(self, size: int) -> Distribution:
        self.check_size(size)
        # a pruned coordinate (scale 0) is a point mass: a tiny floor keeps Normal valid
        return Independent(Normal(torch.zeros_like(self.scale), self.scale.clamp_min(1e-30)), 1)

    def optimal_variance(self, second_moment: Tensor) -> Tensor:
        """The variance ``v_t`` at the optimum, given ``E_t = m_t^2 + Sigma_tt``.

        Args:
            second_moment: ``E``, shape ``(size,)``.

        Returns:
            ``v``, shape ``(size,)``.
        """
        raise NotImplementedError

    def neg_log_hyperprior(self, variance: Tensor) -> Tensor:
        """``-log p(v)`` summed over coordinates (constants included), a scalar."""
        raise NotImplementedError

    def kl_from_gaussian(self, mean: Tensor, variance: Tensor, logdet: Tensor) -> Tensor:
        """``min_v KL(N(mean, Sigma) || N(0, diag v)) - log p(v)``, in closed form.

        Only the diagonal of ``Sigma`` and its log determinant enter. Stores the optimal
        scales in ``scale``.

        Args:
            mean: The variational mean, shape ``(size,)``.
            variance: The diagonal of the variational covariance, shape ``(size,)``.
            logdet: ``log det Sigma``, a scalar.

        Returns:
            The divergence plus the hyperprior term, a scalar (0-dim tensor),
            differentiable in the three arguments.
        """
        self.check_size(mean.shape[-1])
        second = mean * mean + variance
        v = self.optimal_variance(second)
        with torch.no_grad():
            self.scale.copy_(v.detach().sqrt())
        kl = 0.5 * ((v.log() + second / v).sum() - logdet - mean.shape[-1])
        return kl + self.neg_log_hyperprior(v)


class ARDPrior(ScaleMixturePrior):
    """Automatic relevance determination: ``theta_t ~ N(0, v_t)``, one variance per
    coordinate, fitted by type-II maximum likelihood (a flat hyperprior on ``log v``).

    For a Gaussian ``q`` the optimum is ``v_t = m_t^2 + Sigma_tt`` and the objective
    ``0.5 * (sum_t log(m_t^2 + Sigma_tt) - log det Sigma)``: what a stochastic-VI group
    with this prior minimises. For a polynomial chaos expansion with a Gaussian likelihood
    the whole posterior is closed form instead (see :mod:`polymix_cli.sparsity`).

    Args:
        size: The number of coordinates (>= 1).
        init_std: The initial prior standard deviation (> 0).
        penalty: Nats per active term for the closed-form fit (``None``: ``0.5 log N``).

    Example:
        ```python
        import torch
        from polymix_cli.priors import ARDPrior

        prior = ARDPrior(3)
        kl = prior.kl_from_gaussian(torch.tensor([1.0, 0.0, 2.0]), torch.full((3,), 0.01),
                                    torch.log(torch.tensor(0.01)) * 3)
        prior.scale  # sqrt(m^2 + s^2): about (1.005, 0.1, 2.0025)
        ```
    """

    def optimal_variance(self, second_moment: Tensor) -> Tensor:
        return second_moment

    def neg_log_hyperprior(self, variance: Tensor) -> Tensor:
        return variance.new_zeros(())


class HorseshoePrior(ScaleMixturePrior):
    """The regularised horseshoe (Piironen and Vehtari, 2017), with the local scales at
    their maximum a posteriori.

    ``theta_t ~ N(0, tau^2 lambda~_t^2)``, ``lambda_t ~ C+(0, 1)``, with the slab
    ``lambda~_t^2 = c^2 lambda_t^2 / (c^2 + tau^2 lambda_t^2)``; the global scale ``tau``
    and the slab scale ``c`` are fixed. With ``u = tau^2 lambda^2`` and
    ``E_t = m_t^2 + Sigma_tt``, the local optimum of ``KL - log p(lambda)`` (before the
    slab) solves ``3 u^2 - (E - tau^2) u - E tau^2 = 0``; the slab then caps the variance
    at ``c^2``: ``v = c^2 u / (c^2 + u)``. Small coefficients are shrunk harder than by
    ARD (``u -> 0`` as ``E -> 0``), large ones are left alone up to the slab.

    :meth:`log_prob` is the marginal density of ``theta`` (``lambda`` integrated out, by
    Gauss-Legendre quadrature in ``log lambda``), at the fixed ``tau`` and ``c``.

    Args:
        size: The number of coordinates (>= 1).
        global_scale: ``tau`` (> 0).
        slab_scale: ``c`` (> 0).

    Raises:
        ValueError: If ``size`` is not a positive integer or a scale is not positive.
    """

    def __init__(self, size: int, global_scale: float = 0.1, slab_scale: float = 5.0):
        if not global_scale > 0 or not slab_scale > 0:
            raise ValueError(
                f"global_scale and slab_scale must be positive, got {global_scale}, {slab_scale}"
            )
        super().__init__(size, init_std=float(global_scale))
        self.global_scale, self.slab_scale = float(global_scale), float(slab_scale)

    def optimal_variance(self, second_moment: Tensor) -> Tensor:
        tau2, c2 = self.global_scale**2, self.slab_scale**2
        b = second_moment - tau2
        u = (b + torch.sqrt(b * b + 12.0 * second_moment * tau2)) / 6.0
        u = u.clamp_min(torch.finfo(u.dtype).tiny)
        return c2 * u / (c2 + u)

    def neg_log_hyperprior(self, variance: Tensor) -> Tensor:
        # back from the slab: u = c^2 v / (c^2 - v); lambda^2 = u / tau^2; -log C+(lambda; 0, 1)
        c2, tau2 = self.slab_scale**2, self.global_scale**2
        u = c2 * variance / (c2 - variance).clamp_min(torch.finfo(variance.dtype).tiny)
        return (torch.log1p(u / tau2) + math.log(math.pi / 2)).sum()

    def log_prob(self, theta: Tensor) -> Tensor:
        self.check_size(theta.shape[-1])
        # integrate N(theta; 0, v(lambda)) C+(lambda) over lambda; lambda = exp(w), w in [-20, 20]
        nodes, weights = _gauss_legendre(theta.dtype, theta.device)
        w = 20.0 * nodes  # (K,)
        lam2 = torch.exp(2 * w)
        u = self.global_scale**2 * lam2
        v = self.slab_scale**2 * u / (self.slab_scale**2 + u)  # (K,)
        # log C+(lambda) + log |d lambda / dw| = log(2 / pi) - log(1 + lambda^2) + w
        log_mix = math.log(2 / math.pi) - torch.log1p(lam2) + w + torch.log(20.0 * weights)
        z2 = theta.unsqueeze(-1) ** 2 / v  # (S, size, K)
        log_normal = -0.5 * (z2 + v.log() + math.log(2 * math.pi))
        return torch.logsumexp(log_normal + log_mix, dim=-1).sum(-1)

    def distribution(self, size: int) -> Distribution:
        raise NotImplementedError(
            "the horseshoe has no closed-form distribution; use log_prob (its marginal density)"
        )


_GL_CACHE: dict = {}


def _gauss_legendre(dtype: torch.dtype, device: torch.device, order: int = 200) -> tuple:
    """Gauss-Legendre nodes and weights on [-1, 1] (Golub-Welsch), cached."""
    key = (dtype, device, order)
    if key not in _GL_CACHE:
        k = torch.arange(1, order, dtype=torch.float64)
        off = k / torch.sqrt(4 * k * k - 1)
        jacobi = torch.diag(off, 1) + torch.diag(off, -1)
        nodes, vectors = torch.linalg.eigh(jacobi)
        weights = 2 * vectors[0] ** 2
        _GL_CACHE[key] = (
            nodes.to(dtype=dtype, device=device),
            weights.to(dtype=dtype, device=device),
        )
    return _GL_CACHE[key]
