"""Polynomial chaos expansion: ``f(x) = sum_t c_t Phi_t(x)`` with random coefficients."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import NO_SHARED, Shared, SurrogateModel, check_positive_int
from .basis import BASES, basis_plan, multi_indices, multivariate_basis

__all__ = ["PolynomialChaosExpansion", "expand_in_basis"]

_is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)


def expand_in_basis(phi: Tensor, params: Tensor, groups: int, terms: int, outputs: int) -> Tensor:
    """Evaluate ``groups`` expansions for every draw in one matrix product.

    The draws are folded into the rows of a single GEMM
    ``(S * groups * outputs, terms) @ (terms, B)``, so the basis matrix is read once, no
    ``(S, B, terms)`` tensor is formed, and the result is laid out draw-major as the loss
    and the gate expect (with one output, a view of it is a contiguous ``(S, B, 1)``).

    Args:
        phi: The basis matrix, shape ``(B, terms)``.
        params: Coefficient draws, shape ``(S, groups * terms * outputs)``, each group's
            ``(terms, outputs)`` coefficients row-major.
        groups: The number of expansions (e.g. experts).
        terms: The number of basis terms.
        outputs: The number of outputs.

    Returns:
        The expansions' values, shape ``(S, groups, outputs, B)``, contiguous.
    """
    num_samples = params.shape[0]
    coeffs = params.reshape(num_samples, groups, terms, outputs).transpose(2, 3)
    out = torch.mm(coeffs.reshape(num_samples * groups * outputs, terms), phi.T)
    return out.view(num_samples, groups, outputs, phi.shape[0])


class PolynomialChaosExpansion(SurrogateModel):
    """Polynomial chaos expansion ``f(x) = sum_t c_t Phi_t(x)`` with ``num_terms`` terms.

    Parameter vector: one block ``coeffs`` of shape ``(num_terms, num_outputs)``,
    row-major. Terms are ordered by total degree (see
    :func:`~polymix_cli.surrogate_models.basis.multi_indices`); the bases are not
    normalised.

    Args:
        num_inputs: The input dimension ``d`` (>= 1).
        num_outputs: The output dimension (>= 1).
        degree: The maximal total degree (>= 0).
        basis: ``"legendre"`` (inputs on [-1, 1], plain ``P_n``) or ``"hermite"``
            (probabilists' ``He_n``, standard-normal inputs).
        q_norm: The truncation: 1 is total order, a value in (0, 1) the hyperbolic set.

    Raises:
        TypeError: If ``num_inputs``, ``num_outputs`` or ``degree`` is not an integer.
        ValueError: If one of them is out of range, ``basis`` is unknown, or ``q_norm``
            is not in (0, 1].

    Example:
        ```python
        import torch
        from polymix_cli.surrogate_models import PolynomialChaosExpansion

        pce = PolynomialChaosExpansion(num_inputs=2, num_outputs=1, degree=3)
        pce.num_terms, pce.num_params()  # (10, 10)
        y = pce(torch.rand(5, 2) * 2 - 1, torch.randn(8, 10))  # (8, 5, 1)
        ```
    """

    def __init__(
        self,
        num_inputs: int,
        num_outputs: int,
        degree: int,
        basis: str = "legendre",
        q_norm: float = 1.0,
    ):
        super().__init__()
        self.num_inputs = check_positive_int(num_inputs, "num_inputs")
        self.num_outputs = check_positive_int(num_outputs, "num_outputs")
        self.degree = check_positive_int(degree, "degree", minimum=0)
        if basis not in BASES:
            raise ValueError(f"basis must be one of {BASES}, got {basis!r}")
        if not isinstance(q_norm, (int, float)) or not 0.0 < q_norm <= 1.0:
            raise ValueError(f"q_norm must lie in (0, 1], got {q_norm!r}")
        self.basis = basis
        self.q_norm = float(q_norm)
        self.register_buffer(
            "multi_indices", multi_indices(num_inputs, degree, self.q_norm), persistent=False
        )
        self._plan = basis_plan(self.multi_indices)
        self._cache: tuple[Tensor, int, Tensor] | None = None

    @property
    def num_terms(self) -> int:
        """The number of basis terms (rows of the buffer ``multi_indices``)."""
        return self.multi_indices.shape[0]

    def param_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        return [("coeffs", (self.num_terms, self.num_outputs))]

    def shared_width(self) -> int:
        return self.num_terms  # a row of the basis matrix

    def basis_matrix(self, x: Tensor) -> Tensor:
        """The basis terms evaluated at the inputs.

        The result for the most recent ``x`` is cached: calling again with the same,
        unmodified tensor (the training inputs at every step) reuses it.

        Args:
            x: Inputs, shape ``(batch, num_inputs)``.

        Returns:
            The basis matrix, shape ``(batch, num_terms)``.
        """
        cache = self._cache
        if _is_compiling():  # traced by torch.compile: identity only (versions are not traceable)
            if cache is not None and cache[0] is x:
                return cache[2]
            return multivariate_basis(x, self.multi_indices, self.basis, self._plan, self.degree)
        if x.requires_grad and torch.is_grad_enabled():
            return multivariate_basis(x, self.multi_indices, self.basis, self._plan, self.degree)
        version = x._version  # noqa: SLF001 - torch's counter of in-place writes
        if cache is not None and cache[0] is x and cache[1] == version:
            return cache[2]
        phi = multivariate_basis(x, self.multi_indices, self.basis, self._plan, self.degree)
        self._cache = (x, version, phi)
        return phi

    def evaluate(self, x: Tensor, params: Tensor, shared: Shared = NO_SHARED) -> Tensor:
        out = expand_in_basis(self.basis_matrix(x), params, 1, self.num_terms, self.num_outputs)
        return out[:, 0].transpose(1, 2)

    def same_basis(self, other: object) -> bool:
        """Whether ``other`` is a PCE with the same basis terms (they can share one matrix).

        Args:
            other: Any object.

        Returns:
            ``True`` if ``other`` is a :class:`PolynomialChaosExpansion` with the same
            basis, inputs, outputs and multi-indices.
        """
        return (
            isinstance(other, PolynomialChaosExpansion)
            and other.basis == self.basis
            and other.num_inputs == self.num_inputs
            and other.num_outputs == self.num_outputs
            and torch.equal(other.multi_indices, self.multi_indices)
        )

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, degree={self.degree}, basis={self.basis!r}, "
            f"q_norm={self.q_norm}, num_terms={self.num_terms}"
        )
