"""The Hydra apps behind ``polymix train`` and ``polymix evaluate``.

Errors become one line on stderr and an exit status: 2 for configuration and usage
errors, 1 for failures while running, 130/143 for a run stopped by SIGINT/SIGTERM (after
saving its checkpoint). ``POLYMIX_DEBUG=1`` shows the full traceback. Hydra's own errors,
raised before the task runs, are reported by :mod:`polymix_cli.cli.main`. torch is
imported only once the task runs, so that a mistyped option fails at once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from . import errors

# The repository's configs/ folder (polymix is installed in editable mode from the repo).
CONFIG_PATH = str(Path(__file__).resolve().parents[2] / "configs")


def _run_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def _overridden_keys() -> list[str]:
    """The config keys (or group names) the user set on the command line for this job."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    task = list(HydraConfig.get().overrides.task)
    return [o.key_or_group for o in OverridesParser.create().parse_overrides(task)]


def _guarded(body: Callable[[], Any]) -> Any:
    """Run ``body``; turn expected errors into a one-line message and an exit status."""
    from ..checkpoint import CheckpointError
    from ..config import ConfigError
    from ..run import RunDiverged, RunInterrupted

    try:
        return body()
    except RunInterrupted as err:
        _fail(err, err.exit_status, label="")
    except RunDiverged as err:
        _fail(err, errors.RUNTIME, label="error")
    except (ConfigError, CheckpointError, OmegaConfBaseException) as err:
        _fail(err, errors.USAGE, label="error")
    except Exception as err:  # noqa: BLE001 - the CLI's last line of defence
        _fail(err, errors.RUNTIME, label=f"error ({type(err).__name__})")


def _fail(err: BaseException, status: int, label: str) -> None:
    if errors.debug():
        raise err
    message = errors.first_line(err) or type(err).__name__
    errors.leave(f"{label}: {message}" if label else message, status)


def parse_config(text: str) -> dict[str, Any]:
    """The stored YAML of a checkpoint's config as a plain dict."""
    return OmegaConf.to_container(OmegaConf.create(text), resolve=True)  # type: ignore[return-value]


def _train_config(cfg: DictConfig) -> tuple[dict[str, Any], str, dict[str, Any] | None]:
    """The run's config, its YAML and, with ``resume=PATH``, the loaded checkpoint."""
    from ..checkpoint import load_checkpoint
    from ..config import ConfigError, refuse_callables
    from ..run import checkpoint_config, resume_config

    plain: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    refuse_callables(plain)
    resume = plain.get("resume")
    if resume is None:
        return plain, OmegaConf.to_yaml(cfg, resolve=True), None
    if not isinstance(resume, str) or not resume:
        raise ConfigError(f"resume must be the path of a polymix checkpoint, got {resume!r}")
    state = load_checkpoint(resume)
    stored = checkpoint_config(state, resume, parse_config)
    plain = resume_config(stored, plain, _overridden_keys(), state["epoch"])
    return plain, OmegaConf.to_yaml(OmegaConf.create(plain)), state


@hydra.main(config_path=CONFIG_PATH, config_name="train", version_base="1.3")
def train_app(cfg: DictConfig) -> float | None:
    from ..run import train
    from .console import ConsoleUI

    def body() -> float | None:
        plain, config_yaml, state = _train_config(cfg)
        ui = ConsoleUI(plain.get("trainer", {}).get("progress", "auto"))
        metrics = train(plain, _run_dir(), config_yaml, ui, resume=state)
        return metrics["test"]["crps"]

    return _guarded(body)


@hydra.main(config_path=CONFIG_PATH, config_name="evaluate", version_base="1.3")
def evaluate_app(cfg: DictConfig) -> None:
    from ..config import ConfigError, refuse_callables
    from ..run import evaluate_checkpoint
    from .console import ConsoleUI

    def body() -> None:
        plain = OmegaConf.to_container(cfg, resolve=True)
        refuse_callables(plain)
        if not isinstance(plain["ckpt"], str) or not plain["ckpt"]:
            raise ConfigError(f"ckpt must be the path of a polymix checkpoint, got {plain['ckpt']!r}")
        ckpt = Path(plain["ckpt"])
        overrides = {k: plain.get(k) for k in ("data", "eval", "trainer", "seed")}
        evaluate_checkpoint(ckpt, overrides, _run_dir(), ConsoleUI("log"), parse_config)

    _guarded(body)


APPS = {"train": train_app, "evaluate": evaluate_app}
