"""Report figures for trained stochastic surrogates.

The functions take plain numpy arrays (anything ``np.asarray`` accepts), never tensors,
so this module imports neither torch nor Hydra. Each one draws a figure, saves it as a
PNG at ``path`` (parent folders are created), closes it and returns the path.

Shape conventions (``G`` grid points, ``N`` training points, ``K`` test points, ``O``
outputs, ``M`` experts, ``E`` logged epochs):

* inputs ``x_grid`` ``(G,)``, ``x_train`` ``(N,)``, ``x_test`` ``(K,)``; a trailing
  axis of size 1 (``(G, 1)``, as produced by a one-input model) is accepted;
* outputs ``(G, O)``, ``(N, O)``, ``(K, O)``; a single output may also be given as
  ``(G,)`` etc.;
* per-expert outputs ``(M, G, O)`` (or ``(M, G)`` for one output);
* gating probabilities ``(G, M)``.

Colour scheme, shared by all figures: the predictive mean in a strong red, expert ``m``
in ``C{m}`` (``C1``, ``C2``, ... as in the seed notebook), uncertainty bands in the same
colour but semi-transparent, training data as blue points with a black edge, held-out
test data as small grey dots (orange in the parity plot, where they matter as much as the
training data) and the noiseless truth as a dashed black line. When there are several
outputs the figure has one panel per output, side by side with a shared x axis.

Models with one input get ``plot_prediction`` (and, for mixtures, ``plot_gating`` and
``plot_experts``) over the input range; models with several inputs get ``plot_parity``
and ``plot_slices`` (``D`` inputs: slices ``(D, G)``, summaries ``(D, G, O)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

__all__ = [
    "plot_calibration",
    "plot_experts",
    "plot_gating",
    "plot_loss",
    "plot_parity",
    "plot_prediction",
    "plot_slices",
    "plot_sobol",
    "plot_sweep",
]

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


# --------------------------------------------------------------------------- helpers


def _expert_color(m: int) -> str:
    """Colour of expert ``m`` (0-based): ``C1``, ``C2``, ..., skipping ``C0`` (the data)."""
    return f"C{m % 9 + 1}"


def _band_label(band_level: float, kind: str = "") -> str:
    """``central 80% band``, or with ``kind`` e.g. ``central 80% predictive band``."""
    return f"central {100 * band_level:g}% {kind + ' ' if kind else ''}band"


PREDICTIVE_KIND = "predictive"  # coefficients and noise
EPISTEMIC_KIND = "epistemic"  # coefficients only


def _check_band_level(band_level: float) -> float:
    level = float(band_level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"band_level must lie strictly between 0 and 1, got {band_level}")
    return level


def _shape_str(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


def _as_inputs(name: str, value: object, size: int | None = None, letter: str = "G") -> np.ndarray:
    """An input vector ``(size,)``; ``(size, 1)`` is flattened."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or (size is not None and arr.shape[0] != size):
        expected = f"({letter},)" if size is None else f"({letter},) = ({size},)"
        raise ValueError(f"{name} must have shape {expected}, got {_shape_str(np.shape(value))}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} must not be empty")
    return arr


def _as_outputs(
    name: str, value: object, rows: int, outputs: int | None, letters: str = "G, O"
) -> np.ndarray:
    """An output array ``(rows, outputs)``; a vector ``(rows,)`` means one output."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    ok = arr.ndim == 2 and arr.shape[0] == rows and (outputs is None or arr.shape[1] == outputs)
    if not ok:
        want = (rows, "O") if outputs is None else (rows, outputs)
        raise ValueError(
            f"{name} must have shape ({letters}) = ({want[0]}, {want[1]}), "
            f"got {_shape_str(np.shape(value))}"
        )
    return arr


def _as_expert_outputs(
    name: str, value: object, experts: int | None, rows: int, outputs: int | None
) -> np.ndarray:
    """Per-expert outputs ``(experts, rows, outputs)``; ``(experts, rows)`` means one output."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    ok = (
        arr.ndim == 3
        and (experts is None or arr.shape[0] == experts)
        and arr.shape[1] == rows
        and (outputs is None or arr.shape[2] == outputs)
    )
    if not ok or arr.shape[0] == 0:
        want = (
            "M" if experts is None else experts,
            rows,
            "O" if outputs is None else outputs,
        )
        raise ValueError(
            f"{name} must have shape (M, G, O) = ({want[0]}, {want[1]}, {want[2]}), "
            f"got {_shape_str(np.shape(value))}"
        )
    return arr


def _output_names(output_names: Sequence[str] | None, num_outputs: int) -> list[str]:
    if output_names is None:
        return ["y"] if num_outputs == 1 else [f"y{j + 1}" for j in range(num_outputs)]
    names = [str(n) for n in output_names]
    if len(names) != num_outputs:
        raise ValueError(
            f"output_names must have one name per output ({num_outputs}), got {len(names)}"
        )
    return names


def _make_panels(num_panels: int) -> tuple[Figure, list[Axes]]:
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


def _title(fig: Figure, axes: list[Axes], title: str) -> None:
    """Put ``title`` on the single axes, or above all panels when there are several."""
    if len(axes) == 1:
        axes[0].set_title(title)
    else:
        fig.suptitle(title)


def _figure_legend(
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


def _scatter_size(n: int) -> float:
    return 24.0 if n <= 200 else (12.0 if n <= 2000 else 5.0)


def _data_scatter(ax: Axes, x: np.ndarray, y: np.ndarray, label: str = "training data") -> None:
    ax.scatter(
        x,
        y,
        s=_scatter_size(x.shape[0]),
        facecolor=DATA_COLOR,
        edgecolor="black",
        linewidth=0.6,
        zorder=5,
        label=label,
    )


def _save(fig: Figure, path: PathLike) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, format="png")
    return out


def _sorted_grid(x_grid: np.ndarray, *arrays: np.ndarray, axis: int = 0) -> list[np.ndarray]:
    """Sort the grid (and arrays indexed by it along ``axis``) so bands are drawn correctly."""
    order = np.argsort(x_grid, kind="stable")
    return [x_grid[order]] + [np.take(a, order, axis=axis) for a in arrays]


def _tidy_x(ax: Axes, x_grid: np.ndarray) -> None:
    lo, hi = float(np.min(x_grid)), float(np.max(x_grid))
    if hi > lo:
        ax.set_xlim(lo, hi)


# --------------------------------------------------------------------------- figures


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
    level = _check_band_level(band_level)
    x_grid = _as_inputs("x_grid", x_grid)
    g = x_grid.shape[0]
    mean = _as_outputs("mean", mean, g, None)
    o = mean.shape[1]
    lower = _as_outputs("lower", lower, g, o)
    upper = _as_outputs("upper", upper, g, o)
    x_train = _as_inputs("x_train", x_train, letter="N")
    y_train = _as_outputs("y_train", y_train, x_train.shape[0], o, letters="N, O")
    if true_y is not None:
        true_y = _as_outputs("true_y", true_y, g, o)
    if (x_test is None) != (y_test is None):
        raise ValueError("x_test and y_test must be given together")
    if x_test is not None:
        x_test = _as_inputs("x_test", x_test, letter="K")
        y_test = _as_outputs("y_test", y_test, x_test.shape[0], o, letters="K, O")
    if (epistemic_lower is None) != (epistemic_upper is None):
        raise ValueError("epistemic_lower and epistemic_upper must be given together")
    two_bands = epistemic_lower is not None
    if two_bands:
        epistemic_lower = _as_outputs("epistemic_lower", epistemic_lower, g, o)
        epistemic_upper = _as_outputs("epistemic_upper", epistemic_upper, g, o)
    names = _output_names(output_names, o)

    arrays = [mean, lower, upper] + ([true_y] if true_y is not None else [])
    if two_bands:
        arrays += [epistemic_lower, epistemic_upper]
    x_grid, mean, lower, upper, *rest = _sorted_grid(x_grid, *arrays)
    if two_bands:
        epistemic_lower, epistemic_upper = rest[-2], rest[-1]
        rest = rest[:-2]
    true_y = rest[0] if rest else None
    band_label = _band_label(level, PREDICTIVE_KIND if two_bands else "")
    inner_label = _band_label(level, EPISTEMIC_KIND)

    fig, axes = _make_panels(o)
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
                label=band_label,
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
            _data_scatter(ax, x_train, y_train[:, j])
            ax.set_xlabel(x_label)
            ax.set_ylabel(names[j])
            if o > 1:
                ax.set_title(names[j])
            _tidy_x(ax, x_grid)
        _title(fig, axes, title)
        handles, labels = axes[0].get_legend_handles_labels()
        order = [
            labels.index(k)
            for k in (
                "predictive mean",
                band_label,
                inner_label,
                "true function",
                "training data",
                "test data",
            )
            if k in labels
        ]
        # two bands make longer labels: one column fewer per row
        _figure_legend(
            fig,
            [handles[i] for i in order],
            [labels[i] for i in order],
            o,
            max_cols=2 * o if two_bands else None,
        )
        return _save(fig, path)
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
    nominal = _as_inputs("levels", levels, letter="L")
    if np.any((nominal <= 0) | (nominal >= 1)):
        raise ValueError(f"levels must lie strictly between 0 and 1, got {list(nominal)}")
    if not predictive:
        raise ValueError("predictive must hold the coverage of at least one split")
    curves = [
        (
            split,
            PREDICTIVE_KIND,
            _as_inputs(f"predictive[{split!r}]", values, nominal.shape[0], "L"),
        )
        for split, values in predictive.items()
    ]
    for split, values in (epistemic or {}).items():
        curves.append(
            (
                split,
                EPISTEMIC_KIND,
                _as_inputs(f"epistemic[{split!r}]", values, nominal.shape[0], "L"),
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
        _figure_legend(fig, handles, labels, max_cols=1)
        return _save(fig, path)
    finally:
        plt.close(fig)


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
    level = _check_band_level(band_level)
    x_grid = _as_inputs("x_grid", x_grid)
    g = x_grid.shape[0]
    median = _as_outputs("median", median, g, None, letters="G, M")
    m_count = median.shape[1]
    lower = _as_outputs("lower", lower, g, m_count, letters="G, M")
    upper = _as_outputs("upper", upper, g, m_count, letters="G, M")
    x_grid, median, lower, upper = _sorted_grid(x_grid, median, lower, upper)

    fig, axes = _make_panels(1)
    ax = axes[0]
    try:
        handles: list = []
        labels: list[str] = []
        for m in range(m_count):
            color = _expert_color(m)
            ax.fill_between(
                x_grid, lower[:, m], upper[:, m], color=color, alpha=BAND_ALPHA, linewidth=0
            )
            (line,) = ax.plot(x_grid, median[:, m], color=color, linewidth=2.0)
            handles.append(line)
            labels.append(f"expert {m + 1}")
        handles.append(Patch(facecolor="0.5", alpha=BAND_ALPHA, linewidth=0))
        labels.append(f"{_band_label(level)} (lines: median)")
        ax.set_ylim(-0.02, 1.02)  # [0, 1] with room for lines drawn at 0 or 1
        ax.set_yticks(np.linspace(0.0, 1.0, 6))
        ax.set_xlabel(x_label)
        ax.set_ylabel("gating probability")
        _tidy_x(ax, x_grid)
        ax.set_title("Gating probabilities")
        _figure_legend(fig, handles, labels)
        return _save(fig, path)
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
    level = _check_band_level(band_level)
    x_grid = _as_inputs("x_grid", x_grid)
    g = x_grid.shape[0]
    mean = _as_expert_outputs("mean", mean, None, g, None)
    m_count, _, o = mean.shape
    lower = _as_expert_outputs("lower", lower, m_count, g, o)
    upper = _as_expert_outputs("upper", upper, m_count, g, o)
    x_train = _as_inputs("x_train", x_train, letter="N")
    y_train = _as_outputs("y_train", y_train, x_train.shape[0], o, letters="N, O")
    names = _output_names(output_names, o)
    x_grid, mean, lower, upper = _sorted_grid(x_grid, mean, lower, upper, axis=1)

    fig, axes = _make_panels(o)
    try:
        handles: list = []
        labels: list[str] = []
        for j, ax in enumerate(axes):
            for m in range(m_count):
                color = _expert_color(m)
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
            _data_scatter(ax, x_train, y_train[:, j])
            ax.set_xlabel(x_label)
            ax.set_ylabel(names[j])
            if o > 1:
                ax.set_title(names[j])
            _tidy_x(ax, x_grid)
        data_handle = axes[0].collections[-1]
        handles += [Patch(facecolor="0.5", alpha=BAND_ALPHA, linewidth=0), data_handle]
        labels += [f"{_band_label(level)} (lines: mean)", "training data"]
        _title(fig, axes, "Expert outputs")
        _figure_legend(fig, handles, labels, o)
        return _save(fig, path)
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- several inputs

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
    level = _check_band_level(band_level)
    y_train = _as_outputs("y_train", y_train, np.shape(y_train)[0], None, letters="N, O")
    n, o = y_train.shape
    splits = [
        (
            "training",
            DATA_COLOR,
            y_train,
            *(
                _as_outputs(name, value, n, o, letters="N, O")
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
                    _as_outputs(name, value, k, o, letters="K, O")
                    for name, value in (
                        ("y_test", y_test),
                        ("mean_test", mean_test),
                        ("lower_test", lower_test),
                        ("upper_test", upper_test),
                    )
                ),
            )
        )
    names = _output_names(output_names, o)
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
                    s=_scatter_size(keep.size),
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
        _title(fig, axes_list, title)
        handles, labels = axes_list[0].get_legend_handles_labels()
        order = [labels.index(k) for k in ("training data", "test data", "y = x") if k in labels]
        handles = [handles[i] for i in order] + [
            Line2D([], [], color="0.4", alpha=0.6, linewidth=1.0)
        ]
        labels = [labels[i] for i in order] + [
            f"points: predictive mean; bars: {_band_label(level)}"
        ]
        _figure_legend(fig, handles, labels, o)
        return _save(fig, path)
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
    level = _check_band_level(band_level)
    grids = np.asarray(grids, dtype=float)
    if grids.ndim != 2 or grids.shape[0] < 1 or grids.shape[1] < 2:
        raise ValueError(
            f"grids must have shape (D, G) with G >= 2, got {_shape_str(np.shape(grids))}"
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
                f"{name} must have shape (D, G, O) = {want}, got {_shape_str(np.shape(value))}"
            )
        return arr

    mean = as_slices("mean", mean, None)
    o = mean.shape[2]
    lower, upper = as_slices("lower", lower, o), as_slices("upper", upper, o)
    if true_y is not None:
        true_y = as_slices("true_y", true_y, o)
    centre = _as_inputs("centre", centre, d, letter="D")
    x_names = (
        [f"x{i + 1}" for i in range(d)] if input_names is None else [str(n) for n in input_names]
    )
    if len(x_names) != d:
        raise ValueError(f"input_names must have one name per input ({d}), got {len(x_names)}")
    names = _output_names(output_names, o)
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
                    label=_band_label(level),
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
                _tidy_x(ax, grids[i])
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
            for k in ("predictive mean", _band_label(level), "true function")
            if k in labels
        ]
        _figure_legend(fig, [handles[i] for i in order], [labels[i] for i in order], cols)
        return _save(fig, path)
    finally:
        plt.close(fig)


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
) -> Path:
    """Training curves: data, distribution and total loss against epoch.

    Shapes: ``epochs``, ``data``, ``distribution``, ``total`` and ``lr`` all ``(E,)``.
    The loss axis is logarithmic when every loss is positive (symlog or linear
    otherwise); the learning rate, if given, goes in a second panel below. Returns
    ``Path(path)``.
    """
    epochs = _as_inputs("epochs", epochs, letter="E")
    e = epochs.shape[0]
    curves = {
        "data loss": _as_inputs("data", data, e, letter="E"),
        "distribution loss": _as_inputs("distribution", distribution, e, letter="E"),
        "total loss": _as_inputs("total", total, e, letter="E"),
    }
    if lr is not None:
        lr = _as_inputs("lr", lr, e, letter="E")
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
        for label, values in curves.items():
            ax.plot(
                epochs,
                values,
                color=colors[label],
                label=label,
                linewidth=1.4 if label == "total loss" else 1.0,
            )
        scale = _loss_scale(ax, np.concatenate(list(curves.values())))
        ax.set_ylabel("loss" if scale != "symlog" else "loss (symlog scale)")
        ax.set_title("Training losses")
        ax.grid(True, which="major", alpha=0.3)
        _figure_legend(fig, *ax.get_legend_handles_labels(), num_panels=1)
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
        return _save(fig, path)
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- sensitivity

FIRST_COLOR = "C0"
TOTAL_COLOR = "C1"


def _as_indices(name: str, value: object, shape: tuple[int, int] | None) -> np.ndarray:
    """Indices per input and output ``(d, O)``; a vector ``(d,)`` means one output."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or (shape is not None and arr.shape != shape) or arr.size == 0:
        want = "(d, O)" if shape is None else f"(d, O) = {_shape_str(shape)}"
        raise ValueError(f"{name} must have shape {want}, got {_shape_str(np.shape(value))}")
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
    level = _check_band_level(band_level)
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
    names = _output_names(output_names, o)
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
        _figure_legend(fig, handles, labels, o)
        return _save(fig, path)
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- sweeps

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
    fig, axes = _make_panels(1)
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
            _figure_legend(fig, handles, labels)
        return _save(fig, path)
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
        return _save(fig, path)
    finally:
        plt.close(fig)
