"""Experiment trackers fed by a training run: CSV files, TensorBoard and MLflow (the
``logger`` config group, built by name from :data:`REGISTRY`; nothing is instantiated
from a config's ``_target_``).

Each logger receives the resolved config (flattened to dotted keys: MLflow params,
TensorBoard hparams, ``params.csv``), the losses and the learning rate every
``trainer.log_every`` epochs (``loss/data``, ``loss/distribution``, ``loss/total``,
``lr``), and at the end the numbers of ``metrics.json`` (``train/...``, ``val/...``,
``test/...``, ``sensitivity/...``, ``timing/...``, ``num_params``, with ``/`` between the
levels, e.g. ``test/coverage/0.8``).

The training loop never waits on a tracker: :class:`Loggers` hands each event to one
background thread, which calls the loggers in turn. A logger that fails (a server that is
down, a full disk, a missing folder) is reported once as a warning and then left out;
the run, its files and the other loggers go on. At the end of a run the thread is given
:data:`FINISH_SECONDS` to deliver what is queued.
"""

from __future__ import annotations

import csv
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polymix_cli.config.schema import (
    CsvLoggerConfig,
    LoggerConfig,
    MlflowLoggerConfig,
    TensorBoardLoggerConfig,
)

__all__ = [
    "FINISH_SECONDS",
    "REGISTRY",
    "CsvLogger",
    "Loggers",
    "MlflowLogger",
    "RunInfo",
    "TensorBoardLogger",
    "flatten_config",
    "metric_values",
    "prepare_mlflow",
]

log = logging.getLogger("polymix")

FINISH_SECONDS = 120.0  # the most a run waits at its end for its loggers to deliver
# the parts of metrics.json logged as final values
FINAL_SECTIONS = ("train", "val", "test", "sensitivity", "timing", "num_params")


@dataclass(frozen=True)
class RunInfo:
    """Where a run is and which sweep it belongs to, for the loggers.

    Args:
        run_dir: The run's folder.
        name: The study (the config's ``name``).
        launch_dir: The folder polymix was started in (relative logger paths start
            there); ``None``: the current directory.
        sweep_dir: The sweep's folder when the run is a job of a sweep (``-m``).
        job: The job's number in its sweep.
    """

    run_dir: Path
    name: str
    launch_dir: Path | None = None
    sweep_dir: Path | None = None
    job: int | None = None

    @property
    def run_name(self) -> str:
        """``<sweep folder>/<job>`` for a job of a sweep, else the run folder's name."""
        if self.sweep_dir is not None and self.job is not None:
            return f"{self.sweep_dir.name}/{self.job}"
        return self.run_dir.name

    def path(self, path: str) -> Path:
        """``path`` (``~`` expanded) made absolute from the launch folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.launch_dir or Path.cwd()) / p

    def folder(self, log_dir: str | None, default: str) -> Path:
        """``<run dir>/<default>``, or ``<log_dir>/<name>/<run name>`` when set."""
        if log_dir is None:
            return self.run_dir / default
        return self.path(log_dir) / self.name / self.run_name


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A config as ``{dotted.key: value}``: nested mappings are walked, every other value
    (lists included, as text) is a leaf; ``None`` becomes ``"null"``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_config(value, f"{name}."))
        elif value is None:
            flat[name] = "null"
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def metric_values(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a ``metrics.json`` payload to log at the end of a run:
    :data:`FINAL_SECTIONS`, levels joined by ``/`` (text, lists and nulls left out)."""
    found: dict[str, float] = {}

    def walk(node: Any, name: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(value, f"{name}/{key}")
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            found[name] = float(node)

    for section in FINAL_SECTIONS:
        if section in metrics:
            walk(metrics[section], section)
    return found


# ----------------------------------------------------------------------------- loggers


class CsvLogger:
    """``logger=csv``: ``params.csv`` (key, value) and ``metrics.csv`` (step, name,
    value), appended at every event.

    Args:
        config: Its options.
        info: The run.
    """

    name = "csv"

    def __init__(self, config: CsvLoggerConfig, info: RunInfo):
        self.folder = info.folder(config.log_dir, "csv")

    def start(self, params: Mapping[str, Any], config_yaml: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / "params.csv").open("w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(["key", "value"])
            out.writerows(params.items())
        with (self.folder / "metrics.csv").open("w", newline="") as handle:
            csv.writer(handle).writerow(["step", "name", "value"])

    def log(self, step: int, values: Mapping[str, float]) -> None:
        with (self.folder / "metrics.csv").open("a", newline="") as handle:
            csv.writer(handle).writerows((step, k, repr(v)) for k, v in values.items())

    def finish(self, step: int, values: Mapping[str, float], status: str) -> None:
        self.log(step, values)


class TensorBoardLogger:
    """``logger=tensorboard``: one event folder per run (torch's ``SummaryWriter``),
    with the config as text and hparams, the values as scalars.

    Args:
        config: Its options.
        info: The run.
    """

    name = "tensorboard"

    def __init__(self, config: TensorBoardLoggerConfig, info: RunInfo):
        self.folder = info.folder(config.log_dir, "tensorboard")
        self.writer: Any = None
        self.params: dict[str, Any] = {}

    def start(self, params: Mapping[str, Any], config_yaml: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.folder.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(self.folder))
        self.params = dict(params)
        text = "\n".join(f"    {line}" for line in config_yaml.splitlines())  # markdown code
        self.writer.add_text("config", text, 0)
        self.writer.flush()

    def log(self, step: int, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def finish(self, step: int, values: Mapping[str, float], status: str) -> None:
        from torch.utils.tensorboard.summary import hparams

        self.log(step, values)
        # the hparams table: the config beside the final metrics (the scalars of those tags)
        metrics = {k: v for k, v in values.items() if not k.startswith("sensitivity/")}
        for summary in hparams(self.params, metrics):
            self.writer.file_writer.add_summary(summary)
        self.writer.close()


class MlflowLogger:
    """``logger=mlflow``: one MLflow run per job, in the experiment ``experiment`` (default
    the study's name); a sweep's jobs carry the tags ``polymix.sweep`` (its folder) and
    ``polymix.job``.

    Args:
        config: Its options.
        info: The run.
    """

    name = "mlflow"

    def __init__(self, config: MlflowLoggerConfig, info: RunInfo):
        self.uri = tracking_uri(config.tracking_uri, info)
        self.experiment = config.experiment or info.name
        self.info = info
        self.client: Any = None
        self.run_id = ""

    def start(self, params: Mapping[str, Any], config_yaml: str) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):  # their INFO lines about creating the database
            logging.getLogger(name).setLevel(logging.WARNING)

        if self.uri.startswith("sqlite:///"):
            Path(self.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri)
        experiment_id = experiment_id_for(self.client, self.experiment)
        tags = {"polymix.run_dir": str(self.info.run_dir)}
        if self.info.sweep_dir is not None:
            tags.update(
                {"polymix.sweep": str(self.info.sweep_dir), "polymix.job": str(self.info.job)}
            )
        run = self.client.create_run(experiment_id, run_name=self.info.run_name, tags=tags)
        self.run_id = run.info.run_id
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes 100 params per batch
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log(self, step: int, values: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in values.items()]
        for start in range(0, len(items), 1000):  # and 1000 metrics
            self.client.log_batch(self.run_id, metrics=items[start : start + 1000])

    def finish(self, step: int, values: Mapping[str, float], status: str) -> None:
        self.log(step, values)
        self.client.set_terminated(self.run_id, _MLFLOW_STATUS.get(status, "FAILED"))


_MLFLOW_STATUS = {"ok": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}


def tracking_uri(uri: str, info: RunInfo) -> str:
    """``uri`` with a relative SQLite file or folder made absolute from the launch folder."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{info.path(uri.removeprefix('sqlite:///'))}"
    if "://" not in uri and ":" not in uri[2:]:  # a folder (not a Windows drive letter)
        return str(info.path(uri))
    return uri


def prepare_mlflow(config: MlflowLoggerConfig, info: RunInfo) -> None:
    """Create the MLflow store (its database tables) and experiment once, before the jobs
    of a sweep start: parallel jobs creating a new SQLite store at once would collide."""
    logger = MlflowLogger(config, info)
    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if logger.uri.startswith("sqlite:///"):
        Path(logger.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    experiment_id_for(MlflowClient(tracking_uri=logger.uri), logger.experiment)


def experiment_id_for(client: Any, name: str) -> str:
    """The id of the MLflow experiment ``name``, created if missing (a parallel job may
    create it first: then it is read again)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


REGISTRY: dict[str, Callable[[Any, RunInfo], Any]] = {
    "csv": CsvLogger,
    "tensorboard": TensorBoardLogger,
    "mlflow": MlflowLogger,
}


# ----------------------------------------------------------------------------- the group


class Loggers:
    """The loggers of a run, fed from one background thread (see the module's docstring).

    Args:
        loggers: Objects with ``name``, ``start(params, config_yaml)``, ``log(step,
            values)`` and ``finish(step, values, status)``.
    """

    def __init__(self, loggers: list[Any]):
        self.loggers = list(loggers)
        self.last_step = 0
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    @classmethod
    def build(cls, config: LoggerConfig, info: RunInfo) -> Loggers:
        """The loggers that ``config`` turns on, built from :data:`REGISTRY`."""
        return cls([REGISTRY[name](getattr(config, name), info) for name in config.enabled()])

    def __bool__(self) -> bool:
        return bool(self.loggers)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            method, args = item
            for logger in list(self.loggers):
                try:
                    getattr(logger, method)(*args)
                except Exception as err:  # noqa: BLE001 - a tracker never ends the run
                    self.loggers.remove(logger)
                    reason = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
                    log.warning(
                        "polymix: warning: logger %s failed (%s%s); it logs nothing more for "
                        "this run, which goes on",
                        logger.name,
                        type(err).__name__,
                        f": {reason}" if reason else "",
                    )

    def _put(self, method: str, *args: Any) -> None:
        if self.loggers:
            self._queue.put((method, args))

    def start(self, params: Mapping[str, Any], config_yaml: str) -> None:
        """Start the thread and log the config.

        Args:
            params: The flattened config (:func:`flatten_config`).
            config_yaml: The config as YAML.
        """
        if not self.loggers:
            return
        self._thread = threading.Thread(target=self._work, name="polymix-loggers", daemon=True)
        self._thread.start()
        self._put("start", dict(params), config_yaml)

    def log(self, step: int, values: Mapping[str, float]) -> None:
        """Queue ``values`` at ``step`` (the epoch)."""
        self.last_step = step
        self._put("log", step, dict(values))

    def hook(self, every: int, last_epoch: int) -> Callable[[Any], None]:
        """A training hook: the losses and learning rate at every ``every``-th epoch and
        at ``last_epoch`` (the check is all it costs at the other epochs)."""

        def hook(trainer: Any) -> None:
            epoch = trainer.epoch
            if not self.loggers or (epoch % every and epoch != last_epoch):
                return
            try:  # with replicas, the losses of the one with the lowest total
                last = trainer.history.last()
                values = {
                    "loss/data": last["data"],
                    "loss/distribution": last["distribution"],
                    "loss/total": last["total"],
                    "lr": trainer.current_lr(),
                }
            except Exception as err:  # noqa: BLE001 - a tracker never ends the run
                names = ", ".join(logger.name for logger in self.loggers)
                self.loggers.clear()
                log.warning(
                    "polymix: warning: logger(s) %s: the losses could not be read (%s: %s); "
                    "nothing more is logged for this run, which goes on",
                    names,
                    type(err).__name__,
                    err,
                )
                return
            self.log(epoch, values)

        return hook

    def finish(
        self,
        values: Mapping[str, float],
        status: str,
        step: int | None = None,
        timeout: float = FINISH_SECONDS,
    ) -> None:
        """Log the final values, close the loggers and wait for the thread.

        Args:
            values: The final metrics (:func:`metric_values`).
            status: ``ok``, ``failed`` or ``interrupted``.
            step: Their step (default: the last step logged).
            timeout: Seconds to wait for the thread; a logger still busy then is left
                behind with a warning.
        """
        if self._thread is None:
            return
        values = {k: v for k, v in values.items() if not isinstance(v, float) or math.isfinite(v)}
        self._put("finish", self.last_step if step is None else step, values, status)
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning(
                "polymix: warning: logger(s) %s did not finish within %.0f s; the run's own "
                "files are complete",
                ", ".join(logger.name for logger in self.loggers),
                timeout,
            )
        self._thread = None
