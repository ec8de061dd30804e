"""Evidence of a trained model: metrics on the train and test sets, and the plot data.

Draws come from a ``torch.Generator`` seeded with the run's seed, so ``train`` and
``evaluate`` with the same settings produce the same numbers: first the parameter
vectors, then (for a model with a learned noise) the predictive noise, chunk by chunk,
for the train set, the test set and the plotting grid in that order.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polymix_cli import StochasticModel
from polymix_cli.config.schema import EvalConfig
from polymix_cli.data.dataset import Dataset
from polymix_cli.data.scaling import DataMaps
from polymix_cli.reporting.metrics import (
    _CHUNK_ELEMENTS,
    CALIBRATION_LEVELS,
    Summary,
    coverage,
    interval_probs,
    metrics,
    sample_quantiles,
    summarize,
)
from polymix_cli.sensitivity import SobolIndices, input_distribution, monte_carlo_sobol, pce_sobol
from polymix_cli.surrogate_models import MixtureOfExperts, PolynomialChaosExpansion

__all__ = [
    "Evaluation",
    "Sensitivity",
    "draw_function",
    "evaluate",
    "noise_std",
    "sensitivity_report",
    "slice_points",
    "write_history",
    "write_metrics",
    "write_plots",
]


@dataclass
class Evaluation:
    """Metrics per split, their summaries, and summaries on a plotting grid: over the input
    range for one-input models, along slices through the centre of the domain otherwise."""

    splits: dict[str, dict[str, Any]]
    band: float
    noise_std: list[float] | None = None  # per output, in the reported units; None without noise
    # empirical coverage at CALIBRATION_LEVELS: {split: {"predictive": [...], "epistemic": [...]}}
    calibration: dict[str, dict[str, list[float]]] | None = None
    grid: Tensor | None = None  # (G, 1)
    grid_summary: Summary | None = None
    grid_true: Tensor | None = None  # (G, O)
    gating: Summary | None = None  # over (G, M)
    experts: Summary | None = None  # over (G, M * O)
    num_experts: int = 0
    sensitivity: Sensitivity | None = None
    summaries: dict[str, Summary] = field(default_factory=dict)  # per split, at its points
    slices: Tensor | None = None  # (D, G, D): G points along input i with the others at the centre
    slice_summary: Summary | None = None  # over (D * G, O)
    slice_true: Tensor | None = None  # (D * G, O)


def draw_function(
    model: StochasticModel, params: Tensor, maps: DataMaps | None = None
) -> Callable[[Tensor], Tensor]:
    """The predictive draws of ``model`` at given parameter draws ``params`` ``(S, P)``:
    inputs ``(n, D)`` in the user's units -> ``(S, n, O)`` in the user's units, in the
    inputs' dtype. ``maps`` (default: identities) are applied in that dtype; the model runs
    in the parameters' dtype. Every metric, plot and prediction draws through here."""
    to_model = maps.inputs.forward if maps is not None else _same
    to_user = maps.outputs.inverse if maps is not None else _same

    def draw(xs: Tensor) -> Tensor:
        out = model.predict(to_model(xs).to(params.dtype), params)
        return to_user(out.to(xs.dtype))

    return draw


def slice_points(bounds: Tensor, num_points: int) -> Tensor:
    """``(D, G, D)``: for each input ``i``, ``G`` points from its low to its high bound with
    every other input at the centre of its bounds (``bounds`` ``(D, 2)``)."""
    low, high = bounds[:, 0], bounds[:, 1]
    d = bounds.shape[0]
    steps = torch.linspace(0, 1, num_points, dtype=bounds.dtype, device=bounds.device)
    points = ((low + high) / 2).expand(d, num_points, d).clone()
    diag = torch.arange(d, device=bounds.device)
    points[diag, :, diag] = low[:, None] + (high - low)[:, None] * steps
    return points


def noise_std(model: StochasticModel, maps: DataMaps | None = None) -> Tensor | None:
    """The learned noise std per output ``(O,)`` in the user's units, or ``None`` for a
    model without noise.

    The model's noise is in the model's output units. This is the one place where it is
    converted to the units in which draws, metrics and plots are reported: with the output
    map ``y_user = y_model * scale + shift``, ``sigma_user = sigma * scale``."""
    if model.noise is None:
        return None
    sigma = model.noise.std.detach()
    if maps is None or maps.outputs.is_identity:
        return sigma
    return sigma * maps.outputs.scale.to(sigma.device, sigma.dtype)


@torch.no_grad()
def evaluate(
    model: StochasticModel,
    data: Dataset,
    eval_cfg: EvalConfig,
    seed: int,
    maps: DataMaps | None = None,
) -> Evaluation:
    """Draw ``eval_cfg.num_samples`` parameter vectors and summarise the predictions:
    the epistemic band from the draws, and with a learned noise the predictive band.

    ``data`` is in the user's units; ``maps`` (default: identities) take inputs to the
    model's domain and its outputs back, so every number is in the user's units."""
    model.eval()
    device = data.x_train.device
    generator = torch.Generator(device=device).manual_seed(seed)
    num_samples, band = eval_cfg.num_samples, eval_cfg.band
    levels = tuple(float(v) for v in eval_cfg.levels)
    params = model.sample_parameters(num_samples, generator=generator)
    surrogate = model.surrogate_model
    to_model = maps.inputs.forward if maps is not None else _same
    to_user = maps.outputs.inverse if maps is not None else _same
    draw = draw_function(model, params, maps)

    sigma = noise_std(model, maps)
    per_point = num_samples * surrogate.work_width()
    probs = interval_probs(levels + (band,) + CALIBRATION_LEVELS)
    splits, calibration, summaries = {}, {}, {}
    for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
        summary = summarize(
            draw, x, probs, y=y, per_point=per_point, noise_std=sigma, generator=generator
        )
        y_true = data.true_fn(x) if data.true_fn is not None else None
        splits[split] = metrics(summary, y, levels, y_true)
        calibration[split] = {
            kind: [coverage(summary.band(kind), y, lv) for lv in CALIBRATION_LEVELS]
            for kind in ("predictive", "epistemic")
        }
        summaries[split] = summary
    result = Evaluation(splits, band, None if sigma is None else sigma.tolist(), calibration)
    result.summaries = summaries
    if data.num_inputs > 1:
        result.slices = slice_points(
            data.bounds.to(device=device, dtype=data.x_train.dtype), eval_cfg.grid_points
        )
        flat = result.slices.reshape(-1, data.num_inputs)
        result.slice_summary = summarize(
            draw, flat, probs, per_point=per_point, noise_std=sigma, generator=generator
        )
        result.slice_true = data.true_fn(flat) if data.true_fn is not None else None
    if data.num_inputs == 1:
        low, high = data.bounds[0].tolist()
        grid = torch.linspace(
            low, high, eval_cfg.grid_points, device=device, dtype=data.x_train.dtype
        )
        grid = grid.unsqueeze(1)
        result.grid = grid
        result.grid_summary = summarize(
            draw, grid, probs, per_point=per_point, noise_std=sigma, generator=generator
        )
        result.grid_true = data.true_fn(grid) if data.true_fn is not None else None
        if isinstance(surrogate, MixtureOfExperts):
            gate_probs = interval_probs((band,))
            result.num_experts = surrogate.num_experts
            result.gating = summarize(
                lambda g: surrogate.get_gating_weights(to_model(g), params),
                grid,
                gate_probs,
                per_point=per_point,
            )

            def expert_draws(g: Tensor) -> Tensor:
                out = to_user(surrogate.get_expert_outputs(to_model(g), params))  # (S, M, G, O)
                return out.permute(0, 2, 1, 3).reshape(out.shape[0], out.shape[2], -1)

            result.experts = summarize(expert_draws, grid, gate_probs, per_point=per_point)
    result.sensitivity = sensitivity_report(model, params, data, eval_cfg, seed, maps)
    return result


_MOMENTS = ("mean", "variance")
_INDICES = ("first_order", "total")


@dataclass
class Sensitivity:
    """Sobol analysis of a model: per-draw moments (user units) and indices, and how they
    were obtained. ``distribution``: the input distribution in the user's units."""

    method: str  # pce | monte_carlo
    indices: SobolIndices
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    band: float  # central probability of the reported interval over draws
    base_samples: int | None
    distribution: dict[str, Any]

    def stats(self) -> dict[str, dict[str, Tensor]]:
        """Per quantity, the ``mean``, ``std``, ``lower`` and ``upper`` (the central
        ``band`` interval) over draws: ``(O,)`` for moments, ``(d, O)`` for indices."""
        lo, hi = round((1 - self.band) / 2, 10), round((1 + self.band) / 2, 10)
        out = {}
        for name in _MOMENTS + _INDICES:
            values = getattr(self.indices, name)  # (S, ...)
            ordered = values.sort(dim=0).values
            quantiles = sample_quantiles(ordered, (lo, hi))
            std = values.std(dim=0, correction=1 if values.shape[0] > 1 else 0)
            out[name] = {
                "mean": values.mean(dim=0),
                "std": std,
                "lower": quantiles[0],
                "upper": quantiles[1],
            }
        return out

    def to_json(self) -> dict[str, Any]:
        """``sensitivity`` of metrics.json: ``mean[output]``, ``variance[output]``,
        ``first_order[output][input]`` and ``total[output][input]``, each ``{mean, std,
        lower, upper}`` over the parameter draws."""
        stats = self.stats()
        payload: dict[str, Any] = {
            "method": self.method,
            "num_samples": self.indices.mean.shape[0],
            "base_samples": self.base_samples,
            "interval": self.band,
            "input_distribution": self.distribution,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
        }
        for name, st in stats.items():
            if name in _MOMENTS:
                payload[name] = {o: _entry(st, j) for j, o in enumerate(self.outputs)}
            else:
                payload[name] = {
                    o: {i: _entry(st, k, j) for k, i in enumerate(self.inputs)}
                    for j, o in enumerate(self.outputs)
                }
        return payload


def _entry(stats: Mapping[str, Tensor], *at: int) -> dict[str, float]:
    return {k: float(v[at]) for k, v in stats.items()}


def sensitivity_report(
    model: StochasticModel,
    params: Tensor,
    data: Dataset,
    eval_cfg: EvalConfig,
    seed: int,
    maps: DataMaps | None = None,
) -> Sensitivity | None:
    """Sobol analysis of ``model`` over the first ``eval.sensitivity_samples`` of ``params``
    (``None`` with ``eval.sensitivity=off``): in closed form for a polynomial chaos expansion
    (``auto``, ``pce``), else by Monte Carlo over inputs drawn from a generator seeded with
    ``seed``. Moments are in the user's units (the output map undone); inputs follow the
    distribution of the basis in the model's domain, reported in the user's units."""
    method = eval_cfg.sensitivity
    if method == "off":
        return None
    surrogate = model.surrogate_model
    if method == "auto":
        method = "pce" if isinstance(surrogate, PolynomialChaosExpansion) else "monte_carlo"
    elif method == "pce" and not isinstance(surrogate, PolynomialChaosExpansion):
        raise ValueError(
            f"eval.sensitivity=pce needs a polynomial chaos expansion, "
            f"got {type(surrogate).__name__}"
        )
    params = params[: eval_cfg.sensitivity_samples or params.shape[0]]
    base_samples = None
    if method == "pce":
        coeffs = params.reshape(params.shape[0], surrogate.num_terms, surrogate.num_outputs)
        indices = pce_sobol(coeffs, surrogate.multi_indices, surrogate.basis)
    else:
        base_samples = eval_cfg.sensitivity_base_samples
        generator = torch.Generator(device=params.device).manual_seed(seed)
        indices = monte_carlo_sobol(
            model.predict,
            params,
            surrogate.num_inputs,
            base_samples,
            input_distribution(surrogate),
            generator,
            data.x_train.dtype,
            max_elements=_CHUNK_ELEMENTS,
            width=surrogate.work_width(),
        )
    kind = input_distribution(surrogate)
    shift = (
        maps.inputs.shift if maps is not None else torch.zeros(data.num_inputs, dtype=torch.float64)
    )
    scale = (
        maps.inputs.scale if maps is not None else torch.ones(data.num_inputs, dtype=torch.float64)
    )
    if kind == "uniform":
        distribution = {
            "kind": kind,
            "low": (shift - scale).tolist(),
            "high": (shift + scale).tolist(),
        }
    else:
        distribution = {"kind": kind, "mean": shift.tolist(), "std": scale.tolist()}
    if maps is not None:
        indices = indices.rescaled(maps.outputs.shift, maps.outputs.scale)
    return Sensitivity(
        method,
        indices,
        tuple(data.input_names),
        tuple(data.output_names),
        eval_cfg.band,
        base_samples,
        distribution,
    )


def _same(t: Tensor) -> Tensor:
    return t


def _finite(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_metrics(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(payload), indent=2) + "\n")
    return path


def write_history(path: Path, rows: list[tuple], columns: tuple[str, ...]) -> Path:
    """CSV of per-epoch values."""
    with path.open("w") as handle:
        handle.write(",".join(columns) + "\n")
        for row in rows:
            handle.write(f"{row[0]}," + ",".join(f"{v:.8g}" for v in row[1:]) + "\n")
    return path


_MAX_CURVE_POINTS = 1000


def _np(t: Tensor):
    return t.detach().cpu().double().numpy()


def _plot_sensitivity(path: Path, sens: Sensitivity) -> Path:
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
    return plots.plot_sobol(
        path,
        _np(first["mean"]),
        _np(first["lower"]),
        _np(first["upper"]),
        _np(total["mean"]),
        _np(total["lower"]),
        _np(total["upper"]),
        input_names=sens.inputs,
        output_names=sens.outputs,
        band_level=sens.band,
        panel_notes=notes,
        title=f"Sobol indices: {how}\nbars: mean over {sens.indices.mean.shape[0]} parameter draws",
    )


def write_plots(
    plot_dir: Path, ev: Evaluation, data: Dataset, history_rows: list[tuple]
) -> list[Path]:
    """loss.png and calibration.png; with one input prediction.png, and gating.png and
    experts.png (mixtures); with several inputs parity.png, slices.png and sobol.png
    (sensitivity analysis)."""
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
            plots.plot_loss(plot_dir / "loss.png", cols[0], cols[2], cols[3], cols[4], lr=cols[1])
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
    d, g = ev.slices.shape[:2]

    def per_slice(t: Tensor):
        return _np(t.reshape(d, g, -1))

    lower, upper = ev.slice_summary.interval(ev.band)
    diag = torch.arange(d, device=ev.slices.device)
    written.append(
        plots.plot_slices(
            plot_dir / "slices.png",
            _np(ev.slices[diag, :, diag]),
            per_slice(ev.slice_summary.mean),
            per_slice(lower),
            per_slice(upper),
            _np(data.bounds.mean(1)),
            input_names=list(data.input_names),
            output_names=list(data.output_names),
            true_y=None if ev.slice_true is None else per_slice(ev.slice_true),
            band_level=ev.band,
        )
    )
    return written
