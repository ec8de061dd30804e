"""Bringing a config stored in an older checkpoint up to the current schema.

A checkpoint records its ``format_version`` (see :mod:`polymix_cli.runs.checkpoint`);
the version is raised whenever the schema of the stored config changes, and
:func:`migrate` knows what each older version means in today's terms:

- version 1 (polymix up to the typed schema): the config as composed from the YAML files
  of its day. Options added after the first release are absent from the oldest ones and
  take the values that were in force before they existed: ``data.input_scaling`` auto,
  ``data.output_scaling`` none (older models trained on raw outputs), ``trainer.batch_size``
  null, ``trainer.num_threads`` null, ``trainer.compile`` false, ``trainer.gradients``
  auto, ``trainer.noise`` (the values of its first release; only read with
  ``loss=gaussian_nll``), ``eval.sensitivity`` auto, ``eval.sensitivity_samples`` null,
  ``eval.sensitivity_base_samples`` 2048, ``resume`` null and ``sweep`` (test.crps).
- version 2: the config as the schema writes it, every option present, before the
  validation set: runs had none, so ``data.num_val`` is 0 (synthetic data) and
  ``data.val_fraction`` 0 with ``data.val_path`` null (data=file: the training rows stay
  those the run trained on), ``data.val_seed`` 5678, and ``trainer.early_stopping`` is off;
  runs trained one initialisation: ``trainer.replicas`` 1 (``trainer.replica_selection``
  best); nor had they ``data.train_inputs`` (synthetic data: null, the generator's own
  draws) or ``eval.input_distributions`` (null: the basis's distribution); and
  ``trainer.inference`` is vi (stochastic VI: there was no closed-form fit). Versions 1
  and 2 also lack ``eval.posterior_level`` (0.9) and ``eval.posterior_params`` (100):
  reporting only, the posterior section of metrics.json, which did not exist then.
- version 3: the config as the schema writes it, every option present.

These values are what the older versions meant, written here once and never changed, so
that a later change of a schema default cannot change what an old checkpoint means.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = ["CURRENT_VERSION", "MigrationError", "migrate"]

CURRENT_VERSION = 3

# version 1: options added after the first release, with the value each had before it existed
_ADDED_IN_VERSION_1: dict[str, dict[str, Any]] = {
    "data": {"input_scaling": "auto", "output_scaling": "none"},
    "trainer": {
        "batch_size": None,
        "num_threads": None,
        "compile": False,
        "gradients": "auto",
        "noise": {"init_std": 0.1, "prior": "none", "prior_scale": 1.0, "prior_log_std": 1.0},
    },
    "eval": {
        "sensitivity": "auto",
        "sensitivity_samples": None,
        "sensitivity_base_samples": 2048,
    },
}
_TOP_LEVEL_IN_VERSION_1: dict[str, Any] = {
    "resume": None,
    "sweep": {"sort_by": "test.crps", "objective": "test.crps"},
}


# version 2: the options of the validation set and of early stopping, off; one replica
_ADDED_IN_VERSION_2_DATA: dict[str, dict[str, Any]] = {
    "synthetic": {"num_val": 0, "val_seed": 5678, "train_inputs": None},
    "file": {"val_fraction": 0.0, "val_path": None, "val_seed": 5678},
}
_ADDED_IN_VERSION_2_TRAINER: dict[str, Any] = {
    "early_stopping": {"patience": None, "min_delta": 0.0, "every": 50, "num_samples": 200},
    "replicas": 1,
    "replica_selection": "best",
    "inference": "vi",  # stochastic VI: there was no closed-form fit
}
# versions 1 and 2: no input distributions, and no posterior section in metrics.json
_ADDED_IN_VERSION_2_EVAL: dict[str, Any] = {
    "input_distributions": None,
    "posterior_level": 0.9,
    "posterior_params": 100,
}


class MigrationError(ValueError):
    """A stored config of a format version this polymix cannot read."""


def _from_version_1(config: dict[str, Any]) -> dict[str, Any]:
    for section, added in _ADDED_IN_VERSION_1.items():
        node = config.get(section)
        if isinstance(node, dict):  # anything else is reported by validation
            for key, value in added.items():
                if key not in node:
                    node[key] = copy.deepcopy(value)
    for key, value in _TOP_LEVEL_IN_VERSION_1.items():
        if key not in config:
            config[key] = copy.deepcopy(value)
    return config


def _from_version_2(config: dict[str, Any]) -> dict[str, Any]:
    data, trainer = config.get("data"), config.get("trainer")
    if isinstance(data, dict):  # anything else is reported by validation
        kind = "file" if data.get("generator") == "file" else "synthetic"
        for key, value in _ADDED_IN_VERSION_2_DATA[kind].items():
            data.setdefault(key, copy.deepcopy(value))
    if isinstance(trainer, dict):
        for key, value in _ADDED_IN_VERSION_2_TRAINER.items():
            trainer.setdefault(key, copy.deepcopy(value))
    evaluation = config.get("eval")
    if isinstance(evaluation, dict):
        for key, value in _ADDED_IN_VERSION_2_EVAL.items():
            evaluation.setdefault(key, copy.deepcopy(value))
    return config


# each step brings a config of version v to version v + 1
_STEPS = {1: _from_version_1, 2: _from_version_2}


def migrate(config: Mapping[str, Any], format_version: int) -> dict[str, Any]:
    """A copy of a stored config brought up to :data:`CURRENT_VERSION`.

    ``config`` itself is not changed. Options an older version lacks are added with the
    values they had then (see the module's description); a section that is not a dict is
    left for validation to report.

    Args:
        config: A stored train config as a plain mapping.
        format_version: The checkpoint format it was written with.

    Returns:
        The migrated config, a deep copy.

    Raises:
        MigrationError: If ``format_version`` is not an integer from 1 to
            :data:`CURRENT_VERSION`.
    """
    if (
        isinstance(format_version, bool)
        or not isinstance(format_version, int)
        or not 1 <= format_version <= CURRENT_VERSION
    ):
        raise MigrationError(
            f"format version {format_version!r}; this polymix reads versions 1 to {CURRENT_VERSION}"
        )
    out = copy.deepcopy(dict(config))
    for version in range(format_version, CURRENT_VERSION):
        out = _STEPS[version](out)
    return out
