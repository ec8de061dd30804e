"""Fully connected networks whose weights are a sampled parameter vector."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import SurrogateModel, check_positive_int, split_blocks

__all__ = ["ACTIVATIONS", "GatingNetwork", "NeuralNetwork", "resolve_activation"]

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": F.relu,
    "gelu": F.gelu,
    "silu": F.silu,
    "elu": F.elu,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
}


def resolve_activation(activation: str | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """A callable activation, or its name in :data:`ACTIVATIONS`."""
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)} or a callable, got {activation!r}"
            )
        return ACTIVATIONS[activation]
    if not callable(activation):
        raise TypeError(f"activation must be a name or a callable, got {activation!r}")
    return activation


class NeuralNetwork(SurrogateModel):
    """A multilayer perceptron with ``depth`` hidden layers of ``width`` units.

    Parameter blocks, in order: ``hidden.{i}.weight`` ``(fan_in, width)`` and
    ``hidden.{i}.bias`` ``(width,)`` for ``i < depth``, then ``output.weight``
    ``(width, num_outputs)`` and ``output.bias`` ``(num_outputs,)``.
    """

    def __init__(
        self,
        num_inputs: int,
        num_outputs: int,
        width: int = 16,
        depth: int = 1,
        activation: str | Callable[[Tensor], Tensor] = "tanh",
    ):
        super().__init__()
        self.num_inputs = check_positive_int(num_inputs, "num_inputs")
        self.num_outputs = check_positive_int(num_outputs, "num_outputs")
        self.width = check_positive_int(width, "width")
        self.depth = check_positive_int(depth, "depth")
        self.activation = resolve_activation(activation)
        self._blocks = self.param_blocks()

    def param_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        shapes, fan_in = [], self.num_inputs
        for i in range(self.depth):
            shapes += [(f"hidden.{i}.weight", (fan_in, self.width)), (f"hidden.{i}.bias", (self.width,))]
            fan_in = self.width
        shapes += [("output.weight", (fan_in, self.num_outputs)), ("output.bias", (self.num_outputs,))]
        return shapes

    def evaluate(self, x: Tensor, params: Tensor) -> Tensor:
        tensors = split_blocks(params, self._blocks)
        h = x
        for layer in range(self.depth + 1):
            weight, bias = tensors[2 * layer], tensors[2 * layer + 1]
            h = torch.baddbmm(bias.unsqueeze(1), h, weight) if h.dim() == 3 else (
                torch.matmul(h, weight) + bias.unsqueeze(1)
            )
            if layer < self.depth:
                h = self.activation(h)
        return h

    def extra_repr(self) -> str:
        name = getattr(self.activation, "__name__", repr(self.activation))
        return f"{super().extra_repr()}, width={self.width}, depth={self.depth}, activation={name}"


class GatingNetwork(NeuralNetwork):
    """A network whose outputs are softmax probabilities over ``num_experts`` experts.

    ``forward(x, params)`` -> ``(num_samples, batch, num_experts)``, rows summing to one.
    """

    def __init__(
        self,
        num_inputs: int,
        num_experts: int,
        width: int = 16,
        depth: int = 1,
        activation: str | Callable[[Tensor], Tensor] = "tanh",
    ):
        super().__init__(num_inputs, num_experts, width, depth, activation)

    @property
    def num_experts(self) -> int:
        return self.num_outputs

    def logits(self, x: Tensor, params: Tensor) -> Tensor:
        """Unnormalised gate scores ``(num_samples, batch, num_experts)``."""
        return super().evaluate(x, self.check_inputs(x, params))

    def evaluate(self, x: Tensor, params: Tensor) -> Tensor:
        return torch.softmax(super().evaluate(x, params), dim=-1)
