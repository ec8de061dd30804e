"""Figures of a model with several inputs: predicted against observed values
(``plot_parity``) and one-dimensional slices through the centre of the domain
(``plot_slices``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from polymix_cli.reporting.plots.arrays import (
    as_inputs,
    as_outputs,
    check_band_level,
    checked_output_names,
    shape_str,
)
from polymix_cli.reporting.plots.style import (
    BAND_ALPHA,
    DATA_COLOR,
    MEAN_COLOR,
    PANEL_HEIGHT,
    PANEL_WIDTH,
    SINGLE_SIZE,
    TRUTH_COLOR,
    PathLike,
    band_label,
    figure_legend,
    figure_title,
    save_figure,
    scatter_size,
    tidy_x,
)

__all__ = ["plot_parity", "plot_slices"]


MAX_PARITY_POINTS = 2000  # per split: more would only blacken the panel and slow drawing
PARITY_TEST_COLOR = "C1"
SLICE_COLUMNS = 4  # panels per row in plot_slices before wrapping


def _thin(n: int, limit: int) -> np.ndarray:
    """At most ``limit`` evenly spaced indices of ``n`` (all when ``n <= limit``)."""
    return (
        np.arange(n) if n <= limit else np.unique(np.linspace(0, n - 1, limit).round().astype(int))
    )


def _r2(observed: np.ndarray, predicted: np.ndarray) -> float:
    total = float(np.sum((observed - observed.mean()) ** 2))
    return float("nan") if total == 0 else 1.0 - float(np.sum((observed - predicted) ** 2)) / total


def plot_parity(
    path: PathLike,
    y_train: np.ndarray,
    mean_train: np.ndarray,
    lower_train: np.ndarray,
    upper_train: np.ndarray,
    y_test: np.ndarray | None = None,
    mean_test: np.ndarray | None = None,
    lower_test: np.ndarray | None = None,
    upper_test: np.ndarray | None = None,
    band_level: float = 0.8,
    output_names: Sequence[str] | None = None,
    title: str = "Predicted against observed",
) -> Path:
    """Parity plot: the predictive mean (points) and central band (vertical bars) against
    the observed value, for the training and test sets, with the diagonal ``y = x``.

    Shapes: ``y_train``, ``mean_train``, ``lower_train``, ``upper_train`` ``(N, O)``; the
    test arrays ``(K, O)`` (all four or none). One panel per output, with each split's
    R^2 of the mean. At most 2000 points per split are drawn (evenly spaced). Returns
    ``Path(path)``.
    """
    level = check_band_level(band_level)
    y_train = as_outputs("y_train", y_train, np.shape(y_train)[0], None, letters="N, O")
    n, o = y_train.shape
    splits = [
        (
            "training",
            DATA_COLOR,
            y_train,
            *(
                as_outputs(name, value, n, o, letters="N, O")
                for name, value in (
                    ("mean_train", mean_train),
                    ("lower_train", lower_train),
                    ("upper_train", upper_train),
                )
            ),
        )
    ]
    test = (y_test, mean_test, lower_test, upper_test)
    if any(v is not None for v in test):
        if any(v is None for v in test):
            raise ValueError("y_test, mean_test, lower_test and upper_test must be given together")
        k = np.shape(y_test)[0]
        splits.append(
            (
                "test",
                PARITY_TEST_COLOR,
                *(
                    as_outputs(name, value, k, o, letters="K, O")
                    for name, value in (
                        ("y_test", y_test),
                        ("mean_test", mean_test),
                        ("lower_test", lower_test),
                        ("upper_test", upper_test),
                    )
                ),
            )
        )
    names = checked_output_names(output_names, o)
    fig, axes = plt.subplots(
        1,
        o,
        figsize=SINGLE_SIZE if o == 1 else (PANEL_WIDTH * o, PANEL_HEIGHT + 0.4),
        squeeze=False,
        layout="constrained",
    )
    axes_list = list(axes[0])
    try:
        for j, ax in enumerate(axes_list):
            low = min(min(float(s[2][:, j].min()), float(s[4][:, j].min())) for s in splits)
            high = max(max(float(s[2][:, j].max()), float(s[5][:, j].max())) for s in splits)
            pad = 0.04 * (high - low) if high > low else 1.0
            lims = (low - pad, high + pad)
            ax.plot(
                lims,
                lims,
                color=TRUTH_COLOR,
                linestyle="--",
                linewidth=1.1,
                zorder=1,
                label="y = x",
            )
            scores = []
            for label, color, obs, mean, lower, upper in reversed(splits):  # training drawn on top
                keep = _thin(obs.shape[0], MAX_PARITY_POINTS)
                ax.vlines(
                    obs[keep, j],
                    lower[keep, j],
                    upper[keep, j],
                    color=color,
                    alpha=0.35,
                    linewidth=1.0,
                    zorder=2,
                )
                ax.scatter(
                    obs[keep, j],
                    mean[keep, j],
                    s=scatter_size(keep.size),
                    facecolor=color,
                    edgecolor="black",
                    linewidth=0.4,
                    zorder=3,
                    label=f"{label} data",
                )
                scores.append(f"{label} R$^2$ = {_r2(obs[:, j], mean[:, j]):.3f}")
            ax.text(
                0.03,
                0.97,
                "\n".join(reversed(scores)),
                transform=ax.transAxes,
                ha="left",
                va="top",
                fontsize=9,
                bbox={"facecolor": "white", "edgecolor": "0.8", "alpha": 0.85},
            )
            ax.set_xlim(lims)
            ax.set_ylim(lims)
            ax.set_aspect("equal", adjustable="box")
            ax.set_xlabel(f"observed {names[j]}")
            ax.set_ylabel(f"predicted {names[j]}")
            ax.grid(True, alpha=0.3)
            if o > 1:
                ax.set_title(names[j])
        figure_title(fig, axes_list, title)
        handles, labels = axes_list[0].get_legend_handles_labels()
        order = [labels.index(k) for k in ("training data", "test data", "y = x") if k in labels]
        handles = [handles[i] for i in order] + [
            Line2D([], [], color="0.4", alpha=0.6, linewidth=1.0)
        ]
        labels = [labels[i] for i in order] + [
            f"points: predictive mean; bars: {band_label(level)}"
        ]
        figure_legend(fig, handles, labels, o)
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def plot_slices(
    path: PathLike,
    grids: np.ndarray,
    mean: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    centre: np.ndarray,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    true_y: np.ndarray | None = None,
    band_level: float = 0.8,
    title: str = "Slices through the centre of the domain",
) -> Path:
    """One-dimensional slices of the prediction: for each input, the predictive mean and
    central band along that input with every other input held at the centre.

    Shapes (``D`` inputs, ``G`` points per slice, ``O`` outputs): ``grids`` ``(D, G)``, the
    values of input ``i`` along slice ``i``; ``mean``, ``lower``, ``upper`` and ``true_y``
    (the noiseless function, optional) ``(D, G, O)``; ``centre`` ``(D,)``. A block of
    panels per output (one per input, at most four per row, rows balanced), sharing the y axis within the
    output so that the slices compare. Returns ``Path(path)``.
    """
    level = check_band_level(band_level)
    grids = np.asarray(grids, dtype=float)
    if grids.ndim != 2 or grids.shape[0] < 1 or grids.shape[1] < 2:
        raise ValueError(
            f"grids must have shape (D, G) with G >= 2, got {shape_str(np.shape(grids))}"
        )
    d, g = grids.shape

    def as_slices(name: str, value: object, outputs: int | None) -> np.ndarray:
        arr = np.asarray(value, dtype=float)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if (
            arr.ndim != 3
            or arr.shape[:2] != (d, g)
            or (outputs is not None and arr.shape[2] != outputs)
        ):
            want = f"({d}, {g}, {'O' if outputs is None else outputs})"
            raise ValueError(
                f"{name} must have shape (D, G, O) = {want}, got {shape_str(np.shape(value))}"
            )
        return arr

    mean = as_slices("mean", mean, None)
    o = mean.shape[2]
    lower, upper = as_slices("lower", lower, o), as_slices("upper", upper, o)
    if true_y is not None:
        true_y = as_slices("true_y", true_y, o)
    centre = as_inputs("centre", centre, d, letter="D")
    x_names = (
        [f"x{i + 1}" for i in range(d)] if input_names is None else [str(n) for n in input_names]
    )
    if len(x_names) != d:
        raise ValueError(f"input_names must have one name per input ({d}), got {len(x_names)}")
    names = checked_output_names(output_names, o)
    rows_per_output = math.ceil(d / SLICE_COLUMNS)
    cols = math.ceil(d / rows_per_output)  # balanced rows: 5 inputs give 3 + 2 panels, not 4 + 1
    fig, axes = plt.subplots(
        o * rows_per_output,
        cols,
        figsize=(3.4 * cols + 0.4, 2.8 * o * rows_per_output + 1.0),
        squeeze=False,
        layout="constrained",
    )
    try:
        for j in range(o):
            block = axes[j * rows_per_output : (j + 1) * rows_per_output].ravel()
            for i, ax in enumerate(block):
                if i >= d:
                    ax.set_visible(False)
                    continue
                if i > 0:
                    ax.sharey(block[0])
                ax.fill_between(
                    grids[i],
                    lower[i, :, j],
                    upper[i, :, j],
                    color=MEAN_COLOR,
                    alpha=BAND_ALPHA,
                    linewidth=0,
                    zorder=1,
                    label=band_label(level),
                )
                if true_y is not None:
                    ax.plot(
                        grids[i],
                        true_y[i, :, j],
                        color=TRUTH_COLOR,
                        linestyle="--",
                        linewidth=1.2,
                        zorder=3,
                        label="true function",
                    )
                ax.plot(
                    grids[i],
                    mean[i, :, j],
                    color=MEAN_COLOR,
                    linewidth=2.0,
                    zorder=4,
                    label="predictive mean",
                )
                ax.axvline(centre[i], color="0.6", linewidth=0.8, linestyle=":", zorder=0)
                tidy_x(ax, grids[i])
                ax.set_xlabel(x_names[i])
                if i % cols == 0:
                    ax.set_ylabel(names[j])
                ax.grid(True, alpha=0.3)
        span = grids.max(1) - grids.min(1)
        centre_shown = np.where(
            np.abs(centre) < 1e-9 * np.maximum(span, 1e-300), 0.0, centre
        )  # no -5.6e-17
        at = ", ".join(f"{n} = {c:.4g}" for n, c in zip(x_names, centre_shown))
        fig.suptitle(
            f"{title}\n(other inputs at the centre: {at})" if d <= 8 else title, fontsize=11
        )
        handles, labels = axes[0, 0].get_legend_handles_labels()
        order = [
            labels.index(k)
            for k in ("predictive mean", band_label(level), "true function")
            if k in labels
        ]
        figure_legend(fig, [handles[i] for i in order], [labels[i] for i in order], cols)
        return save_figure(fig, path)
    finally:
        plt.close(fig)
