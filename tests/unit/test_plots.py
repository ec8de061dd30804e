"""Tests for the package polymix_cli.reporting.plots: real PNGs are written, shapes are
validated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from polymix_cli.reporting import plots
from polymix_cli.reporting.plots.loss import _loss_scale
from polymix_cli.reporting.plots.style import make_panels

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
G, N, K, M = 40, 15, 30, 2


def _truth(x: np.ndarray) -> np.ndarray:
    return np.sin(np.pi * x) + np.sign(x)


def _outputs(x: np.ndarray, num_outputs: int) -> np.ndarray:
    """(len(x), num_outputs): the notebook's function, scaled per output."""
    return np.stack([(j + 1) * _truth(x) for j in range(num_outputs)], axis=-1)


def _check_png(path: Path) -> tuple[int, int]:
    """Assert ``path`` is a readable PNG larger than 100x100 px; return (height, width)."""
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = mpimg.imread(path)
    height, width = image.shape[:2]
    assert height > 100 and width > 100
    return height, width


def _prediction_args(num_outputs: int = 1) -> dict:
    rng = np.random.default_rng(0)
    x_grid = np.linspace(-1, 1, G)
    mean = _outputs(x_grid, num_outputs)
    x_train = rng.uniform(-1, 1, N)
    return {
        "x_grid": x_grid,
        "mean": mean,
        "lower": mean - 0.2,
        "upper": mean + 0.2,
        "x_train": x_train,
        "y_train": _outputs(x_train, num_outputs) + 0.05 * rng.standard_normal((N, num_outputs)),
    }


def _expert_args(num_outputs: int = 1) -> dict:
    args = _prediction_args(num_outputs)
    mean = np.stack([args["mean"] - 1.0, args["mean"] + 1.0])  # (M, G, O)
    args.update(mean=mean, lower=mean - 0.1, upper=mean + 0.1)
    return args


def _gating_args() -> dict:
    x_grid = np.linspace(-1, 1, G)
    p = 1.0 / (1.0 + np.exp(-20.0 * x_grid))
    median = np.stack([1.0 - p, p], axis=-1)  # (G, M)
    return {
        "x_grid": x_grid,
        "median": median,
        "lower": np.clip(median - 0.1, 0, 1),
        "upper": np.clip(median + 0.1, 0, 1),
    }


def _loss_args(num_epochs: int = 50) -> dict:
    epochs = np.arange(1, num_epochs + 1)
    data = 5.0 * np.exp(-epochs / 10.0) + 1.0
    distribution = 60.0 + 5.0 * np.exp(-epochs / 20.0)
    return {
        "epochs": epochs,
        "data": data,
        "distribution": distribution,
        "total": data + 0.1 * distribution,
    }


# ------------------------------------------------------------------------ PNGs written


def test_plot_prediction_writes_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x_test = rng.uniform(-1, 1, K)
    out = plots.plot_prediction(
        str(tmp_path / "nested" / "dir" / "prediction.png"),
        **_prediction_args(),
        true_y=_outputs(np.linspace(-1, 1, G), 1),
        x_test=x_test,
        y_test=_outputs(x_test, 1),
        title="Prediction of the MoE",
    )
    assert isinstance(out, Path)
    assert out == tmp_path / "nested" / "dir" / "prediction.png"
    _check_png(out)


def test_plot_prediction_accepts_one_dimensional_outputs(tmp_path: Path) -> None:
    args = _prediction_args()
    args = {k: (v[:, 0] if v.ndim == 2 else v) for k, v in args.items()}
    args["x_grid"] = args["x_grid"][:, None]  # (G, 1) as from a one-input model
    _check_png(plots.plot_prediction(tmp_path / "p.png", **args))


def test_plot_gating_writes_png(tmp_path: Path) -> None:
    _check_png(plots.plot_gating(tmp_path / "gating.png", **_gating_args(), band_level=0.9))


def test_plot_experts_writes_png(tmp_path: Path) -> None:
    _check_png(plots.plot_experts(tmp_path / "experts.png", **_expert_args()))


def test_plot_loss_writes_png(tmp_path: Path) -> None:
    _check_png(plots.plot_loss(tmp_path / "loss.png", **_loss_args()))


def test_plot_loss_with_learning_rate_is_taller(tmp_path: Path) -> None:
    args = _loss_args()
    lr = 0.1 * np.sin(np.linspace(0, np.pi, len(args["epochs"])))  # starts and ends at 0
    h_plain, _ = _check_png(plots.plot_loss(tmp_path / "plain.png", **args))
    h_lr, _ = _check_png(plots.plot_loss(tmp_path / "lr.png", **args, lr=lr))
    assert h_lr > h_plain


@pytest.mark.parametrize(
    "shift",
    [-100.0, -3.0, 0.0],  # negative (symlog or linear) and zero-touching losses
)
def test_plot_loss_non_positive_losses(tmp_path: Path, shift: float) -> None:
    args = _loss_args()
    args["distribution"] = args["distribution"] - 65.0 + shift
    args["data"] = np.where(args["epochs"] == 10, 0.0, args["data"])
    _check_png(plots.plot_loss(tmp_path / "loss.png", **args))


def test_plot_loss_nan_values_still_plot(tmp_path: Path) -> None:
    args = _loss_args()
    args["total"] = args["total"].copy()
    args["total"][5] = np.nan
    _check_png(plots.plot_loss(tmp_path / "loss.png", **args))


def test_loss_scale_choice() -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    try:
        assert _loss_scale(ax, np.array([1.0, 10.0, 1000.0])) == "log"
        assert _loss_scale(ax, np.array([-1.0, 0.5, 2.0])) == "linear"
        assert _loss_scale(ax, np.array([-1e4, 0.1, 0.2, 0.3, 1.0])) == "symlog"
        assert _loss_scale(ax, np.array([0.0, 0.0])) == "linear"
    finally:
        plt.close(fig)


# ------------------------------------------------------------------ several outputs


def test_make_panels_one_axes_per_output() -> None:
    import matplotlib.pyplot as plt

    for num in (1, 2, 3):
        fig, axes = make_panels(num)
        try:
            assert len(axes) == num == len(fig.axes)
        finally:
            plt.close(fig)
    fig1, _ = make_panels(1)
    fig3, _ = make_panels(3)
    try:
        assert fig3.get_figwidth() > fig1.get_figwidth()
    finally:
        plt.close(fig1)
        plt.close(fig3)


def test_prediction_several_outputs_is_wider(tmp_path: Path) -> None:
    _, w1 = _check_png(plots.plot_prediction(tmp_path / "one.png", **_prediction_args(1)))
    _, w3 = _check_png(
        plots.plot_prediction(
            tmp_path / "three.png", **_prediction_args(3), output_names=["a", "b", "c"]
        )
    )
    assert w3 > 2 * w1


def test_experts_several_outputs_is_wider(tmp_path: Path) -> None:
    _, w1 = _check_png(plots.plot_experts(tmp_path / "one.png", **_expert_args(1)))
    _, w2 = _check_png(plots.plot_experts(tmp_path / "two.png", **_expert_args(2)))
    assert w2 > w1


def test_figures_are_closed(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    plots.plot_prediction(tmp_path / "a.png", **_prediction_args(2))
    plots.plot_gating(tmp_path / "b.png", **_gating_args())
    plots.plot_experts(tmp_path / "c.png", **_expert_args(2))
    plots.plot_loss(tmp_path / "d.png", **_loss_args(), lr=np.full(50, 1e-2))
    with pytest.raises(ValueError):
        plots.plot_prediction(tmp_path / "e.png", **{**_prediction_args(), "lower": np.zeros(3)})
    assert len(plt.get_fignums()) == before


# ------------------------------------------------------------------- validation


def test_prediction_shape_mismatch_names_argument(tmp_path: Path) -> None:
    args = _prediction_args()
    args["mean"] = args["mean"][:-1]
    with pytest.raises(ValueError, match=r"x_grid|mean must have shape \(G, O\)"):
        plots.plot_prediction(tmp_path / "p.png", **args)
    args = _prediction_args()
    args["upper"] = args["upper"][:-1]
    with pytest.raises(
        ValueError, match=r"upper must have shape \(G, O\) = \(40, 1\), got \(39, 1\)"
    ):
        plots.plot_prediction(tmp_path / "p.png", **args)


@pytest.mark.parametrize(
    "name, bad, pattern",
    [
        ("lower", np.zeros((G, 2)), r"lower must have shape \(G, O\) = \(40, 1\)"),
        ("y_train", np.zeros((N + 1, 1)), r"y_train must have shape \(N, O\) = \(15, 1\)"),
        ("x_train", np.zeros((N, 2)), r"x_train must have shape \(N,\)"),
        ("true_y", np.zeros((G, 3)), r"true_y must have shape \(G, O\)"),
        ("output_names", ["a", "b"], r"output_names"),
        ("band_level", 80, r"band_level"),
    ],
)
def test_prediction_invalid_arguments(tmp_path: Path, name: str, bad: object, pattern: str) -> None:
    args = _prediction_args()
    args[name] = bad
    with pytest.raises(ValueError, match=pattern):
        plots.plot_prediction(tmp_path / "p.png", **args)
    assert not (tmp_path / "p.png").exists()


def test_prediction_test_points_must_come_together(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="x_test and y_test"):
        plots.plot_prediction(tmp_path / "p.png", **_prediction_args(), x_test=np.zeros(K))
    with pytest.raises(ValueError, match=r"y_test must have shape \(K, O\)"):
        plots.plot_prediction(
            tmp_path / "p.png", **_prediction_args(), x_test=np.zeros(K), y_test=np.zeros((K, 2))
        )


def test_gating_shape_mismatch(tmp_path: Path) -> None:
    args = _gating_args()
    args["upper"] = args["upper"][:, :1]
    with pytest.raises(
        ValueError, match=r"upper must have shape \(G, M\) = \(40, 2\), got \(40, 1\)"
    ):
        plots.plot_gating(tmp_path / "g.png", **args)


def test_experts_shape_mismatch(tmp_path: Path) -> None:
    args = _expert_args()
    args["lower"] = args["lower"][:1]
    with pytest.raises(ValueError, match=r"lower must have shape \(M, G, O\) = \(2, 40, 1\)"):
        plots.plot_experts(tmp_path / "e.png", **args)
    args = _expert_args()
    args["y_train"] = np.zeros((N, 2))
    with pytest.raises(ValueError, match=r"y_train must have shape \(N, O\) = \(15, 1\)"):
        plots.plot_experts(tmp_path / "e.png", **args)


def test_loss_shape_mismatch(tmp_path: Path) -> None:
    args = _loss_args()
    args["total"] = args["total"][:-1]
    with pytest.raises(ValueError, match=r"total must have shape \(E,\) = \(50,\), got \(49,\)"):
        plots.plot_loss(tmp_path / "l.png", **args)
    with pytest.raises(ValueError, match=r"lr must have shape \(E,\)"):
        plots.plot_loss(tmp_path / "l.png", **_loss_args(), lr=np.ones(3))


# ------------------------------------------------------------------- imports


def test_module_imports_neither_torch_nor_hydra() -> None:
    """Every module of the plots package, imported in a fresh process: no torch, no Hydra,
    and the backend chosen before the import is left alone."""
    code = (
        "import sys, importlib, pkgutil\n"
        "import matplotlib\n"
        "matplotlib.use('svg')\n"
        "import polymix_cli.reporting.plots as plots\n"
        "for info in pkgutil.iter_modules(plots.__path__):\n"
        "    importlib.import_module('polymix_cli.reporting.plots.' + info.name)\n"
        "assert matplotlib.get_backend().lower() == 'svg', matplotlib.get_backend()\n"
        "bad = [m for m in ('torch', 'hydra') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------------ calibration and two bands


def test_plot_prediction_with_two_bands(tmp_path: Path) -> None:
    args = _prediction_args(num_outputs=2)
    out = plots.plot_prediction(
        tmp_path / "two.png",
        **args,
        epistemic_lower=args["mean"] - 0.05,
        epistemic_upper=args["mean"] + 0.05,
    )
    _check_png(out)
    with pytest.raises(
        ValueError, match="epistemic_lower and epistemic_upper must be given together"
    ):
        plots.plot_prediction(tmp_path / "bad.png", **args, epistemic_lower=args["mean"])
    with pytest.raises(ValueError, match=r"epistemic_upper must have shape \(G, O\) = \(40, 2\)"):
        plots.plot_prediction(
            tmp_path / "bad.png",
            **args,
            epistemic_lower=args["mean"],
            epistemic_upper=args["mean"][:, :1],
        )


def test_plot_calibration_writes_png(tmp_path: Path) -> None:
    levels = np.linspace(0.1, 0.9, 9)
    out = plots.plot_calibration(
        tmp_path / "calibration.png",
        levels,
        {"train": levels + 0.05, "test": levels - 0.02},
        epistemic={"train": levels / 3, "test": levels / 4},
        errors={"train": 0.05, "test": 0.02},
    )
    height, width = _check_png(out)
    assert height > width  # a square plot with its legend below
    _check_png(plots.plot_calibration(tmp_path / "plain.png", levels, {"test": levels}))
    with pytest.raises(ValueError, match=r"predictive\['test'\] must have shape \(L,\) = \(9,\)"):
        plots.plot_calibration(tmp_path / "bad.png", levels, {"test": levels[:3]})
    with pytest.raises(ValueError, match="levels must lie strictly between 0 and 1"):
        plots.plot_calibration(tmp_path / "bad.png", [0.0, 0.5], {"test": [0.0, 0.5]})
