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
    """A named, contiguous slice ``[start, stop)`` of a parameter vector.

    The block's entries are stored row-major with the given ``shape``.

    Args:
        name: The block's name, e.g. ``"coeffs"`` or ``"experts.0.coeffs"``.
        shape: The shape of the block's values, e.g. ``(num_terms, num_outputs)``.
        start: The block's first entry in the parameter vector.
    """

    name: str
    shape: tuple[int, ...]
    start: int

    @property
    def size(self) -> int:
        """The number of entries, the product of ``shape``."""
        return prod(self.shape)

    @property
    def stop(self) -> int:
        """One past the block's last entry: ``start + size``."""
        return self.start + self.size


@dataclass(frozen=True, eq=False)
class Shared:
    """A hint: blocks of the parameter vector that hold the same values in every draw.

    A surrogate receiving it may compute with those blocks once instead of per draw.

    Args:
        names: The block names, relative to the surrogate receiving this hint.
        row: A tensor of shape ``(P_total,)`` holding those values at
            ``offset + block.start`` (e.g. a model's flat locations, so gradients skip the
            ``(S, P)`` draws); ``None`` means row 0 of the draws.
        offset: Where the receiving surrogate's vector starts in ``row``.
    """

    names: frozenset[str] = frozenset()
    row: Tensor | None = None
    offset: int = 0

    def values(self, params: Tensor, block: ParamBlock) -> Tensor:
        """The block's shared values.

        Args:
            params: The draws, shape ``(S, P)`` (read only when ``row`` is ``None``).
            block: One of the shared blocks.

        Returns:
            The values, flat, shape ``(block.size,)``.
        """
        if self.row is None:
            return params[0, block.start : block.stop]
        return self.row[self.offset + block.start : self.offset + block.stop]

    def child(self, prefix: str, offset: int) -> Shared:
        """The hint for a component of the receiving surrogate.

        Args:
            prefix: The prefix of the component's block names here, e.g. ``"experts.0."``.
            offset: Where the component's vector starts in this surrogate's vector.

        Returns:
            A :class:`Shared` with the component's shared block names (prefix removed).
        """
        names = frozenset(n[len(prefix) :] for n in self.names if n.startswith(prefix))
        return Shared(names, self.row, self.offset + offset)


NO_SHARED = Shared()


def check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    """Check that ``value`` is an integer >= ``minimum``.

    Args:
        value: The value to check.
        name: The argument's name, for the message.
        minimum: The smallest allowed value.

    Returns:
        ``value``.

    Raises:
        TypeError: If ``value`` is not an integer (a bool is not).
        ValueError: If ``value`` is below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


class SurrogateModel(nn.Module):
    """Base class: a deterministic function ``f(x; theta)`` of inputs and a parameter vector.

    Call it as ``surrogate(x, params)`` with inputs ``(batch, num_inputs)`` and parameter
    draws ``(num_samples, num_params)``; it returns ``(num_samples, batch, num_outputs)``.
    A surrogate owns no trainable parameters. Subclasses set ``num_inputs`` and
    ``num_outputs`` and implement :meth:`param_shapes` and :meth:`evaluate`.
    """

    num_inputs: int
    num_outputs: int

    def param_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """The blocks of the parameter vector, in order.

        Returns:
            ``(name, shape)`` of each block; together they cover the vector exactly.
        """
        raise NotImplementedError

    def param_blocks(self) -> list[ParamBlock]:
        """The named blocks of the parameter vector with their offsets.

        Returns:
            One :class:`ParamBlock` per entry of :meth:`param_shapes`, in vector order.
        """
        blocks, start = [], 0
        for name, shape in self.param_shapes():
            blocks.append(ParamBlock(name, tuple(shape), start))
            start += prod(shape)
        return blocks

    def num_params(self) -> int:
        """The length ``P`` of the parameter vector, the sum of the blocks' sizes."""
        return sum(prod(shape) for _, shape in self.param_shapes())

    def forward(self, x: Tensor, params: Tensor) -> Tensor:
        """Evaluate for every parameter draw.

        Args:
            x: Inputs, shape ``(batch, num_inputs)``, floating point.
            params: Parameter draws, shape ``(num_samples, num_params)``; converted to
                ``x``'s dtype and device.

        Returns:
            The outputs, shape ``(num_samples, batch, num_outputs)``, in ``x``'s dtype and
            device.

        Raises:
            TypeError: If ``x`` or ``params`` is not a tensor, or ``x`` is not floating
                point.
            ValueError: If ``x`` or ``params`` has the wrong shape.
        """
        params = self.check_inputs(x, params)
        return self.evaluate(x, params)

    def evaluate(self, x: Tensor, params: Tensor, shared: Shared = NO_SHARED) -> Tensor:
        """:meth:`forward` without the argument checks (inputs already validated).

        Args:
            x: Inputs, shape ``(batch, num_inputs)``.
            params: Parameter draws, shape ``(num_samples, num_params)``, in ``x``'s dtype
                and device.
            shared: Names blocks whose entries are the same in every draw (deterministic
                groups); a surrogate may then compute with them once instead of per draw.

        Returns:
            The outputs, shape ``(num_samples, batch, num_outputs)``; may be a
            non-contiguous view.
        """
        raise NotImplementedError

    def evaluate_shared(self, x: Tensor, params: Tensor, shared: Shared) -> Tensor:
        """:meth:`evaluate` with the ``shared`` hint when the subclass accepts it.

        User subclasses may implement the two-argument form ``evaluate(x, params)``; the
        hint is then dropped.

        Args:
            x: Inputs, shape ``(batch, num_inputs)``.
            params: Parameter draws, shape ``(num_samples, num_params)``.
            shared: The blocks that are the same in every draw.

        Returns:
            The outputs, shape ``(num_samples, batch, num_outputs)``.
        """
        if not shared.names:
            return self.evaluate(x, params)
        takes = self.__dict__.get("_takes_shared")
        if takes is None:
            takes = self.__dict__["_takes_shared"] = (
                "shared" in inspect.signature(self.evaluate).parameters
            )
        return self.evaluate(x, params, shared) if takes else self.evaluate(x, params)

    def work_width(self) -> int:
        """The largest per-point, per-draw intermediate size of a forward pass.

        Used to size chunks of draws; the default is ``num_outputs``.
        """
        return self.num_outputs

    def shared_width(self) -> int:
        """The size of the per-point intermediate that all draws share (e.g. a row of a
        polynomial basis), held once per point whatever the number of draws.

        Used to size chunks of points; the default is 0.
        """
        return 0

    def check_inputs(self, x: Tensor, params: Tensor) -> Tensor:
        """Validate the arguments of :meth:`forward`.

        Args:
            x: Inputs, expected shape ``(batch, num_inputs)``, floating point.
            params: Parameter draws, expected shape ``(num_samples, num_params)``.

        Returns:
            ``params`` in ``x``'s dtype and device.

        Raises:
            TypeError: If ``x`` or ``params`` is not a tensor, or ``x`` is not floating
                point.
            ValueError: If ``x`` or ``params`` has the wrong shape.
        """
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
