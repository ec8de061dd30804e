"""Figures of a one-input mixture of experts: the gating probabilities
(``plot_gating``) and each expert's output (``plot_experts``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from polymix_cli.reporting.plots.arrays import (
    as_expert_outputs,
    as_inputs,
    as_outputs,
    check_band_level,
    checked_output_names,
    sorted_grid,
)
from polymix_cli.reporting.plots.style import (
    BAND_ALPHA,
    PathLike,
    band_label,
    data_scatter,
    expert_color,
    figure_legend,
    figure_title,
    make_panels,
    save_figure,
    tidy_x,
)

__all__ = ["plot_experts", "plot_gating"]


def plot_gating(
    path: PathLike,
    x_grid: np.ndarray,
    median: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    band_level: float = 0.8,
    x_label: str = "x",
) -> Path:
    """Gating probability of each expert: median line and central band.

    Shapes: ``x_grid`` ``(G,)``; ``median``, ``lower``, ``upper`` ``(G, M)``, one column
    per expert, values in [0, 1]. Expert ``m`` is drawn in colour ``C{m}``. Returns
    ``Path(path)``.
    """
    level = check_band_level(band_level)
    x_grid = as_inputs("x_grid", x_grid)
    g = x_grid.shape[0]
    median = as_outputs("median", median, g, None, letters="G, M")
    m_count = median.shape[1]
    lower = as_outputs("lower", lower, g, m_count, letters="G, M")
    upper = as_outputs("upper", upper, g, m_count, letters="G, M")
    x_grid, median, lower, upper = sorted_grid(x_grid, median, lower, upper)

    fig, axes = make_panels(1)
    ax = axes[0]
    try:
        handles: list = []
        labels: list[str] = []
        for m in range(m_count):
            color = expert_color(m)
            ax.fill_between(
                x_grid, lower[:, m], upper[:, m], color=color, alpha=BAND_ALPHA, linewidth=0
            )
            (line,) = ax.plot(x_grid, median[:, m], color=color, linewidth=2.0)
            handles.append(line)
            labels.append(f"expert {m + 1}")
        handles.append(Patch(facecolor="0.5", alpha=BAND_ALPHA, linewidth=0))
        labels.append(f"{band_label(level)} (lines: median)")
        ax.set_ylim(-0.02, 1.02)  # [0, 1] with room for lines drawn at 0 or 1
        ax.set_yticks(np.linspace(0.0, 1.0, 6))
        ax.set_xlabel(x_label)
        ax.set_ylabel("gating probability")
        tidy_x(ax, x_grid)
        ax.set_title("Gating probabilities")
        figure_legend(fig, handles, labels)
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def plot_experts(
    path: PathLike,
    x_grid: np.ndarray,
    mean: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    x_train: np.ndarray,
    y_train: np.ndarray,
    band_level: float = 0.8,
    output_names: Sequence[str] | None = None,
    x_label: str = "x",
) -> Path:
    """Each expert's output (mean and central band) over the training data.

    Shapes: ``x_grid`` ``(G,)``; ``mean``, ``lower``, ``upper`` ``(M, G, O)``;
    ``x_train`` ``(N,)``, ``y_train`` ``(N, O)``. One panel per output, expert ``m`` in
    colour ``C{m}``. Returns ``Path(path)``.
    """
    level = check_band_level(band_level)
    x_grid = as_inputs("x_grid", x_grid)
    g = x_grid.shape[0]
    mean = as_expert_outputs("mean", mean, None, g, None)
    m_count, _, o = mean.shape
    lower = as_expert_outputs("lower", lower, m_count, g, o)
    upper = as_expert_outputs("upper", upper, m_count, g, o)
    x_train = as_inputs("x_train", x_train, letter="N")
    y_train = as_outputs("y_train", y_train, x_train.shape[0], o, letters="N, O")
    names = checked_output_names(output_names, o)
    x_grid, mean, lower, upper = sorted_grid(x_grid, mean, lower, upper, axis=1)

    fig, axes = make_panels(o)
    try:
        handles: list = []
        labels: list[str] = []
        for j, ax in enumerate(axes):
            for m in range(m_count):
                color = expert_color(m)
                ax.fill_between(
                    x_grid,
                    lower[m, :, j],
                    upper[m, :, j],
                    color=color,
                    alpha=BAND_ALPHA,
                    linewidth=0,
                    zorder=1,
                )
                (line,) = ax.plot(x_grid, mean[m, :, j], color=color, linewidth=2.0, zorder=3)
                if j == 0:
                    handles.append(line)
                    labels.append(f"expert {m + 1}")
            data_scatter(ax, x_train, y_train[:, j])
            ax.set_xlabel(x_label)
            ax.set_ylabel(names[j])
            if o > 1:
                ax.set_title(names[j])
            tidy_x(ax, x_grid)
        data_handle = axes[0].collections[-1]
        handles += [Patch(facecolor="0.5", alpha=BAND_ALPHA, linewidth=0), data_handle]
        labels += [f"{band_label(level)} (lines: mean)", "training data"]
        figure_title(fig, axes, "Expert outputs")
        figure_legend(fig, handles, labels, o)
        return save_figure(fig, path)
    finally:
        plt.close(fig)
