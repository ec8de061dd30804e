"""Sweep bookkeeping, Hydra-free: each job's ``status.json``, the sweep summary
(``summary.csv``, ``summary.json``, ``plots/sweep.png``) and the thread budget of
parallel jobs.

A sweep dir holds one run dir per job, each with ``.hydra/overrides.yaml`` and
``.hydra/config.yaml`` (written by Hydra), ``metrics.json`` and ``status.json``
(written by polymix). :func:`summarize_sweep` reads them back, so it also works on a sweep
that was cut short: a job without ``metrics.json`` is ``incomplete``."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STATUS_FILE = "status.json"
SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
PLOT = Path("plots") / "sweep.png"

# Summary metric columns: the name is the dotted path in metrics.json. The val. metrics
# (of the validation set) are for ranking; the test. ones report how the ranked models do
# on data that no choice has seen.
METRICS: dict[str, tuple[str, ...]] = {
    "val.crps": ("val", "crps"),
    "val.rmse": ("val", "rmse"),
    "val.rmse_true": ("val", "rmse_true"),
    "val.coverage.0.8": ("val", "coverage", "0.8"),
    "val.nll": ("val", "nll"),
    "val.calibration_error": ("val", "calibration_error"),
    "test.crps": ("test", "crps"),
    "test.rmse": ("test", "rmse"),
    "test.rmse_true": ("test", "rmse_true"),
    "test.coverage.0.8": ("test", "coverage", "0.8"),
    "test.nll": ("test", "nll"),
    "test.calibration_error": ("test", "calibration_error"),
    "losses.data": ("losses", "data"),
    "losses.distribution": ("losses", "distribution"),
    "losses.total": ("losses", "total"),
    "timing.train_seconds": ("timing", "train_seconds"),
    "num_params": ("num_params",),
}
# Coverage is best at its nominal level: its score is the distance to it.
TARGETS = {"val.coverage.0.8": 0.8, "test.coverage.0.8": 0.8}
STATUSES = ("ok", "failed", "incomplete")
_SWEEP_FUNCTIONS = re.compile(r"^\s*(range|choice|interval|glob|tag|sort|shuffle)\s*\(")


# --------------------------------------------------------------------------- metrics


def default_sort_by() -> str:
    """The default of ``sweep.sort_by`` (defined in the schema)."""
    from polymix_cli.config.schema import SweepConfig

    return SweepConfig.sort_by


def metric_value(metrics: Mapping[str, Any] | None, name: str) -> float | int | None:
    """The value of summary metric ``name`` in a metrics.json payload.

    Args:
        metrics: The payload, or ``None``.
        name: A key of :data:`METRICS`.

    Returns:
        The number (an int stays an int); ``None`` if absent, not a number or not finite.

    Raises:
        ValueError: If ``name`` is not a key of :data:`METRICS`.
    """
    if name not in METRICS:
        raise ValueError(f"metric must be one of {list(METRICS)}, got {name!r}")
    node: Any = metrics
    for key in METRICS[name]:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    if isinstance(node, bool) or not isinstance(node, (int, float)) or not math.isfinite(node):
        return None
    return node if isinstance(node, int) else float(node)


def ranking_score(name: str, value: float | None) -> float | None:
    """The score a job is ranked by; lower is better.

    Args:
        name: A key of :data:`METRICS`.
        value: The job's value of it, or ``None``.

    Returns:
        The value itself, or for coverage (:data:`TARGETS`) its distance to the level;
        ``None`` for ``None``.
    """
    if value is None:
        return None
    return abs(value - TARGETS[name]) if name in TARGETS else value


# --------------------------------------------------------------------------- status


def write_status(
    run_dir: Path,
    status: str,
    seconds: float,
    reason: str | None = None,
    error: str | None = None,
    exit_status: int | None = None,
    threads: int | None = None,
) -> Path:
    """Write the job's ``status.json`` (atomically, through a temporary file).

    It holds ``ok`` or ``failed`` with its one-line reason and error type, the exit status
    a single run would have had, the job's seconds, its torch threads, and the host and
    process that ran it and, in a Slurm job, its job id and CPUs.

    Args:
        run_dir: The job's run dir (created if missing).
        status: ``"ok"`` or ``"failed"``.
        seconds: The job's seconds (rounded to ms).
        reason: The one-line reason of a failure.
        error: The error's type.
        exit_status: The exit status a single run would have had.
        threads: The job's torch threads.

    Returns:
        The path of ``status.json``.

    Raises:
        ValueError: If ``status`` is neither ``ok`` nor ``failed``.
    """
    if status not in ("ok", "failed"):
        raise ValueError(f"status must be 'ok' or 'failed', got {status!r}")
    payload = {
        "status": status,
        "reason": reason,
        "error": error,
        "exit_status": exit_status,
        "seconds": round(seconds, 3),
        "threads": threads,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    slurm = {key: os.environ.get(name) for key, name in _SLURM_ENV.items()}
    if slurm["job_id"]:
        payload["slurm"] = slurm
    path = Path(run_dir) / STATUS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)
    return path


# what status.json records of a Slurm job's environment
_SLURM_ENV = {
    "job_id": "SLURM_JOB_ID",
    "array_job_id": "SLURM_ARRAY_JOB_ID",
    "array_task_id": "SLURM_ARRAY_TASK_ID",
    "cpus_per_task": "SLURM_CPUS_PER_TASK",
    "node": "SLURMD_NODENAME",
}


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """The job's ``status.json`` as a dict.

    Args:
        run_dir: The job's run dir.

    Returns:
        The dict, or ``None`` when missing, unreadable or not a JSON object.
    """
    return _read_json(Path(run_dir) / STATUS_FILE)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


# --------------------------------------------------------------------------- jobs


@dataclass
class SweepJob:
    """One job dir of a sweep, as found on disk.

    Args:
        num: The job's number (Hydra's, else its place among the job dirs).
        dir: The job dir.
        overrides: The job's overrides, key to text.
        config: The job's composed config (``{}`` if unreadable).
        status: ``ok``, ``failed`` or ``incomplete`` (no metrics.json).
        reason: Why it failed or is incomplete; ``None`` when ``ok``.
        metrics: Its metrics.json, or ``None``.
    """

    num: int
    dir: Path
    overrides: dict[str, str]
    config: dict[str, Any]
    status: str
    reason: str | None
    metrics: dict[str, Any] | None

    def value(self, key: str) -> Any:
        """The job's value of an override key.

        Args:
            key: A dotted override key, e.g. ``trainer.epochs`` or ``model``.

        Returns:
            The value in its config when the key names a scalar option, else the
            override's text read as a scalar (e.g. a config group choice); ``None`` if
            neither.
        """
        node: Any = self.config
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                node = None
                break
            node = node[part]
        if node is None or isinstance(node, (Mapping, list)):
            text = self.overrides.get(key)
            return None if text is None else _scalar(text)
        return node


def _scalar(text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (str, int, float, bool)) or value is None else text


def _parse_override(text: str) -> tuple[str, str] | None:
    match = re.match(r"^(?:~|\+\+|\+)?([^=~]+)=(.*)$", str(text), re.DOTALL)
    return (match.group(1).strip(), match.group(2)) if match else None


def _job_number(job_dir: Path, sweep_dir: Path) -> int | None:
    hydra_cfg = _read_yaml(job_dir / ".hydra" / "hydra.yaml")
    try:
        return int(hydra_cfg["hydra"]["job"]["num"])
    except (TypeError, KeyError, ValueError):
        pass
    name = job_dir.relative_to(sweep_dir).parts[0]
    return int(name) if name.isdigit() else None


def _load_job(job_dir: Path, sweep_dir: Path, fallback_num: int) -> SweepJob:
    overrides: dict[str, str] = {}
    for item in _read_yaml(job_dir / ".hydra" / "overrides.yaml") or []:
        parsed = _parse_override(item)
        if parsed:
            overrides[parsed[0]] = parsed[1]
    config = _read_yaml(job_dir / ".hydra" / "config.yaml")
    metrics = _read_json(job_dir / "metrics.json")
    status = read_status(job_dir) or {}
    if status.get("status") == "failed":
        state, reason = "failed", status.get("reason") or "failed (no reason recorded)"
    elif metrics is not None:
        state, reason = "ok", None
    else:
        state, reason = "incomplete", "no metrics.json: the job was cut short or is still running"
    num = _job_number(job_dir, sweep_dir)
    return SweepJob(
        fallback_num if num is None else num,
        job_dir,
        overrides,
        config if isinstance(config, dict) else {},
        state,
        reason,
        metrics,
    )


def find_jobs(sweep_dir: Path) -> list[SweepJob]:
    """Every job dir under ``sweep_dir`` (a dir holding ``.hydra/overrides.yaml``).

    Args:
        sweep_dir: The sweep dir (searched recursively; itself is not a job).

    Returns:
        The jobs, by number (then dir).
    """
    sweep_dir = Path(sweep_dir)
    dirs = sorted({p.parent.parent for p in sweep_dir.rglob(".hydra/overrides.yaml")} - {sweep_dir})
    jobs = [_load_job(d, sweep_dir, i) for i, d in enumerate(dirs)]
    return sorted(jobs, key=lambda j: (j.num, str(j.dir)))


def _is_sweep(value: str) -> bool:
    """Whether an override value sweeps: ``a,b,c`` (a comma outside brackets and
    quotes) or a sweep function such as ``range(...)``, ``choice(...)``."""
    if _SWEEP_FUNCTIONS.match(value):
        return True
    depth, quote = 0, ""
    for char in value:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            return True
    return False


def swept_keys_from_config(multirun: Mapping[str, Any] | None) -> list[str]:
    """Keys that a multirun config sweeps.

    Args:
        multirun: The sweep's ``multirun.yaml`` as a dict, or ``None``.

    Returns:
        The keys of sweep overrides on the command line (``a,b,c`` or a sweep function
        such as ``range(...)``), then those of the sweeper's ``params`` (e.g. an optuna
        search space), each once, in order.
    """
    hydra = (multirun or {}).get("hydra") or {}
    keys: list[str] = []
    for item in (hydra.get("overrides") or {}).get("task") or []:
        parsed = _parse_override(item)
        if parsed and _is_sweep(parsed[1]) and parsed[0] not in keys:
            keys.append(parsed[0])
    for key in (hydra.get("sweeper") or {}).get("params") or {}:
        if str(key) not in keys:
            keys.append(str(key))
    return keys


def _swept_keys(jobs: Sequence[SweepJob], declared: Sequence[str]) -> list[str]:
    keys = [k for k in declared if any(k in j.overrides for j in jobs)]
    for job in jobs:
        for key in job.overrides:
            if key not in keys and len({j.overrides.get(key) for j in jobs}) > 1:
                keys.append(key)
    return keys


# --------------------------------------------------------------------------- summary


@dataclass
class SweepSummary:
    """One row per job (in job order), the swept keys and the ranking metric.

    Args:
        sweep_dir: The sweep dir.
        swept: The swept keys.
        rows: One dict per job, keyed by :attr:`columns`.
        sort_by: The ranking metric, a key of :data:`METRICS`.
        study: An optuna study's best trial, or ``None``.
        sweeper: ``"basic"`` or ``"optuna"``.
        columns: The columns of summary.csv.
    """

    sweep_dir: Path
    swept: list[str]
    rows: list[dict[str, Any]]
    sort_by: str
    study: dict[str, Any] | None = None  # an optuna study's best trial
    sweeper: str = "basic"
    columns: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """The number of jobs of each status (:data:`STATUSES`)."""
        return {s: sum(r["status"] == s for r in self.rows) for s in STATUSES}

    def ranked(self) -> list[dict[str, Any]]:
        """Rows by rank (best first); rows without the metric last, in job order."""
        return sorted(self.rows, key=lambda r: (r["rank"] is None, r["rank"] or 0, r["job"]))

    def best(self) -> dict[str, Any] | None:
        """The row ranked first, or ``None`` when no job is ranked."""
        ranked = self.ranked()
        return ranked[0] if ranked and ranked[0]["rank"] is not None else None


def summarize_sweep(sweep_dir: Path, sort_by: str | None = None) -> SweepSummary:
    """Read every job of a sweep dir into a :class:`SweepSummary`.

    Jobs with status ``ok`` and the metric are ranked from 1 (best); the others get no
    rank.

    Args:
        sweep_dir: The sweep dir.
        sort_by: The ranking metric, a key of :data:`METRICS`; defaults to the sweep's
            own ``sweep.sort_by`` (from ``multirun.yaml``), else the default of
            ``sweep.sort_by``.

    Returns:
        The summary.

    Raises:
        FileNotFoundError: If ``sweep_dir`` does not exist or holds no job dirs.
        ValueError: If ``sort_by`` is not a key of :data:`METRICS`.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep dir {sweep_dir} does not exist")
    multirun = _read_yaml(sweep_dir / "multirun.yaml")
    multirun = multirun if isinstance(multirun, dict) else {}
    if sort_by is None:
        sort_by = (multirun.get("sweep") or {}).get("sort_by") or default_sort_by()
    if sort_by not in METRICS:
        raise ValueError(f"sweep.sort_by must be one of {list(METRICS)}, got {sort_by!r}")
    jobs = find_jobs(sweep_dir)
    if not jobs:
        raise FileNotFoundError(f"{sweep_dir} holds no job dirs (no */.hydra/overrides.yaml)")
    swept = _swept_keys(jobs, swept_keys_from_config(multirun))
    rows = []
    for job in jobs:
        row: dict[str, Any] = {"job": job.num}
        row.update({key: job.value(key) for key in swept})
        row["status"] = job.status
        row.update({name: metric_value(job.metrics, name) for name in METRICS})
        row["rank"] = None
        row["reason"] = job.reason
        row["dir"] = str(job.dir.relative_to(sweep_dir))
        rows.append(row)
    scored = sorted(
        (ranking_score(sort_by, r[sort_by]), r["job"], i)
        for i, r in enumerate(rows)
        if r["status"] == "ok" and r[sort_by] is not None
    )
    for rank, (_, _, i) in enumerate(scored, start=1):
        rows[i]["rank"] = rank
    sweeper = str(((multirun.get("hydra") or {}).get("sweeper") or {}).get("_target_", "basic"))
    summary = SweepSummary(
        sweep_dir,
        swept,
        rows,
        sort_by,
        sweeper="optuna" if "optuna" in sweeper else "basic",
        columns=["job", *swept, "status", *METRICS, "rank", "reason", "dir"],
    )
    summary.study = _study(sweep_dir, rows, swept)
    return summary


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return str(a) == str(b)


def _study(sweep_dir: Path, rows: list[dict[str, Any]], swept: list[str]) -> dict[str, Any] | None:
    """An optuna sweeper's ``optimization_results.yaml``, with the job of its best trial."""
    results = _read_yaml(sweep_dir / "optimization_results.yaml")
    if not isinstance(results, dict) or "best_params" not in results:
        return None
    best_value = results.get("best_value")
    if not isinstance(best_value, (int, float)) or not math.isfinite(best_value):
        return None  # every trial failed (a failed job returns inf)
    params = dict(results.get("best_params") or {})
    job = next(
        (
            r
            for r in rows
            if r["status"] == "ok" and all(k in swept and _same(r[k], v) for k, v in params.items())
        ),
        None,
    )
    return {
        "best_params": params,
        "best_value": best_value,
        "job": None if job is None else job["job"],
        "config": None if job is None else str(Path(job["dir"]) / ".hydra" / "config.yaml"),
    }


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.8g}"
    return str(value)


def write_sweep_summary(summary: SweepSummary, plot: bool = True) -> list[Path]:
    """Write summary.csv, summary.json and (if any job has the metric) plots/sweep.png.

    Args:
        summary: The summary; the files go to its ``sweep_dir``.
        plot: Whether to draw plots/sweep.png.

    Returns:
        The paths written.
    """
    out = summary.sweep_dir
    csv_path = out / SUMMARY_CSV
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(summary.columns)
        for row in summary.rows:
            writer.writerow([_csv_cell(row.get(c)) for c in summary.columns])
    best = summary.best()
    payload = {
        "sweep_dir": str(out),
        "sort_by": summary.sort_by,
        "swept": summary.swept,
        "counts": summary.counts(),
        "best": None
        if best is None
        else {"job": best["job"], "dir": best["dir"], summary.sort_by: best[summary.sort_by]},
        "study": summary.study,
        "jobs": summary.rows,
    }
    json_path = out / SUMMARY_JSON
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    written = [csv_path, json_path]
    if plot and any(r[summary.sort_by] is not None for r in summary.rows):
        written.append(plot_sweep_summary(summary, out / PLOT))
    return written


def plot_sweep_summary(summary: SweepSummary, path: Path) -> Path:
    """Plot the ranking metric of a sweep.

    Against one swept value (a line), a heatmap over the first two swept values, or
    against the trial number for a study or a sweep of nothing.

    Args:
        summary: The summary.
        path: The PNG to write.

    Returns:
        The path of the figure.
    """
    from polymix_cli.reporting.plots import plot_sweep

    name = summary.sort_by
    values = [r[name] for r in summary.rows]
    target = TARGETS.get(name)
    failed = [r["status"] != "ok" for r in summary.rows]
    if summary.sweeper == "optuna" or not summary.swept:
        label = "trial" if summary.sweeper == "optuna" else "job"
        return plot_sweep(
            path,
            name,
            label,
            [r["job"] for r in summary.rows],
            values,
            failed=failed,
            running_best=True,
            target=target,
            title=f"{name} by {label}",
        )
    # a line over one swept key, a heatmap over the first two (best over any others)
    x_name = summary.swept[0]
    y_name = summary.swept[1] if len(summary.swept) > 1 else None
    others = summary.swept[2:]
    title = f"{name} (best over {', '.join(others)})" if others else None
    return plot_sweep(
        path,
        name,
        x_name,
        [r[x_name] for r in summary.rows],
        values,
        failed=failed,
        y_name=y_name,
        y_values=None if y_name is None else [r[y_name] for r in summary.rows],
        target=target,
        title=title,
    )
