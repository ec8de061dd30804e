"""The evaluation of a trained model: metrics on the train, test and validation sets, the
summaries the plots are drawn from, and the sensitivity analysis.

Draws come from a ``torch.Generator`` seeded with the run's seed, so ``train`` and
``evaluate`` with the same settings produce the same numbers: first the parameter
vectors, then (for a model with a learned noise) the predictive noise, chunk by chunk,
for the train set, the test set, the plotting grid and the validation set in that order
(the validation set last, so that it changes none of the other numbers).
"""

from __future__ import annotations

import json
import logging
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
from polymix_cli.posterior import PosteriorSummary, summarize_posterior
from polymix_cli.reporting.input_distributions import (
    distributions_json,
    matches_basis,
    pce_mismatch_message,
    to_inputs,
)
from polymix_cli.reporting.metrics import (
    _CHUNK_ELEMENTS,
    CALIBRATION_LEVELS,
    PredictiveSummary,
    coverage,
    interval_probs,
    point_elements,
    sample_quantiles,
    summarize_predictive,
    summary_metrics,
)
from polymix_cli.sensitivity import SobolIndices, input_distribution, monte_carlo_sobol, pce_sobol
from polymix_cli.surrogate_models import MixtureOfExperts, PolynomialChaosExpansion

__all__ = [
    "MAX_SLICES",
    "Evaluation",
    "SensitivityReport",
    "draw_function",
    "evaluate_model",
    "model_posterior",
    "monte_carlo_budget",
    "noise_std",
    "sensitivity_report",
    "slice_points",
    "write_history",
    "write_metrics",
]

log = logging.getLogger("polymix")

# slices.png draws at most this many inputs (a panel each): with more, those of the largest
# total Sobol index (see slice_inputs); every panel costs eval.grid_points predictions
MAX_SLICES = 12

# Monte Carlo Sobol indices of a wide model (see monte_carlo_budget): the most values of
# shared per-point intermediates (basis rows) the design may build, and the most design
# rows x draws x parameters (about the multiply-adds) it may take
MC_SHARED_VALUES = 1 << 29
MC_WORK = 1 << 36


@dataclass
class Evaluation:
    """Metrics per split, their summaries, and summaries on a plotting grid.

    The grid spans the input range for one-input models (``grid``, ``grid_summary``,
    and for a mixture ``gating`` and ``experts``), and runs along slices through the
    centre of the domain otherwise (``slices``, ``slice_summary``). All in the user's
    units; ``G`` grid points, ``O`` outputs, ``M`` experts, ``D`` inputs.

    Args:
        splits: The metrics of each split (``train``, ``test``, and ``val`` when there is
            a validation set), see
            :func:`~polymix_cli.reporting.metrics.summary_metrics`.
        band: The central probability of the plotted band.
        noise_std: The learned noise std per output, in the reported units; ``None``
            without noise.
        calibration: Empirical coverage at
            :data:`~polymix_cli.reporting.metrics.CALIBRATION_LEVELS`:
            ``{split: {"predictive": [...], "epistemic": [...]}}``.
        grid: The plotting grid, shape ``(G, 1)``.
        grid_summary: The summary on the grid, over ``(G, O)``.
        grid_true: The noiseless function on the grid, shape ``(G, O)``.
        gating: The summary of the gate's weights, over ``(G, M)``.
        experts: The summary of the experts' outputs, over ``(G, M * O)``.
        num_experts: ``M`` for a mixture plotted on a grid, else 0.
        sensitivity: The Sobol analysis, or ``None``.
        summaries: The summary of each split, at its points.
        slices: Shape ``(K, G, D)``: ``G`` points along input ``slice_inputs[k]`` with
            the others at the centre.
        slice_summary: The summary along the slices, over ``(K * G, O)``.
        slice_true: The noiseless function along the slices, shape ``(K * G, O)``.
        slice_inputs: The ``K`` inputs of the slices (all ``D`` when ``D <=``
            :data:`MAX_SLICES`), see :func:`slice_inputs`.
        slice_note: Which inputs the slices show, when not all: for the plot's title.
    """

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
    slices: Tensor | None = None  # (K, G, D): along input slice_inputs[k], the others at the centre
    slice_summary: PredictiveSummary | None = None  # over (K * G, O)
    slice_true: Tensor | None = None  # (K * G, O)
    slice_inputs: list[int] = field(default_factory=list)
    slice_note: str | None = None


def draw_function(
    model: StochasticModel, params: Tensor, maps: DataMaps | None = None
) -> Callable[[Tensor], Tensor]:
    """The predictive draws of ``model`` at given parameter draws, as a function of inputs.

    Every metric, plot and prediction draws through here.

    Args:
        model: The model.
        params: Parameter draws, shape ``(S, P)``; the model runs in their dtype.
        maps: The data maps (default: identities), applied in the inputs' dtype.

    Returns:
        A function of inputs ``(n, D)`` in the user's units to draws ``(S, n, O)`` in
        the user's units, in the inputs' dtype.
    """
    to_model = maps.inputs.forward if maps is not None else _same
    to_user = maps.outputs.inverse if maps is not None else _same

    def draw(xs: Tensor) -> Tensor:
        out = model.predict(to_model(xs).to(params.dtype), params)
        return to_user(out.to(xs.dtype))

    return draw


def slice_points(bounds: Tensor, num_points: int, inputs: list[int] | None = None) -> Tensor:
    """Points along a slice through the centre of the domain, for each input.

    Args:
        bounds: (low, high) per input, shape ``(D, 2)``.
        num_points: ``G``, the points per slice.
        inputs: The ``K`` inputs to slice along (default: all, ``K = D``).

    Returns:
        Shape ``(K, G, D)``: for each input ``i`` of ``inputs``, ``G`` points from its low
        to its high bound with every other input at the centre of its bounds.
    """
    low, high = bounds[:, 0], bounds[:, 1]
    d = bounds.shape[0]
    along = (
        torch.arange(d, device=bounds.device)
        if inputs is None
        else torch.tensor(inputs, dtype=torch.long, device=bounds.device)
    )
    k = along.shape[0]
    steps = torch.linspace(0, 1, num_points, dtype=bounds.dtype, device=bounds.device)
    points = ((low + high) / 2).expand(k, num_points, d).clone()
    rows = torch.arange(k, device=bounds.device)
    points[rows, :, along] = low[along, None] + (high - low)[along, None] * steps
    return points


def slice_inputs(
    num_inputs: int, sensitivity: SensitivityReport | None, limit: int = MAX_SLICES
) -> tuple[list[int], str | None]:
    """The inputs to draw slices along: all of them, or the ``limit`` most important.

    Args:
        num_inputs: ``D``.
        sensitivity: The Sobol analysis, if any: inputs are ranked by their total index
            (the mean over draws, the largest over outputs).
        limit: The most inputs.

    Returns:
        The inputs (all in order when ``D <= limit``, else by decreasing importance, or the
        first ``limit`` without a Sobol analysis), and a note saying which, or ``None``
        when all are drawn.
    """
    if num_inputs <= limit:
        return list(range(num_inputs)), None
    if sensitivity is None:
        note = f"the first {limit} of {num_inputs} inputs (eval.sensitivity=off ranks none)"
        return list(range(limit)), note
    total = sensitivity.indices.total.mean(dim=0).amax(dim=-1)  # (D,)
    ranked = torch.argsort(total.nan_to_num(-1.0), descending=True, stable=True)
    note = f"the {limit} of {num_inputs} inputs of largest total Sobol index"
    return ranked[:limit].tolist(), note


def noise_std(model: StochasticModel, maps: DataMaps | None = None) -> Tensor | None:
    """The learned noise std per output, in the user's units.

    The model's noise is in the model's output units. This is the one place where it is
    converted to the units in which draws, metrics and plots are reported: with the output
    map ``y_user = y_model * scale + shift``, ``sigma_user = sigma * scale``.

    Args:
        model: The model.
        maps: The data maps (default: identities).

    Returns:
        Shape ``(O,)`` (detached), or ``None`` for a model without noise.
    """
    if model.noise is None:
        return None
    sigma = model.noise.std.detach()
    if maps is None or maps.outputs.is_identity:
        return sigma
    return sigma * maps.outputs.scale.to(sigma.device, sigma.dtype)


def model_posterior(
    model: StochasticModel, maps: DataMaps | None, level: float, num_samples: int, seed: int
) -> PosteriorSummary:
    """The posterior of a model's parameters (:func:`~polymix_cli.posterior.summarize_posterior`),
    with the noise in the user's units (:func:`noise_std`).

    Args:
        model: The trained model.
        maps: The data maps (default: identities).
        level: The central probability of the intervals.
        num_samples: The draws of groups without closed-form marginals.
        seed: The seed of those draws (a generator of its own: nothing else is disturbed).

    Returns:
        The summary.
    """
    device = next(iter(model.parameters()), torch.zeros(())).device
    generator = torch.Generator(device=device).manual_seed(seed)
    summary = summarize_posterior(model, level, num_samples, generator)
    sigma = noise_std(model, maps)
    if sigma is not None:
        summary.noise_std = sigma.double().cpu()
    return summary


@torch.no_grad()
def evaluate_model(
    model: StochasticModel,
    data: Dataset,
    eval_cfg: EvalConfig,
    seed: int,
    maps: DataMaps | None = None,
) -> Evaluation:
    """Draw ``eval_cfg.num_samples`` parameter vectors and summarise the predictions.

    The epistemic band comes from the draws, and with a learned noise the predictive band.
    Runs without gradients, with the model in eval mode. The draws come from a generator
    seeded with ``seed`` (see the module's description).

    Args:
        model: The trained model.
        data: The dataset, in the user's units.
        eval_cfg: The ``eval`` section.
        seed: The seed of the draws.
        maps: The data maps (default: identities): they take inputs to the model's
            domain and its outputs back, so every number is in the user's units.

    Returns:
        The :class:`Evaluation`, with its sensitivity analysis (see
        :func:`sensitivity_report`).

    Raises:
        ValueError: If ``eval.sensitivity=pce`` and the surrogate is not a polynomial
            chaos expansion.
    """
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
    per_point = point_elements(surrogate, num_samples)
    probs = interval_probs(levels + (band,) + CALIBRATION_LEVELS)
    splits, calibration, summaries = {}, {}, {}

    def score(split: str, x: Tensor, y: Tensor) -> None:
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

    score("train", data.x_train, data.y_train)
    score("test", data.x_test, data.y_test)
    result = Evaluation(splits, band, None if sigma is None else sigma.tolist(), calibration)
    result.summaries = summaries
    # the Sobol analysis (its own generator: the other draws stay as they were) ranks the
    # inputs when there are too many to slice along every one
    result.sensitivity = sensitivity_report(model, params, data, eval_cfg, seed, maps)
    if data.num_inputs > 1:
        result.slice_inputs, result.slice_note = slice_inputs(data.num_inputs, result.sensitivity)
        if result.slice_note is not None:
            log.info("slices.png: %s", result.slice_note)
        result.slices = slice_points(
            data.bounds.to(device=device, dtype=data.x_train.dtype),
            eval_cfg.grid_points,
            result.slice_inputs,
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
    if data.has_validation:  # last: the draws of the other splits and the grid stay as they were
        score("val", data.x_val, data.y_val)
    return result


_MOMENTS = ("mean", "variance")
_INDICES = ("first_order", "total")


@dataclass
class SensitivityReport:
    """Sobol analysis of a model: per-draw moments (user units) and indices, and how.

    Args:
        method: ``pce`` or ``monte_carlo``.
        indices: The moments and indices of each parameter draw.
        inputs: The inputs' names.
        outputs: The outputs' names.
        band: The central probability of the reported interval over draws.
        base_samples: The Monte Carlo base samples; ``None`` for ``pce``.
        distribution: The input distribution in the user's units: ``kind`` and
            ``low``/``high`` (uniform) or ``mean``/``std``; ``{"kind":
            "input_distributions"}`` for the distributions of ``eval.input_distributions``
            (other than the basis's).
        input_distributions: ``eval.input_distributions`` as given, per input with its
            name and its share outside the training bounds; ``None`` when not set.
    """

    method: str  # pce | monte_carlo
    indices: SobolIndices
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    band: float  # central probability of the reported interval over draws
    base_samples: int | None
    distribution: dict[str, Any]
    input_distributions: list[dict[str, Any]] | None = None  # eval.input_distributions, echoed

    def stats(self) -> dict[str, dict[str, Tensor]]:
        """Statistics over the draws of each quantity.

        Returns:
            ``{quantity: {"mean", "std", "lower", "upper"}}`` (lower and upper bound the
            central ``band`` interval) for ``mean``, ``variance``, ``first_order`` and
            ``total``: shape ``(O,)`` for moments, ``(d, O)`` for indices. ``std`` is
            the unbiased one (0 for a single draw).
        """
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
        """``sensitivity`` of metrics.json.

        Returns:
            ``mean[output]``, ``variance[output]``, ``first_order[output][input]`` and
            ``total[output][input]``, each ``{mean, std, lower, upper}`` over the
            parameter draws, keyed by name; with ``method``, ``num_samples``,
            ``base_samples``, ``interval``, ``input_distribution``,
            ``input_distributions`` (``null`` unless set), ``inputs`` and ``outputs``.
        """
        stats = self.stats()
        payload: dict[str, Any] = {
            "method": self.method,
            "num_samples": self.indices.mean.shape[0],
            "base_samples": self.base_samples,
            "interval": self.band,
            "input_distribution": self.distribution,
            "input_distributions": self.input_distributions,
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
    """Sobol analysis of ``model`` over the first ``eval.sensitivity_samples`` of ``params``.

    In closed form for a polynomial chaos expansion (``auto``, ``pce``), else by Monte
    Carlo over inputs drawn from a generator seeded with ``seed``. Moments are in the
    user's units (the output map undone); inputs follow the distribution of the basis in
    the model's domain, reported in the user's units.

    Args:
        model: The model.
        params: Parameter draws, shape ``(S, P)``.
        data: The dataset (its names, input dimension and dtype).
        eval_cfg: The ``eval`` section.
        seed: The seed of the Monte Carlo inputs.
        maps: The data maps (default: identities).

    Returns:
        The report; ``None`` with ``eval.sensitivity=off``.

    Raises:
        ValueError: If ``eval.sensitivity=pce`` and the surrogate is not a polynomial
            chaos expansion.
    """
    method = eval_cfg.sensitivity
    if method == "off":
        return None
    surrogate = model.surrogate_model
    kind = input_distribution(surrogate)
    shift = (
        maps.inputs.shift if maps is not None else torch.zeros(data.num_inputs, dtype=torch.float64)
    )
    scale = (
        maps.inputs.scale if maps is not None else torch.ones(data.num_inputs, dtype=torch.float64)
    )
    entries = eval_cfg.input_distributions
    # other distributions than the basis's: Monte Carlo through their inverse CDFs
    custom = entries is not None and not matches_basis(entries, kind, shift, scale)
    is_pce = isinstance(surrogate, PolynomialChaosExpansion)
    if method == "auto":
        method = "pce" if is_pce and not custom else "monte_carlo"
    elif method == "pce" and not is_pce:
        raise ValueError(
            f"eval.sensitivity=pce needs a polynomial chaos expansion, "
            f"got {type(surrogate).__name__}"
        )
    elif method == "pce" and custom:
        raise ValueError(pce_mismatch_message(kind))
    params = params[: eval_cfg.sensitivity_samples or params.shape[0]]
    base_samples = None
    if method == "monte_carlo":
        base_samples, num_draws, note = monte_carlo_budget(
            surrogate.num_inputs,
            eval_cfg.sensitivity_base_samples,
            params.shape[0],
            model.num_params(),
            surrogate.shared_width(),
            fixed_draws=eval_cfg.sensitivity_samples is not None,
        )
        if note is not None:
            log.info("Monte Carlo Sobol indices: %s", note)
        params = params[:num_draws]
    if method == "pce":
        coeffs = params.reshape(params.shape[0], surrogate.num_terms, surrogate.num_outputs)
        indices = pce_sobol(coeffs, surrogate.multi_indices, surrogate.basis)
    else:
        generator = torch.Generator(device=params.device).manual_seed(seed)
        indices = monte_carlo_sobol(
            # in the draws' dtype, as every other evaluation (see draw_function)
            lambda x, p: model.predict(x.to(p.dtype), p),
            params,
            surrogate.num_inputs,
            base_samples,
            kind,
            generator,
            data.x_train.dtype,
            max_elements=_CHUNK_ELEMENTS,
            width=surrogate.work_width(),
            shared=surrogate.shared_width(),
            transform=to_inputs(entries, maps.inputs.forward if maps else None) if custom else None,
        )
    if custom:
        distribution: dict[str, Any] = {"kind": "input_distributions"}
    elif kind == "uniform":
        distribution = {
            "kind": kind,
            "low": (shift - scale).tolist(),
            "high": (shift + scale).tolist(),
        }
    else:
        distribution = {"kind": kind, "mean": shift.tolist(), "std": scale.tolist()}
    if maps is not None:
        indices = indices.rescaled(maps.outputs.shift, maps.outputs.scale)
    echoed = None
    if entries is not None:
        echoed = distributions_json(entries, data.input_names, data.bounds)
    return SensitivityReport(
        method,
        indices,
        tuple(data.input_names),
        tuple(data.output_names),
        eval_cfg.band,
        base_samples,
        distribution,
        echoed,
    )


def monte_carlo_budget(
    num_inputs: int,
    base_samples: int,
    num_draws: int,
    num_params: int,
    shared: int,
    fixed_draws: bool = False,
) -> tuple[int, int, str | None]:
    """The base samples and draws of Monte Carlo Sobol indices that a wide model can afford.

    The pick-freeze design has ``(d + 2) N`` rows (``N`` for one input). Fewer base samples
    (halved, down to 64) while its shared per-point intermediates (a PCE's basis rows) would
    exceed :data:`MC_SHARED_VALUES` values; then, unless the draws were chosen
    (``eval.sensitivity_samples``), fewer draws (at least 16) while rows x draws x
    parameters exceeds :data:`MC_WORK`. Models of a few inputs are never reduced.

    Args:
        num_inputs: ``d``.
        base_samples: ``N`` asked for (``eval.sensitivity_base_samples``).
        num_draws: The parameter draws available.
        num_params: The model's parameters (about its multiply-adds per point and draw).
        shared: The model's shared per-point intermediate
            (:meth:`~polymix_cli.surrogate_models.SurrogateModel.shared_width`).
        fixed_draws: Whether the number of draws was set explicitly (then kept).

    Returns:
        The base samples, the draws, and a note saying what was reduced and why (``None``
        when nothing was).
    """

    def rows(n: int) -> int:
        return n if num_inputs == 1 else (num_inputs + 2) * n

    n = base_samples
    while n > 64 and rows(n) * shared > MC_SHARED_VALUES:
        n //= 2
    draws = num_draws
    if not fixed_draws:
        draws = min(num_draws, max(16, MC_WORK // max(1, rows(n) * num_params)))
    notes = []
    if n < base_samples:
        notes.append(
            f"{n} base samples, not eval.sensitivity_base_samples={base_samples} (its "
            f"{rows(base_samples)} design points x {shared} basis terms would not fit)"
        )
    if draws < num_draws:
        notes.append(
            f"the first {draws} of {num_draws} parameter draws ({rows(n)} design points x "
            f"{num_params} parameters each; eval.sensitivity_samples sets how many)"
        )
    note = f"{num_inputs} inputs: " + " and ".join(notes) if notes else None
    return n, draws, note


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
    """Write ``payload`` as indented JSON, NaN and infinities as ``null``.

    Args:
        path: The file (its folders are created).
        payload: The metrics.

    Returns:
        ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(payload), indent=2) + "\n")
    return path


def write_history(path: Path, rows: list[tuple], columns: tuple[str, ...]) -> Path:
    """CSV of per-epoch values.

    Args:
        path: The file.
        rows: One tuple per epoch: the epoch, then the values (written with 8
            significant digits).
        columns: The header.

    Returns:
        ``path``.
    """
    with path.open("w") as handle:
        handle.write(",".join(columns) + "\n")
        for row in rows:
            handle.write(f"{row[0]}," + ",".join(f"{v:.8g}" for v in row[1:]) + "\n")
    return path
