"""``polymix summarize DIR``: rebuild the summary of a sweep dir (not a Hydra app).

Works on any sweep dir, also one whose run was cut short: a job without metrics.json
is listed as incomplete. Imports neither torch nor Hydra.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from polymix_cli.reporting.sweep import (
    METRICS,
    default_sort_by,
    summarize_sweep,
    write_sweep_summary,
)


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(
            f"polymix: error: summarize: {message} (see polymix summarize --help)", file=sys.stderr
        )
        raise SystemExit(2)


def summarize_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="polymix summarize",
        description="Rebuild summary.csv, summary.json and plots/sweep.png of a sweep dir "
        "and print its table (jobs without metrics.json are 'incomplete').",
    )
    p.add_argument(
        "sweep_dir",
        metavar="DIR",
        type=Path,
        help="a sweep dir, e.g. outputs/moe_sign/multirun/<timestamp>",
    )
    p.add_argument(
        "--sort-by",
        choices=list(METRICS),
        default=None,
        metavar="METRIC",
        help="rank by this metric (default: the sweep's sweep.sort_by, else "
        f"{default_sort_by()}); "
        f"one of {', '.join(METRICS)}",
    )
    p.add_argument("--no-plot", action="store_true", help="do not write plots/sweep.png")
    return p


def summarize_command(argv: list[str]) -> int:
    args = summarize_parser().parse_args(argv)
    from polymix_cli.cli.console import sweep_table

    try:
        summary = summarize_sweep(args.sweep_dir, args.sort_by)
    except FileNotFoundError as err:
        print(f"polymix: error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        print(f"polymix: error: {err}", file=sys.stderr)
        return 2
    try:
        files = write_sweep_summary(summary, plot=not args.no_plot)
    except OSError as err:
        print(f"polymix: error ({type(err).__name__}): {err}", file=sys.stderr)
        return 1
    sweep_table(summary, files)
    return 0
