"""Polynomial chaos expansion: ``f(x) = sum_t c_t Phi_t(x)`` with random coefficients."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import NO_SHARED, Shared, SurrogateModel, check_positive_int
from .basis import BASES, multi_indices, multivariate_basis, prefix_plan

__all__ = ["PolynomialChaosExpansion", "expand_in_basis"]

_is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)


def expand_in_basis(phi: Tensor, params: Tensor, groups: int, terms: int, outputs: int) -> Tensor:
    """Evaluate ``groups`` expansions for every draw in one matrix product.

    phi: ``(B, terms)``; params: ``(S, groups * terms * outputs)``, each group's
    ``(terms, outputs)`` coefficients row-major. Returns ``(S, groups, outputs, B)``,
    contiguous: the draws are folded into the rows of a single GEMM
    ``(S * groups * outputs, terms) @ (terms, B)``, so the basis matrix is read once, no
    ``(S, B, terms)`` tensor is formed, and the result is laid out draw-major as the
    loss and the gate expect (with one output, a view of it is a contiguous ``(S, B, 1)``).
    """
    num_samples = params.shape[0]
    coeffs = params.reshape(num_samples, groups, terms, outputs).transpose(2, 3)
    out = torch.mm(coeffs.reshape(num_samples * groups * outputs, terms), phi.T)
    return out.view(num_samples, groups, outputs, phi.shape[0])


class PolynomialChaosExpansion(SurrogateModel):
    """Polynomial chaos expansion with ``num_terms`` basis terms per output.

    Parameter vector: one block ``coeffs`` of shape ``(num_terms, num_outputs)``, row-major.
    Terms are ordered by total degree (see :func:`~polymix_cli.surrogate_models.basis.multi_indices`).

    Args:
        num_inputs: input dimension (>= 1).
        num_outputs: output dimension (>= 1).
        degree: maximal total degree (>= 0).
        basis: ``"legendre"`` (inputs on [-1, 1], plain ``P_n``) or ``"hermite"``
            (probabilists' ``He_n``, standard-normal inputs).
        q_norm: truncation; 1 is total order, a value in (0, 1) the hyperbolic set.
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
        self._plan = prefix_plan(self.multi_indices)
        self._cache: tuple[Tensor, int, Tensor] | None = None

    @property
    def num_terms(self) -> int:
        return self.multi_indices.shape[0]

    def param_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        return [("coeffs", (self.num_terms, self.num_outputs))]

    def basis_matrix(self, x: Tensor) -> Tensor:
        """Basis terms at ``x`` ``(batch, num_inputs)`` -> ``(batch, num_terms)``.

        The result for the most recent ``x`` is cached: calling again with the same,
        unmodified tensor (the training inputs at every step) reuses it.
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
        """Whether ``other`` is a PCE with the same basis terms (they can share one matrix)."""
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
