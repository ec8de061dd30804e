"""A dataset: training and test inputs and outputs, the input bounds, and (for synthetic
data) the noiseless function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass
class Dataset:
    """Training and test data. ``x_*`` ``(N, num_inputs)``, ``y_*`` ``(N, num_outputs)``;
    ``true_fn`` is the noiseless function where known (else ``None``)."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    bounds: Tensor  # (num_inputs, 2): low, high
    true_fn: Callable[[Tensor], Tensor] | None = None
    input_names: tuple[str, ...] = ()  # default: x1, x2, ...
    output_names: tuple[str, ...] = ()  # default: y1, y2, ...
    source: dict[str, Any] | None = None  # data from files: their paths, sha256, rows and split

    def __post_init__(self) -> None:
        if not self.input_names:
            self.input_names = tuple(f"x{i + 1}" for i in range(self.num_inputs))
        if not self.output_names:
            self.output_names = tuple(f"y{j + 1}" for j in range(self.num_outputs))

    @property
    def num_inputs(self) -> int:
        return self.x_train.shape[1]

    @property
    def num_outputs(self) -> int:
        return self.y_train.shape[1]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Dataset:
        def move(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype or t.dtype)

        return Dataset(
            self.name,
            move(self.x_train),
            move(self.y_train),
            move(self.x_test),
            move(self.y_test),
            self.bounds,
            self.true_fn,
            self.input_names,
            self.output_names,
            self.source,
        )
