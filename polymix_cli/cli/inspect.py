"""``polymix inspect``: the posterior of a checkpoint's parameters as rich tables (or JSON).

The figures come from :func:`polymix_cli.reporting.evaluation.model_posterior` (the same
as ``metrics.json``'s ``posterior``); this module only lays them out. The columns of the
per-term table are :data:`TERM_COLUMNS`, a list of ``(header, justify, cell)``: a new
column (a sparsity prior's inclusion probability, say) is one more entry.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from polymix_cli.posterior import PosteriorSummary
from polymix_cli.runs.checkpoint import Trained

__all__ = ["TERM_COLUMNS", "inspect_json", "print_posterior"]


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _interval(row: Mapping[str, Any]) -> str:
    return f"[{_num(row['low'])}, {_num(row['high'])}]"


def _prior(row: Mapping[str, Any]) -> str:
    if row.get("prior_mean") is None:
        return "-"
    return f"{_num(row['prior_mean'])} +- {_num(row['prior_std'])}"


def _term(row: Mapping[str, Any]) -> str:
    return "(" + ", ".join(map(str, row["term"])) + ")"


Column = tuple[str, str, Callable[[Mapping[str, Any]], str]]

# the per-term table: (header, justify, cell of a parameter record)
TERM_COLUMNS: list[Column] = [
    ("parameter", "left", lambda r: r["name"]),
    ("term", "left", _term),
    ("group", "left", lambda r: r["group"]),
    ("mean", "right", lambda r: _num(r["mean"])),
    ("std", "right", lambda r: _num(r["std"])),
    ("interval", "right", _interval),
    ("prior", "right", _prior),
    ("active", "center", lambda r: "yes" if r["active"] else ""),
]


def _console() -> Console:
    # off a terminal (a pipe, a log) rich would squeeze the tables into 80 columns
    return Console() if sys.stdout.isatty() else Console(width=160)


def _group_table(summary: PosteriorSummary, percent: str) -> Table:
    table = Table(
        title=f"Posterior per parameter group ({summary.num_params} parameters)",
        title_justify="left",
        caption=(
            "groups of several entries: the mean of the means, the rms of the stds (also "
            "of the prior), the span of the intervals, the number of active entries"
        ),
        caption_justify="left",
    )
    for header, justify in (
        ("group", "left"),
        ("kind", "left"),
        ("size", "right"),
        ("prior", "left"),
        ("prior std", "right"),
        ("mean", "right"),
        ("std", "right"),
        (f"{percent} interval", "right"),
        ("active", "right"),
    ):
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for g in (group.figures() for group in summary.groups):
        table.add_row(
            g["name"],
            g["kind"],
            str(g["size"]),
            g["prior"],
            _num(g["prior_std"]),
            _num(g["mean"]),
            _num(g["std"]),
            _interval(g),
            f"{g['active']}/{g['size']}",
        )
    return table


def _term_table(rows: list[dict[str, Any]], percent: str) -> Table:
    table = Table(
        title=f"Posterior per PCE term ({len(rows)} coefficients)",
        title_justify="left",
        caption=f"term: the multi-index (degree per input); active: the {percent} interval "
        "excludes 0; prior: mean +- std",
        caption_justify="left",
    )
    for header, justify, _ in TERM_COLUMNS:
        label = f"{percent} interval" if header == "interval" else header
        table.add_column(label, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*(cell(row) for _, _, cell in TERM_COLUMNS))
    return table


def _noise_table(summary: PosteriorSummary, outputs: list[str]) -> Table:
    table = Table(title="Learned noise (your units)", title_justify="left")
    table.add_column("output")
    table.add_column("noise std", justify="right")
    table.add_column("prior")
    stds = summary.noise_std.tolist() if summary.noise_std is not None else []
    for name, std in zip(outputs, stds, strict=True):
        table.add_row(name, _num(std), summary.noise_prior or "none")
    return table


def print_posterior(
    trained: Trained, summary: PosteriorSummary, ckpt: str | Path, console: Console | None = None
) -> None:
    """Print the posterior of a trained model as tables.

    Args:
        trained: The trained model.
        summary: Its posterior (:func:`~polymix_cli.reporting.evaluation.model_posterior`).
        ckpt: The checkpoint's path, for the title.
        console: Where to print (default: stdout).
    """
    console = console or _console()
    percent = f"{summary.level * 100:g}%"
    cfg = trained.cfg
    console.print(
        f"[bold]{ckpt}[/bold]: model.kind={cfg.model.kind}, {summary.num_params} parameters, "
        f"epoch {trained.epoch}; inputs {', '.join(trained.input_names)}, outputs "
        f"{', '.join(trained.output_names)}"
    )
    maps = trained.maps
    if not (maps.inputs.is_identity and maps.outputs.is_identity):
        console.print(
            "parameters act on the model's domain (data.input_scaling / data.output_scaling "
            "map your units onto it), the noise is in your units"
        )
    console.print(_group_table(summary, percent))
    rows = [r for r in summary.parameters() if "term" in r]
    if rows:
        console.print(_term_table(rows, percent))
    if summary.noise_std is not None:
        console.print(_noise_table(summary, list(trained.output_names)))
    else:
        console.print("no learned noise (trainer.loss=mse_sum)")


def inspect_json(trained: Trained, summary: PosteriorSummary, ckpt: str | Path) -> str:
    """The posterior as JSON: ``metrics.json``'s ``posterior`` with every parameter, and
    the checkpoint, epoch, inputs and outputs.

    Args:
        trained: The trained model.
        summary: Its posterior.
        ckpt: The checkpoint's path.

    Returns:
        The JSON text.
    """
    payload = {
        "checkpoint": str(ckpt),
        "epoch": trained.epoch,
        "inputs": list(trained.input_names),
        "outputs": list(trained.output_names),
        **summary.to_json(max_params=summary.num_params),
    }
    return json.dumps(payload, indent=2)
