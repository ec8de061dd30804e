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

    ``mean``, ``variance``: ``(S, O)``; ``first_order``, ``total``: ``(S, d, O)``.
    """

    mean: Tensor
    variance: Tensor
    first_order: Tensor
    total: Tensor

    def rescaled(self, shift: Tensor, scale: Tensor) -> SobolIndices:
        """The moments of ``f * scale + shift`` (``shift``, ``scale``: ``(O,)``), e.g. an
        output map back to the user's units. The indices do not change: they are ratios
        of variances, and per-input affine maps of the inputs leave them unchanged too."""
        shift = shift.to(self.mean.device, self.mean.dtype)
        scale = scale.to(self.mean.device, self.mean.dtype)
        return SobolIndices(
            self.mean * scale + shift, self.variance * scale.square(), self.first_order, self.total
        )


def basis_norms(indices: Tensor, basis: str) -> Tensor:
    """Squared norms ``E[Phi_t(X)^2]`` of the multivariate terms ``(T,)`` (float64).

    indices: ``(T, d)`` multi-indices. The bases are not normalised: under ``U[-1, 1]``
    ``E[P_n^2] = 1 / (2n + 1)``; under ``N(0, 1)`` ``E[He_n^2] = n!``. A term's norm is the
    product over its inputs (the inputs are independent).
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

    coeffs: ``(S, T, O)`` coefficient draws (``S`` draws, ``T`` terms, ``O`` outputs);
    indices: ``(T, d)`` multi-indices of the terms; basis: ``legendre`` | ``hermite``.
    Computed in float64; the moments are in the expansion's output units.
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
    """``normal`` (N(0, 1) inputs) when every polynomial chaos expansion in ``surrogate`` uses
    the Hermite basis, else ``uniform`` (U[-1, 1] inputs), the domain the inputs are mapped to."""
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
    """``(num, num_inputs)`` independent inputs, ``uniform`` on [-1, 1] or standard ``normal``:
    a scrambled Sobol' sequence (quasi-random, so sample means converge faster than with
    independent points; best with ``num`` a power of 2), scrambled with a seed drawn from
    ``generator``."""
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
    """The pick-freeze design ``[A; B; AB_1; ...; AB_d]`` ``((d + 2) N, d)`` from two base
    samples ``(N, d)``, where ``AB_i`` is ``A`` with column ``i`` from ``B``. With one input
    the indices are 1 and only the moments are needed: the design is ``A``."""
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
    centre = mean.unsqueeze(1)
    f_a, f_b = (
        y[:, :n] - centre,
        y[:, n : 2 * n] - centre,
    )  # centred for a smaller estimator variance
    f_ab = y[:, 2 * n :].unflatten(1, (d, n)) - centre.unsqueeze(1)  # (S, d, N, O)
    diff = f_a.unsqueeze(1) - f_ab
    first = (f_b.unsqueeze(1) * -diff).mean(dim=2)  # Saltelli 2010: E[f_B (f_AB_i - f_A)]
    total = diff.square().mean(dim=2) / 2  # Jansen 1999: E[(f_A - f_AB_i)^2] / 2
    v = variance.unsqueeze(1)
    return SobolIndices(mean, variance, first / v, total / v)


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
) -> SobolIndices:
    """Monte Carlo moments and Sobol indices of a stochastic surrogate, per parameter draw.

    ``predict(x, params)``: ``(rows, d)``, ``(S', P)`` -> ``(S', rows, O)`` (e.g.
    :meth:`StochasticModel.predict`); params: ``(S, P)`` draws; ``base_samples``: ``N``,
    the size of ``A`` and of ``B`` (the design has ``(d + 2) N`` rows, ``N`` for one
    input); ``distribution``: the inputs, in the model's domain (see
    :func:`input_distribution`), quasi-random (see :func:`sample_inputs`). Every draw sees the same design,
    evaluated at once for chunks of draws holding at most ``max_elements`` draws x rows x
    ``width`` (the model's widest per-point intermediate) values; ``None``: one chunk.
    """
    if isinstance(base_samples, bool) or not isinstance(base_samples, int) or base_samples < 2:
        raise ValueError(f"base_samples must be an integer >= 2, got {base_samples!r}")
    ab = sample_inputs(base_samples, 2 * num_inputs, distribution, generator, dtype, params.device)
    x = sobol_design(ab[:, :num_inputs], ab[:, num_inputs:])  # A and B: independent columns
    num_draws = params.shape[0]
    chunk = num_draws
    if max_elements is not None:
        chunk = max(1, max_elements // (x.shape[0] * max(1, width)))
    parts = [
        _pick_freeze(predict(x, params[start : start + chunk]), base_samples, num_inputs)
        for start in range(0, num_draws, chunk)
    ]
    if len(parts) == 1:
        return parts[0]
    return SobolIndices(
        *(
            torch.cat([getattr(p, f) for p in parts])
            for f in ("mean", "variance", "first_order", "total")
        )
    )
