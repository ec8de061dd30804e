"""Terminal output with rich: the group table, a progress bar, the run summary."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

if TYPE_CHECKING:  # the sweep table (polymix summarize) needs no torch
    from polymix_cli.layout import GroupSpec
    from polymix_cli.reporting.sweep import SweepSummary
    from polymix_cli.training.loop import Trainer


class ConsoleUI:
    """``progress``: ``bar`` (rich progress bar), ``log`` (plain log lines every
    ``trainer.log_every`` epochs) or ``auto`` (a bar only when stdout is a terminal)."""

    def __init__(self, progress: str = "auto", console: Console | None = None):
        self.console = console or Console()
        self.use_bar = progress == "bar" or (progress == "auto" and sys.stdout.isatty())
        self._progress: Progress | None = None
        self._muted: list[tuple[logging.Handler, int]] = []

    def groups(self, specs: list[GroupSpec], num_params: int) -> None:
        table = Table(
            title=f"Parameter groups: {num_params} parameters in {len(specs)} groups",
            title_justify="left",
        )
        for col, justify in (
            ("#", "right"),
            ("group", "left"),
            ("kind", "left"),
            ("size", "right"),
            ("rule", "left"),
        ):
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        for i, s in enumerate(specs):
            table.add_row(str(i), s.name, s.kind, str(s.size), s.rule)
        self.console.print(table)

    def training(self, trainer: Trainer) -> Callable[[Trainer], None] | None:
        if not self.use_bar:
            return None
        # log lines would tear the bar: keep them for the log file only
        for handler in logging.getLogger().handlers:
            if type(handler) is logging.StreamHandler:
                self._muted.append((handler, handler.level))
                handler.setLevel(logging.WARNING)
        total = trainer.settings.epochs
        self._progress = Progress(
            TextColumn("epoch"),
            MofNCompleteColumn(),
            BarColumn(bar_width=10),
            TextColumn("{task.fields[rate]:>4.0f}/s"),
            TextColumn(
                "data {task.fields[data]:.4g} dist {task.fields[dist]:.4g} "
                "total {task.fields[loss]:.4g} lr {task.fields[lr]:.1e}"
            ),
            TimeElapsedColumn(),
            console=self.console,
            refresh_per_second=8,
        )
        task = self._progress.add_task(
            "train",
            total=total,
            completed=trainer.epoch,
            rate=0.0,
            data=0.0,
            dist=0.0,
            loss=0.0,
            lr=0.0,
        )
        self._progress.start()
        every = max(1, total // 500)

        def update(tr: Trainer) -> None:
            if tr.epoch % every == 0 or tr.epoch == total:
                last = tr.history.last()
                elapsed = self._progress.tasks[task].elapsed or 0.0
                self._progress.update(
                    task,
                    completed=tr.epoch,
                    data=last["data"],
                    dist=last["distribution"],
                    loss=last["total"],
                    lr=tr.current_lr(),
                    rate=tr.epoch / elapsed if elapsed > 0 else 0.0,
                )

        return update

    def finished(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        for handler, level in self._muted:
            handler.setLevel(level)
        self._muted.clear()

    def summary(self, metrics: Mapping[str, Any], run_dir: Path) -> None:
        table = Table(title="Run summary", title_justify="left")
        table.add_column("metric")
        splits = [s for s in ("train", "val", "test") if isinstance(metrics.get(s), Mapping)]
        for split in splits:
            table.add_column(split, justify="right")

        def fmt(value: Any) -> str:
            return "-" if value is None else f"{value:.4f}"

        for key in ("rmse", "mae", "r2", "crps", "rmse_true", "nll", "calibration_error"):
            table.add_row(key, *(fmt(metrics[s].get(key)) for s in splits))
        for level in metrics["test"]["coverage"]:
            table.add_row(
                f"coverage {level}", *(fmt(metrics[s]["coverage"][level]) for s in splits)
            )
        noise = metrics.get("noise_std")
        if noise is not None:  # the rows above are of the predictive band; add the epistemic one
            for level in metrics["test"]["epistemic"]["coverage"]:
                table.add_row(
                    f"epistemic coverage {level}",
                    *(fmt(metrics[s]["epistemic"]["coverage"][level]) for s in splits),
                )
        losses, timing = metrics["losses"], metrics["timing"]
        self.console.print(table)
        if noise is not None:
            self.console.print("learned noise std: " + ", ".join(f"{v:.4g}" for v in noise))
        sens = metrics.get("sensitivity")
        if sens and len(sens["inputs"]) > 1:
            self.console.print(_sobol_table(sens))
        eps = timing.get("epochs_per_second")
        self.console.print(
            f"final losses: data {fmt(losses['data'])}, distribution {fmt(losses['distribution'])}, "
            f"total {fmt(losses['total'])} | {metrics['num_params']} parameters | "
            f"trained in {timing['train_seconds']:.1f} s"
            + (f" ({eps:.0f} epochs/s)" if eps else "")
        )
        self.console.print(f"outputs: {run_dir}")


def _sobol_table(sens: Mapping[str, Any]) -> Table:
    """First-order and total Sobol indices per input (rows) and output, mean +- std over draws."""
    how = "closed form" if sens["method"] == "pce" else "Monte Carlo"
    table = Table(
        title=f"Sobol indices ({how})",
        title_justify="left",
        caption=f"mean +- std over {sens['num_samples']} parameter draws",
        caption_justify="left",
    )
    table.add_column("input")
    for out in sens["outputs"]:
        for label in ("first order", "total"):
            table.add_column(
                label if len(sens["outputs"]) == 1 else f"{out} {label}", justify="right"
            )

    def cell(entry: Mapping[str, Any]) -> str:
        mean, std = entry.get("mean"), entry.get("std")
        return (
            "-"
            if mean is None
            else f"{mean:.4f} +- {std:.4f}"
            if std is not None
            else f"{mean:.4f}"
        )

    for name in sens["inputs"]:
        table.add_row(
            name,
            *(
                cell(sens[key][out][name])
                for out in sens["outputs"]
                for key in ("first_order", "total")
            ),
        )
    return table


# Metric columns of the sweep table (all of them are in summary.csv and summary.json).
SWEEP_COLUMNS = {
    "val.crps": "val crps",
    "test.crps": "crps",
    "test.rmse": "rmse",
    "test.coverage.0.8": "cov 0.8",
    "losses.total": "loss",
    "timing.train_seconds": "train s",
}
STATUS_STYLE = {"ok": "green", "failed": "bold red", "incomplete": "yellow"}


def _short(key: str, keys: list[str]) -> str:
    """The last two parts of a dotted key, unless that is ambiguous among ``keys``."""
    tail = ".".join(key.split(".")[-2:])
    return tail if sum(".".join(k.split(".")[-2:]) == tail for k in keys) == 1 else key


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def sweep_table(summary: SweepSummary, files: list[Path], console: Console | None = None) -> None:
    """The sweep's jobs as a table, best first by ``summary.sort_by``; then the reasons
    of failed jobs, the best job (and an optuna study's best trial) and the ``files``."""
    # off a terminal (a log, CI, a cluster) rich would squeeze a wide table into 80 columns
    console = console or (Console() if sys.stdout.isatty() else Console(width=200))
    counts = summary.counts()
    columns = dict(SWEEP_COLUMNS)
    if summary.sort_by not in columns:
        columns = {summary.sort_by: summary.sort_by, **columns}
    table = Table(
        title=f"Sweep summary: {len(summary.rows)} jobs ({counts['ok']} ok, "
        f"{counts['failed']} failed, {counts['incomplete']} incomplete), "
        f"sorted by {summary.sort_by}",
        title_justify="left",
    )
    table.add_column("job", justify="right")
    for key in summary.swept:
        table.add_column(_short(key, summary.swept), justify="right")
    table.add_column("status")
    for key, label in columns.items():
        table.add_column(label + (" *" if key == summary.sort_by else ""), justify="right")
    for row in summary.ranked():
        style = STATUS_STYLE.get(row["status"], "")
        table.add_row(
            str(row["job"]),
            *(_cell(row[k]) for k in summary.swept),
            f"[{style}]{row['status']}[/]",
            *(_cell(row[k]) for k in columns),
        )
    console.print(table)
    for row in summary.rows:
        if row["status"] != "ok":
            console.print(f"job {row['job']} {row['status']}: {row['reason']}", markup=False)
    best = summary.best()
    if best is not None:
        values = " ".join(f"{k}={_cell(best[k])}" for k in summary.swept)
        console.print(
            f"best: job {best['job']} {values} ({summary.sort_by} "
            f"{_cell(best[summary.sort_by])}) -> {summary.sweep_dir / best['dir']}",
            markup=False,
        )
    study = summary.study
    if study is not None:
        params = " ".join(f"{k}={_cell(v)}" for k, v in study["best_params"].items())
        console.print(
            f"optuna best trial: value {_cell(study['best_value'])} with {params}", markup=False
        )
        if study["config"]:
            console.print(f"its config: {summary.sweep_dir / study['config']}", markup=False)
    if files:
        names = ", ".join(str(f.relative_to(summary.sweep_dir)) for f in files)
        console.print(f"sweep summary: {names} in {summary.sweep_dir}", markup=False)
