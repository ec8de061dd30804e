"""Hydra callbacks: early checks of a multirun and the sweep summary at its end.

Configured in ``configs/train.yaml`` under ``hydra.callbacks``; Hydra calls them in the
launching process, whichever launcher (basic, joblib, submitit) or sweeper (basic,
optuna) runs the jobs.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from polymix_cli.config.schema import SweepConfig, validation_needed
from polymix_cli.reporting.sweep import METRICS, summarize_sweep, write_sweep_summary

log = logging.getLogger("polymix")


def _option(config: DictConfig, key: str, default: str) -> str:
    value = OmegaConf.select(config, key, default=default)
    return default if value is None else str(value)


def _error(message: str, status: int) -> None:
    print(f"polymix: error: {message}", file=sys.stderr)
    raise SystemExit(status)


def _directions(config: DictConfig) -> list[str]:
    value = OmegaConf.select(config, "hydra.sweeper.direction", default=None)
    if value is None:
        return []
    values = list(value) if OmegaConf.is_list(value) or isinstance(value, list) else [value]
    return [str(getattr(v, "name", v)) for v in values]


def _base_config(config: DictConfig) -> dict[str, Any] | None:
    """The sweep's config without the swept values (Hydra applies those per job)."""
    try:
        return {
            str(k): OmegaConf.to_container(config[k], resolve=True)
            if OmegaConf.is_config(config[k])
            else config[k]
            for k in config
            if k != "hydra"
        }
    except OmegaConfBaseException:
        return None  # e.g. a value that every job sets; the jobs report their own errors


def _prepare_mlflow(config: DictConfig) -> None:
    """With logger=mlflow, create its store and experiment before the jobs run in parallel
    (best effort: a job whose logger then fails warns, and its run goes on)."""
    section = OmegaConf.select(config, "logger.mlflow", default=None)
    if section is None:
        return
    try:
        from polymix_cli.config.schema import MlflowLoggerConfig
        from polymix_cli.reporting.loggers import RunInfo, prepare_mlflow

        options = OmegaConf.to_container(section, resolve=True)
        info = RunInfo(
            Path(str(config.hydra.sweep.dir)),
            _option(config, "name", "polymix"),
            Path(str(config.hydra.runtime.cwd)),
        )
        prepare_mlflow(MlflowLoggerConfig(**options), info)  # type: ignore[arg-type]
    except Exception as err:  # noqa: BLE001 - the jobs report their logger's failure
        log.warning("polymix: warning: logger mlflow: could not prepare its store: %s", err)


class SweepSummaryCallback(Callback):
    """Before any job: checks ``sweep.*``, a sweeper's direction and the options that
    every job shares (one line, exit 2). After the last job: the table, summary.csv,
    summary.json and plots/sweep.png in the sweep dir (exit 1 if no job succeeded)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from polymix_cli.config.validation import ConfigError

        for key in ("sweep.sort_by", "sweep.objective"):
            value = _option(config, key, getattr(SweepConfig, key.partition(".")[2]))
            if value not in METRICS:
                _error(f"{key} must be one of {list(METRICS)}, got {value!r}", 2)
        directions = _directions(config)
        if directions and directions != ["minimize"]:
            _error(
                f"hydra.sweeper.direction must be minimize (sweep.objective is lower-is-better), "
                f"got {directions if len(directions) > 1 else directions[0]!r}",
                2,
            )
        base = _base_config(config)
        if base is not None and "trainer" in base:
            from polymix_cli.runs.prepare import prepare

            try:  # an invalid shared option would fail every job: say so once, up front
                p = prepare(base)
                why = validation_needed(p.cfg)
                if why is not None:
                    raise ConfigError(why)
            except ConfigError as err:
                _error(f"{err} (in every job of the sweep)", 2)
            except Exception as err:  # noqa: BLE001 - not a config error: each job reports its own
                log.debug("sweep pre-check skipped: %s", err)
        _prepare_mlflow(config)
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not (sweep_dir / "multirun.yaml").exists():  # the basic sweeper writes its own
            sweep_dir.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(config, sweep_dir / "multirun.yaml")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from polymix_cli.cli.console import sweep_table

        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            summary = summarize_sweep(
                sweep_dir, _option(config, "sweep.sort_by", SweepConfig.sort_by)
            )
            files = write_sweep_summary(summary)
        except (OSError, ValueError) as err:
            _error(f"sweep summary of {sweep_dir}: {err}", 1)
            return
        sweep_table(summary, files)
        if summary.counts()["ok"] == 0:
            _error(
                f"all {len(summary.rows)} jobs of the sweep failed; see {sweep_dir / 'summary.csv'}",
                1,
            )
