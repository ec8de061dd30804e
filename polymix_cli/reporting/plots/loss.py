"""The training curves: data, distribution and total loss against epoch, and the
learning rate (``plot_loss``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from polymix_cli.reporting.plots.arrays import (
    as_inputs,
)
from polymix_cli.reporting.plots.style import (
    SINGLE_SIZE,
    PathLike,
    figure_legend,
    save_figure,
)

__all__ = ["plot_loss"]


def _loss_scale(ax: Axes, values: np.ndarray) -> str:
    """Log y scale if every finite value is positive, else symlog or linear.

    Symlog is used when the magnitudes span more than two decades (its linear region is
    the 10th percentile of the non-zero magnitudes); otherwise the axis stays linear.
    Returns the scale chosen.
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return "linear"
    if np.all(finite > 0):
        ax.set_yscale("log")
        return "log"
    magnitudes = np.abs(finite[finite != 0])
    if magnitudes.size == 0:
        return "linear"
    linthresh = float(np.percentile(magnitudes, 10))
    if magnitudes.max() / linthresh > 100.0:
        ax.set_yscale("symlog", linthresh=linthresh)
        return "symlog"
    return "linear"


def plot_loss(
    path: PathLike,
    epochs: np.ndarray,
    data: np.ndarray,
    distribution: np.ndarray,
    total: np.ndarray,
    lr: np.ndarray | None = None,
    replica_totals: Sequence[np.ndarray] = (),
) -> Path:
    """Training curves: data, distribution and total loss against epoch.

    Shapes: ``epochs``, ``data``, ``distribution``, ``total`` and ``lr`` all ``(E,)``.
    The loss axis is logarithmic when every loss is positive (symlog or linear
    otherwise); the learning rate, if given, goes in a second panel below. With
    replicas, ``replica_totals`` holds each replica's total loss ``(E,)``, drawn as thin
    lines under the kept one's curves. Returns ``Path(path)``.
    """
    epochs = as_inputs("epochs", epochs, letter="E")
    e = epochs.shape[0]
    curves = {
        "data loss": as_inputs("data", data, e, letter="E"),
        "distribution loss": as_inputs("distribution", distribution, e, letter="E"),
        "total loss": as_inputs("total", total, e, letter="E"),
    }
    if lr is not None:
        lr = as_inputs("lr", lr, e, letter="E")
    replicas = [
        as_inputs(f"replica_totals[{k}]", v, e, letter="E") for k, v in enumerate(replica_totals)
    ]
    colors = {"data loss": "C0", "distribution loss": "C1", "total loss": "black"}

    if lr is None:
        fig, ax = plt.subplots(figsize=SINGLE_SIZE, layout="constrained")
        axes = [ax]
    else:
        fig, axes_arr = plt.subplots(
            2,
            1,
            figsize=(SINGLE_SIZE[0], SINGLE_SIZE[1] + 1.4),
            sharex=True,
            height_ratios=[3, 1.2],
            layout="constrained",
        )
        axes = list(axes_arr)
    try:
        ax = axes[0]
        for k, values in enumerate(replicas):
            ax.plot(
                epochs,
                values,
                color="0.6",
                linewidth=0.7,
                alpha=0.8,
                label=f"total loss of each of {len(replicas)} replicas" if k == 0 else None,
            )
        for label, values in curves.items():
            ax.plot(
                epochs,
                values,
                color=colors[label],
                label=label,
                linewidth=1.4 if label == "total loss" else 1.0,
            )
        scale = _loss_scale(ax, np.concatenate([*curves.values(), *replicas]))
        ax.set_ylabel("loss" if scale != "symlog" else "loss (symlog scale)")
        ax.set_title("Training losses")
        ax.grid(True, which="major", alpha=0.3)
        figure_legend(fig, *ax.get_legend_handles_labels(), num_panels=1)
        if lr is not None:
            ax_lr = axes[1]
            ax_lr.plot(epochs, lr, color="C2", linewidth=1.5)
            ax_lr.set_ylabel("learning rate")
            ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
            ax_lr.grid(True, alpha=0.3)
        axes[-1].set_xlabel("epoch")
        lo, hi = float(epochs.min()), float(epochs.max())
        if hi > lo:
            axes[-1].set_xlim(lo, hi)
        return save_figure(fig, path)
    finally:
        plt.close(fig)
