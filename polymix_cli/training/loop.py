"""The training loop: optimizer and scheduler from config, the variational objective,
loss history. Knows nothing of files or terminals: callers observe it through hooks.

The loop guards against numerical faults: before every update it checks that the loss
and the gradients are finite. A non-finite value raises :class:`NonFiniteLoss` before
the update is applied, so the model, optimizer, scheduler, RNG and history stay those of
the last good epoch (the check, one sum per gradient and one host sync, costs a few
percent of a step of the seed experiment on CPU)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from polymix_cli import StochasticModel
from polymix_cli.config.schema import (
    GRADIENTS,
    LOSSES,
    OPTIMIZERS,
    SCHEDULERS,
    AdamConfig,
    AdamWConfig,
    ConstantScheduleConfig,
    CosineConfig,
    OneCycleConfig,
    OptimizerConfig,
    SchedulerConfig,
    SGDConfig,
    TrainerConfig,
)
from polymix_cli.training.analytic_step import AnalyticStep, ReplicaStep, unsupported_reason
from polymix_cli.training.closed_form import ClosedFormFit, closed_form_reason

if TYPE_CHECKING:
    from polymix_cli.replicas import Replicas
from polymix_cli.training.optim import SGD, Adam, Constant, Cosine, OneCycle

__all__ = [
    "GRADIENTS",
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

# the Trainer's settings are the config's ``trainer`` section
TrainSettings = TrainerConfig


def build_optimizer(cfg: OptimizerConfig, params) -> Adam | SGD:
    """The optimizer of the ``optimizer`` section: AdamW, Adam or SGD.

    Args:
        cfg: The ``optimizer`` section.
        params (Iterable[Tensor]): The parameters to optimise (e.g. ``model.parameters()``).

    Returns:
        The optimizer (AdamW is Adam with decoupled weight decay).

    Raises:
        ValueError: If the section names an unknown optimizer.
    """
    if isinstance(cfg, SGDConfig):
        return SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if isinstance(cfg, (AdamWConfig, AdamConfig)):
        decoupled = isinstance(cfg, AdamWConfig)
        return Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, decoupled=decoupled)
    raise ValueError(f"optimizer.name must be one of {list(OPTIMIZERS)}, got {cfg.name!r}")


def build_scheduler(cfg: SchedulerConfig, optimizer: Adam | SGD, total_steps: int):
    """The learning-rate schedule of the ``scheduler`` section.

    OneCycle peaks at ``max_lr_factor`` x the optimizer's lr; cosine decays to
    ``min_lr_factor`` x lr; none keeps it constant.

    Args:
        cfg: The ``scheduler`` section.
        optimizer: The optimizer whose lr it sets (its lr is the base).
        total_steps: The optimisation steps of the whole run.

    Returns:
        scheduler (OneCycle | Cosine | Constant): The scheduler, stepped once per
            optimisation step.

    Raises:
        ValueError: If the section names an unknown schedule.
    """
    base_lr = optimizer.param_groups[0]["lr"]
    if isinstance(cfg, OneCycleConfig):
        return OneCycle(
            optimizer,
            max_lr=cfg.max_lr_factor * base_lr,
            total_steps=total_steps,
            pct_start=cfg.pct_start,
        )
    if isinstance(cfg, CosineConfig):
        return Cosine(optimizer, total_steps, min_lr=cfg.min_lr_factor * base_lr)
    if isinstance(cfg, ConstantScheduleConfig):
        return Constant(optimizer, total_steps)
    raise ValueError(f"scheduler.name must be one of {list(SCHEDULERS)}, got {cfg.name!r}")


def get_rng_state(device: torch.device) -> dict[str, Tensor]:
    """The global torch RNG state, and the CUDA one when ``device`` is a CUDA device.

    Args:
        device: The device the run uses.

    Returns:
        ``{"torch": state}``, plus ``"cuda"`` for a CUDA device.
    """
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Mapping[str, Tensor], device: torch.device) -> None:
    """Restore a state from :func:`get_rng_state`.

    Args:
        state: The state.
        device: The device the run uses (the CUDA state is restored on a CUDA device).
    """
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@dataclass
class History:
    """Per-epoch learning rate and losses (data, distribution, total).

    With replicas (``trainer.replicas`` > 1) each epoch's losses are those of every
    replica, ``(K, 3)``.

    Args:
        epochs: The epoch numbers, from 1.
        lr: The learning rate at the end of each epoch.
        losses: Each epoch's losses, each a detached tensor of shape ``(3,)``, or ``(K, 3)``
            with replicas.
    """

    epochs: list[int] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    losses: list[Tensor] = field(default_factory=list)  # each (3,) or (K, 3), detached

    COLUMNS = ("epoch", "lr", "data_loss", "distribution_loss", "total_loss")

    @property
    def num_replicas(self) -> int:
        """``K``: 1 for a run without replicas (and before the first epoch)."""
        return self.losses[0].shape[0] if self.losses and self.losses[0].dim() == 2 else 1

    def columns(self) -> tuple[str, ...]:
        """The columns of :meth:`rows`: :attr:`COLUMNS`, then with replicas each replica's
        total loss (``total_loss_0``, ...)."""
        k = self.num_replicas
        return self.COLUMNS + (tuple(f"total_loss_{i}" for i in range(k)) if k > 1 else ())

    def rows(self, kept: int | None = None) -> list[tuple]:
        """The history as rows of :meth:`columns`: epoch, lr and the three losses.

        Args:
            kept: With replicas, the replica whose losses fill the three loss columns
                (``None``: the mean over the replicas); each replica's total follows.
        """
        if not self.losses:
            return []
        stacked = torch.stack(self.losses).cpu()
        if stacked.dim() == 3:
            main = stacked.mean(1) if kept is None else stacked[:, kept]
            values = torch.cat([main, stacked[:, :, 2]], 1).tolist()
        else:
            values = stacked.tolist()
        return [(e, lr, *v) for e, lr, v in zip(self.epochs, self.lr, values)]

    def last(self, replica: int | None = None) -> dict[str, float]:
        """The latest epoch's losses (NaN before the first epoch); with replicas those of
        ``replica``, or by default those of the one with the lowest total, whose index is
        then under ``replica``."""
        if not self.losses:
            return {"data": math.nan, "distribution": math.nan, "total": math.nan}
        last = self.losses[-1]
        if last.dim() == 2:
            if replica is not None:
                data, dist, total = last[replica].tolist()
                return {"data": data, "distribution": dist, "total": total}
            k = int(last[:, 2].argmin())
            data, dist, total = last[k].tolist()
            return {"data": data, "distribution": dist, "total": total, "replica": k}
        data, dist, total = last.tolist()
        return {"data": data, "distribution": dist, "total": total}

    def state(self) -> dict[str, Any]:
        """The history for a checkpoint: plain data and one ``(E, 3)`` CPU tensor
        (``(E, K, 3)`` with replicas).

        Returns:
            ``{"epoch": [...], "lr": [...], "losses": tensor (E, 3)}``.
        """
        losses = torch.stack(self.losses).cpu() if self.losses else torch.zeros(0, 3)
        return {"epoch": list(self.epochs), "lr": list(self.lr), "losses": losses}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], device: torch.device | str = "cpu") -> History:
        """The inverse of :meth:`state`.

        Args:
            state: A :meth:`state`.
            device: Where to put the losses.

        Returns:
            The history.

        Raises:
            ValueError: If the losses are not ``(E, 3)`` or ``(E, K, 3)`` or the lengths
                disagree.
        """
        epochs, lr, losses = list(state["epoch"]), list(state["lr"]), state["losses"]
        if (
            not isinstance(losses, Tensor)
            or losses.dim() not in (2, 3)
            or losses.shape[-1] != 3
            or not len(epochs) == len(lr) == losses.shape[0]
        ):
            raise ValueError("history must hold equally long epoch, lr and (E, 3) losses")
        return cls(
            [int(e) for e in epochs], [float(v) for v in lr], list(losses.to(device).unbind(0))
        )


class NonFiniteLoss(ArithmeticError):
    """A NaN or infinite loss or gradient at ``epoch``; the update was not applied.

    Args:
        epoch: The epoch of the fault.
    """

    def __init__(self, epoch: int):
        super().__init__(f"non-finite loss at epoch {epoch}")
        self.epoch = epoch


class Trainer:
    """Trains a :class:`~polymix_cli.StochasticModel` by stochastic variational inference.

    Uses the settings of the ``trainer`` section (:class:`TrainerConfig`, alias
    :data:`TrainSettings`): ``batch_size`` ``None`` (or >= the number of points) trains on
    all points at every step; ``gradients`` ``auto`` takes the hand-derived gradients of
    :mod:`~polymix_cli.training.analytic_step` where the model supports them (the same
    numbers up to rounding, in about half the time of a small step), ``autograd`` always
    autograd; ``compile`` implies autograd.

    Minimises ``data_loss + weight_factor * distribution_loss`` over draws of the
    parameters. The data term (``settings.loss``):

    - ``mse_sum``, the seed's: the sum of squared errors over points and outputs, divided
      by the number of draws;
    - ``gaussian_nll``: the negative Gaussian log likelihood with the model's learned
      noise (``model.noise``), ``-sum log N(y | y_hat_s, sigma^2)`` over points and
      outputs, averaged over the draws ``s``. With ``weight_factor=1`` the total is the
      negative ELBO (the noise prior, if any, is part of the distribution loss).

    A polynomial chaos expansion with an ARD prior on its coefficients and the
    ``gaussian_nll`` loss (``settings.inference=auto``, full batches) is not trained by
    gradients: each epoch is one iteration of the closed-form marginal-likelihood maximisation of
    :mod:`~polymix_cli.training.closed_form`, and training stops when it has converged.

    With mini-batches (``settings.batch_size`` < N) an epoch is one pass over a random
    permutation of the points, one optimisation step per batch, and the data term of a
    batch is scaled by ``N / batch`` so that it stays an unbiased estimate of the full
    term. The history then records the mean over the epoch's batches.

    Args:
        model: The model to train.
        x: Training inputs in the model's domain, shape ``(N, num_inputs)``.
        y: Training outputs in the model's domain, shape ``(N, num_outputs)``.
        settings: The ``trainer`` section.
        optimizer: The optimizer of the model's parameters (:func:`build_optimizer`), or
            of the replicas' with ``replicas``.
        scheduler (OneCycle | Cosine | Constant | None): The learning-rate schedule
            (:func:`build_scheduler`), or ``None``.
        replicas: The :class:`~polymix_cli.replicas.Replicas` to train instead of the
            model's own parameters (``trainer.replicas`` > 1), or ``None``. Each step then
            returns every replica's losses ``(K, 3)``; the optimised objective is their
            sum, so each replica follows the gradient of its own objective.

    Raises:
        ValueError: If ``settings.loss`` or ``settings.gradients`` is unknown, or the
            loss is ``gaussian_nll`` and the model has no noise.
    """

    def __init__(
        self,
        model: StochasticModel,
        x: Tensor,
        y: Tensor,
        settings: TrainerConfig,
        optimizer: Adam | SGD,
        scheduler=None,
        replicas: Replicas | None = None,
    ):
        if settings.loss not in LOSSES:
            raise ValueError(f"trainer.loss must be one of {list(LOSSES)}, got {settings.loss!r}")
        if settings.gradients not in GRADIENTS:
            raise ValueError(
                f"trainer.gradients must be one of {list(GRADIENTS)}, got {settings.gradients!r}"
            )
        if settings.loss == "gaussian_nll" and model.noise is None:
            raise ValueError(
                "trainer.loss=gaussian_nll needs a model with a learned noise "
                "(StochasticModel(..., noise=GaussianNoise(num_outputs)))"
            )
        self.model, self.x, self.y = model, x, y
        self.settings, self.optimizer, self.scheduler = settings, optimizer, scheduler
        n = x.shape[0]
        batch = settings.batch_size
        self.batch_size = n if batch is None or batch >= n else int(batch)
        self.epoch = 0  # epochs completed
        self.history = History()
        self.train_seconds = 0.0
        self.stop_requested = (
            False  # set (e.g. by a signal handler) to stop after the current epoch
        )
        self._params = [p for group in optimizer.param_groups for p in group["params"]]
        self.replicas = replicas
        self._objective = self._losses if replicas is None else self._replica_losses
        self._analytic: AnalyticStep | None = None
        self._closed_form: ClosedFormFit | None = None
        # a sparse Bayesian PCE: no gradients (replicas would fit the same posterior K times)
        if replicas is None and closed_form_reason(model, settings, n) is None:
            self._closed_form = ClosedFormFit(model, x, y)
            self.gradient_path = "closed form (sparse Bayesian learning)"
        else:
            self.gradient_path = self._choose_gradients()
        if self.gradient_path == "analytic":
            args = (settings.loss, settings.num_samples, settings.kl_weight())
            self._analytic = (
                AnalyticStep(model, *args) if replicas is None else ReplicaStep(replicas, *args)
            )
        if settings.compile and self._closed_form is None:
            with torch.no_grad():  # fill caches (the basis matrix of x) before tracing
                model.predict(x, model.sample_parameters(1))
            self._objective = torch.compile(self._objective)

    def _choose_gradients(self) -> str:
        """``"analytic"``, or ``"autograd"`` with the reason in parentheses when not asked for."""
        s = self.settings
        if s.gradients == "autograd":
            return "autograd"
        reason = "trainer.compile" if s.compile else unsupported_reason(self.model, s.loss)
        loc = (
            self.model.mean_field.loc if reason is None else None
        )  # a mean-field layout when supported
        if loc is not None and (self.x.dtype != loc.dtype or self.x.device != loc.device):
            reason = "data and parameters of different dtypes or devices"
        return "analytic" if reason is None else f"autograd ({reason})"

    @property
    def closed_form(self) -> ClosedFormFit | None:
        """The closed-form sparse Bayesian fit when it trains the model, else ``None``."""
        return self._closed_form

    @property
    def steps_per_epoch(self) -> int:
        """The optimisation steps of one epoch, ``ceil(N / batch_size)``."""
        return math.ceil(self.x.shape[0] / self.batch_size)

    def _losses(self, x: Tensor, y: Tensor, scale: float) -> tuple[Tensor, Tensor, Tensor]:
        s = self.settings
        params, dist = self.model.sample_with_loss(s.num_samples)
        y_hat = self.model.predict(x, params)
        if s.loss == "gaussian_nll":
            data = self.model.noise.neg_log_likelihood(y_hat, y) * (scale / s.num_samples)
        else:
            data = F.mse_loss(y_hat, y.expand_as(y_hat), reduction="sum") * (scale / s.num_samples)
        return data, dist, torch.add(data, dist, alpha=s.kl_weight())

    def _replica_losses(self, x: Tensor, y: Tensor, scale: float) -> tuple[Tensor, Tensor, Tensor]:
        """Each replica's ``(data, distribution, total)``, three ``(K,)`` tensors."""
        s = self.settings
        out = self.replicas.losses(x, y, scale, s.num_samples, s.loss, s.kl_weight())
        return out[:, 0], out[:, 1], out[:, 2]

    def losses(self) -> tuple[Tensor, Tensor, Tensor]:
        """One draw of the full-data objective.

        Returns:
            ``(data, distribution, total)``, three scalars (0-dim tensors) with autograd
            graphs.
        """
        return self._objective(self.x, self.y, 1.0)

    def _finite(self, total: Tensor) -> bool:
        """Whether the loss and every gradient are finite (one host sync): a NaN or an
        infinity anywhere makes their sum non-finite."""
        check = total.detach()
        for p in self._params:
            if p.grad is not None:
                check = check + p.grad.sum()
        return math.isfinite(check.item())

    def step(self, x: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        """One optimisation step on a batch.

        Args:
            x: Batch inputs, shape ``(B, num_inputs)`` (default: all points).
            y: Batch outputs, shape ``(B, num_outputs)`` (default: all points).

        Returns:
            The detached losses (data, distribution, total), shape ``(3,)``, the data term
            scaled to the full data set; with replicas ``(K, 3)``, one row per replica.

        Raises:
            NonFiniteLoss: For epoch ``self.epoch + 1``, before the update, if the loss or
                a gradient is not finite; the torch RNG is then rewound as well.
        """
        if self._closed_form is not None:  # one iteration of the marginal-likelihood maximisation
            losses = self._closed_form()
            self.stop_requested = self.stop_requested or self._closed_form.converged
            return losses
        x = self.x if x is None else x
        y = self.y if y is None else y
        rng = get_rng_state(self.x.device)
        self.optimizer.zero_grad(set_to_none=True)
        scale = self.x.shape[0] / x.shape[0]
        if self._analytic is not None:  # losses (3,) or (K, 3) and gradients, no graph
            losses = self._analytic(x, y, scale)
            total = losses[2] if losses.dim() == 1 else losses[:, 2].sum()
        else:
            data, dist, total = self._objective(x, y, scale)
            if self.replicas is not None:  # the sum: each replica's gradient is its own
                losses = torch.stack([data, dist, total], 1).detach()
                total = total.sum()
            else:
                losses = torch.stack([data.detach(), dist.detach(), total.detach()])
            total.backward()
        if not self._finite(total):
            self.optimizer.zero_grad(set_to_none=True)
            set_rng_state(rng, self.x.device)
            raise NonFiniteLoss(self.epoch + 1)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return losses

    def epoch_step(self) -> Tensor:
        """One epoch: a full-batch step, or one step per mini-batch of a random permutation.

        Returns:
            The epoch's losses, shape ``(3,)`` (the mean over its batches), ``(K, 3)`` with
            replicas.

        Raises:
            NonFiniteLoss: On a non-finite loss or gradient.
        """
        if self.batch_size >= self.x.shape[0]:
            return self.step()
        order = torch.randperm(self.x.shape[0], device=self.x.device)
        losses = [self.step(self.x[idx], self.y[idx]) for idx in order.split(self.batch_size)]
        return torch.stack(losses).mean(0)

    def current_lr(self) -> float:
        """The optimizer's current learning rate (of its first parameter group)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def fit(self, hooks: Sequence[Callable[[Trainer], None]] = ()) -> History:
        """Train until ``settings.epochs``, or until ``stop_requested`` is set.

        Args:
            hooks: Called with the trainer after every epoch.

        Returns:
            The history (also ``self.history``).

        Raises:
            NonFiniteLoss: On a numerical fault.
        """
        self.model.train()
        start = time.perf_counter()
        try:
            while self.epoch < self.settings.epochs and not self.stop_requested:
                losses = self.epoch_step()
                self.epoch += 1
                self.history.epochs.append(self.epoch)
                self.history.lr.append(self.current_lr())
                self.history.losses.append(losses)
                for hook in hooks:
                    hook(self)
        finally:
            if self._closed_form is not None:  # the posterior so far, also when interrupted
                self._closed_form.write()
            self.train_seconds += time.perf_counter() - start
        return self.history
