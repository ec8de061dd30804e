"""Affine maps between the user's units and the model's domain.

A surrogate's basis lives on a fixed domain (Legendre polynomials on ``[-1, 1]``,
Hermite polynomials for standard normal inputs), and training is better conditioned on
outputs of unit scale. Runs therefore train on mapped data and map every number and plot
back to the user's units. The maps are stored in checkpoints, so that a trained model
can be used on new inputs without its training data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from polymix_cli.config.schema import INPUT_SCALINGS, OUTPUT_SCALINGS, ModelConfig, MoeModelConfig

__all__ = [
    "INPUT_SCALINGS",
    "OUTPUT_SCALINGS",
    "AffineMap",
    "DataMaps",
    "fit_maps",
    "input_domain",
    "map_problems",
]


@dataclass(frozen=True)
class AffineMap:
    """The per-column affine map ``z = (v - shift) / scale``.

    Args:
        shift: Shape ``(D,)``.
        scale: Shape ``(D,)``, > 0.
    """

    shift: Tensor
    scale: Tensor

    @classmethod
    def identity(cls, dim: int) -> AffineMap:
        """The map that changes nothing (float64).

        Args:
            dim: The number of columns ``D``.

        Returns:
            Shift 0 and scale 1 per column.
        """
        return cls(torch.zeros(dim, dtype=torch.float64), torch.ones(dim, dtype=torch.float64))

    @classmethod
    def to_interval(cls, bounds: Tensor) -> AffineMap:
        """The map of ``bounds`` onto ``[-1, 1]``.

        Args:
            bounds: (low, high) per column, shape ``(D, 2)``.

        Returns:
            The map (float64), shift the midpoints and scale the half-widths.
        """
        bounds = bounds.to(torch.float64)
        low, high = bounds[:, 0], bounds[:, 1]
        return cls((low + high) / 2, (high - low) / 2)

    @classmethod
    def standardize(cls, values: Tensor) -> AffineMap:
        """The map to zero mean and unit standard deviation per column.

        A constant column (or a single row) keeps scale 1.

        Args:
            values: Shape ``(N, D)``.

        Returns:
            The map (float64), shift the columns' means and scale their (sample)
            standard deviations.
        """
        values = values.to(torch.float64)
        shift = values.mean(0)
        scale = values.std(0) if values.shape[0] > 1 else torch.ones_like(shift)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return cls(shift, scale)

    @property
    def dim(self) -> int:
        """The number of columns ``D``."""
        return self.shift.shape[0]

    @property
    def is_identity(self) -> bool:
        """Whether every shift is 0 and every scale 1."""
        return bool((self.shift == 0).all() and (self.scale == 1).all())

    def _as(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return self.shift.to(t.device, t.dtype), self.scale.to(t.device, t.dtype)

    def forward(self, values: Tensor) -> Tensor:
        """User units to the model's domain.

        Args:
            values: Shape ``(..., D)``.

        Returns:
            The mapped values, shape ``(..., D)``, in the dtype and on the device of
            ``values`` (``values`` itself for the identity).
        """
        if self.is_identity:
            return values
        shift, scale = self._as(values)
        return (values - shift) / scale

    def inverse(self, values: Tensor) -> Tensor:
        """The model's domain to user units.

        Args:
            values: Shape ``(..., D)``.

        Returns:
            The values in user units, shape ``(..., D)``, in the dtype and on the device
            of ``values`` (``values`` itself for the identity).
        """
        if self.is_identity:
            return values
        shift, scale = self._as(values)
        return values * scale + shift

    def state(self) -> dict[str, list[float]]:
        """The map as plain lists, for a checkpoint: ``{"shift": [...], "scale": [...]}``."""
        return {"shift": self.shift.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> AffineMap:
        """The map :meth:`state` wrote.

        Args:
            state: ``{"shift": [...], "scale": [...]}``.

        Returns:
            The map (float64).

        Raises:
            ValueError: If the lists differ in length, a scale is not positive or a shift
                is not finite.
        """
        shift = torch.as_tensor(state["shift"], dtype=torch.float64).reshape(-1)
        scale = torch.as_tensor(state["scale"], dtype=torch.float64).reshape(-1)
        if (
            shift.shape != scale.shape
            or not bool((scale > 0).all())
            or not bool(torch.isfinite(shift).all())
            or not bool(torch.isfinite(scale).all())
            or not bool((scale.float() > 0).all() & torch.isfinite(scale.float()).all())
        ):
            raise ValueError(
                "an affine map needs equally long finite shift and finite positive scale lists"
            )
        return cls(shift, scale)


@dataclass(frozen=True)
class DataMaps:
    """The input and output maps of a run, and the input bounds in user units.

    Args:
        inputs: The map of the inputs.
        outputs: The map of the outputs.
        bounds: The input bounds (low, high) in user units, shape ``(D, 2)``.
    """

    inputs: AffineMap
    outputs: AffineMap
    bounds: Tensor

    def state(self) -> dict[str, Any]:
        """The maps and bounds as plain lists, for a checkpoint."""
        return {
            "inputs": self.inputs.state(),
            "outputs": self.outputs.state(),
            "bounds": self.bounds.tolist(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> DataMaps:
        """The maps :meth:`state` wrote.

        Args:
            state: ``{"inputs": ..., "outputs": ..., "bounds": ...}``.

        Returns:
            The maps (bounds float64).

        Raises:
            ValueError: If a map is bad (see :meth:`AffineMap.from_state`), or the input
                map and the bounds disagree on the number of inputs.
        """
        bounds = torch.as_tensor(state["bounds"], dtype=torch.float64).reshape(-1, 2)
        maps = cls(
            AffineMap.from_state(state["inputs"]), AffineMap.from_state(state["outputs"]), bounds
        )
        if maps.inputs.dim != bounds.shape[0]:
            raise ValueError("the input map and the bounds disagree on the number of inputs")
        if not bool(torch.isfinite(bounds).all()) or not bool((bounds[:, 0] < bounds[:, 1]).all()):
            raise ValueError(
                f"its input bounds must be finite with low < high, got {bounds.tolist()}"
            )
        return maps


def map_problems(
    maps: DataMaps, x: Tensor, y: Tensor, input_names: list[str], output_names: list[str]
) -> list[str]:
    """What overflows when the data are mapped to the model's domain (trained in float32).

    Args:
        maps: The maps of a run.
        x: Inputs in user units, shape ``(N, D)``.
        y: Outputs in user units, shape ``(N, O)``.
        input_names: The names of the inputs.
        output_names: The names of the outputs.

    Returns:
        One message per input or output whose map, or mapped values, are not finite in
        float32 (empty if none).
    """
    problems = []
    for what, amap, values, names in (
        ("input", maps.inputs, x, input_names),
        ("output", maps.outputs, y, output_names),
    ):
        mapped = amap.forward(values.to(torch.float64)).to(torch.float32)
        finite = (
            torch.isfinite(mapped).all(0)
            if mapped.shape[0]
            else torch.ones(amap.dim, dtype=torch.bool)
        )
        for j in range(amap.dim):
            shift, scale = float(amap.shift[j]), float(amap.scale[j])
            ok = (
                abs(shift) < 3.4e38
                and 0 < scale < 3.4e38
                and float(torch.tensor(scale).float()) > 0
            )
            if not ok or not bool(finite[j]):
                name = names[j] if j < len(names) else f"{what} {j + 1}"
                problems.append(
                    f"the {what} {name!r} overflows float32 when mapped to the model's domain "
                    f"(shift {shift:.6g}, scale {scale:.6g}); polymix trains in float32: rescale "
                    f"it (e.g. to other units) so that its values and range stay within about 1e38"
                )
    return problems


def input_domain(model: ModelConfig) -> str:
    """The domain a model's inputs are mapped to.

    Args:
        model: The ``model`` section (for a mixture, its experts).

    Returns:
        ``"hermite"`` when the model has polynomial chaos expansions and every one uses
        the Hermite basis (inputs are then standardised), else ``"interval"`` (inputs
        mapped to [-1, 1]).
    """
    if isinstance(model, MoeModelConfig):
        specs: list[Any] = list(model.experts or [model.expert])
    else:
        specs = [model]
    bases = [s.basis for s in specs if s.kind == "pce"]
    return "hermite" if bases and all(b == "hermite" for b in bases) else "interval"


def fit_maps(
    x_train: Tensor,
    y_train: Tensor,
    bounds: Tensor,
    domain: str,
    input_scaling: str,
    output_scaling: str,
) -> DataMaps:
    """The maps a run trains with.

    Args:
        x_train: Training inputs in user units, shape ``(N, D)``.
        y_train: Training outputs in user units, shape ``(N, num_outputs)``.
        bounds: The input bounds, shape ``(D, 2)``.
        domain: ``"hermite"`` or ``"interval"`` (see :func:`input_domain`).
        input_scaling: ``auto`` (``bounds`` onto [-1, 1], or standardised from
            ``x_train`` when ``domain`` is ``hermite``) or ``none``.
        output_scaling: ``standardize`` (from ``y_train``) or ``none``.

    Returns:
        The maps, with ``bounds`` as float64.
    """
    d, o = x_train.shape[1], y_train.shape[1]
    if input_scaling == "none":
        inputs = AffineMap.identity(d)
    elif domain == "hermite":
        inputs = AffineMap.standardize(x_train)
    else:
        inputs = AffineMap.to_interval(bounds)
    outputs = (
        AffineMap.standardize(y_train) if output_scaling == "standardize" else AffineMap.identity(o)
    )
    return DataMaps(inputs, outputs, bounds.to(torch.float64))
