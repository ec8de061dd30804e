"""The Hydra apps behind ``polymix train``, ``polymix evaluate`` and ``polymix predict``.

Errors become one line on stderr and an exit status: 2 for configuration and usage
errors, 1 for failures while running, 130/143 for a run stopped by SIGINT/SIGTERM (after
saving its checkpoint). ``POLYMIX_DEBUG=1`` shows the full traceback. Hydra's own errors,
raised before the task runs, are reported by :mod:`polymix_cli.cli.main`. torch is
imported only once the task runs, so that a mistyped option fails at once.

In a multirun (``-m``) a failing job instead records its reason in ``status.json`` and
returns the worst objective, ``inf``, so the sweep goes on and an optuna study steers
away from it. Every job writes ``status.json`` (ok or failed, the reason, seconds).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from polymix_cli.cli import errors
from polymix_cli.reporting.sweep import metric_value, ranking_score, write_status
from polymix_cli.runs.threads import threads_per_job

# configs/hydra/launcher/{joblib,submitit_local}.yaml restate the plugins' configs of the
# same name, with polymix's defaults and comments; Hydra validates them against those
# schemas and warns that matching by name is deprecated. The match is intended: silence
# only that warning, only for these two files (also in launcher workers, which import this).
warnings.filterwarnings(
    "ignore",
    category=UserWarning,
    message=r"\s*'hydra/launcher/(joblib|submitit_local)' is validated against ConfigStore schema",
)

# The configs/ folder at the top of the repository, installed as the package
# polymix_cli.configs (pyproject.toml): read from the wheel, or from the checkout itself
# with an editable install. `--config-dir DIR` adds a folder of the user's own configs.
CONFIG_PATH = "pkg://polymix_cli.configs"

# What a failed job (or one without its objective) returns to the sweeper: the worst value.
FAILED_OBJECTIVE = float("inf")


def _run_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def _multirun() -> bool:
    return HydraConfig.get().mode == RunMode.MULTIRUN


def _overridden_keys() -> list[str]:
    """The config keys (or group names) the user set on the command line for this job."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    task = list(HydraConfig.get().overrides.task)
    return [o.key_or_group for o in OverridesParser.create().parse_overrides(task)]


def _guarded(body: Callable[[], Any], job: dict[str, Any] | None = None) -> Any:
    """Run ``body`` and record ``status.json``; turn expected errors into a one-line
    message and an exit status (single run), or into a failed status and the worst
    objective (multirun). ``job`` collects what ``body`` learns for the status file."""
    from polymix_cli.config.validation import ConfigError
    from polymix_cli.runs.checkpoint import CheckpointError
    from polymix_cli.runs.train import RunDiverged, RunInterrupted

    job = {} if job is None else job
    start = time.perf_counter()
    try:
        result = body()
    except RunInterrupted as err:  # the user stopped it: end the whole program, sweep or not
        _record(err, err.exit_status, start, job)
        _leave(err, err.exit_status, label="")
    except RunDiverged as err:
        return _fail(err, errors.RUNTIME, start, job, label="error")
    except (ConfigError, CheckpointError, OmegaConfBaseException) as err:
        return _fail(err, errors.USAGE, start, job, label="error")
    except Exception as err:  # noqa: BLE001 - the CLI's last line of defence
        return _fail(err, errors.RUNTIME, start, job, label=f"error ({type(err).__name__})")
    write_status(_run_dir(), "ok", time.perf_counter() - start, threads=job.get("threads"))
    return result


def _record(err: BaseException, status: int, start: float, job: dict[str, Any]) -> None:
    """Write the failed ``status.json`` of this job (best effort)."""
    message = errors.first_line(err) or type(err).__name__
    reason = message if status == errors.USAGE else f"{type(err).__name__}: {message}"
    try:
        write_status(
            _run_dir(),
            "failed",
            time.perf_counter() - start,
            reason=reason,
            error=type(err).__name__,
            exit_status=status,
            threads=job.get("threads"),
        )
    except OSError:
        pass  # the one-line message still says what went wrong


def _fail(err: BaseException, status: int, start: float, job: dict[str, Any], label: str) -> float:
    if errors.debug():
        raise err
    _record(err, status, start, job)
    if _multirun():  # into the job's log (and the terminal) instead of ending the sweep
        message = errors.first_line(err) or type(err).__name__
        logging.getLogger("polymix").error(
            f"polymix: {label}: {message} (job {HydraConfig.get().job.num} failed; the sweep goes on)"
        )
        return FAILED_OBJECTIVE
    _leave(err, status, label)
    return FAILED_OBJECTIVE  # not reached


def _leave(err: BaseException, status: int, label: str) -> None:
    if errors.debug():
        raise err
    message = errors.first_line(err) or type(err).__name__
    errors.leave(f"{label}: {message}" if label else message, status)


def _launcher_threads(trainer: dict[str, Any]) -> int | None:
    """``trainer.num_threads``, or this job's share of the cores under a parallel launcher."""
    requested = trainer.get("num_threads")
    if requested is not None and (
        isinstance(requested, bool) or not isinstance(requested, int) or requested < 1
    ):
        return None  # validation reports it
    launcher = OmegaConf.select(HydraConfig.get(), "launcher")
    launcher = OmegaConf.to_container(launcher, resolve=False) if launcher is not None else {}
    return threads_per_job(requested, launcher)  # type: ignore[arg-type]


def parse_config(text: str) -> dict[str, Any]:
    """The stored YAML of a checkpoint's config as a plain dict."""
    return OmegaConf.to_container(OmegaConf.create(text), resolve=True)  # type: ignore[return-value]


def _train_config(cfg: DictConfig) -> tuple[dict[str, Any], str, dict[str, Any] | None]:
    """The run's config, its YAML and, with ``resume=PATH``, the loaded checkpoint."""
    from polymix_cli.config.validation import ConfigError, refuse_callables
    from polymix_cli.data.files import FILE_GENERATOR, resolve_data_paths
    from polymix_cli.runs.checkpoint import checkpoint_config, load_checkpoint
    from polymix_cli.runs.train import resume_config

    plain: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    refuse_callables(plain)
    resume = plain.get("resume")
    if resume is None:
        data = plain.get("data")
        if isinstance(data, dict) and data.get("generator") == FILE_GENERATOR:
            # the checkpoint's config names the data files absolutely, so that evaluate
            # finds them from any directory (relative paths start from the current one)
            plain["data"] = resolve_data_paths(data)
            return plain, OmegaConf.to_yaml(OmegaConf.create(plain)), None
        return plain, OmegaConf.to_yaml(cfg, resolve=True), None
    if not isinstance(resume, str) or not resume:
        raise ConfigError(f"resume must be the path of a polymix checkpoint, got {resume!r}")
    state = load_checkpoint(resume)
    stored = checkpoint_config(state, resume, parse_config)
    plain = resume_config(stored, plain, _overridden_keys(), state["epoch"])
    return plain, OmegaConf.to_yaml(OmegaConf.create(plain)), state


@hydra.main(config_path=CONFIG_PATH, config_name="train", version_base="1.3")
def train_app(cfg: DictConfig) -> float | None:
    """Train one model; return ``sweep.objective`` (lower is better) for sweepers."""
    from polymix_cli.cli.console import ConsoleUI
    from polymix_cli.runs.train import train

    job: dict[str, Any] = {}

    def body() -> float | None:
        plain, config_yaml, state = _train_config(cfg)
        job["threads"] = _launcher_threads(plain.get("trainer") or {})
        ui = ConsoleUI(plain.get("trainer", {}).get("progress", "auto"))
        metrics = train(
            plain, _run_dir(), config_yaml, ui, resume=state, max_threads=job["threads"]
        )
        objective = (plain.get("sweep") or {}).get("objective", "test.crps")
        value = ranking_score(objective, metric_value(metrics, objective))
        return FAILED_OBJECTIVE if value is None else value

    return _guarded(body, job)


@hydra.main(config_path=CONFIG_PATH, config_name="evaluate", version_base="1.3")
def evaluate_app(cfg: DictConfig) -> None:
    from polymix_cli.cli.console import ConsoleUI
    from polymix_cli.config.validation import ConfigError, refuse_callables
    from polymix_cli.runs.evaluate import evaluate_checkpoint

    def body() -> None:
        plain = OmegaConf.to_container(cfg, resolve=True)
        refuse_callables(plain)
        if not isinstance(plain["ckpt"], str) or not plain["ckpt"]:
            raise ConfigError(
                f"ckpt must be the path of a polymix checkpoint, got {plain['ckpt']!r}"
            )
        ckpt = Path(plain["ckpt"])
        overrides = {k: plain.get(k) for k in ("data", "eval", "trainer", "seed")}
        evaluate_checkpoint(ckpt, overrides, _run_dir(), ConsoleUI("log"), parse_config)

    _guarded(body)


@hydra.main(config_path=CONFIG_PATH, config_name="predict", version_base="1.3")
def predict_app(cfg: DictConfig) -> None:
    from polymix_cli.config.validation import validate_predict_config
    from polymix_cli.runs.checkpoint import load_trained
    from polymix_cli.runs.predict import PredictSettings, predict_file

    def body() -> None:
        plain: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
        validate_predict_config(plain)
        trained = load_trained(plain["ckpt"], parse_config, plain["trainer"]["device"])
        p = plain["predict"]
        settings = PredictSettings(
            p["num_samples"],
            tuple(p["quantiles"]),
            p["allow_extrapolation"],
            p["save_draws"],
            plain["seed"],
            p["include_noise"],
        )
        result = predict_file(trained, plain["input"], plain["output"], settings)
        quantiles = ", ".join(f"{q:g}" for q in settings.quantiles) or "none"
        logging.getLogger("polymix").info(
            f"wrote {result.output}: {result.rows} row(s); mean, std and quantiles ({quantiles}) of "
            f"{', '.join(trained.output_names)} from {settings.num_samples} draws (seed {result.seed})"
            + (f"; {result.extrapolated} row(s) extrapolated" if result.extrapolated else "")
        )

    _guarded(body)


APPS = {"train": train_app, "evaluate": evaluate_app, "predict": predict_app}
