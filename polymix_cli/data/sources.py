"""The dataset a ``data`` section describes: a synthetic generator's draws or the user's file."""

from __future__ import annotations

from polymix_cli.config.schema import DataConfig, FileDataConfig, SyntheticDataConfig
from polymix_cli.data.dataset import Dataset
from polymix_cli.data.synthetic import make_dataset


def dataset_from_config(d: DataConfig) -> Dataset:
    """The dataset a validated ``data`` section describes: a generator's draws, or the
    user's file (``generator: file``). Raises ``ValueError`` with a one-line message."""
    if isinstance(d, FileDataConfig):
        from polymix_cli.data.files import load_file_dataset

        return load_file_dataset(d)
    assert isinstance(d, SyntheticDataConfig)
    return make_dataset(
        d.generator, d.num_train, d.num_test, d.noise_std, d.bounds, d.seed, d.test_seed
    )
