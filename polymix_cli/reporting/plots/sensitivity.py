"""The sensitivity analysis: first-order and total Sobol indices per input
(``plot_sobol``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from polymix_cli.reporting.plots.arrays import (
    check_band_level,
    checked_output_names,
    shape_str,
)
from polymix_cli.reporting.plots.style import (
    PANEL_HEIGHT,
    PANEL_WIDTH,
    SINGLE_SIZE,
    PathLike,
    figure_legend,
    save_figure,
)

__all__ = ["plot_sobol"]


FIRST_COLOR = "C0"
TOTAL_COLOR = "C1"


def _as_indices(name: str, value: object, shape: tuple[int, int] | None) -> np.ndarray:
    """Indices per input and output ``(d, O)``; a vector ``(d,)`` means one output."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or (shape is not None and arr.shape != shape) or arr.size == 0:
        want = "(d, O)" if shape is None else f"(d, O) = {shape_str(shape)}"
        raise ValueError(f"{name} must have shape {want}, got {shape_str(np.shape(value))}")
    return arr


def plot_sobol(
    path: PathLike,
    first_order: np.ndarray,
    first_lower: np.ndarray,
    first_upper: np.ndarray,
    total: np.ndarray,
    total_lower: np.ndarray,
    total_upper: np.ndarray,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    band_level: float = 0.8,
    panel_notes: Sequence[str] | None = None,
    title: str = "Sobol indices",
) -> Path:
    """First-order and total Sobol indices as grouped bars per input, with error bars.

    Shapes: every array ``(d, O)`` (``d`` inputs, ``O`` outputs; ``(d,)`` for one output):
    the bar heights ``first_order`` and ``total`` (e.g. the means over parameter draws)
    and the ends of their error bars (e.g. the central ``band_level`` interval). One panel
    per output, titled by its name and an optional note from ``panel_notes`` (e.g. the
    output's mean and variance). ``title`` may hold a second line. Returns ``Path(path)``.
    """
    level = check_band_level(band_level)
    first = _as_indices("first_order", first_order, None)
    shape = first.shape
    bars = {  # height, lower end, upper end
        "first": (
            first,
            _as_indices("first_lower", first_lower, shape),
            _as_indices("first_upper", first_upper, shape),
        ),
        "total": (
            _as_indices("total", total, shape),
            _as_indices("total_lower", total_lower, shape),
            _as_indices("total_upper", total_upper, shape),
        ),
    }
    d, o = shape
    inputs = (
        [f"x{i + 1}" for i in range(d)] if input_names is None else [str(n) for n in input_names]
    )
    if len(inputs) != d:
        raise ValueError(f"input_names must have one name per input ({d}), got {len(inputs)}")
    names = checked_output_names(output_names, o)
    if panel_notes is not None and len(panel_notes) != o:
        raise ValueError(
            f"panel_notes must have one entry per output ({o}), got {len(panel_notes)}"
        )
    ends = np.concatenate(
        [np.ravel(b[k]) for b in bars.values() for k in (1, 2)] + [np.zeros(1), np.ones(1)]
    )
    ends = ends[np.isfinite(ends)]  # undefined indices (zero variance) are NaN
    top, bottom = float(ends.max()), float(ends.min())  # Monte Carlo estimates may dip below 0
    width = max(PANEL_WIDTH if o > 1 else SINGLE_SIZE[0], 1.5 + 0.75 * d)
    fig, axes_arr = plt.subplots(
        1, o, figsize=(width * o, PANEL_HEIGHT), sharey=True, squeeze=False, layout="constrained"
    )
    axes = list(axes_arr[0])
    x = np.arange(d)
    bar_width = 0.38
    annotate = d <= 10
    try:
        for j, ax in enumerate(axes):
            for k, (key, color, label) in enumerate(
                (
                    ("first", FIRST_COLOR, "first order $S_i$"),
                    ("total", TOTAL_COLOR, "total $S_{Ti}$"),
                )
            ):
                height, low, high = (b[:, j] for b in bars[key])
                err = np.vstack([np.clip(height - low, 0, None), np.clip(high - height, 0, None)])
                err = np.where(np.isfinite(err), err, 0.0)
                pos = x + (k - 0.5) * bar_width
                ax.bar(
                    pos,
                    np.nan_to_num(height),
                    bar_width,
                    color=color,
                    edgecolor="black",
                    linewidth=0.6,
                    label=label,
                    zorder=2,
                )
                ax.errorbar(
                    pos,
                    np.nan_to_num(height),
                    yerr=err,
                    fmt="none",
                    ecolor="black",
                    elinewidth=1.1,
                    capsize=3,
                    zorder=3,
                )
                if annotate:
                    for xp, h, hi in zip(pos, height, high, strict=True):
                        if np.isfinite(h):
                            y = max(h, hi if np.isfinite(hi) else h)
                            ax.annotate(
                                f"{h:.2f}",
                                (xp, y),
                                xytext=(0, 2),
                                textcoords="offset points",
                                ha="center",
                                va="bottom",
                                fontsize=8,
                            )
            ax.set_xticks(x, inputs)
            ax.set_xlim(-0.6, d - 0.4)
            ax.set_ylim(
                bottom - 0.04 * (top - bottom) if bottom < 0 else 0.0, top + 0.12 * (top - bottom)
            )
            ax.set_xlabel("input")
            ax.grid(True, axis="y", alpha=0.3, zorder=0)
            note = f": {panel_notes[j]}" if panel_notes is not None else ""
            ax.set_title(f"{names[j]}{note}", fontsize=10)
        axes[0].set_ylabel("Sobol index")
        fig.suptitle(title)
        handles, labels = axes[0].get_legend_handles_labels()
        handles.append(Line2D([], [], color="black", marker="|", markersize=10, linestyle="none"))
        labels.append(f"error bars: central {100 * level:g}% interval")
        figure_legend(fig, handles, labels, o)
        return save_figure(fig, path)
    finally:
        plt.close(fig)
