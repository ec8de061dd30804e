"""Sparse Bayesian polynomial chaos: the closed-form fit of a linear model under an ARD
prior, its leave-one-out error, and the active terms of an expansion.

Part of the core library: torch only, no files, no plots, no configs.

For a model linear in its coefficients, ``y = Phi w + eps`` with ``eps ~ N(0, sigma^2)``
and the ARD prior ``w_t ~ N(0, 1 / alpha_t)``, the posterior of ``w`` given ``alpha`` and
``sigma`` is Gaussian in closed form, and ``alpha`` and ``sigma`` maximise the marginal
likelihood (type-II maximum likelihood, the relevance vector machine).
:class:`FastSparseBayes` maximises it by Tipping and Faul's (2003) fast sequential
algorithm: starting from one term, each iteration adds the candidate term, re-estimates
the precision of the active term, or deletes the active term that raises the marginal likelihood
most, in closed form from two statistics per candidate; the noise is re-estimated at
every iteration. Terms never added have ``alpha = inf``: they are exactly zero.

With many more candidate terms than points, plain type-II maximum likelihood overfits
(each term is kept as soon as it raises the marginal likelihood at all, and the noise is
underestimated). A prior on the number of active terms fixes this: with prior odds
``exp(-penalty)`` against each term, a term is added only if it raises the log marginal likelihood
by more than ``penalty`` nats, and deleted when it brings less. The default
``penalty = 0.5 log N`` is the BIC's charge per parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "FastSparseBayes",
    "LeaveOneOut",
    "active_terms",
    "coefficient_moments",
    "leave_one_out",
    "model_active_terms",
]


@dataclass(frozen=True)
class _Posterior:
    active: Tensor  # (M,) long, sorted
    alpha: Tensor  # (M,)
    mean: Tensor  # (M,) normalised coordinates
    covariance: Tensor  # (M, M) normalised coordinates


class FastSparseBayes:
    """Type-II maximum likelihood of an ARD linear model (Tipping and Faul's algorithm).

    Works in float64 on columns scaled to unit norm (the results are given for the
    original columns). Call :meth:`step` until it returns ``True`` (converged), or use
    :meth:`fit`.

    Args:
        phi: The design matrix, shape ``(N, T)`` (``T`` candidate terms).
        y: The targets, shape ``(N,)``.
        penalty: Nats per active term (see the module docs); ``None``: ``0.5 log N``.
        noise_std: A fixed noise standard deviation, or ``None`` to learn it.
        noise_floor: The learned noise std stays above this fraction of the root mean
            square of ``y`` (noiseless data would otherwise drive it to zero).
        tol: Convergence: no action changes the log marginal likelihood by more than this, and the
            noise changes by less than this (relative).
        start: A previous fit to continue from: ``(prior_std (T,), noise_std)`` as
            :meth:`prior_std` and :attr:`noise_std` give them (terms with a zero prior
            std are inactive); ``None``: start from the single best term.

    Raises:
        ValueError: If the shapes disagree or there are no points.
    """

    def __init__(
        self,
        phi: Tensor,
        y: Tensor,
        penalty: float | None = None,
        noise_std: float | None = None,
        noise_floor: float = 1e-6,
        tol: float = 1e-6,
        start: tuple[Tensor, float] | None = None,
    ):
        if phi.dim() != 2 or y.dim() != 1 or phi.shape[0] != y.shape[0] or y.shape[0] < 1:
            raise ValueError(
                f"phi must be (N, T) and y (N,) with N >= 1, got {tuple(phi.shape)} and "
                f"{tuple(y.shape)}"
            )
        phi, y = phi.detach().to(torch.float64), y.detach().to(torch.float64)
        n, t = phi.shape
        self.num_points, self.num_terms = n, t
        self.penalty = 0.5 * math.log(max(n, 2)) if penalty is None else float(penalty)
        self.tol = float(tol)
        self.norms = phi.norm(dim=0).clamp_min(1e-300)
        self.phi = phi / self.norms
        self.y = y
        self.phi_y = self.phi.T @ y  # (T,)
        mean_square = float(y @ y) / n if float(y @ y) > 0 else 1.0
        self.fixed_noise = noise_std is not None
        self.beta = 1.0 / (noise_std**2 if noise_std is not None else 0.1 * mean_square)
        self.beta_max = 1.0 / (noise_floor**2 * mean_square)
        prior_std = None if start is None else start[0].detach().to(torch.float64).cpu()
        if prior_std is not None and bool((prior_std > 0).any()):
            idx = (prior_std > 0).nonzero().squeeze(1)
            self.active = idx.tolist()
            self.gram = self.phi.T @ self.phi[:, idx]  # (T, M): Phi^T Phi_A
            self.alpha = 1.0 / (prior_std[idx] * self.norms[idx]).square()
            if not self.fixed_noise:
                self.beta = min(1.0 / float(start[1]) ** 2, self.beta_max)
        else:
            first = int(self.phi_y.abs().argmax())
            self.active = [first]
            self.gram = (self.phi.T @ self.phi[:, first]).unsqueeze(1)
            q2 = float(self.phi_y[first]) ** 2 * self.beta**2
            s = self.beta
            self.alpha = torch.tensor([s * s / (q2 - s) if q2 > s else 1.0], dtype=torch.float64)
        self.iterations = 0
        self.converged = False
        self._posterior()

    # -- the posterior of the active terms ----------------------------------------------------
    def _posterior(self) -> None:
        order = sorted(range(len(self.active)), key=self.active.__getitem__)
        if order != list(range(len(self.active))):  # keep the active set sorted
            self.active = [self.active[k] for k in order]
            self.gram, self.alpha = self.gram[:, order], self.alpha[order]
        idx = torch.tensor(self.active, dtype=torch.long)
        precision = self.beta * self.gram[idx] + torch.diag(self.alpha)
        chol, info = torch.linalg.cholesky_ex(precision)
        jitter = 1e-12 * float(precision.diagonal().mean())
        while int(info) != 0:  # nearly collinear active terms at a tiny noise: regularise
            chol, info = torch.linalg.cholesky_ex(
                precision + jitter * torch.eye(len(idx), dtype=precision.dtype)
            )
            jitter *= 100.0
        self.sigma = torch.cholesky_inverse(chol)
        self.mean = self.beta * self.sigma @ self.phi_y[idx]
        self._chol, self._idx = chol, idx

    def log_marginal_likelihood(self) -> float:
        """The log marginal likelihood ``log p(y | alpha, sigma)`` of the current state."""
        n = self.num_points
        residual = self.y - self.phi[:, self._idx] @ self.mean
        # y^T C^-1 y = beta y^T (y - Phi m); log|C| = -N log beta - sum log alpha + log|A|
        fit = self.beta * float(self.y @ residual)
        logdet = -n * math.log(self.beta) - float(self.alpha.log().sum())
        logdet += 2.0 * float(self._chol.diagonal().log().sum())
        return -0.5 * (n * math.log(2 * math.pi) + logdet + fit)

    def expected_nll(self) -> float:
        """``E_q[-log p(y | w, sigma)]`` under the current posterior ``q``."""
        n = self.num_points
        phi_a = self.phi[:, self._idx]
        residual = self.y - phi_a @ self.mean
        spread = float(((phi_a @ self.sigma) * phi_a).sum())
        sq = float(residual @ residual) + spread
        return (
            0.5 * self.beta * sq - 0.5 * n * math.log(self.beta) + 0.5 * n * math.log(2 * math.pi)
        )

    def step(self) -> bool:
        """One iteration: the best add, re-estimate or delete, then the noise.

        Returns:
            Whether the fit has converged (then nothing changed).
        """
        if self.converged:
            return True
        beta, idx, sigma = self.beta, self._idx, self.sigma
        gram_sigma = self.gram @ sigma  # (T, M)
        big_s = beta - beta * beta * (gram_sigma * self.gram).sum(1)
        big_q = beta * self.phi_y - beta * beta * (self.gram @ (sigma @ self.phi_y[idx]))
        alpha = torch.full((self.num_terms,), math.inf, dtype=torch.float64)
        alpha[idx] = self.alpha
        active = torch.isfinite(alpha)
        big_s = big_s.clamp_min(1e-300)  # rounding at a tiny noise (S > 0 exactly)
        s, q = big_s.clone(), big_q.clone()
        # the active terms' statistics straight from the posterior, free of the cancellation
        # above: s = 1 / Sigma_ii - alpha, q = m / Sigma_ii, S = alpha s Sigma_ii, Q = alpha m
        var = sigma.diagonal()
        s[idx] = 1.0 / var - self.alpha
        q[idx] = self.mean / var
        big_s[idx] = self.alpha * s[idx] * var
        big_q[idx] = self.alpha * self.mean
        theta = q * q - s
        gain = torch.full_like(alpha, -math.inf)  # 2 x the change of the log marginal likelihood
        new_alpha = s * s / theta
        grow = ~active & (theta > 0)
        gain[grow] = (big_q[grow] ** 2 - big_s[grow]) / big_s[grow] + torch.log(
            big_s[grow] / big_q[grow] ** 2
        )
        gain[grow] -= 2 * self.penalty
        keep = active & (theta > 0)
        delta = 1.0 / new_alpha[keep] - 1.0 / alpha[keep]
        gain[keep] = big_q[keep] ** 2 / (big_s[keep] + 1.0 / delta) - torch.log1p(
            big_s[keep] * delta
        )
        if len(self.active) > 1:
            drop = active & (theta <= 0)
            drop_all = active.clone()
            # deleting a term saves its penalty; a term with theta > 0 may be dropped too
            # when it brings less than the penalty
            g = big_q**2 / (big_s - alpha) - torch.log1p(-big_s / alpha) + 2 * self.penalty
            gain[drop] = g[drop]
            better = drop_all & (g > gain)
            gain[better] = g[better]
            is_drop = drop | better
        else:
            is_drop = torch.zeros_like(active)
        gain = torch.nan_to_num(gain, nan=-math.inf)
        best = int(gain.argmax())
        best_gain = float(gain[best])
        old_beta = self.beta
        if best_gain > self.tol:
            if bool(is_drop[best]):
                k = self.active.index(best)
                cols = [c for c in range(len(self.active)) if c != k]
                del self.active[k]
                self.gram, self.alpha = self.gram[:, cols], self.alpha[cols]
            elif bool(grow[best]):
                self.active.append(best)
                column = (self.phi.T @ self.phi[:, best]).unsqueeze(1)
                self.gram = torch.cat([self.gram, column], 1)
                self.alpha = torch.cat([self.alpha, new_alpha[best : best + 1]])
            else:
                self.alpha[self.active.index(best)] = new_alpha[best]
            self._posterior()
        if not self.fixed_noise:
            residual = self.y - self.phi[:, self._idx] @ self.mean
            gamma = 1.0 - self.alpha * self.sigma.diagonal()
            dof = max(self.num_points - float(gamma.sum()), 1e-3)
            self.beta = min(dof / max(float(residual @ residual), 1e-300), self.beta_max)
            self._posterior()
        self.iterations += 1
        noise_moved = abs(math.log(self.beta / old_beta)) > self.tol
        self.converged = best_gain <= self.tol and not noise_moved
        return self.converged

    def fit(self, max_iter: int = 10000) -> FastSparseBayes:
        """Iterate until converged or ``max_iter`` iterations.

        Returns:
            ``self``.
        """
        while self.iterations < max_iter and not self.step():
            pass
        return self

    # -- results in the original columns ------------------------------------------------------
    @property
    def noise_std(self) -> float:
        """The noise standard deviation ``sigma``."""
        return 1.0 / math.sqrt(self.beta)

    def coefficients(self) -> tuple[Tensor, Tensor, Tensor]:
        """The posterior of all ``T`` coefficients, in the original columns' units.

        Returns:
            ``(mean (T,), covariance (T, T), active (T,) bool)``, float64; inactive terms
            have mean 0 and zero rows and columns.
        """
        t = self.num_terms
        scale = 1.0 / self.norms[self._idx]
        mean = torch.zeros(t, dtype=torch.float64)
        mean[self._idx] = self.mean * scale
        cov = torch.zeros(t, t, dtype=torch.float64)
        cov[self._idx.unsqueeze(1), self._idx] = self.sigma * scale.unsqueeze(1) * scale
        active = torch.zeros(t, dtype=torch.bool)
        active[self._idx] = True
        return mean, cov, active

    def model_averaged_coefficients(self) -> tuple[Tensor, Tensor, Tensor]:
        """The posterior of all ``T`` coefficients with the pruned terms' uncertainty.

        The selected model sets every pruned term to zero, yet the data cannot rule out
        the terms that the marginal likelihood alone would keep (``theta = q^2 - s > 0``)
        but that bring less than ``penalty`` nats. Added on its own, such a term ``i``
        has the marginal-likelihood-optimal precision ``alpha_i = s_i^2 / theta_i``, the posterior
        ``N(q_i / (alpha_i + s_i), 1 / (alpha_i + s_i))`` and raises the log marginal
        likelihood by ``L_i``; with the prior odds ``exp(-penalty)`` per term its
        posterior probability of being in the model is ``p_i = sigmoid(L_i - penalty)``.
        Averaging over these models one term at a time, keeping the selected model's mean,
        gives the pruned term the variance ``d_i = p_i (v_i + mu_i^2)`` (the mean square
        of what setting it to zero leaves out) and, through the residual it would explain,
        moves the active terms: ``w_A = m + xi - B w_P`` with ``B = beta Sigma Phi_A^T
        Phi_P``. The joint covariance is ``[[Sigma + B D B^T, -B D], [-D B^T, D]]``, so a
        prediction's variance grows by ``sum_i d_i e_i(x)^2`` with ``e_i`` the part of
        term ``i`` the active terms do not explain. This is the predictive band of
        the sparse fit: without it the band ignores the uncertainty of the selection and
        covers too little where a term near the threshold matters (see
        docs/guides/small-designs.md).

        Returns:
            ``(mean (T,), covariance (T, T), active (T,) bool)`` as :meth:`coefficients`
            gives them (the mean and active set are the selected model's); the pruned
            terms that no model supports (``theta <= 0``) keep zero rows and columns.
            :meth:`supported_coefficients` gives the same without the zeros.
        """
        mean, support, block, active = self.supported_coefficients()
        t = self.num_terms
        cov = torch.zeros(t, t, dtype=torch.float64)
        cov[support.unsqueeze(1), support] = block
        return mean, cov, active

    def supported_coefficients(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """:meth:`model_averaged_coefficients` with the covariance over its support only.

        The covariance's nonzero rows and columns are the active terms and the pruned
        terms some model supports (``theta > 0``); every other term has mean 0 and zero
        variance. Holding the block over these alone keeps the memory at ``K^2`` for ``K``
        supported terms instead of ``T^2`` for all ``T`` candidates, with the same values.

        Returns:
            ``(mean (T,), support (K,) long, covariance (K, K), active (T,) bool)``, float64:
            ``support`` in increasing order, ``covariance[i, j]`` the covariance of terms
            ``support[i]`` and ``support[j]`` in the original columns' units.
        """
        t = self.num_terms
        idx = self._idx
        mean = torch.zeros(t, dtype=torch.float64)
        mean[idx] = self.mean * (1.0 / self.norms[idx])
        active = torch.zeros(t, dtype=torch.bool)
        active[idx] = True
        beta, sigma = self.beta, self.sigma
        stat_s = beta - beta * beta * ((self.gram @ sigma) * self.gram).sum(1)
        stat_q = beta * self.phi_y - beta * beta * (self.gram @ (sigma @ self.phi_y[idx]))
        stat_s = stat_s.clamp_min(1e-300)
        theta = stat_q.square() - stat_s
        pruned = (~active & (theta > 0)).nonzero().squeeze(1)
        both = torch.cat([idx, pruned])
        m = len(idx)
        joint = torch.zeros(len(both), len(both), dtype=torch.float64)
        if len(pruned) == 0:
            joint[:m, :m] = sigma
        else:
            s, q, th = stat_s[pruned], stat_q[pruned], theta[pruned]
            alpha = s * s / th
            post_var, post_mean = 1.0 / (alpha + s), q / (alpha + s)
            gain = 0.5 * (th / s + torch.log(s / q.square()))  # L_i, nats
            prob = torch.sigmoid(gain - self.penalty)
            d = prob * (post_var + post_mean.square())  # (P,) normalised coordinates
            b = beta * sigma @ self.gram[pruned].T  # (M, P)
            bd = b * d
            joint[:m, :m] = sigma + bd @ b.T
            joint[:m, m:] = -bd
            joint[m:, :m] = -bd.T
            joint[m:, m:] = torch.diag(d)
        scale = 1.0 / self.norms[both]
        joint = joint * scale.unsqueeze(1) * scale
        order = both.argsort()
        return mean, both[order], joint[order.unsqueeze(1), order], active

    def leave_one_out(self) -> LeaveOneOut:
        """The closed-form leave-one-out errors of the current posterior mean (see
        :func:`leave_one_out`), at the fitted scales and noise."""
        return leave_one_out(self.phi[:, self._idx], self.y, self.sigma, self.noise_std)

    def prior_std(self) -> Tensor:
        """The fitted prior standard deviations ``alpha^-1/2`` in the original columns'
        units, shape ``(T,)`` (0 for inactive terms)."""
        std = torch.zeros(self.num_terms, dtype=torch.float64)
        std[self._idx] = self.alpha.rsqrt() / self.norms[self._idx]
        return std


@dataclass(frozen=True)
class LeaveOneOut:
    """Leave-one-out errors of a linear Gaussian model's posterior mean.

    Args:
        residuals: ``y_i - y_hat_(-i)``, shape ``(N,)``.
        rmse: The root mean square of the residuals.
        q2: ``1 - mean(residuals^2) / var(y)``.
    """

    residuals: Tensor
    rmse: float
    q2: float


def leave_one_out(phi: Tensor, y: Tensor, covariance: Tensor, noise_std: float) -> LeaveOneOut:
    """Closed-form leave-one-out errors of the posterior mean of ``y = Phi w + eps``.

    With a Gaussian prior and ``eps ~ N(0, sigma^2)`` fixed, the posterior mean predicts
    ``y_hat = H y`` with the hat matrix ``H = Phi Sigma Phi^T / sigma^2`` (``Sigma`` the
    posterior covariance), and refitting without point ``i`` leaves the residual
    ``(y_i - y_hat_i) / (1 - H_ii)``. The prior's scales (and an ARD fit's active set)
    are those fitted on all points, as in OpenTURNS's and UQLab's corrected LOO.

    Args:
        phi: The design matrix, shape ``(N, T)``.
        y: The targets, shape ``(N,)``.
        covariance: The posterior covariance of the coefficients, shape ``(T, T)``.
        noise_std: ``sigma``.

    Returns:
        The :class:`LeaveOneOut`.
    """
    phi, y = phi.to(torch.float64), y.to(torch.float64)
    cov = covariance.to(torch.float64)
    mean = cov @ (phi.T @ y) / noise_std**2
    hat = ((phi @ cov) * phi).sum(1) / noise_std**2
    residuals = (y - phi @ mean) / (1.0 - hat)
    mse = float(residuals.square().mean())
    var = float(y.var(unbiased=False))
    return LeaveOneOut(residuals, math.sqrt(mse), 1.0 - mse / var if var > 0 else math.nan)


def active_terms(
    mean: Tensor,
    std: Tensor,
    indices: Tensor,
    norms: Tensor,
    threshold: float = 2.0,
) -> list[dict[str, Any]]:
    """The terms of an expansion whose posterior is clearly away from zero.

    A term is active when ``|mean| >= threshold * std`` and its mean is not zero. Each
    comes with its share of the output variance, ``mean^2 ||Phi_t||^2 / sum`` over the
    non-constant terms (0 for the constant).

    Args:
        mean: The posterior means of the coefficients, shape ``(T, O)``.
        std: Their posterior standard deviations, shape ``(T, O)``.
        indices: The terms' multi-indices, shape ``(T, d)``.
        norms: The squared norms of the basis terms, shape ``(T,)``
            (:func:`~polymix_cli.sensitivity.basis_norms`).
        threshold: How many standard deviations away from zero.

    Returns:
        One dict per active term and output, ordered by output then by decreasing
        variance share: ``{"output", "index" (the multi-index), "mean", "std",
        "variance_share"}``.
    """
    mean, std = mean.detach().double().cpu(), std.detach().double().cpu()
    norms = norms.double().cpu()
    constant = indices.sum(1) == 0
    contribution = mean.square() * norms.unsqueeze(1)
    contribution[constant] = 0.0
    total = contribution.sum(0).clamp_min(1e-300)
    share = contribution / total
    active = (mean.abs() >= threshold * std) & (mean != 0)
    rows = []
    for o in range(mean.shape[1]):
        picked = active[:, o].nonzero().squeeze(1)
        order = picked[share[picked, o].argsort(descending=True)]
        for t in order.tolist():
            rows.append(
                {
                    "output": o,
                    "index": indices[t].tolist(),
                    "mean": float(mean[t, o]),
                    "std": float(std[t, o]),
                    "variance_share": float(share[t, o]),
                }
            )
    return rows


def coefficient_moments(model: Any, num_draws: int = 4096) -> tuple[Tensor, Tensor]:
    """The posterior mean and standard deviation of a PCE model's coefficients.

    Exact for deterministic, i.i.d. Gaussian and full-covariance Gaussian groups; other
    groups are summarised from ``num_draws`` draws (a generator seeded with 0).

    Args:
        model: A :class:`~polymix_cli.StochasticModel` whose surrogate is a
            :class:`~polymix_cli.surrogate_models.PolynomialChaosExpansion`, or a
            :class:`~polymix_cli.replicas.ReplicaEnsemble` of such models.
        num_draws: The draws for groups without closed-form moments.

    Returns:
        ``(mean, std)``, each shape ``(T, O)``, in the model's units.

    Raises:
        TypeError: If the surrogate is not a polynomial chaos expansion.
    """
    from .parameter_groups import DeterministicGroup, GaussianGroup, IIDGaussianGroup
    from .replicas import ReplicaEnsemble
    from .surrogate_models import PolynomialChaosExpansion

    pce = model.surrogate_model
    if not isinstance(pce, PolynomialChaosExpansion):
        raise TypeError(f"a polynomial chaos expansion is needed, got {type(pce).__name__}")
    if isinstance(model, ReplicaEnsemble):  # the mixture of the replicas' posteriors
        mean, std = model.parameter_moments()
        return mean.reshape(pce.num_terms, pce.num_outputs), std.reshape(pce.num_terms, -1)
    means, stds = [], []
    with torch.no_grad():
        for g in model.parameter_groups:
            if type(g) is DeterministicGroup:
                means.append(g.value.detach())
                stds.append(torch.zeros_like(g.value))
            elif type(g) is IIDGaussianGroup:
                means.append(g.mean.detach())
                stds.append(g.log_std.detach().exp())
            elif type(g) is GaussianGroup:
                means.append(g.mean.detach())
                stds.append(g.scale_tril().square().sum(1).sqrt())
            else:
                gen = torch.Generator(device=next(g.parameters()).device).manual_seed(0)
                draws = g.sample(num_draws, generator=gen)
                means.append(draws.mean(0))
                stds.append(draws.std(0))
    shape = (pce.num_terms, pce.num_outputs)
    return torch.cat(means).reshape(shape), torch.cat(stds).reshape(shape)


def model_active_terms(
    model: Any,
    threshold: float = 2.0,
    output_scale: Tensor | None = None,
    output_shift: Tensor | None = None,
) -> list[dict[str, Any]]:
    """The active terms of a PCE model (see :func:`active_terms`), with their multi-indices.

    With an output map ``y = z * output_scale + output_shift`` (the model trained on
    standardised outputs ``z``), the coefficients are given in the user's units: all are
    multiplied by the scale, and the shift is added to the constant term.

    Args:
        model: A :class:`~polymix_cli.StochasticModel` with a polynomial chaos expansion.
        threshold: How many posterior standard deviations from zero.
        output_scale: Shape ``(O,)``, or ``None``.
        output_shift: Shape ``(O,)``, or ``None``.

    Returns:
        The list of :func:`active_terms`.
    """
    from .sensitivity import basis_norms

    pce = model.surrogate_model
    mean, std = coefficient_moments(model)
    mean, std = mean.double().cpu(), std.double().cpu()
    active = (mean.abs() >= threshold * std) & (mean != 0)  # decided in the model's units
    if output_scale is not None:
        scale = output_scale.double().cpu()
        mean, std = mean * scale, std * scale
    if output_shift is not None:
        constant = pce.multi_indices.sum(1) == 0
        mean[constant] += output_shift.double().cpu()
    rows = active_terms(
        torch.where(active, mean, torch.zeros_like(mean)),
        std,
        pce.multi_indices.cpu(),
        basis_norms(pce.multi_indices.cpu(), pce.basis),
        threshold=0.0,
    )
    return rows
