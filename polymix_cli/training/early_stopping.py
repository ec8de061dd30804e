"""The validation objective of a model, and early stopping on it.

The validation objective is the negative log predictive density of the validation set,
the mean over its points of the sum over outputs: the ``val.nll`` of ``metrics.json``,
in the same (the user's) units, estimated from fewer draws. It is what model selection
looks at (early stopping here; replica selection and sweeps may use it too); the test set
never enters it.

Each call draws the parameters from a generator seeded afresh with the same seed, so two
calls on the same model give the same number and successive checks of a training run
differ only by the model (common random numbers), and the global torch RNG is left alone:
a run draws the same training numbers with or without the checks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from polymix_cli import StochasticModel
from polymix_cli.config.schema import EarlyStoppingConfig
from polymix_cli.reporting.metrics import predictive_nll

__all__ = ["EarlyStopping", "ValidationObjective"]


class ValidationObjective:
    """The validation NLL of a model (lower is better); see the module's description.

    Args:
        x: Validation inputs in the model's domain, shape ``(N, D)``.
        y: Validation outputs in the model's domain, shape ``(N, O)``.
        num_samples: The parameter draws of each call.
        seed: The seed of the draws (the same at every call).
        output_scale: The output map's scale per output (``y_user = y_model * scale +
            shift``), shape ``(O,)``: the NLL is reported in the user's units, which adds
            ``sum log scale``; ``None``: the identity.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        num_samples: int,
        seed: int,
        output_scale: Tensor | None = None,
    ):
        self.x, self.y, self.num_samples, self.seed = x, y, int(num_samples), int(seed)
        self.log_scale = 0.0 if output_scale is None else float(output_scale.log().sum())

    @classmethod
    def of_run(cls, p: Any, num_samples: int) -> ValidationObjective | None:
        """The objective of a prepared run (:class:`~polymix_cli.runs.prepare.Prepared`).

        Args:
            p: The prepared run: its validation set (``x_val``, ``y_val``), output map
                and seed.
            num_samples: The parameter draws of each call.

        Returns:
            The objective, or ``None`` when the run has no validation set.
        """
        if p.x_val is None:
            return None
        scale = None if p.maps.outputs.is_identity else p.maps.outputs.scale
        return cls(p.x_val, p.y_val, num_samples, p.cfg.seed, scale)

    def draws(self, model: StochasticModel) -> tuple[Tensor, Tensor | None]:
        """The model's draws at the validation inputs and its noise std (model units).

        Args:
            model: The model.

        Returns:
            ``(draws (S, N, O), noise std (O,) or None)``, detached (with leading
            dimensions where the model's own draws have them).
        """
        generator = torch.Generator(device=self.x.device).manual_seed(self.seed)
        with torch.no_grad():
            params = model.sample_parameters(self.num_samples, generator=generator)
            draws = model.predict(self.x, params)
        sigma = None if model.noise is None else model.noise.std.detach()
        return draws, sigma

    def values(self, model: StochasticModel) -> Tensor:
        """The validation NLL as a tensor, one value per leading dimension of the model's
        draws (a model whose ``predict`` returns ``(..., S, N, O)``, e.g. replicas, and
        whose noise std is ``(..., O)``).

        Args:
            model: The model (in its current state).

        Returns:
            Shape ``(...)``, in the user's units.
        """
        draws, sigma = self.draws(model)
        return predictive_nll(draws, self.y, sigma) + self.log_scale

    def __call__(self, model: StochasticModel) -> float:
        """The validation NLL of ``model``.

        Args:
            model: The model (in its current state).

        Returns:
            The NLL in the user's units (``inf`` or ``nan`` when the draws have no
            density, e.g. a model without spread and without noise).
        """
        return float(self.values(model))


class EarlyStopping:
    """Stops training when the validation objective has not improved for a while.

    A hook of :meth:`~polymix_cli.training.loop.Trainer.fit`: every ``settings.every``
    epochs, and at the last epoch, it computes the objective. A value below the best so
    far by more than ``settings.min_delta`` is an improvement: the epoch and a copy of
    the model's state are kept. When ``settings.patience`` epochs have passed since the
    last improvement (since the start if there was none), it sets the trainer's
    ``stop_requested`` and records :attr:`stopped_epoch`.

    Args:
        objective: The validation objective.
        settings: The ``trainer.early_stopping`` section (``patience`` set).
    """

    def __init__(self, objective: ValidationObjective, settings: EarlyStoppingConfig):
        if settings.patience is None:
            raise ValueError("early stopping needs trainer.early_stopping.patience")
        self.objective, self.settings = objective, settings
        self.best_value = math.inf
        self.best_epoch: int | None = None  # None: no finite value yet
        self.best_state: dict[str, Tensor] | None = None
        self.stopped_epoch: int | None = None  # the epoch it stopped at; None: it did not
        self.last_epoch: int | None = None  # of the latest check
        self.last_value: float | None = None

    @property
    def stopped(self) -> bool:
        """Whether it has stopped training."""
        return self.stopped_epoch is not None

    def __call__(self, trainer: Any) -> None:
        """The hook: check at every ``settings.every`` epochs and at the last one."""
        epoch = trainer.epoch
        if epoch % self.settings.every == 0 or epoch >= trainer.settings.epochs:
            self.check(trainer.model, epoch)
            if self.stopped:
                trainer.stop_requested = True

    def check(self, model: StochasticModel, epoch: int) -> float:
        """Compute the objective of ``model`` at ``epoch`` and update the state.

        Args:
            model: The model after ``epoch`` epochs.
            epoch: The epochs completed.

        Returns:
            The objective.
        """
        value = self.objective(model)
        self.last_epoch, self.last_value = epoch, value
        if math.isfinite(value) and value < self.best_value - self.settings.min_delta:
            self.best_value, self.best_epoch = value, epoch
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch - (self.best_epoch or 0) >= self.settings.patience:
            self.stopped_epoch = epoch
        return value

    def state(self) -> dict[str, Any]:
        """The state for a checkpoint: plain data and the best model's tensors."""
        return {
            "best_value": self.best_value if self.best_epoch is not None else None,
            "best_epoch": self.best_epoch,
            "best_model": self.best_state,
            "stopped_epoch": self.stopped_epoch,
            "last_epoch": self.last_epoch,
            "last_value": self.last_value,
        }

    def load_state(self, state: Mapping[str, Any], device: torch.device | str = "cpu") -> None:
        """Restore a :meth:`state`.

        Args:
            state: The state.
            device: Where to put the best model's tensors.

        Raises:
            TypeError: If there is no state.
            ValueError: If the state is malformed.
        """
        if not isinstance(state, Mapping):
            raise TypeError("it holds no early-stopping state")
        best_epoch, best_model = state.get("best_epoch"), state.get("best_model")
        if (best_epoch is None) != (best_model is None) or (
            best_model is not None and not isinstance(best_model, Mapping)
        ):
            raise ValueError("its early-stopping state is malformed")
        self.best_epoch = None if best_epoch is None else int(best_epoch)
        self.best_value = math.inf if best_epoch is None else float(state["best_value"])
        self.best_state = (
            None if best_model is None else {k: v.to(device) for k, v in best_model.items()}
        )
        stopped = state.get("stopped_epoch")
        self.stopped_epoch = None if stopped is None else int(stopped)
        last_epoch = state.get("last_epoch")
        self.last_epoch = None if last_epoch is None else int(last_epoch)
        last_value = state.get("last_value")
        self.last_value = None if last_value is None else float(last_value)

    def summary(self, epochs: int) -> dict[str, Any]:
        """The ``early_stopping`` block of metrics.json.

        Args:
            epochs: The epochs trained.

        Returns:
            The settings, ``best_epoch`` (the state evaluated; ``null`` when no check gave
            a finite value, and then the last state is evaluated), ``best_val_nll``,
            ``stopped_epoch`` (``null`` when training ran its epochs) and
            ``epochs_trained``.
        """
        s = self.settings
        return {
            "patience": s.patience,
            "min_delta": s.min_delta,
            "every": s.every,
            "num_samples": s.num_samples,
            "best_epoch": self.best_epoch,
            "best_val_nll": self.best_value if self.best_epoch is not None else None,
            "stopped_epoch": self.stopped_epoch,
            "epochs_trained": epochs,
        }
