"""Checks of the arrays given to the figure functions: each is turned into a float numpy
array of the documented shape, or a ``ValueError`` names the argument, the expected
shape (``G`` grid points, ``N`` training points, ``K`` test points, ``O`` outputs, ``M``
experts) and the shape it got.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def check_band_level(band_level: float) -> float:
    """``band_level`` as a float, the central probability of a band: strictly in (0, 1)."""
    level = float(band_level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"band_level must lie strictly between 0 and 1, got {band_level}")
    return level


def shape_str(shape: Sequence[int]) -> str:
    """A shape as Python writes a tuple, for messages: ``(3,)``, ``(3, 2)``."""
    return "(" + ", ".join(str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


def as_inputs(name: str, value: object, size: int | None = None, letter: str = "G") -> np.ndarray:
    """An input vector ``(size,)``; ``(size, 1)`` is flattened."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or (size is not None and arr.shape[0] != size):
        expected = f"({letter},)" if size is None else f"({letter},) = ({size},)"
        raise ValueError(f"{name} must have shape {expected}, got {shape_str(np.shape(value))}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} must not be empty")
    return arr


def as_outputs(
    name: str, value: object, rows: int, outputs: int | None, letters: str = "G, O"
) -> np.ndarray:
    """An output array ``(rows, outputs)``; a vector ``(rows,)`` means one output."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    ok = arr.ndim == 2 and arr.shape[0] == rows and (outputs is None or arr.shape[1] == outputs)
    if not ok:
        want = (rows, "O") if outputs is None else (rows, outputs)
        raise ValueError(
            f"{name} must have shape ({letters}) = ({want[0]}, {want[1]}), "
            f"got {shape_str(np.shape(value))}"
        )
    return arr


def as_expert_outputs(
    name: str, value: object, experts: int | None, rows: int, outputs: int | None
) -> np.ndarray:
    """Per-expert outputs ``(experts, rows, outputs)``; ``(experts, rows)`` means one output."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    ok = (
        arr.ndim == 3
        and (experts is None or arr.shape[0] == experts)
        and arr.shape[1] == rows
        and (outputs is None or arr.shape[2] == outputs)
    )
    if not ok or arr.shape[0] == 0:
        want = (
            "M" if experts is None else experts,
            rows,
            "O" if outputs is None else outputs,
        )
        raise ValueError(
            f"{name} must have shape (M, G, O) = ({want[0]}, {want[1]}, {want[2]}), "
            f"got {shape_str(np.shape(value))}"
        )
    return arr


def checked_output_names(output_names: Sequence[str] | None, num_outputs: int) -> list[str]:
    """One name per output: ``output_names`` checked, or by default ``y`` for one output and
    ``y1``, ``y2``, ... for several."""
    if output_names is None:
        return ["y"] if num_outputs == 1 else [f"y{j + 1}" for j in range(num_outputs)]
    names = [str(n) for n in output_names]
    if len(names) != num_outputs:
        raise ValueError(
            f"output_names must have one name per output ({num_outputs}), got {len(names)}"
        )
    return names


def sorted_grid(x_grid: np.ndarray, *arrays: np.ndarray, axis: int = 0) -> list[np.ndarray]:
    """Sort the grid (and arrays indexed by it along ``axis``) so bands are drawn correctly."""
    order = np.argsort(x_grid, kind="stable")
    return [x_grid[order]] + [np.take(a, order, axis=axis) for a in arrays]
