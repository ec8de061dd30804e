"""A dataset: training, test and (optionally) validation inputs and outputs, the input
bounds, and (for synthetic data) the noiseless function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass
class Dataset:
    """Training, test and validation data, with the input bounds and what is known of
    their source.

    The validation set (``x_val``, ``y_val``, both ``None`` when there is none) is held out
    of training and is what model selection (early stopping, sweep ranking) looks at, so
    that the test set is never used for anything but reporting.

    ``true_fn`` is the noiseless function where known (else ``None``). Input and output
    names left empty default to ``x1, x2, ...`` and ``y1, y2, ...``.

    Args:
        name: The generator's name, or ``"file"``.
        x_train: Training inputs, shape ``(N_train, num_inputs)``.
        y_train: Training outputs, shape ``(N_train, num_outputs)``.
        x_test: Test inputs, shape ``(N_test, num_inputs)``.
        y_test: Test outputs, shape ``(N_test, num_outputs)``.
        bounds: The input bounds (low, high), shape ``(num_inputs, 2)``.
        true_fn: The noiseless function ``(N, num_inputs) -> (N, num_outputs)``, or
            ``None``.
        input_names: The input columns' names (default ``x1, x2, ...``).
        output_names: The output columns' names (default ``y1, y2, ...``).
        source: For data from files: their paths, sha256, rows and split; else ``None``.
        x_val: Validation inputs, shape ``(N_val, num_inputs)``, or ``None``.
        y_val: Validation outputs, shape ``(N_val, num_outputs)``, or ``None``.
    """

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
    x_val: Tensor | None = None  # (N_val, num_inputs); None: no validation set
    y_val: Tensor | None = None  # (N_val, num_outputs)

    def __post_init__(self) -> None:
        if not self.input_names:
            self.input_names = tuple(f"x{i + 1}" for i in range(self.num_inputs))
        if not self.output_names:
            self.output_names = tuple(f"y{j + 1}" for j in range(self.num_outputs))

    @property
    def num_inputs(self) -> int:
        """The input dimension (columns of ``x_train``)."""
        return self.x_train.shape[1]

    @property
    def has_validation(self) -> bool:
        """Whether there is a validation set."""
        return self.x_val is not None

    @property
    def num_outputs(self) -> int:
        """The output dimension (columns of ``y_train``)."""
        return self.y_train.shape[1]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Dataset:
        """A copy with the training, test and validation tensors on ``device`` (and of ``dtype``).

        ``bounds`` and everything else is shared with this dataset, unchanged.

        Args:
            device: The target device.
            dtype: The target dtype; ``None`` keeps each tensor's own.

        Returns:
            The new :class:`Dataset`.
        """

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device=device, dtype=dtype or t.dtype)

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
            move(self.x_val),
            move(self.y_val),
        )
