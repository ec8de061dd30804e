"""``metrics.json``'s ``loo`` for models trained by gradients: PSIS leave-one-out from the
posterior draws (:mod:`polymix_cli.loo`), for models with a likelihood (``gaussian_nll``).

A closed-form sparse PCE fit reports its exact leave-one-out instead
(:mod:`polymix_cli.training.closed_form`); see docs/guides/validation.md for what each
model gets and why.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from polymix_cli import StochasticModel
from polymix_cli.config.schema import TrainConfig
from polymix_cli.loo import psis_loo_model

__all__ = ["psis_metrics"]

log = logging.getLogger("polymix")


def psis_metrics(
    model: Any, cfg: TrainConfig, x: torch.Tensor, y: torch.Tensor, output_scale: torch.Tensor
) -> dict[str, Any]:
    """``{"loo": ...}`` with the PSIS leave-one-out figures of a model trained by stochastic
    VI with a Gaussian likelihood, or ``{}`` when it has none (another loss, an ensemble of
    replicas). Warns when some training points' estimates are unreliable.

    Args:
        model: The evaluated model.
        cfg: The run's config (``eval.num_samples`` draws, seeded by ``seed``).
        x: Training inputs in the model's domain, shape ``(N, d)``.
        y: Training outputs in the model's domain, shape ``(N, O)``.
        output_scale: The output map's scale, shape ``(O,)``: the errors and the log
            density are reported in the user's units.

    Returns:
        ``{"loo": {"method": "psis", "rmse", "q2", "elpd", "pareto_k_max",
        "unreliable_points", "k_threshold"}}`` or ``{}``.
    """
    if (
        not isinstance(model, StochasticModel)
        or model.noise is None
        or cfg.trainer.loss != "gaussian_nll"
    ):
        return {}
    device = model.noise.log_std.device
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    loo = psis_loo_model(model, x, y, cfg.eval.num_samples, gen)
    scale = output_scale.detach().to(torch.float64).cpu()
    n = x.shape[0]
    if loo.unreliable:
        log.warning(
            "polymix: warning: the PSIS leave-one-out estimate is unreliable at %d of the %d "
            "training points (Pareto k above %.2f): leaving one of them out moves the posterior "
            "too far for the draws to tell; hold out a test set to validate this model",
            loo.unreliable,
            n,
            loo.threshold,
        )
    k_max = float(loo.pareto_k.max())
    return {
        "loo": {
            "method": "psis",
            "rmse": (loo.rmse * scale).tolist(),
            "q2": loo.q2.tolist(),
            "elpd": loo.elpd - n * float(scale.log().sum()),
            "pareto_k_max": k_max if math.isfinite(k_max) else None,
            "unreliable_points": loo.unreliable,
            "k_threshold": loo.threshold,
        }
    }
