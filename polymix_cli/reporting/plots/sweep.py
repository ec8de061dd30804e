"""The summary of a sweep: a metric against one swept value, or a heatmap over two
(``plot_sweep``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from polymix_cli.reporting.plots.style import (
    DATA_COLOR,
    MEAN_COLOR,
    TRUTH_COLOR,
    PathLike,
    figure_legend,
    make_panels,
    save_figure,
)

__all__ = ["plot_sweep"]


FAILED_COLOR = "C3"
EMPTY_COLOR = "0.93"


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _axis_levels(values: Sequence[object]) -> tuple[list[object], bool]:
    """The distinct values of a swept key, sorted when numeric; and whether they are."""
    distinct: list[object] = []
    for v in values:
        if v not in distinct:
            distinct.append(v)
    numeric = all(_is_number(v) for v in distinct)
    return (sorted(distinct) if numeric else distinct), numeric  # type: ignore[type-var]


def _fmt(value: object) -> str:
    if _is_number(value):
        return f"{float(value):.4g}"  # type: ignore[arg-type]
    return str(value)


def _sweep_scores(values: np.ndarray, target: float | None) -> np.ndarray:
    """Lower is better: the value, or its distance to ``target`` (e.g. a coverage level)."""
    return np.abs(values - target) if target is not None else values


def plot_sweep(
    path: PathLike,
    metric: str,
    x_name: str,
    x_values: Sequence[object],
    values: Sequence[float | None],
    failed: Sequence[bool] | None = None,
    y_name: str | None = None,
    y_values: Sequence[object] | None = None,
    running_best: bool = False,
    target: float | None = None,
    title: str | None = None,
) -> Path:
    """A sweep's metric against one swept value (a line), or a heatmap over two.

    One entry per job: ``x_values`` (and ``y_values``) are the swept values (numbers
    or labels), ``values`` the metric (None where the job has none) and ``failed``
    whether the job failed. Lower is better, or closer to ``target`` when given (a
    coverage level, drawn as a reference). The best job is marked. With
    ``running_best`` the line mode also draws the best value so far (a study's trials
    in order). Returns ``Path(path)``.
    """
    n = len(x_values)
    vals = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    if vals.shape != (n,):
        raise ValueError(f"values must have one entry per job ({n}), got {vals.shape[0]}")
    fails = np.zeros(n, dtype=bool) if failed is None else np.asarray(failed, dtype=bool)
    if fails.shape != (n,):
        raise ValueError(f"failed must have one entry per job ({n}), got {fails.shape[0]}")
    if (y_name is None) != (y_values is None):
        raise ValueError("y_name and y_values must be given together")
    if y_values is not None and len(y_values) != n:
        raise ValueError(f"y_values must have one entry per job ({n}), got {len(y_values)}")
    if n == 0:
        raise ValueError("plot_sweep needs at least one job")
    if y_values is None:
        return _sweep_line(
            path, metric, x_name, list(x_values), vals, fails, running_best, target, title
        )
    return _sweep_heatmap(
        path,
        metric,
        x_name,
        list(x_values),
        y_name or "",
        list(y_values),
        vals,
        fails,
        target,
        title,
    )


def _sweep_line(
    path: PathLike,
    metric: str,
    x_name: str,
    xs: list[object],
    vals: np.ndarray,
    fails: np.ndarray,
    running_best: bool,
    target: float | None,
    title: str | None,
) -> Path:
    levels, numeric = _axis_levels(xs)
    pos = np.array([float(x) if numeric else levels.index(x) for x in xs], dtype=float)  # type: ignore[arg-type]
    scores = _sweep_scores(vals, target)
    ok = np.isfinite(vals)
    fig, axes = make_panels(1)
    ax = axes[0]
    try:
        handles: list = []
        labels: list[str] = []
        if ok.any():
            order = np.argsort(pos[ok], kind="stable")
            if running_best:
                best_so_far = np.fmin.accumulate(np.where(ok, scores, np.inf))
                best_vals = np.array(
                    [vals[ok & (scores == b)][0] if np.isfinite(b) else np.nan for b in best_so_far]
                )
                (line,) = ax.step(pos, best_vals, where="post", color=MEAN_COLOR, linewidth=2.0)
                handles.append(line)
                labels.append("best so far")
            else:
                per_x = [
                    (
                        p,
                        vals[ok & (pos == p)][np.argmin(scores[ok & (pos == p)])]
                        if (ok & (pos == p)).any()
                        else np.nan,
                    )  # a gap where every job failed
                    for p in np.unique(pos)
                ]
                (line,) = ax.plot(
                    [p for p, _ in per_x],
                    [v for _, v in per_x],
                    color=MEAN_COLOR,
                    linewidth=2.0,
                    zorder=3,
                )
                handles.append(line)
                labels.append("best per value" if len(np.unique(pos[ok])) < ok.sum() else metric)
            pts = ax.scatter(
                pos[ok][order],
                vals[ok][order],
                s=36,
                facecolor=DATA_COLOR,
                edgecolor="black",
                linewidth=0.6,
                zorder=4,
            )
            handles.append(pts)
            labels.append("job")
            best = int(np.flatnonzero(ok)[np.argmin(scores[ok])])
            star = ax.scatter(
                [pos[best]],
                [vals[best]],
                s=220,
                marker="*",
                facecolor="gold",
                edgecolor="black",
                linewidth=0.8,
                zorder=5,
            )
            handles.append(star)
            labels.append(f"best: {_fmt(vals[best])} at {x_name}={_fmt(xs[best])}")
        if target is not None:
            ref = ax.axhline(target, color=TRUTH_COLOR, linestyle="--", linewidth=1.2, zorder=2)
            handles.append(ref)
            labels.append(f"nominal {target:g}")
        if fails.any():  # in a strip below the values, so a cross never hides a job
            lo, hi = ax.get_ylim()
            margin = 0.12 * (hi - lo)
            ax.set_ylim(lo - margin, hi)
            ax.axhspan(lo - margin, lo - 0.2 * margin, color=FAILED_COLOR, alpha=0.06, linewidth=0)
            ax.scatter(
                pos[fails],
                np.full(fails.sum(), lo - 0.6 * margin),
                marker="x",
                s=60,
                color=FAILED_COLOR,
                linewidth=2.0,
                zorder=6,
            )
            handles.append(
                Line2D(
                    [],
                    [],
                    marker="x",
                    linestyle="none",
                    color=FAILED_COLOR,
                    markersize=8,
                    markeredgewidth=2.0,
                )
            )
            labels.append(f"failed ({int(fails.sum())})")
        if numeric:
            positive = pos[pos > 0]
            if positive.size == pos.size and positive.max() / positive.min() > 10:
                ax.set_xscale("log")
            if len(levels) <= 12:
                ax.set_xticks([float(v) for v in levels])  # type: ignore[arg-type]
                ax.set_xticklabels([_fmt(v) for v in levels])
                ax.minorticks_off()
            span = pos.max() - pos.min()
            if span > 0 and ax.get_xscale() == "linear":
                ax.set_xlim(pos.min() - 0.05 * span, pos.max() + 0.05 * span)
        else:
            ax.set_xticks(range(len(levels)))
            ax.set_xticklabels([_fmt(v) for v in levels])
            ax.set_xlim(-0.5, len(levels) - 0.5)
        ax.set_xlabel(x_name)
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        ax.set_title(title or f"{metric} against {x_name}")
        if handles:
            figure_legend(fig, handles, labels)
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def _sweep_heatmap(
    path: PathLike,
    metric: str,
    x_name: str,
    xs: list[object],
    y_name: str,
    ys: list[object],
    vals: np.ndarray,
    fails: np.ndarray,
    target: float | None,
    title: str | None,
) -> Path:
    x_levels, _ = _axis_levels(xs)
    y_levels, _ = _axis_levels(ys)
    nx, ny = len(x_levels), len(y_levels)
    grid = np.full((ny, nx), np.nan)
    state = np.full((ny, nx), "empty", dtype=object)
    scores = _sweep_scores(vals, target)
    best_score = np.full((ny, nx), np.inf)
    for x, y, v, s, bad in zip(xs, ys, vals, scores, fails):
        i, j = y_levels.index(y), x_levels.index(x)
        if np.isfinite(v) and s < best_score[i, j]:
            grid[i, j], best_score[i, j], state[i, j] = v, s, "ok"
        elif state[i, j] == "empty":
            state[i, j] = "failed" if bad else "n/a"
    finite = grid[np.isfinite(grid)]
    norm: Normalize
    if target is not None:
        lo = min(float(finite.min()), target) if finite.size else target
        hi = max(float(finite.max()), target) if finite.size else target
        norm = TwoSlopeNorm(target, min(lo, target - 1e-6), max(hi, target + 1e-6))
        cmap = plt.get_cmap("coolwarm")  # white at the target, blue below, red above
    else:
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        norm, cmap = Normalize(lo, hi if hi > lo else lo + 1e-9), plt.get_cmap("viridis_r")
    figsize = (max(5.6, 1.15 * nx + 2.8), max(4.0, 0.75 * ny + 2.2))
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    try:
        image = ax.imshow(
            np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto", origin="lower"
        )
        ax.set_facecolor(EMPTY_COLOR)
        font = 10 if nx * ny <= 36 else 8
        for i in range(ny):
            for j in range(nx):
                if state[i, j] == "ok":
                    r, g, b, _ = cmap(norm(grid[i, j]))
                    color = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
                    ax.text(
                        j,
                        i,
                        f"{grid[i, j]:#.3g}",
                        ha="center",
                        va="center",
                        color=color,
                        fontsize=font,
                    )
                    continue
                if state[i, j] == "failed":
                    ax.add_patch(
                        Rectangle(
                            (j - 0.5, i - 0.5),
                            1,
                            1,
                            facecolor="white",
                            edgecolor=FAILED_COLOR,
                            hatch="///",
                            linewidth=0,
                            alpha=0.5,
                        )
                    )
                ax.text(
                    j,
                    i,
                    {"failed": "failed", "n/a": "n/a", "empty": "-"}[state[i, j]],
                    ha="center",
                    va="center",
                    fontsize=font,
                    color=FAILED_COLOR if state[i, j] == "failed" else "0.3",
                    fontweight="bold" if state[i, j] == "failed" else "normal",
                )
        if np.isfinite(best_score).any():
            bi, bj = np.unravel_index(np.argmin(best_score), best_score.shape)
            ax.add_patch(
                Rectangle(
                    (bj - 0.5, bi - 0.5),
                    1,
                    1,
                    fill=False,
                    edgecolor="black",
                    linewidth=2.5,
                    zorder=5,
                )
            )
        ax.set_xticks(range(nx))
        ax.set_xticklabels([_fmt(v) for v in x_levels])
        ax.set_yticks(range(ny))
        ax.set_yticklabels([_fmt(v) for v in y_levels])
        ax.set_xlabel(x_name)
        ax.set_ylabel(y_name)
        bar = fig.colorbar(image, ax=ax, shrink=0.9)
        bar.set_label(metric + (f" (nominal {target:g})" if target is not None else ""))
        ax.set_title(title or f"{metric} over {x_name} and {y_name}")
        fig.text(
            0.01,
            0.005,
            "box: best job" + (" (closest to nominal)" if target is not None else " (lowest)"),
            fontsize=8,
            color="0.3",
            ha="left",
            va="bottom",
        )
        return save_figure(fig, path)
    finally:
        plt.close(fig)
