"""Fully connected networks whose weights are a sampled parameter vector."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import NO_SHARED, ParamBlock, Shared, SurrogateModel, check_positive_int

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
    """Resolve an activation given by name or as a callable.

    Args:
        activation: A name in :data:`ACTIVATIONS` or a callable ``Tensor -> Tensor``.

    Returns:
        The activation function.

    Raises:
        ValueError: If the name is not in :data:`ACTIVATIONS`.
        TypeError: If ``activation`` is neither a string nor callable.
    """
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)} or a callable, got {activation!r}"
            )
        return ACTIVATIONS[activation]
    if not callable(activation):
        raise TypeError(f"activation must be a name or a callable, got {activation!r}")
    return activation


def affine(
    h: Tensor, shared_in: bool, params: Tensor, w: ParamBlock, b: ParamBlock, shared: Shared
) -> tuple[Tensor, bool]:
    """One dense layer ``h @ W + b`` for every draw, skipping work that draws share.

    Args:
        h: The layer's input: shape ``(B, fan_in)`` when ``shared_in`` (the same for all
            draws), else ``(S, B, fan_in)``.
        shared_in: Whether ``h`` is the same for all draws.
        params: Parameter draws, shape ``(S, P)``.
        w: The block of ``W``, shape ``(fan_in, fan_out)``.
        b: The block of ``b``, shape ``(fan_out,)``.
        shared: When both blocks are in ``shared.names``, their values come from it.

    Returns:
        ``(out, shared_out)``: ``out`` of shape ``(B, fan_out)`` if ``shared_out`` (the
        same for all draws), else ``(S, B, fan_out)``.
    """
    fan_in, fan_out = w.shape
    if w.name in shared.names and b.name in shared.names:
        weight = shared.values(params, w).view(fan_in, fan_out)
        bias = shared.values(params, b)
        if shared_in:
            return torch.addmm(bias, h, weight), True
        return torch.matmul(h, weight) + bias, False
    num_samples = params.shape[0]
    weight = params[:, w.start : w.stop].view(num_samples, fan_in, fan_out)
    bias = params[:, b.start : b.stop].unsqueeze(1)
    if not shared_in:
        return torch.baddbmm(bias, h, weight), False
    if fan_in == 1:
        return torch.addcmul(bias, h, weight), False
    # fold the draws into the columns of one GEMM: (B, fan_in) @ (fan_in, S * fan_out)
    folded = weight.permute(1, 0, 2).reshape(fan_in, num_samples * fan_out)
    out = torch.mm(h, folded).view(h.shape[0], num_samples, fan_out).permute(1, 0, 2)
    return out + bias, False


class NeuralNetwork(SurrogateModel):
    """A multilayer perceptron with ``depth`` hidden layers of ``width`` units.

    Parameter blocks, in order: ``hidden.{i}.weight`` ``(fan_in, width)`` and
    ``hidden.{i}.bias`` ``(width,)`` for ``i < depth``, then ``output.weight``
    ``(width, num_outputs)`` and ``output.bias`` ``(num_outputs,)``; weights are stored
    row-major and applied as ``h @ W + b``. Layers whose blocks are the same in every
    draw are evaluated once, not per draw. The output layer is linear.

    Args:
        num_inputs: The input dimension (>= 1).
        num_outputs: The output dimension (>= 1).
        width: The units per hidden layer (>= 1).
        depth: The number of hidden layers (>= 1).
        activation: The hidden layers' activation: a name in :data:`ACTIVATIONS` or a
            callable.

    Raises:
        TypeError: If a size is not an integer, or ``activation`` is neither a name nor
            callable.
        ValueError: If a size is below 1 or the activation's name is unknown.
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
            shapes += [
                (f"hidden.{i}.weight", (fan_in, self.width)),
                (f"hidden.{i}.bias", (self.width,)),
            ]
            fan_in = self.width
        shapes += [
            ("output.weight", (fan_in, self.num_outputs)),
            ("output.bias", (self.num_outputs,)),
        ]
        return shapes

    def work_width(self) -> int:
        return max(self.width, self.num_outputs)

    def layer_blocks(self) -> list[tuple[ParamBlock, ParamBlock]]:
        """The parameter blocks of each dense layer ``h @ W + b``, from the input on.

        Returns:
            ``depth + 1`` pairs ``(W, b)`` of :class:`ParamBlock`: ``W`` of shape
            ``(fan_in, fan_out)``, stored row-major, and ``b`` of shape ``(fan_out,)``, at
            their columns of this network's parameter vector. The last pair is the output layer
            (``fan_out = num_outputs``).
        """
        return list(zip(self._blocks[::2], self._blocks[1::2], strict=True))

    def _layer(
        self, h: Tensor, shared_in: bool, params: Tensor, layer: int, shared: Shared
    ) -> tuple[Tensor, bool]:
        return affine(
            h, shared_in, params, self._blocks[2 * layer], self._blocks[2 * layer + 1], shared
        )

    def features(
        self, x: Tensor, params: Tensor, shared: Shared = NO_SHARED
    ) -> tuple[Tensor, bool]:
        """The activations of the last hidden layer.

        Args:
            x: Inputs, shape ``(B, num_inputs)``.
            params: Parameter draws, shape ``(S, num_params)``.
            shared: The blocks that are the same in every draw.

        Returns:
            ``(h, same)``: ``h`` of shape ``(B, width)`` if ``same`` (the same for all
            draws), else ``(S, B, width)``.
        """
        h, same = x, True
        for layer in range(self.depth):
            h, same = self._layer(h, same, params, layer, shared)
            h = self.activation(h)
        return h, same

    def evaluate(self, x: Tensor, params: Tensor, shared: Shared = NO_SHARED) -> Tensor:
        h, same = self.features(x, params, shared)
        out, same = self._layer(h, same, params, self.depth, shared)
        return out.expand(params.shape[0], *out.shape) if same else out

    def extra_repr(self) -> str:
        name = getattr(self.activation, "__name__", repr(self.activation))
        return f"{super().extra_repr()}, width={self.width}, depth={self.depth}, activation={name}"


class GatingNetwork(NeuralNetwork):
    """A network whose outputs are softmax probabilities over ``num_experts`` experts.

    ``forward(x, params)`` returns ``(num_samples, batch, num_experts)``, rows summing to
    one. Its parameter blocks are those of a :class:`NeuralNetwork` with ``num_experts``
    outputs.

    Args:
        num_inputs: The input dimension (>= 1).
        num_experts: The number of experts, the network's outputs (>= 1).
        width: The units per hidden layer (>= 1).
        depth: The number of hidden layers (>= 1).
        activation: The hidden layers' activation: a name in :data:`ACTIVATIONS` or a
            callable.

    Raises:
        TypeError: If a size is not an integer, or ``activation`` is neither a name nor
            callable.
        ValueError: If a size is below 1 or the activation's name is unknown.
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
        """The number of experts (``num_outputs``)."""
        return self.num_outputs

    def _output_rows(self, params: Tensor, shared: Shared) -> Tensor:
        """The output layer's weights and bias, ``(S', width * E + E)``: ``S' = 1`` when
        they are the same in every draw."""
        w, b = self._blocks[-2], self._blocks[-1]
        if w.name in shared.names and b.name in shared.names:
            block = ParamBlock("output", (w.size + b.size,), w.start)
            return shared.values(params, block).unsqueeze(0)
        return params[:, w.start : b.stop]

    def logits(self, x: Tensor, params: Tensor) -> Tensor:
        """The unnormalised gate scores.

        Args:
            x: Inputs, shape ``(batch, num_inputs)``.
            params: Parameter draws, shape ``(num_samples, num_params)``.

        Returns:
            The logits, shape ``(num_samples, batch, num_experts)``.

        Raises:
            TypeError: If ``x`` or ``params`` is not a tensor, or ``x`` is not floating
                point.
            ValueError: If ``x`` or ``params`` has the wrong shape.
        """
        return self.logits_by_expert(x, self.check_inputs(x, params)).transpose(1, 2)

    def logits_by_expert(self, x: Tensor, params: Tensor, shared: Shared = NO_SHARED) -> Tensor:
        """The gate scores, laid out expert-major.

        A softmax over dim 1 of this layout is much faster than over a short last dim.

        Args:
            x: Inputs, shape ``(batch, num_inputs)``.
            params: Parameter draws, shape ``(S, num_params)``, already validated.
            shared: The blocks that are the same in every draw.

        Returns:
            The logits, shape ``(S', num_experts, batch)``, with ``S' = 1`` when they are
            the same for all draws, else ``S``.
        """
        h, _ = self.features(x, params, shared)
        rows = self._output_rows(params, shared)
        n_w = self.width * self.num_experts
        weight_t = rows[:, :n_w].view(rows.shape[0], self.width, self.num_experts).transpose(1, 2)
        scores = torch.matmul(weight_t, h.transpose(-1, -2))  # (S', E, B)
        return scores + rows[:, n_w:].unsqueeze(-1)

    def difference_map(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """The linear map from the last hidden layer to the difference of the two experts'
        logits, for a gate of two experts.

        For hidden features ``h`` ``(batch, width)`` and an output-layer row
        ``row = [W (width, 2) row-major, b (2,)]`` ``(2 width + 2,)``, as laid out in the
        parameter vector, ``(h @ D + c) @ row = logit_1 - logit_0``.

        Args:
            like: A tensor whose dtype and device the map takes.

        Returns:
            ``(D, c)``: ``D`` of shape ``(width, 2 width + 2)`` and ``c`` of shape
            ``(2 width + 2,)``, with entries in {-1, 0, 1}; cached for the latest dtype
            and device.

        Raises:
            ValueError: If the gate does not have two experts.
        """
        if self.num_experts != 2:
            raise ValueError(f"difference_map needs 2 experts, the gate has {self.num_experts}")
        cached = self.__dict__.get("_diff_map")
        if cached is not None and cached[0].dtype == like.dtype and cached[0].device == like.device:
            return cached
        width = self.width
        d = torch.zeros(width, 2 * width + 2, dtype=like.dtype, device=like.device)
        idx = torch.arange(width, device=like.device)
        d[idx, 2 * idx + 1], d[idx, 2 * idx] = 1.0, -1.0
        c = torch.zeros(2 * width + 2, dtype=like.dtype, device=like.device)
        c[-1], c[-2] = 1.0, -1.0
        self.__dict__["_diff_map"] = (d, c)
        return d, c

    def logit_difference(self, x: Tensor, params: Tensor, shared: Shared = NO_SHARED) -> Tensor:
        """For two experts, the difference of the logits ``logit_1 - logit_0``.

        The weight of expert 1 is its sigmoid (a cheaper equivalent of a softmax over two).
        Computed as one product of the raw output-layer parameters with ``h @ D + c`` (see
        :meth:`difference_map`).

        Args:
            x: Inputs, shape ``(batch, num_inputs)``.
            params: Parameter draws, shape ``(S, num_params)``, already validated.
            shared: The blocks that are the same in every draw.

        Returns:
            The differences, shape ``(S', batch)``, with ``S' = 1`` when the output layer
            and the features are the same for all draws.

        Raises:
            ValueError: If the gate does not have two experts.
        """
        if self.num_experts != 2:
            raise ValueError(f"logit_difference needs 2 experts, the gate has {self.num_experts}")
        h, same = self.features(x, params, shared)
        rows = self._output_rows(params, shared)  # (S', 2 width + 2)
        d, c = self.difference_map(h)
        if same:
            return torch.mm(rows, torch.addmm(c, h, d).T)  # (S', B)
        g = torch.matmul(h, d) + c  # (S, B, 2 width + 2)
        if rows.shape[0] == 1:
            return torch.matmul(g, rows[0])
        return torch.bmm(g, rows.unsqueeze(-1)).squeeze(-1)

    def evaluate(self, x: Tensor, params: Tensor, shared: Shared = NO_SHARED) -> Tensor:
        probs = torch.softmax(self.logits_by_expert(x, params, shared), dim=1).transpose(1, 2)
        return probs.expand(params.shape[0], *probs.shape[1:])
