"""Orthogonal polynomial bases and multi-index sets (polymix_cli.surrogate_models.basis)."""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import pytest
import torch
from numpy.polynomial import hermite_e, legendre
from torch import Tensor

from polymix_cli.surrogate_models import PolynomialChaosExpansion
from polymix_cli.surrogate_models.basis import (
    BASES,
    basis_plan,
    multi_indices,
    multivariate_basis,
    num_terms,
    prefix_plan,
    sparse_plan,
    univariate_table,
)

MAX_DEGREE = 8


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---------------------------------------------------------------------------
# Univariate tables
# ---------------------------------------------------------------------------


def test_bases_constant_lists_both_families():
    assert set(BASES) == {"legendre", "hermite"}


@pytest.mark.parametrize("basis", ["legendre", "hermite"])
def test_univariate_table_shape_keeps_leading_dims(basis):
    x = torch.rand(3, 4, dtype=torch.float64)
    table = univariate_table(x, 5, basis)
    assert table.shape == (3, 4, 6)
    assert table.dtype == torch.float64
    torch.testing.assert_close(table[..., 0], torch.ones_like(x))
    torch.testing.assert_close(table[..., 1], x)


@pytest.mark.parametrize("basis", ["legendre", "hermite"])
def test_univariate_table_degree_zero_is_constant(basis):
    x = torch.randn(7)
    table = univariate_table(x, 0, basis)
    assert table.shape == (7, 1)
    assert torch.equal(table[:, 0], torch.ones(7))


def test_legendre_closed_forms():
    x = torch.linspace(-1, 1, 41, dtype=torch.float64)
    table = univariate_table(x, 4, "legendre")
    expected = [
        torch.ones_like(x),
        x,
        (3 * x**2 - 1) / 2,
        (5 * x**3 - 3 * x) / 2,
        (35 * x**4 - 30 * x**2 + 3) / 8,
    ]
    for n, values in enumerate(expected):
        torch.testing.assert_close(table[:, n], values, rtol=1e-12, atol=1e-12)
    # P_n(1) = 1 and P_n(-1) = (-1)^n (plain, not normalised, Legendre).
    for n in range(5):
        assert table[-1, n].item() == pytest.approx(1.0)
        assert table[0, n].item() == pytest.approx((-1.0) ** n)


def test_hermite_closed_forms():
    x = torch.linspace(-3, 3, 41, dtype=torch.float64)
    table = univariate_table(x, 4, "hermite")
    expected = [
        torch.ones_like(x),
        x,
        x**2 - 1,
        x**3 - 3 * x,
        x**4 - 6 * x**2 + 3,
    ]
    for n, values in enumerate(expected):
        torch.testing.assert_close(table[:, n], values, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize(
    ("basis", "evaluate", "low", "high"),
    [
        ("legendre", legendre.legval, -1.0, 1.0),
        ("hermite", hermite_e.hermeval, -4.0, 4.0),
    ],
)
def test_univariate_table_matches_numpy(basis, evaluate, low, high):
    x_np = np.linspace(low, high, 57)
    table = univariate_table(torch.from_numpy(x_np), MAX_DEGREE, basis).numpy()
    assert table.shape == (57, MAX_DEGREE + 1)
    for n in range(MAX_DEGREE + 1):
        coefficients = np.zeros(n + 1)
        coefficients[n] = 1.0
        np.testing.assert_allclose(table[:, n], evaluate(x_np, coefficients), rtol=1e-10, atol=1e-9)


def test_univariate_table_float32_close_to_numpy():
    x_np = np.linspace(-1, 1, 21)
    table = univariate_table(torch.tensor(x_np, dtype=torch.float32), 6, "legendre")
    assert table.dtype == torch.float32
    for n in range(7):
        coefficients = np.zeros(n + 1)
        coefficients[n] = 1.0
        np.testing.assert_allclose(
            table[:, n].numpy(), legendre.legval(x_np, coefficients), atol=1e-5
        )


def test_univariate_table_unknown_basis_raises_for_higher_degree():
    with pytest.raises(ValueError, match="basis"):
        univariate_table(torch.rand(4), 3, "chebyshev")


@pytest.mark.parametrize("degree", [0, 1])
def test_univariate_table_unknown_basis_raises_for_low_degree(degree):
    with pytest.raises(ValueError, match="basis"):
        univariate_table(torch.rand(4), degree, "chebyshev")


def test_univariate_table_negative_degree_raises():
    with pytest.raises(ValueError, match="degree"):
        univariate_table(torch.rand(4), -1, "legendre")


# ---------------------------------------------------------------------------
# Orthogonality by Gauss quadrature
# ---------------------------------------------------------------------------


def _tensor_grid(
    points: np.ndarray, weights: np.ndarray, dim: int
) -> tuple[np.ndarray, np.ndarray]:
    grid = np.array(list(product(points, repeat=dim)))
    grid_weights = np.array([np.prod(w) for w in product(weights, repeat=dim)])
    return grid, grid_weights


def _gram(
    basis: str, grid: np.ndarray, grid_weights: np.ndarray, indices: torch.Tensor
) -> np.ndarray:
    phi = multivariate_basis(torch.from_numpy(grid), indices, basis).numpy()
    return phi.T @ (grid_weights[:, None] * phi)


def test_legendre_multivariate_orthogonality_gauss_legendre():
    dim, degree = 2, 4
    indices = multi_indices(dim, degree)
    points, weights = legendre.leggauss(10)  # exact up to degree 19 per dimension
    grid, grid_weights = _tensor_grid(points, weights / 2.0, dim)  # uniform density on [-1, 1]
    assert grid_weights.sum() == pytest.approx(1.0)
    gram = _gram("legendre", grid, grid_weights, indices)
    expected = np.diag([np.prod([1.0 / (2 * n + 1) for n in alpha]) for alpha in indices.tolist()])
    np.testing.assert_allclose(gram, expected, atol=1e-12)


def test_hermite_multivariate_orthogonality_gauss_hermite_e():
    dim, degree = 2, 4
    indices = multi_indices(dim, degree)
    points, weights = hermite_e.hermegauss(12)
    grid, grid_weights = _tensor_grid(points, weights / math.sqrt(2 * math.pi), dim)
    assert grid_weights.sum() == pytest.approx(1.0)
    gram = _gram("hermite", grid, grid_weights, indices)
    expected = np.diag(
        [float(np.prod([math.factorial(n) for n in alpha])) for alpha in indices.tolist()]
    )
    np.testing.assert_allclose(gram, expected, atol=1e-9)


def test_multivariate_basis_is_product_of_univariate_tables():
    x = torch.rand(9, 3, dtype=torch.float64) * 2 - 1
    indices = multi_indices(3, 3)
    phi = multivariate_basis(x, indices, "legendre")
    assert phi.shape == (9, indices.shape[0])
    table = univariate_table(x, 3, "legendre")
    for t, alpha in enumerate(indices.tolist()):
        expected = table[:, 0, alpha[0]] * table[:, 1, alpha[1]] * table[:, 2, alpha[2]]
        torch.testing.assert_close(phi[:, t], expected)


@pytest.mark.parametrize(
    ("dim", "degree", "q_norm", "chosen"),
    [(1, 3, 1.0, "prefix"), (8, 5, 1.0, "prefix"), (12, 2, 1.0, "sparse"), (6, 4, 0.5, "sparse")],
)
@pytest.mark.parametrize("basis", ["legendre", "hermite"])
def test_prefix_and_sparse_plans_build_the_same_basis(dim, degree, q_norm, chosen, basis):
    # the same factors in the same order: equal to the last bit, with or without gradients
    x = torch.rand(40, dim, dtype=torch.float64) * 2 - 1
    indices = multi_indices(dim, degree, q_norm)
    prefix = multivariate_basis(x, indices, basis, prefix_plan(indices))
    sparse = multivariate_basis(x, indices, basis, sparse_plan(indices))
    assert torch.equal(prefix, sparse)
    with_grad = multivariate_basis(x.clone().requires_grad_(), indices, basis, sparse_plan(indices))
    assert torch.equal(with_grad.detach(), prefix)
    # the default plan is the one that multiplies fewer rows
    assert isinstance(basis_plan(indices), Tensor) == (chosen == "sparse")


def test_sparse_plan_has_one_row_per_nonzero_entry():
    indices = multi_indices(50, 2)
    plan = sparse_plan(indices)
    assert plan.shape == (2, indices.shape[0])
    assert prefix_plan(indices, budget=plan.numel()) is None  # the prefixes would hold more


# ---------------------------------------------------------------------------
# Multi-index sets
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("q_norm", [1.0, 0.9, 0.75, 0.5, 0.3])
@pytest.mark.parametrize(("dim", "degree"), [(1, 4), (2, 0), (2, 5), (3, 4), (6, 3), (9, 2)])
def test_terms_are_counted_without_listing_them(dim, degree, q_norm):
    assert num_terms(dim, degree, q_norm) == multi_indices(dim, degree, q_norm).shape[0]


def test_terms_of_many_inputs_are_counted_at_once():
    assert num_terms(50, 5) == math.comb(55, 5) == 3478761
    assert num_terms(50, 5, 0.5) == 1476  # (the hyperbolic set is listed without the full one)
    assert multi_indices(50, 5, 0.5).shape == (1476, 50)


@pytest.mark.parametrize(
    ("dim", "degree"),
    [(1, 0), (1, 3), (1, 7), (2, 0), (2, 3), (2, 4), (3, 2), (3, 5), (4, 3), (5, 2)],
)
def test_total_order_size_and_ordering(dim, degree):
    indices = multi_indices(dim, degree)
    assert indices.dtype == torch.long
    assert indices.shape == (math.comb(dim + degree, degree), dim)
    rows = [tuple(r) for r in indices.tolist()]
    assert len(set(rows)) == len(rows)
    assert rows[0] == (0,) * dim
    totals = [sum(r) for r in rows]
    assert totals == sorted(totals)
    assert max(totals) == degree
    assert all(min(r) >= 0 for r in rows)
    # Every multi-index of total degree <= p is present.
    brute = {a for a in product(range(degree + 1), repeat=dim) if sum(a) <= degree}
    assert set(rows) == brute


def test_total_order_explicit_two_dimensional_order():
    rows = [tuple(r) for r in multi_indices(2, 2).tolist()]
    assert rows == [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)]


def test_one_dimensional_indices_are_consecutive_degrees():
    assert multi_indices(1, 5).flatten().tolist() == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("dim", "degree", "q_norm"), [(2, 4, 0.5), (3, 4, 0.5), (3, 5, 0.75), (4, 3, 0.4)]
)
def test_hyperbolic_set_is_smaller_subset_with_univariate_terms(dim, degree, q_norm):
    full = {tuple(r) for r in multi_indices(dim, degree).tolist()}
    hyper_rows = [tuple(r) for r in multi_indices(dim, degree, q_norm=q_norm).tolist()]
    hyper = set(hyper_rows)
    assert len(hyper) == len(hyper_rows)
    assert len(hyper) < len(full)
    assert hyper <= full
    assert hyper_rows[0] == (0,) * dim
    totals = [sum(r) for r in hyper_rows]
    assert totals == sorted(totals)
    for i in range(dim):
        for n in range(degree + 1):
            alpha = tuple(n if j == i else 0 for j in range(dim))
            assert alpha in hyper
    # Exactly the q-quasi-norm ball.
    expected = {a for a in full if sum(v**q_norm for v in a) ** (1 / q_norm) <= degree + 1e-9}
    assert hyper == expected


def test_hyperbolic_set_drops_mixed_high_order_terms():
    hyper = {tuple(r) for r in multi_indices(2, 4, q_norm=0.5).tolist()}
    # (1,1): (1 + 1)^2 = 4 <= 4 kept; (2,1): (sqrt 2 + 1)^2 ~ 5.83 > 4 dropped.
    assert (1, 1) in hyper
    assert (2, 1) not in hyper
    assert (2, 2) not in hyper


def test_q_norm_one_equals_total_order():
    assert torch.equal(multi_indices(3, 3, q_norm=1.0), multi_indices(3, 3))


def test_pce_uses_hyperbolic_set():
    full = PolynomialChaosExpansion(3, 1, degree=4)
    hyper = PolynomialChaosExpansion(3, 1, degree=4, q_norm=0.5)
    assert full.num_terms == math.comb(7, 4)
    assert hyper.num_terms == multi_indices(3, 4, q_norm=0.5).shape[0]
    assert hyper.num_terms < full.num_terms
    assert hyper.num_params() == hyper.num_terms
