"""The figures of a run: which plots a trained model gets, and the data each is drawn from.

:func:`write_plots` turns an :class:`~polymix_cli.reporting.evaluation.Evaluation` (torch
tensors in the user's units) and the training history into the numpy arrays of the
figure functions in :mod:`polymix_cli.reporting.plots`. The plots package is imported
when the first figure is drawn, so importing this module does not load matplotlib.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polymix_cli.data.dataset import Dataset
from polymix_cli.reporting.evaluation import Evaluation, SensitivityReport
from polymix_cli.reporting.metrics import CALIBRATION_LEVELS

__all__ = ["write_plots"]

_MAX_CURVE_POINTS = 1000


def _np(t: Tensor):
    return t.detach().cpu().double().numpy()


# sobol.png draws at most this many inputs (two bars each): with more, those of the
# largest total index (all of them are in metrics.json)
MAX_SOBOL_INPUTS = 20


def _plot_sensitivity(path: Path, sens: SensitivityReport) -> Path:
    from polymix_cli.reporting import plots

    st = sens.stats()
    how = (
        "closed form from the PCE coefficients"
        if sens.method == "pce"
        else f"Monte Carlo, base samples of {sens.base_samples} inputs"
    )
    notes = [
        f"mean {float(m):.4g}, variance {float(v):.4g}"
        for m, v in zip(st["mean"]["mean"], st["variance"]["mean"], strict=True)
    ]
    first, total = st["first_order"], st["total"]
    d = len(sens.inputs)
    shown = list(range(d))
    title = f"Sobol indices: {how}\nbars: mean over {sens.indices.mean.shape[0]} parameter draws"
    if d > MAX_SOBOL_INPUTS:
        importance = total["mean"].amax(dim=-1).nan_to_num(-1.0)  # (d,)
        shown = torch.argsort(importance, descending=True, stable=True)[:MAX_SOBOL_INPUTS].tolist()
        title += (
            f"; the {MAX_SOBOL_INPUTS} of {d} inputs of largest total index (all in metrics.json)"
        )
    return plots.plot_sobol(
        path,
        _np(first["mean"][shown]),
        _np(first["lower"][shown]),
        _np(first["upper"][shown]),
        _np(total["mean"][shown]),
        _np(total["lower"][shown]),
        _np(total["upper"][shown]),
        input_names=[sens.inputs[i] for i in shown],
        output_names=sens.outputs,
        band_level=sens.band,
        panel_notes=notes,
        title=title,
    )


def write_plots(
    plot_dir: Path, ev: Evaluation, data: Dataset, history_rows: list[tuple]
) -> list[Path]:
    """Draw the figures of a run into ``plot_dir``.

    loss.png and calibration.png; with one input prediction.png, and gating.png and
    experts.png (mixtures); with several inputs parity.png, slices.png and sobol.png
    (sensitivity analysis). A figure whose data is missing (no history, no calibration,
    no sensitivity analysis) is skipped. The loss curves show at most about 1000 epochs
    (every k-th and the last).

    Args:
        plot_dir: The folder of the figures.
        ev: The evaluation (see
            :func:`~polymix_cli.reporting.evaluation.evaluate_model`).
        data: The dataset, in the user's units.
        history_rows: The training history (with replicas, each replica's total loss
            follows): per epoch ``(epoch, lr, data loss,
            distribution loss, total loss, ...)``.

    Returns:
        The paths of the figures written.
    """
    from polymix_cli.reporting import plots

    written = []
    if ev.sensitivity is not None and data.num_inputs > 1:  # with one input, both indices are 1
        written.append(_plot_sensitivity(plot_dir / "sobol.png", ev.sensitivity))
    if history_rows:
        # every k-th epoch (and the last): a figure cannot show more, and drawing 1e4+ points is slow
        last = len(history_rows) - 1
        kept = list(range(0, last, max(1, len(history_rows) // _MAX_CURVE_POINTS))) + [last]
        cols = list(zip(*(history_rows[i] for i in kept)))
        written.append(
            plots.plot_loss(
                plot_dir / "loss.png",
                cols[0],
                cols[2],
                cols[3],
                cols[4],
                lr=cols[1],
                replica_totals=cols[5:],
            )
        )
    if ev.calibration:
        noisy = ev.noise_std is not None
        written.append(
            plots.plot_calibration(
                plot_dir / "calibration.png",
                CALIBRATION_LEVELS,
                {split: c["predictive"] for split, c in ev.calibration.items()},
                epistemic={split: c["epistemic"] for split, c in ev.calibration.items()}
                if noisy
                else None,
                errors={split: ev.splits[split]["calibration_error"] for split in ev.calibration},
            )
        )
    names = {"output_names": list(data.output_names)}
    if ev.slice_summary is not None and ev.slices is not None:
        written += _write_multi_input_plots(plot_dir, ev, data)
    if ev.grid is None or ev.grid_summary is None:
        return written
    x_label = data.input_names[0]
    xg = _np(ev.grid[:, 0])
    lower, upper = ev.grid_summary.interval(ev.band)
    inner = (
        ev.grid_summary.epistemic.interval(ev.band)
        if ev.grid_summary.epistemic is not None
        else None
    )
    written.append(
        plots.plot_prediction(
            plot_dir / "prediction.png",
            xg,
            _np(ev.grid_summary.mean),
            _np(lower),
            _np(upper),
            _np(data.x_train[:, 0]),
            _np(data.y_train),
            true_y=None if ev.grid_true is None else _np(ev.grid_true),
            band_level=ev.band,
            x_test=_np(data.x_test[:, 0]),
            y_test=_np(data.y_test),
            x_label=x_label,
            **names,
            epistemic_lower=None if inner is None else _np(inner[0]),
            epistemic_upper=None if inner is None else _np(inner[1]),
        )
    )
    if ev.gating is not None and ev.experts is not None:
        lo, hi = ev.gating.interval(ev.band)
        median = (
            ev.gating.quantiles[ev.gating.probs.index(0.5)]
            if 0.5 in ev.gating.probs
            else ev.gating.mean
        )
        written.append(
            plots.plot_gating(
                plot_dir / "gating.png",
                xg,
                _np(median),
                _np(lo),
                _np(hi),
                band_level=ev.band,
                x_label=x_label,
            )
        )
        m, o = ev.num_experts, data.num_outputs

        def per_expert(t: Tensor):
            return _np(t.reshape(t.shape[0], m, o).permute(1, 0, 2))

        lo, hi = ev.experts.interval(ev.band)
        written.append(
            plots.plot_experts(
                plot_dir / "experts.png",
                xg,
                per_expert(ev.experts.mean),
                per_expert(lo),
                per_expert(hi),
                _np(data.x_train[:, 0]),
                _np(data.y_train),
                band_level=ev.band,
                x_label=x_label,
                **names,
            )
        )
    return written


def _write_multi_input_plots(plot_dir: Path, ev: Evaluation, data: Dataset) -> list[Path]:
    """parity.png (both splits) and slices.png of a model with several inputs."""
    from polymix_cli.reporting import plots

    assert ev.slices is not None and ev.slice_summary is not None
    parity: dict[str, Any] = {}
    for split, y in (("train", data.y_train), ("test", data.y_test)):
        summary = ev.summaries[split]
        lower, upper = summary.interval(ev.band)
        parity.update(
            {
                f"y_{split}": _np(y),
                f"mean_{split}": _np(summary.mean),
                f"lower_{split}": _np(lower),
                f"upper_{split}": _np(upper),
            }
        )
    written = [
        plots.plot_parity(
            plot_dir / "parity.png",
            band_level=ev.band,
            output_names=list(data.output_names),
            **parity,
        )
    ]
    k, g = ev.slices.shape[:2]
    inputs = ev.slice_inputs

    def per_slice(t: Tensor):
        return _np(t.reshape(k, g, -1))

    lower, upper = ev.slice_summary.interval(ev.band)
    along = torch.tensor(inputs, dtype=torch.long, device=ev.slices.device)
    title = "Slices through the centre of the domain"
    if ev.slice_note is not None:
        title += f":\n{ev.slice_note}"
    written.append(
        plots.plot_slices(
            plot_dir / "slices.png",
            _np(ev.slices[torch.arange(k, device=ev.slices.device), :, along]),
            per_slice(ev.slice_summary.mean),
            per_slice(lower),
            per_slice(upper),
            _np(data.bounds.mean(1)[inputs]),
            input_names=[data.input_names[i] for i in inputs],
            output_names=list(data.output_names),
            true_y=None if ev.slice_true is None else per_slice(ev.slice_true),
            band_level=ev.band,
            title=title,
        )
    )
    return written
