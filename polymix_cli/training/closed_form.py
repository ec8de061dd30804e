"""The closed-form fit of a sparse Bayesian polynomial chaos expansion, one iteration per
epoch of the :class:`~polymix_cli.training.loop.Trainer`.

A PCE is linear in its coefficients; with a Gaussian likelihood (``gaussian_nll``) and
an ARD prior on the coefficients, the posterior given the prior scales and the noise is
Gaussian in closed form, and the scales and the noise maximise the marginal likelihood
(:class:`~polymix_cli.sparsity.FastSparseBayes`). Each epoch runs one iteration of that
algorithm per output and writes the posterior into the model: the coefficient group's
mean and covariance (full for a ``gaussian`` group, its diagonal for ``iid_gaussian``),
the prior's fitted scales and the learned noise. The recorded losses are the expected
negative log likelihood (data), the KL divergence of the posterior to the fitted prior
(distribution) and their sum, the negative ELBO, which equals the negative log marginal likelihood
since the posterior is exact. Training stops when every output has converged; a resumed
run continues from the checkpoint's fitted scales and noise.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from polymix_cli import StochasticModel
from polymix_cli.config.build import MAX_FULL_COVARIANCE
from polymix_cli.config.schema import TrainerConfig
from polymix_cli.parameter_groups import GaussianGroup, IIDGaussianGroup
from polymix_cli.priors import ARDPrior
from polymix_cli.sparsity import FastSparseBayes
from polymix_cli.surrogate_models import PolynomialChaosExpansion

__all__ = ["ClosedFormFit", "closed_form_reason", "fitted_report"]


def closed_form_reason(
    model: StochasticModel, settings: TrainerConfig, num_points: int
) -> str | None:
    """``None`` if :class:`ClosedFormFit` trains ``model``, else why not (a short phrase).

    Args:
        model: The model.
        settings: The ``trainer`` section.
        num_points: The number of training points.

    Returns:
        ``None``, or the reason.
    """
    if settings.inference != "auto":
        return f"trainer.inference={settings.inference}"
    if settings.loss != "gaussian_nll" or model.noise is None:
        return "a loss other than gaussian_nll"
    if type(model.surrogate_model) is not PolynomialChaosExpansion:
        return f"a {type(model.surrogate_model).__name__} surrogate"
    groups = list(model.parameter_groups)
    if len(groups) != 1 or type(groups[0]) not in (GaussianGroup, IIDGaussianGroup):
        return "coefficients not in one gaussian or iid_gaussian group"
    if not isinstance(groups[0].prior, ARDPrior):
        return f"a {type(groups[0].prior).__name__} on the coefficients"
    if settings.batch_size is not None and settings.batch_size < num_points:
        return "mini-batches"
    terms = model.surrogate_model.num_terms
    # Not memory (with iid_gaussian the fit holds rows x terms and terms x active terms):
    # with tens of thousands of candidates for a few hundred rows, its fixed charge per term
    # lets many spurious terms in (docs/guides/data.md, Many inputs); those models are left
    # to variational inference.
    if terms > MAX_FULL_COVARIANCE:
        return f"{terms} candidate terms, more than {MAX_FULL_COVARIANCE}"
    return None


def _inverse_softplus(x: Tensor) -> Tensor:
    return x + torch.log(-torch.expm1(-x))


class ClosedFormFit:
    """The sparse Bayesian fit of a PCE model, one iteration per call.

    Args:
        model: A model for which :func:`closed_form_reason` is ``None``.
        x: Training inputs in the model's domain, shape ``(N, d)``.
        y: Training outputs in the model's domain, shape ``(N, O)``.
        from_model: Start from the model's prior scales and noise even when no term is
            pruned (``False``: only from a fitted prior, one with a zero scale).
    """

    def __init__(self, model: StochasticModel, x: Tensor, y: Tensor, from_model: bool = False):
        self.model = model
        self.from_model = bool(from_model)
        pce: PolynomialChaosExpansion = model.surrogate_model  # type: ignore[assignment]
        self.group = model.parameter_groups[0]
        self.prior: ARDPrior = self.group.prior  # type: ignore[assignment]
        with torch.no_grad():
            self.phi = pce.basis_matrix(x).detach().to(torch.float64)
        self.y = y.detach()
        self.num_terms, self.num_outputs = pce.num_terms, pce.num_outputs
        self._fits: list[FastSparseBayes] | None = None

    @property
    def fits(self) -> list[FastSparseBayes]:
        """One fit per output, made at first use: after a resumed run's checkpoint is
        loaded into the model, the fit continues from the fitted scales and noise found
        there (a fitted ARD prior has zero scales for its inactive terms)."""
        if self._fits is None:
            scale = self.prior.scale.detach().to(torch.float64).cpu()
            noise = self.model.noise.log_std.detach().to(torch.float64).exp().cpu()
            fitted = self.from_model or bool((scale == 0).any())
            o = self.num_outputs
            self._fits = [
                FastSparseBayes(
                    self.phi,
                    self.y[:, k],
                    penalty=self.prior.penalty,
                    start=(scale[k::o], float(noise[k])) if fitted else None,
                )
                for k in range(o)
            ]
        return self._fits

    @property
    def converged(self) -> bool:
        """Whether every output's fit has converged."""
        return all(f.converged for f in self.fits)

    def __call__(self) -> Tensor:
        """One iteration for every output not yet converged; the posterior is written into
        the model once all have converged (see :meth:`write`).

        Returns:
            The losses ``(data, distribution, total)``, shape ``(3,)``, summed over outputs.
        """
        for f in self.fits:
            f.step()
        if self.converged:
            self.write()
        return self.losses()

    def losses(self) -> Tensor:
        """The losses ``(data, distribution, total)`` of the current posterior, shape
        ``(3,)``, summed over outputs."""
        data = sum(f.expected_nll() for f in self.fits)
        total = -sum(f.log_marginal_likelihood() for f in self.fits)
        return torch.tensor([data, total - data, total], dtype=self.group.mean.dtype)

    @torch.no_grad()
    def write(self) -> None:
        """Write the current posterior, prior scales and noise into the model (done at
        convergence, and by the trainer whenever training stops)."""
        t, o = self.num_terms, self.num_outputs
        size = t * o
        g = self.group
        mean = torch.zeros(size, dtype=torch.float64)
        # a full covariance is a Cholesky factor over all terms; else only the variances
        chol = (
            torch.zeros(size, size, dtype=torch.float64) if isinstance(g, GaussianGroup) else None
        )
        variance = torch.zeros(size, dtype=torch.float64)
        prior_std = torch.zeros(size, dtype=torch.float64)
        for k, f in enumerate(self.fits):
            # the selected model's mean; its covariance includes the pruned terms that the
            # marginal likelihood does not rule out (the band accounts for the selection),
            # held over those terms only (the others have zero rows and columns)
            m, support, block, _ = f.supported_coefficients()
            where = torch.arange(t) * o + k  # the output's entries in the row-major block
            mean[where] = m
            variance[where[support]] = block.diagonal()
            prior_std[where] = f.prior_std()
            if chol is None:
                continue
            keep = (block.diagonal() > 0).nonzero().squeeze(1)
            idx, sub = support[keep], block[keep.unsqueeze(1), keep]
            # the supported block's Cholesky factor, placed at sorted positions: still lower
            # triangular; the other terms keep a zero row (the group's jitter remains)
            jitter = 1e-12 * sub.diagonal().mean().clamp_min(1e-300)
            eye = torch.eye(len(idx), dtype=torch.float64)
            lower, info = torch.linalg.cholesky_ex(sub + jitter * eye)
            while int(info) != 0:  # rounding in the joint block: regularise
                jitter = jitter * 100.0
                lower, info = torch.linalg.cholesky_ex(sub + jitter * eye)
            chol[where[idx].unsqueeze(1), where[idx]] = lower
        dtype = g.mean.dtype
        if chol is not None:
            diag = (chol.diagonal() - g.jitter).clamp_min(1e-30)
            raw = chol.tril(-1) + torch.diag(_inverse_softplus(diag))
            g.raw_scale_tril.copy_(raw.to(dtype))
        else:
            g.log_std.copy_((0.5 * variance.clamp_min(1e-60).log()).to(dtype))
        g.mean.copy_(mean.to(dtype))
        self.prior.scale.copy_(prior_std.to(self.prior.scale.dtype))
        noise = torch.tensor([math.log(f.noise_std) for f in self.fits], dtype=torch.float64)
        self.model.noise.log_std.copy_(noise.to(self.model.noise.log_std.dtype))

    def report(self, output_scale: Tensor | None = None) -> dict:
        """The fit's figures for ``metrics.json``, per output.

        Args:
            output_scale: The scale of the output map (the LOO error is reported in the
                user's units), shape ``(O,)``, or ``None``.

        Returns:
            ``{"loo": {"method": "closed_form", "rmse": [...], "q2": [...]}, "sparse_fit": {"iterations",
            "converged", "active_terms": [...], "candidate_terms"}}``.
        """
        scale = [1.0] * self.num_outputs if output_scale is None else output_scale.tolist()
        loo = [f.leave_one_out() for f in self.fits]
        return {
            "loo": {
                "method": "closed_form",
                "rmse": [r.rmse * float(c) for r, c in zip(loo, scale)],
                "q2": [r.q2 for r in loo],
            },
            "sparse_fit": {
                "iterations": max(f.iterations for f in self.fits),
                "converged": self.converged,
                "active_terms": [len(f.active) for f in self.fits],
                "candidate_terms": self.num_terms,
            },
        }


def fitted_report(
    model: StochasticModel, x: Tensor, y: Tensor, output_scale: Tensor | None = None
) -> dict:
    """The figures :meth:`ClosedFormFit.report` gives, for a model fitted before (``polymix
    evaluate``): the leave-one-out errors on ``(x, y)`` at the model's fitted prior scales
    and noise, its active and candidate terms, and whether the fit had converged (one
    more iteration from the stored state would change nothing). The number of
    iterations is the training run's own and is not repeated.

    Args:
        model: A model trained by :class:`ClosedFormFit` (the caller checks
            :func:`closed_form_reason`); it is not changed.
        x: Training inputs in the model's domain, shape ``(N, d)``.
        y: Training outputs in the model's domain, shape ``(N, O)``.
        output_scale: The scale of the output map, shape ``(O,)``, or ``None``.

    Returns:
        ``{"loo": ..., "sparse_fit": {"converged", "active_terms", "candidate_terms"}}``.
    """
    fit = ClosedFormFit(model, x, y, from_model=True)
    report = fit.report(output_scale)
    del report["sparse_fit"]["iterations"]
    for f in fit.fits:  # the fits are copies: the model keeps its posterior
        f.step()
    report["sparse_fit"]["converged"] = fit.converged
    return report
