"""The evaluation of a trained model: metrics on the train and test sets, the summaries
the plots are drawn from, and the sensitivity analysis.

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
    PredictiveSummary,
    coverage,
    interval_probs,
    sample_quantiles,
    summarize_predictive,
    summary_metrics,
)
from polymix_cli.sensitivity import SobolIndices, input_distribution, monte_carlo_sobol, pce_sobol
from polymix_cli.surrogate_models import MixtureOfExperts, PolynomialChaosExpansion

__all__ = [
    "Evaluation",
    "SensitivityReport",
    "draw_function",
    "evaluate_model",
    "noise_std",
    "sensitivity_report",
    "slice_points",
    "write_history",
    "write_metrics",
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
    grid_summary: PredictiveSummary | None = None
    grid_true: Tensor | None = None  # (G, O)
    gating: PredictiveSummary | None = None  # over (G, M)
    experts: PredictiveSummary | None = None  # over (G, M * O)
    num_experts: int = 0
    sensitivity: SensitivityReport | None = None
    # per split, at its points
    summaries: dict[str, PredictiveSummary] = field(default_factory=dict)
    slices: Tensor | None = None  # (D, G, D): G points along input i with the others at the centre
    slice_summary: PredictiveSummary | None = None  # over (D * G, O)
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
def evaluate_model(
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
        summary = summarize_predictive(
            draw, x, probs, y=y, per_point=per_point, noise_std=sigma, generator=generator
        )
        y_true = data.true_fn(x) if data.true_fn is not None else None
        splits[split] = summary_metrics(summary, y, levels, y_true)
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
        result.slice_summary = summarize_predictive(
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
        result.grid_summary = summarize_predictive(
            draw, grid, probs, per_point=per_point, noise_std=sigma, generator=generator
        )
        result.grid_true = data.true_fn(grid) if data.true_fn is not None else None
        if isinstance(surrogate, MixtureOfExperts):
            gate_probs = interval_probs((band,))
            result.num_experts = surrogate.num_experts
            result.gating = summarize_predictive(
                lambda g: surrogate.get_gating_weights(to_model(g), params),
                grid,
                gate_probs,
                per_point=per_point,
            )

            def expert_draws(g: Tensor) -> Tensor:
                out = to_user(surrogate.get_expert_outputs(to_model(g), params))  # (S, M, G, O)
                return out.permute(0, 2, 1, 3).reshape(out.shape[0], out.shape[2], -1)

            result.experts = summarize_predictive(
                expert_draws, grid, gate_probs, per_point=per_point
            )
    result.sensitivity = sensitivity_report(model, params, data, eval_cfg, seed, maps)
    return result


_MOMENTS = ("mean", "variance")
_INDICES = ("first_order", "total")


@dataclass
class SensitivityReport:
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
) -> SensitivityReport | None:
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
    return SensitivityReport(
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
