"""Figures of a one-input model's prediction: the predictive mean with its central band
over the input range (``plot_prediction``) and the calibration of the central
intervals (``plot_calibration``, any number of inputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from polymix_cli.reporting.plots.arrays import (
    as_inputs,
    as_outputs,
    check_band_level,
    checked_output_names,
    sorted_grid,
)
from polymix_cli.reporting.plots.style import (
    BAND_ALPHA,
    CALIBRATION_WIDTH,
    EPISTEMIC_ALPHA,
    EPISTEMIC_KIND,
    MEAN_COLOR,
    PREDICTIVE_ALPHA,
    PREDICTIVE_KIND,
    SPLIT_COLORS,
    TEST_COLOR,
    TRUTH_COLOR,
    PathLike,
    band_label,
    data_scatter,
    figure_legend,
    figure_title,
    make_panels,
    save_figure,
    tidy_x,
)

__all__ = ["plot_calibration", "plot_prediction"]


def plot_prediction(
    path: PathLike,
    x_grid: np.ndarray,
    mean: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    x_train: np.ndarray,
    y_train: np.ndarray,
    true_y: np.ndarray | None = None,
    band_level: float = 0.8,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    output_names: Sequence[str] | None = None,
    title: str = "Prediction",
    epistemic_lower: np.ndarray | None = None,
    epistemic_upper: np.ndarray | None = None,
    x_label: str = "x",
) -> Path:
    """Predictive mean with its central band, the training data and, optionally, the truth.

    Shapes: ``x_grid`` ``(G,)``; ``mean``, ``lower``, ``upper`` ``(G, O)`` (band edges,
    e.g. the 10% and 90% quantiles for ``band_level=0.8``); ``x_train`` ``(N,)``,
    ``y_train`` ``(N, O)``; ``true_y`` ``(G, O)`` noiseless function or ``None``;
    ``x_test`` ``(K,)`` and ``y_test`` ``(K, O)`` held-out points, drawn faintly.
    With ``epistemic_lower`` and ``epistemic_upper`` ``(G, O)`` (a model with a learned
    noise), ``lower``/``upper`` are the predictive band (coefficients and noise), drawn
    lightly, and the epistemic band (coefficients only) is drawn darker inside it.
    One panel per output. Returns ``Path(path)``.
    """
    level = check_band_level(band_level)
    x_grid = as_inputs("x_grid", x_grid)
    g = x_grid.shape[0]
    mean = as_outputs("mean", mean, g, None)
    o = mean.shape[1]
    lower = as_outputs("lower", lower, g, o)
    upper = as_outputs("upper", upper, g, o)
    x_train = as_inputs("x_train", x_train, letter="N")
    y_train = as_outputs("y_train", y_train, x_train.shape[0], o, letters="N, O")
    if true_y is not None:
        true_y = as_outputs("true_y", true_y, g, o)
    if (x_test is None) != (y_test is None):
        raise ValueError("x_test and y_test must be given together")
    if x_test is not None:
        x_test = as_inputs("x_test", x_test, letter="K")
        y_test = as_outputs("y_test", y_test, x_test.shape[0], o, letters="K, O")
    if (epistemic_lower is None) != (epistemic_upper is None):
        raise ValueError("epistemic_lower and epistemic_upper must be given together")
    two_bands = epistemic_lower is not None
    if two_bands:
        epistemic_lower = as_outputs("epistemic_lower", epistemic_lower, g, o)
        epistemic_upper = as_outputs("epistemic_upper", epistemic_upper, g, o)
    names = checked_output_names(output_names, o)

    arrays = [mean, lower, upper] + ([true_y] if true_y is not None else [])
    if two_bands:
        arrays += [epistemic_lower, epistemic_upper]
    x_grid, mean, lower, upper, *rest = sorted_grid(x_grid, *arrays)
    if two_bands:
        epistemic_lower, epistemic_upper = rest[-2], rest[-1]
        rest = rest[:-2]
    true_y = rest[0] if rest else None
    main_band_label = band_label(level, PREDICTIVE_KIND if two_bands else "")
    inner_label = band_label(level, EPISTEMIC_KIND)

    fig, axes = make_panels(o)
    try:
        for j, ax in enumerate(axes):
            if x_test is not None:
                ax.scatter(
                    x_test,
                    y_test[:, j],
                    s=6,
                    color=TEST_COLOR,
                    alpha=0.5,
                    linewidth=0,
                    zorder=2,
                    label="test data",
                )
            ax.fill_between(
                x_grid,
                lower[:, j],
                upper[:, j],
                color=MEAN_COLOR,
                alpha=PREDICTIVE_ALPHA if two_bands else BAND_ALPHA,
                linewidth=0,
                zorder=1,
                label=main_band_label,
            )
            if two_bands:
                ax.fill_between(
                    x_grid,
                    epistemic_lower[:, j],
                    epistemic_upper[:, j],
                    color=MEAN_COLOR,
                    alpha=EPISTEMIC_ALPHA,
                    linewidth=0,
                    zorder=1.5,
                    label=inner_label,
                )
            if true_y is not None:
                ax.plot(
                    x_grid,
                    true_y[:, j],
                    color=TRUTH_COLOR,
                    linestyle="--",
                    linewidth=1.3,
                    zorder=3,
                    label="true function",
                )
            ax.plot(
                x_grid,
                mean[:, j],
                color=MEAN_COLOR,
                linewidth=2.0,
                zorder=4,
                label="predictive mean",
            )
            data_scatter(ax, x_train, y_train[:, j])
            ax.set_xlabel(x_label)
            ax.set_ylabel(names[j])
            if o > 1:
                ax.set_title(names[j])
            tidy_x(ax, x_grid)
        figure_title(fig, axes, title)
        handles, labels = axes[0].get_legend_handles_labels()
        order = [
            labels.index(k)
            for k in (
                "predictive mean",
                main_band_label,
                inner_label,
                "true function",
                "training data",
                "test data",
            )
            if k in labels
        ]
        # two bands make longer labels: one column fewer per row
        figure_legend(
            fig,
            [handles[i] for i in order],
            [labels[i] for i in order],
            o,
            max_cols=2 * o if two_bands else None,
        )
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def plot_calibration(
    path: PathLike,
    levels: Sequence[float],
    predictive: dict[str, Sequence[float]],
    epistemic: dict[str, Sequence[float]] | None = None,
    errors: dict[str, float] | None = None,
    title: str = "Calibration of the central intervals",
) -> Path:
    """Empirical against nominal coverage of the central intervals, with the diagonal of a
    perfectly calibrated model.

    ``levels`` ``(L,)`` nominal levels in (0, 1); ``predictive`` maps a split name
    (``train``, ``test``, ...) to its empirical coverage ``(L,)`` of the predictive band;
    ``epistemic`` (optional, a model with a learned noise) the same for the epistemic
    band, drawn dashed; ``errors`` (optional) a split's calibration error, shown in the
    legend. Returns ``Path(path)``.
    """
    nominal = as_inputs("levels", levels, letter="L")
    if np.any((nominal <= 0) | (nominal >= 1)):
        raise ValueError(f"levels must lie strictly between 0 and 1, got {list(nominal)}")
    if not predictive:
        raise ValueError("predictive must hold the coverage of at least one split")
    curves = [
        (
            split,
            PREDICTIVE_KIND,
            as_inputs(f"predictive[{split!r}]", values, nominal.shape[0], "L"),
        )
        for split, values in predictive.items()
    ]
    for split, values in (epistemic or {}).items():
        curves.append(
            (
                split,
                EPISTEMIC_KIND,
                as_inputs(f"epistemic[{split!r}]", values, nominal.shape[0], "L"),
            )
        )

    rows = 1 + len(curves)  # legend entries, one per row below the square plot
    fig, ax = plt.subplots(
        figsize=(CALIBRATION_WIDTH, CALIBRATION_WIDTH + 0.25 * rows), layout="constrained"
    )
    try:
        ax.plot(
            [0, 1],
            [0, 1],
            color=TRUTH_COLOR,
            linestyle=":",
            linewidth=1.2,
            label="perfect calibration",
        )
        splits = list(predictive)
        for split, kind, values in curves:
            color = SPLIT_COLORS.get(
                split, f"C{(splits.index(split) + 4) % 10}" if split in splits else "0.3"
            )
            label = split
            if epistemic:
                label += f", {kind} band"
            if kind == PREDICTIVE_KIND and errors and errors.get(split) is not None:
                label += f" (error {errors[split]:.3f})"
            predictive_line = kind == PREDICTIVE_KIND
            ax.plot(
                nominal,
                values,
                color=color,
                linewidth=2.0 if predictive_line else 1.3,
                linestyle="-" if predictive_line else "--",
                marker="o" if predictive_line else "s",
                markersize=5 if predictive_line else 4,
                markerfacecolor=color if predictive_line else "white",
                label=label,
                zorder=3,
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ticks = np.linspace(0, 1, 6)
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("nominal coverage of the central interval")
        ax.set_ylabel("empirical coverage")
        ax.set_title(title)
        handles, labels = ax.get_legend_handles_labels()
        figure_legend(fig, handles, labels, max_cols=1)
        return save_figure(fig, path)
    finally:
        plt.close(fig)
