"""An implicit variational family: particles moved by unadjusted Langevin dynamics with a
learned score (or energy) model."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..priors import Prior
from ..surrogate_models.neural import resolve_activation
from .base import ParameterGroup

__all__ = ["LangevinGroup", "ScoreNetwork"]


class ScoreNetwork(nn.Module):
    """A small MLP ``(S, num_inputs) -> (S, num_outputs)`` with its own weights.

    It serves as a Langevin score model (``num_outputs = num_inputs``) or energy
    (``num_outputs = 1``) of a :class:`LangevinGroup`.

    Args:
        num_inputs: The input dimension (the group's ``num_params``).
        num_outputs: The output dimension.
        width: The units per hidden layer (>= 1).
        depth: The number of hidden layers (>= 1).
        activation: The hidden layers' activation, a name in
            :data:`~polymix_cli.surrogate_models.ACTIVATIONS` or a callable.

    Raises:
        ValueError: If ``width`` or ``depth`` is below 1, or the activation's name is
            unknown.
    """

    def __init__(
        self,
        num_inputs: int,
        num_outputs: int,
        width: int = 32,
        depth: int = 2,
        activation: str | Callable[[Tensor], Tensor] = "tanh",
    ):
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"ScoreNetwork width and depth must be >= 1, got {width} and {depth}")
        self.num_inputs, self.num_outputs = num_inputs, num_outputs
        sizes = [num_inputs] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.output = nn.Linear(width, num_outputs)
        self.activation = resolve_activation(activation)

    def forward(self, theta: Tensor) -> Tensor:
        """Apply the network.

        Args:
            theta: Parameter vectors, shape ``(S, num_inputs)``.

        Returns:
            The outputs, shape ``(S, num_outputs)``.
        """
        h = theta
        for layer in self.hidden:
            h = self.activation(layer(h))
        return self.output(h)


def _io_sizes(model: nn.Module, num_params: int) -> tuple[int, int]:
    if hasattr(model, "num_inputs") and hasattr(model, "num_outputs"):
        return int(model.num_inputs), int(model.num_outputs)
    with torch.no_grad():
        out = model(torch.zeros(1, num_params))
    return num_params, int(out.shape[-1])


class LangevinGroup(ParameterGroup):
    """An implicit variational family: particles moved by unadjusted Langevin dynamics.

    Particles start at ``N(0, init_std^2)`` and take ``num_diffusion_steps`` steps
    ``theta <- theta + h s(theta) + sqrt(2 h) xi``, ``xi ~ N(0, I)``.
    ``s`` is ``score_model(theta)`` (``num_inputs == num_outputs == num_params``) or
    ``-grad energy_model(theta)`` (``num_outputs == 1``); exactly one is given. The loss is
    ``-mean log p(theta)`` over the latest particles (64 fresh ones if none were drawn).

    Args:
        name: The group's name (non-empty).
        num_params: The number of parameters it covers (>= 1).
        score_model: A module ``(S, num_params) -> (S, num_params)``, e.g. a
            :class:`ScoreNetwork`.
        energy_model: A module ``(S, num_params) -> (S, 1)``; the drift is minus its
            gradient.
        num_diffusion_steps: The number of Langevin steps (>= 1).
        step_size: The step size ``h`` (> 0).
        init_std: The standard deviation of the initial particles (> 0).
        prior: The prior (``None``: i.i.d. standard normal).

    Raises:
        ValueError: If both or neither of ``score_model`` and ``energy_model`` are given,
            the model maps other sizes, or a number is out of range.
        TypeError: If ``name``, ``num_params`` or ``prior`` has the wrong type.
    """

    def __init__(
        self,
        name: str,
        num_params: int,
        score_model: nn.Module | None = None,
        energy_model: nn.Module | None = None,
        num_diffusion_steps: int = 10,
        step_size: float = 1e-2,
        init_std: float = 1.0,
        prior: Prior | None = None,
    ):
        super().__init__(name, num_params, prior)
        if (score_model is None) == (energy_model is None):
            raise ValueError(
                f"LangevinGroup {name!r} needs exactly one of score_model or energy_model"
            )
        if num_diffusion_steps < 1:
            raise ValueError(f"num_diffusion_steps must be >= 1, got {num_diffusion_steps}")
        if step_size <= 0 or init_std <= 0:
            raise ValueError(f"step_size and init_std must be > 0, got {step_size} and {init_std}")
        model = score_model if score_model is not None else energy_model
        inputs, outputs = _io_sizes(model, num_params)
        expected = (num_params, num_params) if score_model is not None else (num_params, 1)
        if (inputs, outputs) != expected:
            kind = "score_model" if score_model is not None else "energy_model"
            raise ValueError(
                f"{kind} of group {name!r} maps {inputs} -> {outputs}, expected "
                f"{expected[0]} -> {expected[1]}"
            )
        self.score_model = score_model
        self.energy_model = energy_model
        self.num_diffusion_steps = int(num_diffusion_steps)
        self.step_size = float(step_size)
        self.init_std = float(init_std)
        self._particles: Tensor | None = None

    def score(self, theta: Tensor) -> Tensor:
        """The drift ``s(theta)``: the score model's output, or minus the energy's gradient.

        Args:
            theta: Particles, shape ``(S, num_params)``.

        Returns:
            The drift, shape ``(S, num_params)``.
        """
        if self.score_model is not None:
            return self.score_model(theta)
        with torch.enable_grad():
            if not theta.requires_grad:
                theta = theta.detach().requires_grad_(True)
            energy = self.energy_model(theta).sum()
            keep = torch.is_grad_enabled() and any(
                p.requires_grad for p in self.energy_model.parameters()
            )
            (grad,) = torch.autograd.grad(energy, theta, create_graph=keep)
        return -grad

    def _reference(self) -> Tensor:
        return next(iter(self.parameters()), self.prior.loc)

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        ref = self._reference()
        theta = self.init_std * self._noise((num_samples, self.num_params()), ref, generator)
        h = self.step_size
        for _ in range(self.num_diffusion_steps):
            noise = self._noise(theta.shape, ref, generator)
            theta = theta + h * self.score(theta) + math.sqrt(2 * h) * noise
        if not torch.is_grad_enabled():
            theta = theta.detach()
        self._particles = theta
        return theta

    def distribution_loss(self) -> Tensor:
        if self._particles is None:
            self.sample(64)
        return -self.prior.log_prob(self._particles).mean()

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, num_diffusion_steps={self.num_diffusion_steps}, "
            f"step_size={self.step_size}, init_std={self.init_std}"
        )
