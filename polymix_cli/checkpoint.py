"""Self-describing checkpoints: written atomically, read without unpickling code.

A checkpoint is a dict of tensors and plain data (``torch.load(weights_only=True)``):

- ``format`` ("polymix-checkpoint") and ``format_version`` (int)
- ``polymix_version``, ``epoch`` (epochs completed), ``config`` (the resolved config as YAML text)
- ``model`` (the StochasticModel ``state_dict``), ``optimizer``, ``scheduler`` (state dicts or None)
- ``rng`` ({"torch": ByteTensor, and "cuda" on CUDA}), ``history`` ({"epoch", "lr", "losses"} as lists/tensor)
- ``extra`` (a dict of plain data for later use, e.g. data normalisation maps)
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from . import __version__

__all__ = ["FORMAT", "FORMAT_VERSION", "CheckpointError", "load_checkpoint", "save_checkpoint"]

FORMAT = "polymix-checkpoint"
FORMAT_VERSION = 1
# keys every checkpoint must hold, with their types; the rest (optimizer, scheduler, rng,
# extra) is optional and only needed to resume training
# how torch names the global that a weights-only load refused to import
_UNSAFE = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_REQUIRED: dict[str, type] = {"epoch": int, "config": str, "model": dict, "history": dict}


class CheckpointError(ValueError):
    """A file that is missing, unreadable, unsafe or not a compatible polymix checkpoint."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus format fields) to ``path`` atomically: a temporary file in
    the same directory, flushed and fsynced, then renamed over the target."""
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
    """Read a checkpoint with ``weights_only=True``; raise :class:`CheckpointError` with a
    one-line reason if it is missing, corrupt, unsafe or of another format."""
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
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {data.get('format_version')!r}; this polymix "
            f"({__version__}) reads version {FORMAT_VERSION}"
        )
    for key, kind in _REQUIRED.items():
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise CheckpointError(
                f"checkpoint {path} is incomplete: {key!r} is missing or not a {kind.__name__}"
            )
    return data
