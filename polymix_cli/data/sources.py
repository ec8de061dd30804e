"""The dataset a ``data`` config describes: a synthetic generator's draws or the user's file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from polymix_cli.data.dataset import Dataset
from polymix_cli.data.synthetic import make_dataset


def dataset_from_config(d: Mapping[str, Any]) -> Dataset:
    """The dataset a validated ``data`` config describes: a generator's draws, or the
    user's file (``generator: file``). Raises ``ValueError`` with a one-line message."""
    from polymix_cli.data.files import FILE_GENERATOR, load_file_dataset

    if d["generator"] == FILE_GENERATOR:
        return load_file_dataset(d)
    return make_dataset(
        d["generator"],
        d["num_train"],
        d["num_test"],
        d["noise_std"],
        d["bounds"],
        d["seed"],
        d["test_seed"],
    )
