"""The dataset a ``data`` section describes: a synthetic generator's draws or the user's file."""

from __future__ import annotations

import torch

from polymix_cli.config.schema import DataConfig, FileDataConfig, SyntheticDataConfig
from polymix_cli.data.dataset import Dataset
from polymix_cli.data.synthetic import make_dataset


def dataset_from_config(d: DataConfig) -> Dataset:
    """The dataset a validated ``data`` section describes.

    Args:
        d: The ``data`` section: a generator's draws
            (:class:`~polymix_cli.config.schema.SyntheticDataConfig`, see
            :func:`~polymix_cli.data.synthetic.make_dataset`), or the user's file
            (``generator: file``, see :func:`~polymix_cli.data.files.load_file_dataset`).

    Returns:
        The training, test and validation sets.

    Raises:
        ValueError: With a one-line message (a
            :class:`~polymix_cli.data.files.DataFileError` for a file).
    """
    if isinstance(d, FileDataConfig):
        from polymix_cli.data.files import load_file_dataset

        return load_file_dataset(d)
    assert isinstance(d, SyntheticDataConfig)
    train_inputs = None
    if d.train_inputs is not None:
        train_inputs = _train_inputs(d)
    return make_dataset(
        d.generator,
        d.num_train,
        d.num_test,
        d.noise_std,
        d.bounds,
        d.seed,
        d.test_seed,
        d.num_val,
        d.val_seed,
        train_inputs,
    )


def _train_inputs(d: SyntheticDataConfig) -> torch.Tensor:
    """The rows of ``data.train_inputs`` (columns x1, x2, ...), within ``data.bounds``."""
    from polymix_cli.data.files import DataFileError, _read, open_table
    from polymix_cli.data.synthetic import GENERATORS

    names = [f"x{i + 1}" for i in range(GENERATORS[d.generator].num_inputs)]
    table = open_table(d.train_inputs, "data.train_inputs")
    table.check_columns(names, "data.train_inputs")
    x = torch.from_numpy(_read(table, names, "data.train_inputs").values.copy())
    if x.shape[0] == 0:
        raise DataFileError(f"{table.label} has no data rows")
    bounds = torch.as_tensor(d.bounds, dtype=x.dtype).reshape(-1, 2)
    if bounds.shape[0] == x.shape[1]:
        outside = ((x < bounds[:, 0]) | (x > bounds[:, 1])).any(1)
        if outside.any():
            rows = torch.nonzero(outside).flatten()[:5].add(1).tolist()
            raise DataFileError(
                f"{table.label}: {int(outside.sum())} row(s) lie outside data.bounds {d.bounds} "
                f"(data rows {', '.join(map(str, rows))})"
            )
    return x
