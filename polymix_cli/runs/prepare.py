"""Preparing a run: validate the config, draw or read the data, build the model and check
the run dir, all before any file is written."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from polymix_cli import StochasticModel
from polymix_cli.config.build import build_model
from polymix_cli.config.schema import TrainConfig
from polymix_cli.config.validation import ConfigError, config_dict, parse_train_config
from polymix_cli.data.dataset import Dataset
from polymix_cli.data.scaling import DataMaps, fit_maps, input_domain, map_problems
from polymix_cli.data.sources import dataset_from_config
from polymix_cli.layout import GroupSpec
from polymix_cli.training.loop import (
    Trainer,
)

log = logging.getLogger("polymix")


class UI(Protocol):
    """What a run reports its progress to (the console, or nothing).

    ``groups(specs, num_params)`` shows the resolved parameter groups; ``training(trainer)``
    returns an optional hook called after every epoch; ``finished()`` ends the progress
    display; ``summary(metrics, run_dir)`` shows the results.
    """

    def groups(self, specs: list[GroupSpec], num_params: int) -> None: ...
    def training(self, trainer: Trainer) -> Callable[[Trainer], None] | None: ...
    def finished(self) -> None: ...
    def summary(self, metrics: Mapping[str, Any], run_dir: Path) -> None: ...


class SilentUI:
    """A :class:`UI` that shows nothing: for runs started in process (scripts, notebooks,
    benchmarks, tests), e.g. ``train(cfg, run_dir, config_yaml, SilentUI())``."""

    def groups(self, specs: list[GroupSpec], num_params: int) -> None:
        """Nothing."""

    def training(self, trainer: Trainer) -> None:
        """No per-epoch hook."""
        return

    def finished(self) -> None:
        """Nothing."""

    def summary(self, metrics: Mapping[str, Any], run_dir: Path) -> None:
        """Nothing."""


def resolve_device(name: str | None) -> torch.device:
    """The torch device of a ``trainer.device`` setting.

    Args:
        name: ``"cpu"``, ``"cuda"`` or ``"auto"`` (cuda when available); ``None``: cpu.

    Returns:
        The device.

    Raises:
        ConfigError: If ``cuda`` is asked for and no CUDA device is available.
    """
    name = name or "cpu"
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA device is available; use cpu or auto")
    return torch.device(name)


@dataclass
class Prepared:
    """Everything a run needs, built and validated before any file is written.

    Args:
        cfg: The validated config.
        data: The data, on ``device``.
        model: The model, initialised from the config's seed, on ``device``.
        specs: The resolved parameter groups.
        device: The torch device.
        maps: The data maps between the user's units and the model's domain.
        x_train: Training inputs in the model's domain, shape ``(N, D)``.
        y_train: Training outputs in the model's domain, shape ``(N, O)``.
        x_val: Validation inputs in the model's domain, shape ``(N_val, D)``, or ``None``
            without a validation set.
        y_val: Validation outputs in the model's domain, shape ``(N_val, O)``, or ``None``.
    """

    cfg: TrainConfig
    data: Dataset
    model: StochasticModel
    specs: list[GroupSpec]
    device: torch.device
    maps: DataMaps  # user units <-> the model's domain
    x_train: torch.Tensor  # (N, D) training inputs in the model's domain
    y_train: torch.Tensor  # (N, O) training outputs in the model's domain
    x_val: torch.Tensor | None = None  # (N_val, D) validation inputs in the model's domain
    y_val: torch.Tensor | None = None  # (N_val, O)


def prepare(cfg: TrainConfig | Mapping[str, Any], maps: DataMaps | None = None) -> Prepared:
    """Validate a config, draw the data and build the model.

    Args:
        cfg: A plain dict as composed, or a :class:`TrainConfig` (checked again).
        maps: The data maps of a trained model (``None``: fitted to the training data).

    Returns:
        The prepared run; the model is initialised from the config's ``seed``.

    Raises:
        ConfigError: Naming every offending option, or when the data do not match
            ``maps``.
    """
    config = parse_train_config(config_dict(cfg) if isinstance(cfg, TrainConfig) else cfg)
    device = resolve_device(config.trainer.device)
    d = config.data
    try:
        data = dataset_from_config(d)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    torch.manual_seed(config.seed)
    try:
        model, specs = build_model(
            config.model, config.layout, data.num_inputs, data.num_outputs, config.trainer
        )
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err)) from None
    if maps is None:
        maps = fit_maps(
            data.x_train,
            data.y_train,
            data.bounds,
            input_domain(config.model),
            d.input_scaling,
            d.output_scaling,
        )
    elif maps.inputs.dim != data.num_inputs or maps.outputs.dim != data.num_outputs:
        raise ConfigError(
            f"the data have {data.num_inputs} input(s) and {data.num_outputs} output(s), but the "
            f"model was trained on {maps.inputs.dim} and {maps.outputs.dim}"
        )
    else:  # the bounds the model was trained within (plots and checks use them)
        data.bounds = maps.bounds.to(data.bounds.dtype)
    problems = map_problems(
        maps, data.x_train, data.y_train, list(data.input_names), list(data.output_names)
    )
    if problems:
        raise ConfigError(problems)
    _warn_outside(data)
    _check_input_distributions(config, data, maps, model)
    data = data.to(device)
    # mapped in the data's dtype (float64 for data files: large offsets keep their digits),
    # then trained in the default dtype
    dtype = torch.get_default_dtype()
    x_train = maps.inputs.forward(data.x_train).to(dtype)
    y_train = maps.outputs.forward(data.y_train).to(dtype)
    x_val = y_val = None
    if data.has_validation:
        x_val = maps.inputs.forward(data.x_val).to(dtype)
        y_val = maps.outputs.forward(data.y_val).to(dtype)
    return Prepared(
        config, data, model.to(device), specs, device, maps, x_train, y_train, x_val, y_val
    )


def _warn_outside(data: Dataset) -> None:
    """Log a warning when test inputs lie outside the bounds (the model extrapolates there)."""
    bounds = data.bounds.to(data.x_test.dtype)
    outside = ((data.x_test < bounds[:, 0]) | (data.x_test > bounds[:, 1])).any(1)
    count = int(outside.sum())
    if count:
        log.warning(
            "polymix: warning: %d of the %d test rows lie outside the input bounds of the training "
            "data; the model extrapolates there",
            count,
            data.x_test.shape[0],
        )


def _check_input_distributions(
    config: TrainConfig, data: Dataset, maps: DataMaps, model: StochasticModel
) -> None:
    """``eval.input_distributions``: one per input, and warnings for those reaching outside
    the training bounds; with ``eval.sensitivity=pce``, the basis's own."""
    from polymix_cli.reporting.input_distributions import (
        check_input_distributions,
        matches_basis,
        pce_mismatch_message,
    )
    from polymix_cli.sensitivity import input_distribution

    entries = config.eval.input_distributions
    if entries is None or config.eval.sensitivity == "off":
        return
    check_input_distributions(entries, data.input_names, data.bounds)
    kind = input_distribution(model.surrogate_model)
    if config.eval.sensitivity == "pce" and not matches_basis(
        entries, kind, maps.inputs.shift, maps.inputs.scale
    ):
        raise ConfigError(pce_mismatch_message(kind))


def check_output_dir(run_dir: Path, subdirs: Iterable[str] = (), files: Iterable[str] = ()) -> None:
    """Check that a run can write its results, creating the folders.

    Run before training, so that a run never fails at its end for want of a place to
    write its results.

    Args:
        run_dir: The run's output folder.
        subdirs: Its subfolders to create.
        files: Names of files the run will write in ``run_dir``.

    Raises:
        ConfigError: Unless ``run_dir`` and its ``subdirs`` exist (or can be created) and
            are writable, and none of ``files`` is a folder.
    """
    folder = run_dir
    try:
        for folder in (run_dir, *(run_dir / d for d in subdirs)):
            if folder.exists() and not folder.is_dir():
                raise NotADirectoryError(20, "exists and is not a folder", str(folder))
            folder.mkdir(parents=True, exist_ok=True)
            handle, probe = tempfile.mkstemp(prefix=".polymix-write-test-", dir=folder)
            os.close(handle)
            os.unlink(probe)
        for name in files:
            if (run_dir / name).is_dir():
                raise IsADirectoryError(21, "is a folder", str(run_dir / name))
    except OSError as err:
        where = err.filename or folder
        raise ConfigError(
            f"output directory {run_dir} is not writable: {where}: {err.strerror or err}; "
            f"choose another with hydra.run.dir=PATH"
        ) from None


def group_table(specs: list[GroupSpec]) -> list[dict[str, Any]]:
    """The resolved layout as a table, one row per group.

    Args:
        specs: The resolved groups (see :func:`~polymix_cli.config.build.layout_groups`).

    Returns:
        ``{"name", "kind", "size", "block", "rule"}`` for each group, in order.
    """
    return [
        {"name": s.name, "kind": s.kind, "size": s.size, "block": s.block, "rule": s.rule}
        for s in specs
    ]


def data_columns(data: Dataset) -> dict[str, list[str]]:
    """The names of the inputs and outputs (stored in checkpoints for ``polymix predict``).

    Args:
        data: The dataset.

    Returns:
        ``{"inputs": [...], "outputs": [...]}``.
    """
    return {"inputs": list(data.input_names), "outputs": list(data.output_names)}
