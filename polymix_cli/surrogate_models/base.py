"""The surrogate interface: a deterministic function ``f(x; theta)`` evaluated for many
parameter vectors at once.

A surrogate owns no trainable parameters; its parameter vector comes from a
:class:`~polymix_cli.StochasticModel`. Every surrogate names the blocks of that vector
(``param_blocks()``), in order, covering it exactly; the CLI's layout rules are written
against these names.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from math import prod

from torch import Tensor, nn

__all__ = ["NO_SHARED", "ParamBlock", "Shared", "SurrogateModel"]


@dataclass(frozen=True)
class ParamBlock:
    """A named, contiguous slice ``[start, stop)`` of a parameter vector, stored row-major
    with the given ``shape``."""

    name: str
    shape: tuple[int, ...]
    start: int

    @property
    def size(self) -> int:
        return prod(self.shape)

    @property
    def stop(self) -> int:
        return self.start + self.size


@dataclass(frozen=True, eq=False)
class Shared:
    """Blocks of the parameter vector that hold the same values in every draw.

    ``names``: the block names (relative to the surrogate receiving this hint);
    ``row``: a ``(P_total,)`` tensor holding those values at ``offset + block.start``
    (e.g. a model's flat locations, so gradients skip the ``(S, P)`` draws); ``None``
    means row 0 of the draws.
    """

    names: frozenset[str] = frozenset()
    row: Tensor | None = None
    offset: int = 0

    def values(self, params: Tensor, block: ParamBlock) -> Tensor:
        """The block's shared values, flat ``(block.size,)``."""
        if self.row is None:
            return params[0, block.start : block.stop]
        return self.row[self.offset + block.start : self.offset + block.stop]

    def child(self, prefix: str, offset: int) -> Shared:
        """The hint for a component whose blocks are named ``prefix + name`` and start at
        ``offset`` in this surrogate's vector."""
        names = frozenset(n[len(prefix) :] for n in self.names if n.startswith(prefix))
        return Shared(names, self.row, self.offset + offset)


NO_SHARED = Shared()


def check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    """Return ``value`` if it is an int >= ``minimum``, else raise a message naming it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


class SurrogateModel(nn.Module):
    """Base class. Subclasses set ``num_inputs``/``num_outputs`` and implement
    :meth:`param_shapes` and :meth:`evaluate`."""

    num_inputs: int
    num_outputs: int

    def param_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """``(name, shape)`` of each block of the parameter vector, in order."""
        raise NotImplementedError

    def param_blocks(self) -> list[ParamBlock]:
        """The named blocks of the parameter vector with their offsets."""
        blocks, start = [], 0
        for name, shape in self.param_shapes():
            blocks.append(ParamBlock(name, tuple(shape), start))
            start += prod(shape)
        return blocks

    def num_params(self) -> int:
        """Length of the parameter vector."""
        return sum(prod(shape) for _, shape in self.param_shapes())

    def forward(self, x: Tensor, params: Tensor) -> Tensor:
        """Evaluate for every parameter draw.

        Args:
            x: the inputs, shape ``(batch, num_inputs)``.
            params: parameter draws, shape ``(num_samples, num_params)``.

        Returns:
            The outputs, shape ``(num_samples, batch, num_outputs)``, in ``x``'s dtype and
            device.

        Raises:
            TypeError: ``x`` or ``params`` not a tensor, or ``x`` not floating point.
            ValueError: ``x`` or ``params`` of the wrong shape.
        """
        params = self.check_inputs(x, params)
        return self.evaluate(x, params)

    def evaluate(self, x: Tensor, params: Tensor, shared: Shared = NO_SHARED) -> Tensor:
        """:meth:`forward` without the argument checks (inputs already validated).

        ``shared`` names blocks whose entries are the same in every draw (deterministic
        groups); a surrogate may then compute with them once instead of per draw. The
        result may be a non-contiguous view.
        """
        raise NotImplementedError

    def evaluate_shared(self, x: Tensor, params: Tensor, shared: Shared) -> Tensor:
        """:meth:`evaluate` with the ``shared`` hint when the subclass accepts it (user
        subclasses may implement the two-argument form)."""
        if not shared.names:
            return self.evaluate(x, params)
        takes = self.__dict__.get("_takes_shared")
        if takes is None:
            takes = self.__dict__["_takes_shared"] = (
                "shared" in inspect.signature(self.evaluate).parameters
            )
        return self.evaluate(x, params, shared) if takes else self.evaluate(x, params)

    def work_width(self) -> int:
        """Largest per-point, per-draw intermediate size of a forward pass (for chunking)."""
        return self.num_outputs

    def check_inputs(self, x: Tensor, params: Tensor) -> Tensor:
        """Validate ``x`` and ``params``; return ``params`` in ``x``'s dtype."""
        if not isinstance(x, Tensor) or not isinstance(params, Tensor):
            raise TypeError(
                f"x and params must be tensors, got {type(x).__name__} and {type(params).__name__}"
            )
        if x.dim() != 2 or x.shape[1] != self.num_inputs:
            raise ValueError(f"x must have shape (batch, {self.num_inputs}), got {tuple(x.shape)}")
        if params.dim() != 2 or params.shape[1] != self.num_params():
            raise ValueError(
                f"params must have shape (num_samples, {self.num_params()}), "
                f"got {tuple(params.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating point tensor, got dtype {x.dtype}")
        return params.to(dtype=x.dtype, device=x.device)

    def extra_repr(self) -> str:
        return f"num_inputs={self.num_inputs}, num_outputs={self.num_outputs}"
