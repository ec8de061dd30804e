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


MAX_CHECKED_JOBS = 64  # a larger sweep is checked by its shared options only


def _job_configs(config: DictConfig) -> list[dict[str, Any]] | None:
    """Each job's composed config, for a sweep of lists of choices (``a=1,2 b=x,y``): the
    jobs Hydra's basic sweeper would run. ``None`` for other sweeps (ranges, intervals, an
    optuna search) or more than :data:`MAX_CHECKED_JOBS` jobs; empty if a job's config
    cannot be composed (the job reports it)."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep

    from polymix_cli.config.compose import compose

    try:
        task = [str(o) for o in config.hydra.overrides.task]
        parsed = OverridesParser.create().parse_overrides(task)
        choices = []
        for override in parsed:
            if not override.is_sweep_override():
                choices.append([override.input_line])
                continue
            if not isinstance(override.value(), ChoiceSweep):
                return None
            key = override.get_key_element()
            choices.append([f"{key}={v}" for v in override.sweep_string_iterator()])
        combos = list(itertools.islice(itertools.product(*choices), MAX_CHECKED_JOBS + 1))
        if len(combos) > MAX_CHECKED_JOBS:
            return None
        config_dir = None
        for source in config.hydra.runtime.config_sources:
            if source.provider == "command-line" and str(source.path).startswith("file://"):
                config_dir = str(source.path)[len("file://") :]
        name = str(config.hydra.job.config_name or "train")
        return [compose(name, list(c), config_dir=config_dir) for c in combos]
    except Exception as err:  # noqa: BLE001 - the jobs report their own errors
        log.debug("sweep pre-check by job skipped: %s", err)
        return []


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

            jobs = _job_configs(config)
            if jobs is None:  # not a list of choices (e.g. an optuna range): the shared part
                jobs = [base]
            failures = []
            for job in jobs:  # an option that fails every job: say so once, up front
                try:
                    why = validation_needed(prepare(job).cfg)
                    if why is not None:
                        raise ConfigError(why)
                except ConfigError as err:
                    failures.append(str(err))
                except Exception as err:  # noqa: BLE001 - not a config error: the job reports it
                    log.debug("sweep pre-check skipped: %s", err)
                    break
                else:
                    break  # a job that would run: the sweep goes on, each job reports its own
            else:
                if failures and all(f == failures[0] for f in failures):
                    _error(f"{failures[0]} (in every job of the sweep)", 2)
                elif failures:
                    _error(
                        "every job of the sweep fails: "
                        + "; ".join(f"job {i}: {f}" for i, f in enumerate(failures[:3])),
                        2,
                    )
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
