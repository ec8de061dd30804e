"""Orthogonal polynomial bases and multi-index sets for polynomial chaos.

Univariate tables come from three-term recurrences evaluated for every input and
every degree at once (one loop over the degree, vectorised over points and inputs);
multivariate terms are products of table entries selected by multi-index (one loop
over the input dimension, vectorised over points and terms).
"""

from __future__ import annotations

from math import comb

import torch
from torch import Tensor

__all__ = ["BASES", "multi_indices", "multivariate_basis", "univariate_table"]

BASES = ("legendre", "hermite")


def univariate_table(x: Tensor, degree: int, basis: str) -> Tensor:
    """Values of the univariate polynomials of degree ``0..degree``.

    - ``legendre``: ``P_n`` on [-1, 1], ``(n+1) P_{n+1} = (2n+1) x P_n - n P_{n-1}``;
    - ``hermite``: probabilists' ``He_n``, ``He_{n+1} = x He_n - n He_{n-1}``.

    Args:
        x: Points, any shape ``(...)``.
        degree: The largest degree (>= 0).
        basis: ``"legendre"`` or ``"hermite"``.

    Returns:
        The values, shape ``(..., degree + 1)``: entry ``n`` of the last axis is the
        polynomial of degree ``n``.

    Raises:
        ValueError: If ``basis`` is unknown or ``degree`` is negative.
    """
    if basis not in BASES:
        raise ValueError(f"basis must be one of {BASES}, got {basis!r}")
    if degree < 0:
        raise ValueError(f"degree must be >= 0, got {degree}")
    values = [torch.ones_like(x)]
    if degree >= 1:
        values.append(x)
    for n in range(1, degree):
        if basis == "legendre":
            values.append(((2 * n + 1) * x * values[n] - n * values[n - 1]) / (n + 1))
        else:
            values.append(x * values[n] - n * values[n - 1])
    return torch.stack(values, dim=-1)


def prefix_plan(indices: Tensor) -> list[tuple[Tensor, Tensor]]:
    """How to build the terms one input at a time (see :func:`multivariate_basis`).

    Stage ``k`` holds the distinct ``k``-prefixes of the multi-indices (a downward-closed
    set has few: 3003 products in all for d = 8, degree 5, against 8 x 1287 for
    term-by-term products); the last stage is in the order of ``indices``.

    Args:
        indices: Multi-indices, shape ``(num_terms, d)``, long.

    Returns:
        For ``k = 1..d``, a pair ``(parent, degree)`` of long tensors of the stage's number
        of rows: row ``i`` of stage ``k`` is row ``parent[i]`` of stage ``k - 1`` times
        the univariate polynomial of degree ``degree[i]`` in input ``k``.
    """
    indices = indices.to("cpu", torch.long)
    n, d = indices.shape
    plan: list[tuple[Tensor, Tensor]] = []
    previous = torch.zeros(n, dtype=torch.long)  # each row's prefix of length k - 1 (stage k - 1)
    span = int(indices.max()) if indices.numel() else 0
    for k in range(1, d + 1):
        if k == d:  # the last stage: the rows themselves, in their order
            plan.append((previous, indices[:, d - 1].clone()))
            break
        # the distinct prefixes of length k, in lexicographic order, and each row's prefix:
        # a prefix is its parent's rank and its last entry, one integer ordered as the pair
        last = indices[:, k - 1]
        keys, inverse = torch.unique(previous * (span + 1) + last, return_inverse=True)
        parent = torch.empty(keys.shape[0], dtype=torch.long)
        parent[inverse] = previous
        plan.append((parent, keys % (span + 1)))
        previous = inverse
    return plan


def multivariate_basis(
    x: Tensor,
    indices: Tensor,
    basis: str,
    plan: list[tuple[Tensor, Tensor]] | None = None,
    degree: int | None = None,
) -> Tensor:
    """Evaluate every multivariate basis term at every point.

    A term is the product over inputs of the univariate polynomials of the degrees in
    its multi-index.

    Args:
        x: Points, shape ``(batch, d)``.
        indices: Multi-indices of the terms, shape ``(num_terms, d)``, long.
        basis: ``"legendre"`` or ``"hermite"``.
        plan: :func:`prefix_plan` of ``indices`` (computed if not given).
        degree: The largest entry of ``indices`` (computed if not given).

    Returns:
        The basis matrix, shape ``(batch, num_terms)``: the transpose of a contiguous
        ``(num_terms, batch)`` tensor (whole rows are gathered and multiplied).

    Raises:
        ValueError: If ``basis`` is unknown.
    """
    if degree is None:
        degree = int(indices.max()) if indices.numel() else 0
    table = (
        univariate_table(x.T, degree, basis).permute(0, 2, 1).contiguous()
    )  # (d, degree + 1, batch)
    plan = prefix_plan(indices) if plan is None else plan
    phi = None
    for k, (parent, deg) in enumerate(plan):
        factor = table[k].index_select(0, deg.to(x.device))
        if phi is None:
            phi = factor
        elif factor.requires_grad:
            phi = phi.index_select(0, parent.to(x.device)) * factor
        else:
            phi = phi.index_select(0, parent.to(x.device)).mul_(factor)  # no extra buffer
    return phi.T


def multi_indices(num_inputs: int, degree: int, q_norm: float = 1.0) -> Tensor:
    """Multi-indices ``alpha`` with ``(sum_i alpha_i^q)^(1/q) <= degree``.

    ``q_norm = 1`` is the total-order set, of size ``C(d + p, p)``; ``q_norm < 1`` the
    hyperbolic set. Ordered by total degree (the constant first), then reverse
    lexicographically (``(1, 0)`` before ``(0, 1)``).

    Args:
        num_inputs: The input dimension ``d``.
        degree: The largest total degree ``p``.
        q_norm: The truncation ``q`` in (0, 1].

    Returns:
        The multi-indices, shape ``(num_terms, d)``, long.

    Example:
        ```python
        multi_indices(2, 2).tolist()
        # [[0, 0], [1, 0], [0, 1], [2, 0], [1, 1], [0, 2]]
        ```
    """
    rows: list[tuple[int, ...]] = []

    def extend(prefix: tuple[int, ...], remaining: int) -> None:
        if len(prefix) == num_inputs - 1:
            rows.append(prefix + (remaining,))
            return
        for a in range(remaining, -1, -1):
            extend(prefix + (a,), remaining - a)

    for total in range(degree + 1):
        extend((), total)
    if q_norm < 1.0:
        tol = 1e-9
        rows = [r for r in rows if sum(a**q_norm for a in r) ** (1.0 / q_norm) <= degree + tol]
    else:
        assert len(rows) == comb(num_inputs + degree, degree)
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), num_inputs)
