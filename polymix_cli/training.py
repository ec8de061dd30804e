"""The training loop: optimizer and scheduler from config, the variational objective,
loss history. Knows nothing of files or terminals: callers observe it through hooks.

The loop guards against numerical faults: before every update it checks that the loss
and the gradients are finite. A non-finite value raises :class:`NonFiniteLoss` before
the update is applied, so the model, optimizer, scheduler, RNG and history stay those of
the last good epoch (the check costs about 1 % of a step on CPU)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from . import StochasticModel

__all__ = [
    "LOSSES",
    "OPTIMIZERS",
    "SCHEDULERS",
    "History",
    "NonFiniteLoss",
    "TrainSettings",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
    "get_rng_state",
    "set_rng_state",
]

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("onecycle", "cosine", "none")
LOSSES = ("mse_sum",)


def build_optimizer(cfg: Mapping[str, Any], params) -> torch.optim.Optimizer:
    """``optimizer`` config: ``name`` adamw | adam | sgd, ``lr``, ``weight_decay``, ``momentum``."""
    name, lr = cfg.get("name"), cfg.get("lr", 1e-2)
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer.name must be one of {list(OPTIMIZERS)}, got {name!r}")
    wd = cfg.get("weight_decay", 0.0)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    return torch.optim.SGD(params, lr=lr, momentum=cfg.get("momentum", 0.0), weight_decay=wd)


def build_scheduler(cfg: Mapping[str, Any], optimizer: torch.optim.Optimizer, total_steps: int):
    """``scheduler`` config: ``name`` onecycle | cosine | none. OneCycle peaks at
    ``max_lr_factor`` x the optimizer's lr; cosine decays to ``min_lr_factor`` x lr."""
    name = cfg.get("name")
    if name not in SCHEDULERS:
        raise ValueError(f"scheduler.name must be one of {list(SCHEDULERS)}, got {name!r}")
    base_lr = optimizer.param_groups[0]["lr"]
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.get("max_lr_factor", 10.0) * base_lr, total_steps=total_steps,
            pct_start=cfg.get("pct_start", 0.3),
        )
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=total_steps, eta_min=cfg.get("min_lr_factor", 0.0) * base_lr
        )
    return None


def get_rng_state(device: torch.device) -> dict[str, Tensor]:
    """The global torch RNG state, and the CUDA one when ``device`` is a CUDA device."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Mapping[str, Tensor], device: torch.device) -> None:
    """Restore a state from :func:`get_rng_state`."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@dataclass
class TrainSettings:
    """The ``trainer`` config's numeric part."""

    epochs: int
    num_samples: int
    weight_factor: float = 0.1
    loss: str = "mse_sum"


@dataclass
class History:
    """Per-epoch learning rate and losses (data, distribution, total)."""

    epochs: list[int] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    losses: list[Tensor] = field(default_factory=list)  # each (3,), detached

    COLUMNS = ("epoch", "lr", "data_loss", "distribution_loss", "total_loss")

    def rows(self) -> list[tuple[int, float, float, float, float]]:
        if not self.losses:
            return []
        values = torch.stack(self.losses).cpu().tolist()
        return [(e, lr, *v) for e, lr, v in zip(self.epochs, self.lr, values)]

    def last(self) -> dict[str, float]:
        """The latest epoch's losses (NaN before the first epoch)."""
        if not self.losses:
            return {"data": math.nan, "distribution": math.nan, "total": math.nan}
        data, dist, total = self.losses[-1].tolist()
        return {"data": data, "distribution": dist, "total": total}

    def state(self) -> dict[str, Any]:
        """Plain data and one ``(E, 3)`` CPU tensor, for a checkpoint."""
        losses = torch.stack(self.losses).cpu() if self.losses else torch.zeros(0, 3)
        return {"epoch": list(self.epochs), "lr": list(self.lr), "losses": losses}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], device: torch.device | str = "cpu") -> History:
        """The inverse of :meth:`state`; raises ``ValueError`` if the lengths disagree."""
        epochs, lr, losses = list(state["epoch"]), list(state["lr"]), state["losses"]
        if not isinstance(losses, Tensor) or losses.dim() != 2 or losses.shape[1] != 3 \
                or not len(epochs) == len(lr) == losses.shape[0]:
            raise ValueError("history must hold equally long epoch, lr and (E, 3) losses")
        return cls([int(e) for e in epochs], [float(v) for v in lr], list(losses.to(device).unbind(0)))


class NonFiniteLoss(ArithmeticError):
    """A NaN or infinite loss or gradient at ``epoch``; the update was not applied."""

    def __init__(self, epoch: int):
        super().__init__(f"non-finite loss at epoch {epoch}")
        self.epoch = epoch


class Trainer:
    """Minimises ``data_loss + weight_factor * distribution_loss`` over draws of the
    parameters. ``mse_sum`` is the seed's data term: the sum of squared errors over
    points and outputs, divided by the number of draws."""

    def __init__(
        self,
        model: StochasticModel,
        x: Tensor,
        y: Tensor,
        settings: TrainSettings,
        optimizer: torch.optim.Optimizer,
        scheduler=None,
    ):
        if settings.loss not in LOSSES:
            raise ValueError(f"trainer.loss must be one of {list(LOSSES)}, got {settings.loss!r}")
        self.model, self.x, self.y = model, x, y
        self.settings, self.optimizer, self.scheduler = settings, optimizer, scheduler
        self.epoch = 0  # epochs completed
        self.history = History()
        self.train_seconds = 0.0
        self.stop_requested = False  # set (e.g. by a signal handler) to stop after the current epoch
        self._params = [p for group in optimizer.param_groups for p in group["params"]]

    def losses(self) -> tuple[Tensor, Tensor, Tensor]:
        """One draw of the objective: (data, distribution, total)."""
        s = self.settings
        params = self.model.sample_parameters(s.num_samples)
        y_hat = self.model.surrogate_model(self.x, params)
        data = (y_hat - self.y).square().sum() / s.num_samples
        dist = self.model.distribution_loss()
        return data, dist, data + s.weight_factor * dist

    def _finite(self, total: Tensor) -> bool:
        """Whether the loss and every gradient are finite (one host sync)."""
        ok = torch.isfinite(total.detach())
        grads = [p.grad for p in self._params if p.grad is not None]
        if grads:
            ok = ok & torch.isfinite(torch.stack(torch._foreach_norm(grads))).all()
        return bool(ok)

    def step(self) -> Tensor:
        """One optimisation step; returns the detached losses ``(3,)``.

        Raises :class:`NonFiniteLoss` (for epoch ``self.epoch + 1``) before the update if
        the loss or a gradient is not finite; the torch RNG is then rewound as well."""
        rng = get_rng_state(self.x.device)
        self.optimizer.zero_grad(set_to_none=True)
        data, dist, total = self.losses()
        total.backward()
        if not self._finite(total):
            self.optimizer.zero_grad(set_to_none=True)
            set_rng_state(rng, self.x.device)
            raise NonFiniteLoss(self.epoch + 1)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return torch.stack([data, dist, total]).detach()

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def fit(self, hooks: Sequence[Callable[[Trainer], None]] = ()) -> History:
        """Train until ``settings.epochs``, or until ``stop_requested`` is set; each hook is
        called after every epoch. Raises :class:`NonFiniteLoss` on a numerical fault."""
        self.model.train()
        start = time.perf_counter()
        try:
            while self.epoch < self.settings.epochs and not self.stop_requested:
                losses = self.step()
                self.epoch += 1
                self.history.epochs.append(self.epoch)
                self.history.lr.append(self.current_lr())
                self.history.losses.append(losses)
                for hook in hooks:
                    hook(self)
        finally:
            self.train_seconds += time.perf_counter() - start
        return self.history
