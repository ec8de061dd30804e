"""The Hydra apps behind ``polymix train`` and ``polymix evaluate``.

Errors become one line on stderr and an exit status: 2 for configuration and usage
errors, 1 for failures while running. ``POLYMIX_DEBUG=1`` shows the full traceback.
In a multirun (``-m``) a failing job instead records its reason in ``status.json`` and
returns the worst objective, ``inf``, so the sweep goes on and an optuna study steers
away from it. Every job writes ``status.json`` (ok or failed, the reason, seconds).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ..checkpoint import CheckpointError
from ..config import ConfigError
from ..sweep import metric_value, score, threads_per_job, write_status
from .console import ConsoleUI

# configs/hydra/launcher/{joblib,submitit_local}.yaml restate the plugins' configs of the
# same name, with polymix's defaults and comments; Hydra validates them against those
# schemas and warns that matching by name is deprecated. The match is intended: silence
# only that warning, only for these two files (also in launcher workers, which import this).
warnings.filterwarnings(
    "ignore", category=UserWarning,
    message=r"\s*'hydra/launcher/(joblib|submitit_local)' is validated against ConfigStore schema",
)

# The repository's configs/ folder (polymix is installed in editable mode from the repo).
CONFIG_PATH = str(Path(__file__).resolve().parents[2] / "configs")


def _run_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


# What a failed job (or one without its objective) returns to the sweeper: the worst value.
FAILED_OBJECTIVE = float("inf")


def _multirun() -> bool:
    return HydraConfig.get().mode == RunMode.MULTIRUN


def _guarded(body: Callable[[], Any], job: dict[str, Any] | None = None) -> Any:
    """Run ``body`` and record ``status.json``; turn expected errors into a one-line
    message and an exit status (single run), or into a failed status and the worst
    objective (multirun). ``job`` collects what ``body`` learns for the status file."""
    job = {} if job is None else job
    start = time.perf_counter()
    try:
        result = body()
    except (ConfigError, CheckpointError) as err:
        return _fail(err, 2, start, job.get("threads"))
    except Exception as err:  # noqa: BLE001 - the CLI's last line of defence
        return _fail(err, 1, start, job.get("threads"))
    write_status(_run_dir(), "ok", time.perf_counter() - start, threads=job.get("threads"))
    return result


def _one_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _fail(err: BaseException, status: int, start: float, threads: int | None) -> float:
    if os.environ.get("POLYMIX_DEBUG") == "1":
        raise err
    message = _one_line(err)
    reason = message if status == 2 else f"{type(err).__name__}: {message}"
    try:
        write_status(_run_dir(), "failed", time.perf_counter() - start, reason=reason,
                     error=type(err).__name__, exit_status=status, threads=threads)
    except OSError:
        pass  # the one-line message below still says what went wrong
    label = "error" if status == 2 else f"error ({type(err).__name__})"
    if _multirun():  # into the job's log (and the terminal) instead of ending the sweep
        job = HydraConfig.get().job.num
        logging.getLogger("polymix").error(f"polymix: {label}: {message} (job {job} failed; the sweep goes on)")
        return FAILED_OBJECTIVE
    print(f"polymix: {label}: {message}", file=sys.stderr)
    raise SystemExit(status)


def _threads(trainer: dict[str, Any]) -> int | None:
    """trainer.num_threads, or the launcher's share of the cores; applied to torch."""
    requested = trainer.get("num_threads")
    if requested is not None and (isinstance(requested, bool) or not isinstance(requested, int)
                                  or requested < 1):
        return None  # validation reports it
    launcher = OmegaConf.select(HydraConfig.get(), "launcher")
    launcher = OmegaConf.to_container(launcher, resolve=False) if launcher is not None else {}
    threads = threads_per_job(requested, launcher)  # type: ignore[arg-type]
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return threads


def parse_config(text: str) -> dict[str, Any]:
    """The stored YAML of a checkpoint's config as a plain dict."""
    return OmegaConf.to_container(OmegaConf.create(text), resolve=True)  # type: ignore[return-value]


@hydra.main(config_path=CONFIG_PATH, config_name="train", version_base="1.3")
def train_app(cfg: DictConfig) -> float | None:
    """Train one model; return ``sweep.objective`` (lower is better) for sweepers."""
    from ..run import train

    job: dict[str, Any] = {}

    def body() -> float | None:
        plain: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
        job["threads"] = _threads(plain.get("trainer") or {})
        ui = ConsoleUI(plain.get("trainer", {}).get("progress", "auto"))
        metrics = train(plain, _run_dir(), OmegaConf.to_yaml(cfg, resolve=True), ui)
        objective = (plain.get("sweep") or {}).get("objective", "test.crps")
        value = score(objective, metric_value(metrics, objective))
        return FAILED_OBJECTIVE if value is None else value

    return _guarded(body, job)


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
