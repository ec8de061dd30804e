"""The Hydra apps behind ``polymix train`` and ``polymix evaluate``.

Errors become one line on stderr and an exit status: 2 for configuration and usage
errors, 1 for failures while running. ``POLYMIX_DEBUG=1`` shows the full traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ..checkpoint import CheckpointError
from ..config import ConfigError
from .console import ConsoleUI

# The repository's configs/ folder (polymix is installed in editable mode from the repo).
CONFIG_PATH = str(Path(__file__).resolve().parents[2] / "configs")


def _run_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def _guarded(body: Callable[[], Any]) -> Any:
    """Run ``body``; turn expected errors into a one-line message and an exit status."""
    try:
        return body()
    except (ConfigError, CheckpointError) as err:
        _fail(err, 2)
    except Exception as err:  # noqa: BLE001 - the CLI's last line of defence
        _fail(err, 1)


def _fail(err: BaseException, status: int) -> None:
    if os.environ.get("POLYMIX_DEBUG") == "1":
        raise err
    label = "error" if status == 2 else f"error ({type(err).__name__})"
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    print(f"polymix: {label}: {message}", file=sys.stderr)
    raise SystemExit(status)


def parse_config(text: str) -> dict[str, Any]:
    """The stored YAML of a checkpoint's config as a plain dict."""
    return OmegaConf.to_container(OmegaConf.create(text), resolve=True)  # type: ignore[return-value]


@hydra.main(config_path=CONFIG_PATH, config_name="train", version_base="1.3")
def train_app(cfg: DictConfig) -> float | None:
    from ..run import train

    def body() -> float | None:
        plain = OmegaConf.to_container(cfg, resolve=True)
        ui = ConsoleUI(plain.get("trainer", {}).get("progress", "auto"))
        metrics = train(plain, _run_dir(), OmegaConf.to_yaml(cfg, resolve=True), ui)
        return metrics["test"]["crps"]

    return _guarded(body)


@hydra.main(config_path=CONFIG_PATH, config_name="evaluate", version_base="1.3")
def evaluate_app(cfg: DictConfig) -> None:
    from ..run import evaluate_checkpoint

    def body() -> None:
        plain = OmegaConf.to_container(cfg, resolve=True)
        ckpt = Path(plain["ckpt"])
        overrides = {k: plain.get(k) for k in ("data", "eval", "trainer", "seed")}
        evaluate_checkpoint(ckpt, overrides, _run_dir(), ConsoleUI("log"), parse_config)

    _guarded(body)


APPS = {"train": train_app, "evaluate": evaluate_app}
