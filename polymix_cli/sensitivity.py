"""Variance-based (Sobol) sensitivity of stochastic surrogates, one analysis per parameter draw.

Part of the core library: torch only, no files, no plots, no configs.

For a model ``f(X)`` with independent inputs ``X = (X_1, ..., X_d)`` the variance splits
into contributions of the inputs and their interactions. Per input ``i``:

- the first-order index ``S_i = Var(E[f | X_i]) / Var(f)``: the share of the variance
  explained by ``X_i`` alone;
- the total index ``S_Ti = E[Var(f | X_~i)] / Var(f)``: the share that involves ``X_i``,
  alone or with other inputs.

Two ways to get them, both for every parameter draw at once:

- :func:`pce_sobol`: closed form from a polynomial chaos expansion's coefficients. The
  terms are orthogonal under the basis's input distribution (uniform on ``[-1, 1]`` for
  Legendre, standard normal for Hermite), so the mean is the constant term's coefficient
  and the variance splits term by term into ``c_t^2 ||Phi_t||^2``; the indices are sums of
  these over masks of the multi-indices (one matrix product for all draws).
- :func:`monte_carlo_sobol`: pick-freeze sampling for any surrogate (mixtures, networks):
  two input samples ``A`` and ``B`` (the two halves of the columns of a scrambled Sobol'
  sequence) and, for each input ``i``, ``AB_i`` (``A`` with column ``i`` taken from
  ``B``), evaluated as one stacked design; Saltelli (2010)'s estimator of the first-order
  and Jansen (1999)'s of the total indices.

Indices are undefined for a draw whose variance is zero; they are then NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .surrogate_models import PolynomialChaosExpansion, SurrogateModel
from .surrogate_models.basis import BASES

__all__ = [
    "DISTRIBUTIONS",
    "SobolIndices",
    "basis_norms",
    "input_distribution",
    "monte_carlo_sobol",
    "pce_sobol",
    "sample_inputs",
    "sobol_design",
]

# The input distribution each basis is orthogonal under, in the model's domain.
DISTRIBUTIONS = {"legendre": "uniform", "hermite": "normal"}  # uniform: U[-1, 1]; normal: N(0, 1)


@dataclass(frozen=True)
class SobolIndices:
    """Moments and Sobol indices per parameter draw (``S`` draws, ``d`` inputs, ``O`` outputs).

    Indices are NaN for a draw whose variance is zero.

    Args:
        mean: The mean of the output over the inputs, shape ``(S, O)``.
        variance: Its variance, shape ``(S, O)``.
        first_order: The first-order indices ``S_i``, shape ``(S, d, O)``.
        total: The total indices ``S_Ti``, shape ``(S, d, O)``.
    """

    mean: Tensor
    variance: Tensor
    first_order: Tensor
    total: Tensor

    def rescaled(self, shift: Tensor, scale: Tensor) -> SobolIndices:
        """The moments of ``f * scale + shift``, e.g. an output map back to the user's units.

        The indices do not change: they are ratios of variances, and per-input affine maps
        of the inputs leave them unchanged too.

        Args:
            shift: The shift per output, shape ``(O,)``.
            scale: The scale per output, shape ``(O,)``.

        Returns:
            A new :class:`SobolIndices` with ``mean * scale + shift`` and
            ``variance * scale^2``, and the same indices.
        """
        shift = shift.to(self.mean.device, self.mean.dtype)
        scale = scale.to(self.mean.device, self.mean.dtype)
        return SobolIndices(
            self.mean * scale + shift, self.variance * scale.square(), self.first_order, self.total
        )


def basis_norms(indices: Tensor, basis: str) -> Tensor:
    """Squared norms ``E[Phi_t(X)^2]`` of the multivariate basis terms.

    The bases are not normalised: under ``U[-1, 1]`` ``E[P_n^2] = 1 / (2n + 1)``; under
    ``N(0, 1)`` ``E[He_n^2] = n!``. A term's norm is the product over its inputs (the
    inputs are independent).

    Args:
        indices: Multi-indices of the terms, shape ``(T, d)``.
        basis: ``"legendre"`` or ``"hermite"``.

    Returns:
        The squared norms, shape ``(T,)``, float64.

    Raises:
        ValueError: If ``basis`` is unknown.
    """
    if basis not in BASES:
        raise ValueError(f"basis must be one of {BASES}, got {basis!r}")
    n = indices.to(torch.float64)
    if basis == "legendre":
        per_input = 1.0 / (2.0 * n + 1.0)
    else:
        per_input = torch.lgamma(n + 1.0).exp()
    return per_input.prod(dim=1)


def _masks(indices: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Masks of the terms: ``(T,)`` the constant term, ``(d, T)`` the terms in input ``i``
    alone, ``(d, T)`` the terms involving input ``i``."""
    active = indices > 0
    order = active.sum(dim=1)
    alone = active & (order == 1).unsqueeze(1)
    return order == 0, alone.T, active.T


def pce_sobol(coeffs: Tensor, indices: Tensor, basis: str) -> SobolIndices:
    """Closed-form moments and Sobol indices of polynomial chaos expansions.

    Computed in float64 (detached); the moments are in the expansion's output units, for
    inputs distributed as the basis is orthogonal under (:data:`DISTRIBUTIONS`).

    Args:
        coeffs: Coefficient draws, shape ``(S, T, O)`` (``S`` draws, ``T`` terms, ``O``
            outputs), e.g. a PCE's parameter draws reshaped.
        indices: Multi-indices of the terms, shape ``(T, d)``.
        basis: ``"legendre"`` or ``"hermite"``.

    Returns:
        The moments ``(S, O)`` and indices ``(S, d, O)`` of every draw, float64.

    Raises:
        ValueError: If the shapes do not match or ``basis`` is unknown.

    Example:
        ```python
        import torch
        from polymix_cli.sensitivity import pce_sobol
        from polymix_cli.surrogate_models import PolynomialChaosExpansion

        pce = PolynomialChaosExpansion(2, 1, degree=2)
        coeffs = torch.randn(100, pce.num_params()).view(100, pce.num_terms, 1)
        sobol = pce_sobol(coeffs, pce.multi_indices, pce.basis)
        sobol.first_order.shape  # (100, 2, 1)
        ```
    """
    if coeffs.dim() != 3 or indices.dim() != 2 or coeffs.shape[1] != indices.shape[0]:
        raise ValueError(
            f"coeffs must be (S, T, O) and indices (T, d) with the same T, got "
            f"{tuple(coeffs.shape)} and {tuple(indices.shape)}"
        )
    coeffs = coeffs.detach().to(torch.float64)
    d = indices.shape[1]
    indices = indices.to(coeffs.device)
    constant, alone, involving = _masks(indices)
    partial = coeffs.square() * basis_norms(indices, basis).to(coeffs.device).unsqueeze(
        1
    )  # (S, T, O)
    # one product for all draws: rows = variance, then S_i, then S_Ti numerators
    masks = torch.cat([(~constant).unsqueeze(0), alone, involving]).to(coeffs.dtype)  # (2d + 1, T)
    sums = torch.matmul(masks, partial)  # (S, 2d + 1, O)
    variance = sums[:, 0]
    mean = torch.matmul(constant.to(coeffs.dtype), coeffs)  # (S, O); 0 without a constant term
    return SobolIndices(
        mean,
        variance,
        sums[:, 1 : d + 1] / variance.unsqueeze(1),
        sums[:, d + 1 :] / variance.unsqueeze(1),
    )


def input_distribution(surrogate: SurrogateModel) -> str:
    """The input distribution of a surrogate, in the domain its inputs are mapped to.

    Args:
        surrogate: A surrogate (its submodules are searched for polynomial chaos
            expansions).

    Returns:
        ``"normal"`` (N(0, 1) inputs) when every polynomial chaos expansion in
        ``surrogate`` uses the Hermite basis (and there is at least one), else
        ``"uniform"`` (U[-1, 1] inputs).
    """
    bases = [m.basis for m in surrogate.modules() if isinstance(m, PolynomialChaosExpansion)]
    return "normal" if bases and all(b == "hermite" for b in bases) else "uniform"


def sample_inputs(
    num: int,
    num_inputs: int,
    distribution: str,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Independent inputs, ``uniform`` on [-1, 1] or standard ``normal``, quasi-random.

    A scrambled Sobol' sequence (quasi-random, so sample means converge faster than with
    independent points; best with ``num`` a power of 2), scrambled with a seed drawn from
    ``generator``.

    Args:
        num: The number of points.
        num_inputs: The number of inputs (columns).
        distribution: ``"uniform"`` (U[-1, 1]) or ``"normal"`` (N(0, 1)).
        generator: The generator the scrambling seed is drawn from (``None``: torch's
            global one).
        dtype: The result's dtype.
        device: The result's device.

    Returns:
        The inputs, shape ``(num, num_inputs)``.

    Raises:
        ValueError: If ``distribution`` is unknown.
    """
    if distribution not in ("uniform", "normal"):
        raise ValueError(f"distribution must be one of ['uniform', 'normal'], got {distribution!r}")
    where = generator.device if generator is not None else "cpu"
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=where).item())
    u = torch.quasirandom.SobolEngine(num_inputs, scramble=True, seed=seed).draw(
        num, dtype=torch.float64
    )
    if distribution == "uniform":
        x = u * 2 - 1
    else:
        tiny = torch.finfo(torch.float64).eps
        x = torch.special.ndtri(u.clamp(tiny, 1 - tiny))
    return x.to(device=device, dtype=dtype)


def sobol_design(a: Tensor, b: Tensor) -> Tensor:
    """The pick-freeze design ``[A; B; AB_1; ...; AB_d]``.

    ``AB_i`` is ``A`` with column ``i`` from ``B``. With one input the indices are 1 and
    only the moments are needed: the design is ``A``.

    Args:
        a: The base sample ``A``, shape ``(N, d)``.
        b: The base sample ``B``, shape ``(N, d)``.

    Returns:
        The design, shape ``((d + 2) N, d)``; ``a`` itself, ``(N, 1)``, when ``d = 1``.
    """
    n, d = a.shape
    if d == 1:
        return a
    pick = torch.eye(d, dtype=torch.bool, device=a.device).unsqueeze(1)  # (d, 1, d)
    ab = torch.where(pick, b.unsqueeze(0), a.unsqueeze(0))  # (d, N, d)
    return torch.cat([a, b, ab.reshape(d * n, d)])


def _pick_freeze(y: Tensor, n: int, d: int) -> SobolIndices:
    """Estimators from the model's values ``y`` ``(S, rows, O)`` on :func:`sobol_design`."""
    y = y.to(torch.float64)
    both = y[:, : 2 * n]  # A and B (A alone for one input)
    mean = both.mean(dim=1)  # (S, O)
    variance = both.var(dim=1, correction=0)
    if d == 1:  # the one input explains all of the variance
        ones = torch.ones_like(variance).masked_fill(variance <= 0, torch.nan).unsqueeze(1)
        return SobolIndices(mean, variance, ones, ones.clone())
    first, total = _pick_freeze_sums(both, mean, y[:, 2 * n :].unflatten(1, (d, n)))
    v = variance.unsqueeze(1)
    return SobolIndices(mean, variance, first / v, total / v)


def _pick_freeze_sums(both: Tensor, mean: Tensor, y_ab: Tensor) -> tuple[Tensor, Tensor]:
    """The first-order and total numerators of the inputs of ``y_ab`` ``(S, k, N, O)``,
    from the values on ``A`` and ``B`` ``(S, 2N, O)`` and their mean ``(S, O)``."""
    n = y_ab.shape[2]
    centre = mean.unsqueeze(1)  # centred for a smaller estimator variance
    f_a, f_b = both[:, :n] - centre, both[:, n:] - centre
    diff = f_a.unsqueeze(1) - (y_ab.to(torch.float64) - centre.unsqueeze(1))  # (S, k, N, O)
    first = (f_b.unsqueeze(1) * -diff).mean(dim=2)  # Saltelli 2010: E[f_B (f_AB_i - f_A)]
    total = diff.square().mean(dim=2) / 2  # Jansen 1999: E[(f_A - f_AB_i)^2] / 2
    return first, total


def monte_carlo_sobol(
    predict: Callable[[Tensor, Tensor], Tensor],
    params: Tensor,
    num_inputs: int,
    base_samples: int,
    distribution: str = "uniform",
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    max_elements: int | None = 1 << 24,
    width: int = 1,
    transform: Callable[[Tensor], Tensor] | None = None,
    shared: int = 0,
) -> SobolIndices:
    """Monte Carlo moments and Sobol indices of a stochastic surrogate, per parameter draw.

    Pick-freeze sampling (:func:`sobol_design`) with Saltelli (2010)'s first-order and
    Jansen (1999)'s total estimators. Every draw sees the same design, evaluated at once
    for chunks of draws; when one draw at every design point would not fit
    ``max_elements`` (many inputs, a wide basis), the design is streamed instead, all draws
    at once over chunks of points, ``A`` and ``B`` first and then a few inputs' ``AB_i``
    at a time, so that memory stays bounded however many inputs there are.

    Args:
        predict: ``predict(x, params)`` maps inputs ``(rows, d)`` and draws ``(S', P)`` to
            outputs ``(S', rows, O)``, e.g. :meth:`~polymix_cli.StochasticModel.predict`.
        params: Parameter draws, shape ``(S, P)``.
        num_inputs: The number of inputs ``d``.
        base_samples: ``N``, the size of ``A`` and of ``B`` (>= 2); the design has
            ``(d + 2) N`` rows, ``N`` for one input.
        distribution: The inputs, in the model's domain (see :func:`input_distribution`),
            quasi-random (see :func:`sample_inputs`): ``"uniform"`` or ``"normal"``.
        generator: The generator the design's scrambling seed is drawn from.
        dtype: The dtype of the design.
        max_elements: The most draws x rows x ``width`` values a chunk of draws may hold;
            ``None``: one chunk.
        width: The model's widest per-point intermediate (e.g.
            :meth:`~polymix_cli.surrogate_models.SurrogateModel.work_width`).
        transform: Other input distributions: maps quasi-random points uniform on
            ``(0, 1)^d`` (float64, ``(rows, d)``) to inputs in the model's domain
            ``(rows, d)``, e.g. each column through its marginal's inverse CDF; then
            ``distribution`` is not used. ``None``: ``distribution``.
        shared: The model's per-point intermediate shared by all draws (e.g.
            :meth:`~polymix_cli.surrogate_models.SurrogateModel.shared_width`).

    Returns:
        The moments ``(S, O)`` and indices ``(S, d, O)`` of every draw, float64.

    Raises:
        ValueError: If ``base_samples`` is not an integer >= 2 or ``distribution`` is
            unknown.
    """
    if isinstance(base_samples, bool) or not isinstance(base_samples, int) or base_samples < 2:
        raise ValueError(f"base_samples must be an integer >= 2, got {base_samples!r}")
    if transform is None:
        ab = sample_inputs(
            base_samples, 2 * num_inputs, distribution, generator, dtype, params.device
        )
        a, b = ab[:, :num_inputs], ab[:, num_inputs:]
    else:  # the same quasi-random points, uniform on (0, 1), through the marginals
        u = (
            sample_inputs(base_samples, 2 * num_inputs, "uniform", generator, torch.float64) + 1
        ) / 2
        tiny = torch.finfo(torch.float64).eps
        u = u.clamp(tiny, 1 - tiny)
        a, b = (transform(part).to(device=params.device, dtype=dtype) for part in u.chunk(2, dim=1))
    x = sobol_design(a, b)  # A and B: independent columns
    num_draws, rows = params.shape[0], x.shape[0]
    width = max(1, width)
    if max_elements is not None and (rows * width > max_elements or rows * shared > max_elements):
        return _streamed_sobol(
            predict, params, x, base_samples, num_inputs, max_elements, width, shared
        )
    # draws per chunk: their values at every design point fit
    draws = num_draws if max_elements is None else max_elements // (rows * width)
    parts = [
        _pick_freeze(predict(x, params[start : start + draws]), base_samples, num_inputs)
        for start in range(0, num_draws, draws)
    ]
    if len(parts) == 1:
        return parts[0]
    return SobolIndices(
        *(
            torch.cat([getattr(p, f) for p in parts])
            for f in ("mean", "variance", "first_order", "total")
        )
    )


def _streamed_sobol(
    predict: Callable[[Tensor, Tensor], Tensor],
    params: Tensor,
    x: Tensor,
    n: int,
    d: int,
    max_elements: int,
    width: int,
    shared: int,
) -> SobolIndices:
    """:func:`monte_carlo_sobol` over a design too large for one draw at every point:
    every draw at once over chunks of points, each chunk's intermediates (``width`` per
    draw, ``shared`` for all) within ``max_elements``."""
    num_draws = params.shape[0]
    points = max(1, max_elements // max(num_draws * width, shared))

    def values(xs: Tensor) -> Tensor:  # (S, rows, O), float64
        return torch.cat(
            [predict(xs[i : i + points], params) for i in range(0, xs.shape[0], points)], dim=1
        ).to(torch.float64)

    if d == 1:
        return _pick_freeze(values(x), n, d)
    both = values(x[: 2 * n])  # (S, 2N, O)
    mean, variance = both.mean(dim=1), both.var(dim=1, correction=0)
    # inputs per pass: the values of every draw on their AB_i fit
    per_input = num_draws * n * both.shape[2]
    step = max(1, max_elements // per_input)
    sums = [
        _pick_freeze_sums(
            both, mean, values(x[(2 + i) * n : (2 + min(d, i + step)) * n]).unflatten(1, (-1, n))
        )
        for i in range(0, d, step)
    ]
    v = variance.unsqueeze(1)
    first = torch.cat([f for f, _ in sums], dim=1)
    total = torch.cat([t for _, t in sums], dim=1)
    return SobolIndices(mean, variance, first / v, total / v)
