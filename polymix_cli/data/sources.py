"""The dataset a ``data`` section describes: a synthetic generator's draws or the user's file."""

from __future__ import annotations

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
    )
