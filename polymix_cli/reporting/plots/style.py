"""The look shared by every figure: colours, sizes, band labels, panels, the legend below
the panels, the training-data scatter and saving a figure as a PNG.

Colour scheme: the predictive mean in a strong red, expert ``m`` in ``C{m}`` (``C1``,
``C2``, ... as in the seed notebook), uncertainty bands in the same colour but
semi-transparent, training data as blue points with a black edge, held-out test data as
small grey dots and the noiseless truth as a dashed black line.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

DPI = 120
MEAN_COLOR = "C3"  # strong red, as the notebook's prediction mean
DATA_COLOR = "C0"
TEST_COLOR = "0.55"
TRUTH_COLOR = "black"
BAND_ALPHA = 0.3
EPISTEMIC_ALPHA = 0.45  # the epistemic band when drawn inside the predictive band
PREDICTIVE_ALPHA = 0.2  # the predictive band (with noise), drawn around the darker epistemic band
SPLIT_COLORS = {"train": DATA_COLOR, "test": "C1"}
PANEL_WIDTH = 5.0  # inches per output panel when there are several
SINGLE_SIZE = (6.4, 4.6)  # inches for a one-panel figure
PANEL_HEIGHT = 4.4
CALIBRATION_WIDTH = 5.2  # inches: a square plot, with its legend below

PathLike = str | Path

PREDICTIVE_KIND = "predictive"  # coefficients and noise
EPISTEMIC_KIND = "epistemic"  # coefficients only


def expert_color(m: int) -> str:
    """Colour of expert ``m`` (0-based): ``C1``, ``C2``, ..., skipping ``C0`` (the data)."""
    return f"C{m % 9 + 1}"


def band_label(band_level: float, kind: str = "") -> str:
    """``central 80% band``, or with ``kind`` e.g. ``central 80% predictive band``."""
    return f"central {100 * band_level:g}% {kind + ' ' if kind else ''}band"


def make_panels(num_panels: int) -> tuple[Figure, list[Axes]]:
    """A figure with ``num_panels`` axes in one row sharing the x axis.

    Width grows with the number of panels, so several outputs give a wider figure.
    """
    if num_panels < 1:
        raise ValueError(f"num_panels must be at least 1, got {num_panels}")
    if num_panels == 1:
        figsize = SINGLE_SIZE
    else:
        figsize = (PANEL_WIDTH * num_panels, PANEL_HEIGHT)
    fig, axes = plt.subplots(
        1, num_panels, figsize=figsize, sharex=True, squeeze=False, layout="constrained"
    )
    return fig, list(axes[0])


def figure_title(fig: Figure, axes: list[Axes], title: str) -> None:
    """Put ``title`` on the single axes, or above all panels when there are several."""
    if len(axes) == 1:
        axes[0].set_title(title)
    else:
        fig.suptitle(title)


def figure_legend(
    fig: Figure, handles: list, labels: list[str], num_panels: int = 1, max_cols: int | None = None
) -> None:
    """One frameless legend for the whole figure, below the panels so it covers no data.

    At most ``max_cols`` (default ``2 * num_panels + 1``) entries per row so the legend
    fits the figure width, with the entries spread evenly over the rows.
    """
    max_cols = max_cols or 2 * num_panels + 1
    rows = max(1, math.ceil(len(labels) / max_cols))
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=max(1, math.ceil(len(labels) / rows)),
        frameon=False,
    )


def scatter_size(n: int) -> float:
    return 24.0 if n <= 200 else (12.0 if n <= 2000 else 5.0)


def data_scatter(ax: Axes, x: np.ndarray, y: np.ndarray, label: str = "training data") -> None:
    ax.scatter(
        x,
        y,
        s=scatter_size(x.shape[0]),
        facecolor=DATA_COLOR,
        edgecolor="black",
        linewidth=0.6,
        zorder=5,
        label=label,
    )


def save_figure(fig: Figure, path: PathLike) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, format="png")
    return out


def tidy_x(ax: Axes, x_grid: np.ndarray) -> None:
    lo, hi = float(np.min(x_grid)), float(np.max(x_grid))
    if hi > lo:
        ax.set_xlim(lo, hi)
