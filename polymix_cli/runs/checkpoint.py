"""Self-describing checkpoints: written atomically, read without unpickling code, and the
trained model rebuilt from one alone.

A checkpoint is a dict of tensors and plain data (``torch.load(weights_only=True)``):

- ``format`` ("polymix-checkpoint") and ``format_version`` (int: 2; version 1, written
  before the typed schema, is read too: its config goes through
  :func:`polymix_cli.config.migrate.migrate`)
- ``polymix_version``, ``epoch`` (epochs completed), ``config`` (the resolved config as YAML
  text, every option of the schema present)
- ``model`` (the StochasticModel ``state_dict``), ``optimizer``, ``scheduler`` (state dicts or None)
- ``rng`` ({"torch": ByteTensor, and "cuda" on CUDA}), ``history`` ({"epoch", "lr", "losses"} as lists/tensor)
- ``extra`` (a dict of plain data: the data maps, column names, data file digests, timing)
- ``replicas`` (only with ``trainer.replicas`` > 1: every replica's state dict, ``loc``
  ``(K, P)``, ``log_std`` and ``noise_log_std``; ``model`` is then the kept replica, and
  with ``replica_selection=ensemble`` the predictive is the replicas' mixture)"""

from __future__ import annotations

import logging
import os
import pickle
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from polymix_cli import StochasticModel, __version__
from polymix_cli.config.build import build_model
from polymix_cli.config.migrate import CURRENT_VERSION, MigrationError, migrate
from polymix_cli.config.safety import find_callable_key
from polymix_cli.config.schema import TrainConfig
from polymix_cli.config.validation import ConfigError, parse_train_config
from polymix_cli.data.dataset import Dataset
from polymix_cli.data.scaling import DataMaps
from polymix_cli.replicas import ReplicaEnsemble
from polymix_cli.runs.prepare import (
    Prepared,
    data_columns,
    group_table,
    resolve_device,
)
from polymix_cli.runs.replicas import model_for_evaluation
from polymix_cli.training.loop import (
    Trainer,
    get_rng_state,
)

log = logging.getLogger("polymix")


FORMAT = "polymix-checkpoint"
FORMAT_VERSION = CURRENT_VERSION  # raised whenever the schema of the stored config changes
READABLE_VERSIONS = tuple(range(1, FORMAT_VERSION + 1))
# keys every checkpoint must hold, with their types; the rest (optimizer, scheduler, rng,
# extra) is optional and only needed to resume training
# how torch names the global that a weights-only load refused to import
_UNSAFE = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_REQUIRED: dict[str, type] = {"epoch": int, "config": str, "model": dict, "history": dict}


class CheckpointError(ValueError):
    """A file that is missing, unreadable, unsafe or not a compatible polymix checkpoint."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write a checkpoint atomically.

    A temporary file in the same directory, flushed and fsynced, then renamed over the
    target; the parent folders are created.

    Args:
        path: The checkpoint's path.
        payload: Its contents; the format fields (``format``, ``format_version``,
            ``polymix_version``) are added.

    Returns:
        ``path``, as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "polymix_version": __version__,
        **payload,
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``.

    Args:
        path: The checkpoint's path.
        map_location: Where to load its tensors.

    Returns:
        The checkpoint's contents.

    Raises:
        CheckpointError: With a one-line reason if it is missing, corrupt, unsafe,
            incomplete or of another format or format version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = _UNSAFE.search(str(err))
        if unsafe is None and "global" not in str(err).lower():
            raise CheckpointError(
                f"checkpoint {path} is truncated or corrupt (it cannot be unpickled)"
            ) from None
        what = unsafe[1] if unsafe else "an object"
        raise CheckpointError(
            f"checkpoint {path} was refused: it holds objects other than tensors and plain data "
            f"({what}), which polymix never loads"
        ) from None
    except PermissionError as err:
        raise CheckpointError(f"checkpoint {path} cannot be read: {err.strerror}") from None
    except Exception as err:  # noqa: BLE001 - torch raises many types for a damaged archive
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(err).__name__})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a polymix checkpoint")
    if data.get("format_version") not in READABLE_VERSIONS or isinstance(
        data.get("format_version"), bool
    ):
        raise CheckpointError(
            f"checkpoint {path} has format version {data.get('format_version')!r}; this polymix "
            f"({__version__}) reads versions {READABLE_VERSIONS[0]} to {FORMAT_VERSION}"
        )
    for key, kind in _REQUIRED.items():
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise CheckpointError(
                f"checkpoint {path} is incomplete: {key!r} is missing or not a {kind.__name__}"
            )
    return data


def checkpoint_payload(
    p: Prepared, trainer: Trainer, config_yaml: str, kept: int | None = None
) -> dict[str, Any]:
    """The contents of a run's checkpoint at the trainer's current epoch.

    With replicas, ``model`` is the replica ``kept`` (default: the one with the lowest
    total loss at the last epoch), written into ``p.model`` first, and ``replicas`` holds
    every replica's state (what resuming needs; the optimizer's state is the replicas').

    Args:
        p: The prepared run.
        trainer: The trainer (model, optimizer, scheduler, history and epoch).
        config_yaml: The run's config as YAML.
        kept: With replicas, the replica that is the checkpoint's model.

    Returns:
        The payload for :func:`save_checkpoint`: the epoch, config, model, optimizer,
        scheduler and RNG states, the history, and ``extra`` (training time, groups, data
        maps, column names, data file).
    """
    replicas = {}
    if trainer.replicas is not None:
        if kept is None:
            kept = trainer.history.last().get("replica", 0)
        trainer.replicas.copy_to(kept, p.model)
        replicas = {"replicas": trainer.replicas.state_dict()}
    return {
        **replicas,
        "epoch": trainer.epoch,
        "config": config_yaml,
        "model": p.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
        "rng": get_rng_state(p.device),
        "history": trainer.history.state(),
        "extra": {
            "train_seconds": trainer.train_seconds,
            "groups": group_table(p.specs),
            "data_maps": p.maps.state(),
            "columns": data_columns(p.data),
            **({"replica_kept": kept} if kept is not None else {}),
            **({"data_file": p.data.source} if p.data.source is not None else {}),
        },
    }


def checkpoint_config(
    state: Mapping[str, Any], path: str | Path, parse_config: Callable[[str], dict[str, Any]]
) -> dict[str, Any]:
    """The config stored in a loaded checkpoint, brought up to the current schema.

    Migrated with :func:`~polymix_cli.config.migrate.migrate` from the checkpoint's format
    version; a config that names a callable (``_target_`` and friends) is refused before
    anything is built from it.

    Args:
        state: A loaded checkpoint (:func:`load_checkpoint`).
        path: Its path, for the messages.
        parse_config: Turns the stored YAML into a dict.

    Returns:
        The config, a plain dict.

    Raises:
        CheckpointError: If the config is unreadable, not a mapping, names a callable or
            cannot be migrated.
    """
    try:
        cfg = parse_config(state["config"])
    except Exception as err:  # noqa: BLE001 - any parse failure means a corrupt checkpoint
        raise CheckpointError(
            f"checkpoint {path} holds an unreadable config ({type(err).__name__})"
        ) from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"checkpoint {path} holds a config that is not a mapping")
    found = find_callable_key(cfg)
    if found is not None:
        raise CheckpointError(
            f"checkpoint {path} was refused: its config names a callable "
            f"({found[0]}={found[1]!r}); polymix builds models only from its own registry"
        )
    try:
        return migrate(cfg, state["format_version"])
    except MigrationError as err:
        raise CheckpointError(f"checkpoint {path}: {err}") from None


def stored_maps(state: Mapping[str, Any], path: Any) -> DataMaps | None:
    """The data maps a checkpoint's model was trained with.

    Args:
        state: A loaded checkpoint.
        path: Its path, for the messages.

    Returns:
        The maps, or ``None`` in checkpoints written before maps were stored (see
        :func:`checkpoint_maps`).

    Raises:
        CheckpointError: If the stored maps are unreadable.
    """
    stored = (state.get("extra") or {}).get("data_maps")
    if stored is None:
        return None
    try:
        return DataMaps.from_state(stored)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} holds unreadable data maps ({err})") from None


def checkpoint_maps(state: Mapping[str, Any], cfg: dict[str, Any], path: Any) -> DataMaps | None:
    """The data maps of a checkpoint's model, adjusting ``cfg`` for old checkpoints.

    A checkpoint written before maps were stored holds a model trained on raw data: then
    the result is ``None``, and ``cfg``'s data scaling is set to ``none`` (in place) so
    that :func:`~polymix_cli.runs.prepare.prepare` fits identity maps.

    Args:
        state: A loaded checkpoint.
        cfg: The run's config, a plain dict (modified in place).
        path: The checkpoint's path, for the messages.

    Returns:
        The stored maps, or ``None``.

    Raises:
        CheckpointError: If the stored maps are unreadable.
    """
    maps = stored_maps(state, path)
    if maps is None and isinstance(cfg.get("data"), dict):
        cfg["data"].update(input_scaling="none", output_scaling="none")
    return maps


@dataclass
class Trained:
    """A trained model rebuilt from its checkpoint alone (no data are read).

    Args:
        cfg: The checkpoint's config.
        model: The model with its trained state, on ``device``.
        maps: The data maps between the user's units and the model's domain, with the
            training bounds.
        input_names: The names of the inputs.
        output_names: The names of the outputs.
        device: The torch device.
        epoch: The checkpoint's epoch.
    """

    cfg: TrainConfig
    model: StochasticModel | ReplicaEnsemble  # the ensemble with replica_selection=ensemble
    maps: DataMaps  # user units <-> the model's domain, with the training bounds
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    device: torch.device
    epoch: int


def load_trained(
    ckpt: str | Path, parse_config: Callable[[str], dict[str, Any]], device: str | None = None
) -> Trained:
    """Load a checkpoint and rebuild its model with its stored data maps and column names.

    Args:
        ckpt: The checkpoint's path.
        parse_config: Turns the stored YAML into a dict.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``; ``None``: cpu.

    Returns:
        The trained model and what goes with it.

    Raises:
        CheckpointError: If the checkpoint cannot be read, holds an invalid config,
            predates stored data maps, or does not match the model its config describes.
        ConfigError: If ``cuda`` is asked for and no CUDA device is available.
    """
    state = load_checkpoint(ckpt)
    try:
        cfg = parse_train_config(checkpoint_config(state, ckpt, parse_config))
    except ConfigError as err:
        reasons = "; ".join(err.messages)
        raise CheckpointError(f"checkpoint {ckpt} holds an invalid config ({reasons})") from None
    maps = stored_maps(state, ckpt)
    if maps is None:
        raise CheckpointError(
            f"checkpoint {ckpt} predates stored data maps (extra.data_maps); train the model "
            f"again to use it here"
        )
    num_inputs, num_outputs = maps.inputs.dim, maps.outputs.dim
    columns = (state.get("extra") or {}).get("columns") or {}
    inputs = tuple(columns.get("inputs") or (f"x{i + 1}" for i in range(num_inputs)))
    outputs = tuple(columns.get("outputs") or (f"y{j + 1}" for j in range(num_outputs)))
    if len(inputs) != num_inputs or len(outputs) != num_outputs:
        raise CheckpointError(
            f"checkpoint {ckpt} names {len(inputs)} input(s) and {len(outputs)} output(s), but "
            f"its data maps have {num_inputs} and {num_outputs}"
        )
    torch_device = resolve_device(device)
    try:
        model, _ = build_model(cfg.model, cfg.layout, num_inputs, num_outputs, cfg.trainer)
        model.load_state_dict(state["model"])
        model = model_for_evaluation(model, cfg.trainer, state.get("replicas"))
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"checkpoint {ckpt} does not match the model its config describes "
            f"({str(err).strip().splitlines()[0][:200]})"
        ) from None
    return Trained(cfg, model.to(torch_device), maps, inputs, outputs, torch_device, state["epoch"])


def warn_changed_files(data: Dataset, state: Mapping[str, Any]) -> None:
    """Log a warning when a data file the checkpoint was trained on has changed since.

    Args:
        data: The dataset now read (its ``source`` holds the paths and SHA-256 digests).
        state: A loaded checkpoint.
    """
    trained = (state.get("extra") or {}).get("data_file")
    if not isinstance(trained, Mapping) or data.source is None:
        return
    for key in ("", "test_", "val_"):
        path, digest = data.source.get(f"{key}path"), data.source.get(f"{key}sha256")
        if (
            path is not None
            and path == trained.get(f"{key}path")
            and digest != trained.get(f"{key}sha256")
        ):
            log.warning(
                "polymix: warning: %s has changed since the model was trained (its sha256 differs); "
                "the metrics describe the file as it is now",
                path,
            )
