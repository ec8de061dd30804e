"""Replicas in a run (``trainer.replicas`` > 1): building them, choosing what is kept, and
what ``metrics.json`` and the checkpoints record of them.

The replicas' initial states are drawn after the run's own model, from the same seeded
stream: replica 0 is the model a run without replicas would train, replicas 1 to K-1 are
further draws of the same initialisation. After training, ``trainer.replica_selection``
decides what the run's model is:

- ``best``: the replica with the lowest validation NLL when the data have a validation
  split (a held-out score: it judges the predictive, not just the fit, and never looks
  at the test set), else the lowest final training objective (the total loss of the
  last epoch; a stuck optimiser shows there as a clearly higher total);
- ``ensemble``: the equal-weight mixture of the replicas' posteriors
  (:class:`~polymix_cli.replicas.ReplicaEnsemble`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import torch

from polymix_cli import StochasticModel
from polymix_cli.config.build import build_model
from polymix_cli.config.schema import TrainerConfig
from polymix_cli.config.validation import ConfigError
from polymix_cli.replicas import ReplicaEnsemble, Replicas
from polymix_cli.reporting.evaluation import draw_function, noise_std
from polymix_cli.reporting.metrics import (
    CALIBRATION_LEVELS,
    interval_probs,
    point_elements,
    summarize_predictive,
    summary_metrics,
)
from polymix_cli.runs.prepare import Prepared
from polymix_cli.training.loop import Trainer

__all__ = [
    "ReplicaChoice",
    "build_replicas",
    "choose_replicas",
    "model_for_evaluation",
    "stored_replicas",
]


def build_replicas(p: Prepared) -> Replicas | None:
    """The replicas of a run, or ``None`` with ``trainer.replicas`` 1.

    Replica 0 holds the state of ``p.model``; the others are built like it, drawing their
    initial states from torch's global generator (seeded by ``prepare``).

    Args:
        p: The prepared run.

    Returns:
        The replicas on the run's device, or ``None``.

    Raises:
        ConfigError: If the layout is not mean-field.
    """
    cfg = p.cfg
    k = cfg.trainer.replicas
    if k == 1:
        return None
    if p.model.mean_field is None:
        raise ConfigError(
            f"trainer.replicas={k} needs a mean-field layout (every group deterministic or "
            f"iid_gaussian with an iid_gaussian prior); this layout is not; use trainer.replicas=1"
        )
    models = [p.model]
    for _ in range(k - 1):
        model, _ = build_model(
            cfg.model, cfg.layout, p.data.num_inputs, p.data.num_outputs, cfg.trainer
        )
        models.append(model.to(p.device))
    return Replicas(models).to(p.device)


@dataclasses.dataclass
class ReplicaChoice:
    """What a run with replicas keeps, and why.

    Args:
        selection: ``best`` or ``ensemble``.
        criterion: What ``best`` ranks by: ``val.nll`` or ``train.total_loss``.
        kept: The replica kept (``best``); for ``ensemble`` the best by the criterion,
            whose state is the checkpoint's ``model``.
        replicas: Per replica: its final ``losses`` and (with a validation split) ``val``
            metrics.
    """

    selection: str
    criterion: str
    kept: int
    replicas: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """The ``replicas`` block of ``metrics.json``."""
        return {
            "count": len(self.replicas),
            "selection": self.selection,
            "criterion": self.criterion,
            "kept": self.kept if self.selection == "best" else None,
            "replicas": self.replicas,
        }


def _validation(p: Prepared) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The validation inputs and outputs, in the user's units, or ``None``."""
    x, y = getattr(p.data, "x_val", None), getattr(p.data, "y_val", None)
    if x is None or y is None or x.shape[0] == 0:
        return None
    return x, y


@torch.no_grad()
def _val_metrics(
    model: StochasticModel, p: Prepared, x: torch.Tensor, y: torch.Tensor
) -> dict[str, Any]:
    """The validation metrics of one model, drawn as the evaluation draws them."""
    ev = p.cfg.eval
    generator = torch.Generator(device=x.device).manual_seed(p.cfg.seed)
    params = model.sample_parameters(ev.num_samples, generator=generator)
    levels = tuple(float(v) for v in ev.levels)
    probs = interval_probs(levels + (ev.band,) + CALIBRATION_LEVELS)
    summary = summarize_predictive(
        draw_function(model, params, p.maps),
        x,
        probs,
        y=y,
        per_point=point_elements(model.surrogate_model, ev.num_samples),
        noise_std=noise_std(model, p.maps),
        generator=generator,
    )
    y_true = p.data.true_fn(x) if p.data.true_fn is not None else None
    return summary_metrics(summary, y, levels, y_true)


def choose_replicas(p: Prepared, trainer: Trainer) -> ReplicaChoice:
    """Rank the trained replicas and write the kept one into ``p.model``.

    Ranked by validation NLL when the data have a validation split, else by the final
    training objective (see the module's description). The test set is never used.

    Args:
        p: The prepared run (its model is overwritten with the kept replica).
        trainer: The trainer, with its replicas and at least one epoch of history.

    Returns:
        The choice.
    """
    replicas, t = trainer.replicas, p.cfg.trainer
    final = trainer.history.losses[-1].cpu() if trainer.history.losses else None
    rows: list[dict[str, Any]] = []
    for k in range(replicas.num_replicas):
        losses = (
            dict(zip(("data", "distribution", "total"), final[k].tolist()))
            if final is not None
            else {"data": math.nan, "distribution": math.nan, "total": math.nan}
        )
        rows.append({"replica": k, "losses": losses})
    val = _validation(p)
    if val is not None:
        was_training = p.model.training
        for k, row in enumerate(rows):
            row["val"] = _val_metrics(replicas.copy_to(k, p.model), p, *val)
        p.model.train(was_training)
        criterion = "val.nll"
        scores = [row["val"]["nll"] for row in rows]
    else:
        criterion = "train.total_loss"
        scores = [row["losses"]["total"] for row in rows]
    finite = [s if s is not None and math.isfinite(s) else math.inf for s in scores]
    kept = min(range(len(finite)), key=finite.__getitem__)
    replicas.copy_to(kept, p.model)
    return ReplicaChoice(t.replica_selection, criterion, kept, rows)


def model_for_evaluation(
    model: StochasticModel, trainer_cfg: TrainerConfig, stored: Mapping[str, Any] | None
) -> StochasticModel | ReplicaEnsemble:
    """The model a run's predictive comes from: ``model`` itself, or with
    ``replica_selection=ensemble`` the mixture of the stored replicas.

    Args:
        model: The run's model (for ``best``, the kept replica).
        trainer_cfg: The run's ``trainer`` section.
        stored: The replicas' state (a checkpoint's ``replicas``), or ``None``.

    Returns:
        The model or the ensemble.

    Raises:
        TypeError: If an ensemble's replicas are missing.
        RuntimeError: If they do not match the model.
    """
    if trainer_cfg.replicas == 1 or trainer_cfg.replica_selection != "ensemble":
        return model
    if not isinstance(stored, Mapping):
        raise TypeError("it holds no replicas state")
    replicas = Replicas.like(model, trainer_cfg.replicas)
    replicas.load_state_dict(stored)
    return ReplicaEnsemble(replicas.to(model.mean_field.loc.device))


def stored_replicas(trainer: Trainer) -> dict[str, Any]:
    """The checkpoint entries of a trainer's replicas (none without replicas)."""
    if trainer.replicas is None:
        return {}
    return {"replicas": trainer.replicas.state_dict()}
