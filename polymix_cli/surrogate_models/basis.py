"""Orthogonal polynomial bases and multi-index sets for polynomial chaos.

Univariate tables come from three-term recurrences evaluated for every input and
every degree at once (one loop over the degree, vectorised over points and inputs);
multivariate terms are products of table entries selected by multi-index, vectorised
over points and terms: one loop over the input dimension (shared prefixes, few inputs) or
over the nonzero entries of a multi-index (many inputs, where a term of degree ``p``
involves at most ``p`` of them), whichever multiplies fewer rows.
"""

from __future__ import annotations

from collections import Counter
from math import comb, factorial

import torch
from torch import Tensor

__all__ = [
    "BASES",
    "basis_plan",
    "multi_indices",
    "multivariate_basis",
    "num_terms",
    "univariate_table",
]

_Q_TOL = 1e-9  # a multi-index on the hyperbolic boundary is kept despite rounding

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


def prefix_plan(indices: Tensor, budget: int | None = None) -> list[tuple[Tensor, Tensor]] | None:
    """How to build the terms one input at a time (see :func:`multivariate_basis`).

    Stage ``k`` holds the distinct ``k``-prefixes of the multi-indices (a downward-closed
    set has few: 3003 products in all for d = 8, degree 5, against 8 x 1287 for
    term-by-term products); the last stage is in the order of ``indices``.

    Args:
        indices: Multi-indices, shape ``(num_terms, d)``, long.
        budget: Give up (return ``None``) once the stages hold more rows than this.

    Returns:
        For ``k = 1..d``, a pair ``(parent, degree)`` of long tensors of the stage's number
        of rows: row ``i`` of stage ``k`` is row ``parent[i]`` of stage ``k - 1`` times
        the univariate polynomial of degree ``degree[i]`` in input ``k``; ``None`` past
        ``budget``.
    """
    indices = indices.to("cpu", torch.long)
    n, d = indices.shape
    plan: list[tuple[Tensor, Tensor]] = []
    previous = torch.zeros(n, dtype=torch.long)  # each row's prefix of length k - 1 (stage k - 1)
    span = int(indices.max()) if indices.numel() else 0
    rows = n
    for k in range(1, d + 1):
        if k == d:  # the last stage: the rows themselves, in their order
            plan.append((previous, indices[:, d - 1].clone()))
            break
        # the distinct prefixes of length k, in lexicographic order, and each row's prefix:
        # a prefix is its parent's rank and its last entry, one integer ordered as the pair
        last = indices[:, k - 1]
        keys, inverse = torch.unique(previous * (span + 1) + last, return_inverse=True)
        rows += keys.shape[0]
        if budget is not None and rows > budget:
            return None
        parent = torch.empty(keys.shape[0], dtype=torch.long)
        parent[inverse] = previous
        plan.append((parent, keys % (span + 1)))
        previous = inverse
    return plan


def sparse_plan(indices: Tensor) -> Tensor:
    """How to build the terms from their nonzero entries (see :func:`multivariate_basis`).

    A term of total degree ``p`` has at most ``p`` nonzero entries, so with many inputs a
    product over them is far shorter than one over every input.

    Args:
        indices: Multi-indices, shape ``(num_terms, d)``, long.

    Returns:
        Shape ``(r, num_terms)``, long, ``r`` the most nonzero entries of a term (at least
        1): row ``j`` holds, per term, ``input * (degree + 1) + entry`` of its ``j``-th
        nonzero entry in input order (into the table of :func:`univariate_table` flattened
        to ``(d * (degree + 1), batch)``), or of an entry 0 (a row of ones) past its last.
    """
    indices = indices.to("cpu", torch.long)
    n, d = indices.shape
    span = int(indices.max()) if indices.numel() else 0
    nonzero = indices != 0
    r = max(int(nonzero.sum(1).max()) if n else 0, 1)
    # per term, its nonzero inputs in ascending order first, then the others
    key = (~nonzero).long() * d + torch.arange(d)
    inputs = key.sort(dim=1).indices[:, :r]  # (n, r)
    entries = indices.gather(1, inputs)
    return (inputs * (span + 1) + entries).T.contiguous()


def basis_plan(indices: Tensor) -> list[tuple[Tensor, Tensor]] | Tensor:
    """The cheaper of :func:`prefix_plan` and :func:`sparse_plan` for ``indices``.

    Both multiply the same factors in the same order (the inputs' order; a factor of
    degree 0 is exactly 1), so the basis they build is the same to the last bit.

    Args:
        indices: Multi-indices, shape ``(num_terms, d)``, long.

    Returns:
        The plan that multiplies fewer rows.
    """
    sparse = sparse_plan(indices)
    prefix = prefix_plan(indices, budget=sparse.numel())
    return sparse if prefix is None else prefix


def multivariate_basis(
    x: Tensor,
    indices: Tensor,
    basis: str,
    plan: list[tuple[Tensor, Tensor]] | Tensor | None = None,
    degree: int | None = None,
) -> Tensor:
    """Evaluate every multivariate basis term at every point.

    A term is the product over inputs of the univariate polynomials of the degrees in
    its multi-index.

    Args:
        x: Points, shape ``(batch, d)``.
        indices: Multi-indices of the terms, shape ``(num_terms, d)``, long.
        basis: ``"legendre"`` or ``"hermite"``.
        plan: :func:`basis_plan` of ``indices`` (computed if not given).
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
    plan = basis_plan(indices) if plan is None else plan
    if isinstance(plan, Tensor):  # sparse_plan
        flat = table.reshape(-1, table.shape[-1])  # (d * (degree + 1), batch)
        plan = plan.to(x.device)
        phi = flat.index_select(0, plan[0])
        for rows in plan[1:]:
            factor = flat.index_select(0, rows)
            phi = phi * factor if factor.requires_grad else phi.mul_(factor)
        return phi.T
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
    hyperbolic = q_norm < 1.0
    # partial sums of alpha_i^q only grow: a prefix past the bound has no row (a margin
    # keeps the exact test below the only one that decides)
    prune = (degree + _Q_TOL) ** q_norm + 1e-6 if hyperbolic else 0.0

    def extend(prefix: tuple[int, ...], remaining: int, qsum: float) -> None:
        if len(prefix) == num_inputs - 1:
            rows.append(prefix + (remaining,))
            return
        for a in range(remaining, -1, -1):
            partial = qsum + a**q_norm if hyperbolic else 0.0
            if partial <= prune:
                extend(prefix + (a,), remaining - a, partial)

    for total in range(degree + 1):
        extend((), total, 0.0)
    if hyperbolic:
        rows = [r for r in rows if _within(r, degree, q_norm)]
    else:
        assert len(rows) == comb(num_inputs + degree, degree)
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), num_inputs)


def _within(entries: tuple[int, ...] | list[int], degree: int, q_norm: float) -> bool:
    """Whether a multi-index (or its nonzero entries) lies in the hyperbolic set."""
    return sum(a**q_norm for a in entries) ** (1.0 / q_norm) <= degree + _Q_TOL


def num_terms(num_inputs: int, degree: int, q_norm: float = 1.0) -> int:
    """The size of :func:`multi_indices` ``(num_inputs, degree, q_norm)``, counted without
    listing it (so that a set too large to build can be refused first).

    ``C(d + p, p)`` for the total-order set; for the hyperbolic set, a sum over the
    multisets of nonzero entries that fit, each times its arrangements over the inputs.

    Args:
        num_inputs: The input dimension ``d``.
        degree: The largest total degree ``p``.
        q_norm: The truncation ``q`` in (0, 1].

    Returns:
        The number of terms.

    Example:
        ```python
        num_terms(50, 5)  # 3478761
        num_terms(50, 5, q_norm=0.5)  # 1476
        ```
    """
    if q_norm >= 1.0:
        return comb(num_inputs + degree, degree)
    count = 1  # the constant

    def walk(parts: list[int]) -> None:
        nonlocal count
        if parts:  # these nonzero entries on any len(parts) of the inputs, in any order
            ways = factorial(len(parts))
            for m in Counter(parts).values():
                ways //= factorial(m)
            count += comb(num_inputs, len(parts)) * ways
        if len(parts) == num_inputs:
            return
        for a in range(parts[-1] if parts else degree, 0, -1):  # non-increasing
            if _within(parts + [a], degree, q_norm):
                walk(parts + [a])

    walk([])
    return count
