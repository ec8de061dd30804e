"""``polymix design`` and ``polymix suggest``: where to simulate, first and next
(Hydra-free; the CLI resolves the configs and calls :func:`design_file` and
:func:`suggest_file`).

- A **design** is ``n`` points spread over a box: a Latin hypercube (each input's range
  cut into ``n`` equal slices, one point in each, the slices paired at random) or the
  first ``n`` points of a scrambled Sobol' sequence.
- A **suggestion** scores quasi-random candidate points in the box by the surrogate's
  *epistemic* uncertainty: its output over parameter draws (the learned noise left out:
  more runs reduce the spread, not the noise). The draws are first conditioned on the
  training inputs (:func:`condition_draws`, with the noise the training objective
  implies, :func:`effective_noise_var`): a mean-field variational posterior keeps each
  parameter's spread but drops the correlations the data put between them, so its own
  spread does not see where the training inputs are (for a PCE it is largest at the ends
  of the box whatever the design); the conditioned draws do. (For a model linear in its
  parameters, the conditioned precision is the exact posterior's plus the diagonal of the
  data's information once more: smaller than the model's spread, shaped by the design;
  only the comparison between candidates matters.) The score is the reduction of the variance summed over the box that
  an observation at the candidate would bring (``suggest.acquisition=integrated_variance``,
  the default), or the standard deviation itself, averaged over the outputs in the
  model's units (``epistemic_std``). A batch is picked greedily: the best candidate, then the
  draws are conditioned on an observation there as if it had been made (a *kriging
  believer* update: for Gaussian draws the variances after it do not depend on the value
  observed), then the next best, and so on; every pick also keeps a **minimum
  distance** from the training inputs and the earlier picks (in the box scaled to
  [0, 1] per input). All candidates are drawn through the model at once (in chunks of
  points) and scored as tensors; the loop runs over the picks.

Both write the input columns only, in the user's names and units, as a CSV or NPZ file
that ``data=file`` reads back once the outputs are added (written to a temporary file
and renamed into place: never half-written).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from polymix_cli.config.schema import DesignConfig, SuggestOptions
from polymix_cli.config.validation import ConfigError
from polymix_cli.reporting.metrics import chunk_points, point_elements
from polymix_cli.runs.checkpoint import Trained

__all__ = [
    "Suggestion",
    "auto_min_distance",
    "condition_draws",
    "design_file",
    "design_points",
    "effective_noise_var",
    "pick_batch",
    "suggest_file",
    "suggest_points",
    "surrogate_draws",
    "write_table",
]

log = logging.getLogger("polymix")


def design_points(n: int, bounds: np.ndarray, method: str, seed: int) -> np.ndarray:
    """``n`` space-filling points in a box.

    Args:
        n: The number of points (>= 1).
        bounds: ``[low, high]`` per input, shape ``(d, 2)``.
        method: ``lhs`` (a Latin hypercube: every input's range cut into ``n`` equal
            slices with one point in each, at a uniform place in it) or ``sobol`` (the first
            ``n`` points of a scrambled Sobol' sequence).
        seed: The seed of the permutations and offsets, or of the scrambling.

    Returns:
        The points, shape ``(n, d)``, float64, inside the box.
    """
    bounds = np.asarray(bounds, dtype=np.float64).reshape(-1, 2)
    d = bounds.shape[0]
    rng = torch.Generator().manual_seed(seed)
    if method == "lhs":
        slices = torch.rand(d, n, generator=rng, dtype=torch.float64).argsort(dim=1).T  # (n, d)
        u = (slices + torch.rand(n, d, generator=rng, dtype=torch.float64)) / n
    elif method == "sobol":
        scramble = int(torch.randint(0, 2**62, (1,), generator=rng).item())
        u = torch.quasirandom.SobolEngine(d, scramble=True, seed=scramble).draw(
            n, dtype=torch.float64
        )
    else:
        raise ValueError(f"method must be lhs or sobol, got {method!r}")
    low, high = bounds[:, 0], bounds[:, 1]
    return low + (high - low) * u.numpy()


def write_table(path: str | Path, names: Sequence[str], values: np.ndarray) -> Path:
    """Write columns as a CSV (header row, full precision) or NPZ (one array per column)
    file, by the extension; through a temporary file renamed into place.

    Args:
        path: The file.
        names: The column names.
        values: The values, shape ``(rows, len(names))``.

    Returns:
        The path written.

    Raises:
        ConfigError: If the folder does not exist or is not writable, or ``path`` is a
            folder.
    """
    out = Path(path).expanduser()
    if out.is_dir():
        raise ConfigError(f"output={path} is a folder; name the file to write")
    if not out.parent.is_dir():
        raise ConfigError(f"output={path}: the folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK):
        raise ConfigError(f"output={path}: the folder {out.parent} is not writable")
    npz = out.suffix.lower() == ".npz"
    handle, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=out.suffix, dir=out.parent)
    try:
        with os.fdopen(handle, "wb") as f:
            if npz:
                np.savez(f, **{n: values[:, j] for j, n in enumerate(names)})
            else:
                np.savetxt(
                    f, values, delimiter=",", header=",".join(names), comments="", fmt="%.17g"
                )
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def design_file(config: DesignConfig) -> tuple[Path, np.ndarray, list[str]]:
    """Write the design a ``polymix design`` config describes.

    Args:
        config: The validated config.

    Returns:
        The file written, the points ``(n, d)`` and the column names.
    """
    bounds = np.asarray(config.bounds, dtype=np.float64)
    names = list(config.inputs or (f"x{i + 1}" for i in range(bounds.shape[0])))
    points = design_points(config.n, bounds, config.method, config.seed)
    return write_table(config.output, names, points), points, names


# ----------------------------------------------------------------------------- suggest


def auto_min_distance(num_train: int, n: int, d: int) -> float:
    """Half the spacing of ``num_train + n`` points spread evenly over the unit box:
    ``0.5 (num_train + n)^(-1/d)``."""
    return 0.5 * (num_train + n) ** (-1.0 / d)


def pick_batch(
    draws: torch.Tensor,
    candidates: torch.Tensor,
    existing: torch.Tensor,
    n: int,
    radius: float,
    acquisition: str = "epistemic_std",
    noise_var: torch.Tensor | None = None,
    num_reference: int = 256,
    observed: torch.Tensor | None = None,
) -> tuple[torch.Tensor, float]:
    """Greedy batch selection: acquisition, believer update and a minimum distance.

    With ``observed`` (the draws at the training inputs), the draws are first conditioned
    on the training inputs (:func:`condition_draws`): a mean-field posterior keeps each
    parameter's spread but not the correlations the data put between them, so its spread
    does not see where the data are (a gap between training inputs looks no less certain
    than a point next to one); the conditioned draws do. Each pick is the best-scoring candidate at least ``radius`` from every existing
    point and every earlier pick (when none is left that far, the radius is halved; a
    candidate at an existing point is never picked). Then the draws are conditioned on an
    observation there, as if it had been made (a *kriging believer* update: for Gaussian
    draws the new variances do not depend on the value observed; here the ensemble
    square-root update of the draws, exact for a linear-Gaussian model), so that the
    next pick goes where the model would still be unsure.

    Args:
        draws: The surrogate's draws at the candidates, shape ``(S, M, O)``.
        candidates: The candidates in the unit box, shape ``(M, d)``.
        existing: The points to keep away from (training inputs) in the unit box, ``(N, d)``.
        n: The number of picks.
        radius: The minimum distance.
        acquisition: ``epistemic_std`` (the std over draws, averaged over outputs) or
            ``integrated_variance`` (the reduction of the variance summed over
            ``num_reference`` of the candidates, a quasi-random cover of the box).
        noise_var: The observation noise variance per output ``(O,)`` (``None``: 0).
        num_reference: See ``acquisition``.
        observed: The draws at the training inputs, shape ``(S, N, O)`` (the same draws
            as ``draws``), or ``None``.

    Returns:
        The indices of the picks ``(n,)`` in order, and the radius in the end.

    Raises:
        ValueError: If fewer than ``n`` candidates are apart from the existing points.
    """
    f = draws.to(torch.float64)
    f = f - f.mean(dim=0)
    dof = max(1, f.shape[0] - 1)
    noise = torch.zeros(f.shape[2], dtype=f.dtype) if noise_var is None else noise_var.double()
    if observed is not None and observed.shape[1] > 0:
        f = condition_draws(f, observed, noise)
    tiny = torch.finfo(f.dtype).tiny
    inf = torch.full((candidates.shape[0],), float("inf"), dtype=candidates.dtype)
    nearest = torch.cdist(candidates, existing).min(dim=1).values if existing.numel() else inf
    reference = torch.arange(min(num_reference, f.shape[1]))
    picks = []
    for _ in range(n):
        var = f.square().sum(dim=0) / dof  # (M, O)
        if acquisition == "integrated_variance":
            cov = torch.einsum("smo,sro->mro", f, f[:, reference]) / dof  # (M, R, O)
            scores = (cov.square().sum(dim=1) / (var + noise + tiny)).sum(dim=1)
        else:
            scores = var.sqrt().mean(dim=1)
        allowed = nearest >= radius
        while not allowed.any() and radius > 1e-12:
            radius /= 2
            allowed = nearest >= radius
        allowed &= nearest > 0  # never at an existing point
        if not allowed.any():
            raise ValueError(
                f"only {len(picks)} candidate(s) lie apart from the training inputs; "
                f"ask for fewer points"
            )
        best = int(torch.where(allowed, scores, torch.tensor(-float("inf"))).argmax())
        picks.append(best)
        # believer: condition the draws on an observation at the pick (per output)
        at = f[:, best]  # (S, O)
        v = var[best]  # (O,)
        gain = torch.einsum("so,smo->mo", at, f) / dof / (v + noise + tiny)  # (M, O)
        alpha = 1 / (1 + torch.sqrt(noise / (v + noise + tiny)))
        f = f - alpha * at.unsqueeze(1) * gain.unsqueeze(0)
        nearest = torch.minimum(nearest, (candidates - candidates[best]).norm(dim=1))
    return torch.tensor(picks), radius


def condition_draws(
    draws: torch.Tensor, observed: torch.Tensor, noise_var: torch.Tensor
) -> torch.Tensor:
    """Condition an ensemble of draws on observations at other points (values unneeded).

    The ensemble transform (square root) update of all observations at once: the
    anomalies ``A`` (draws less their mean) become ``T A`` with
    ``T = (I + Y Y^T / ((S - 1) noise_var))^(-1/2)`` in the space of the ``S`` draws,
    ``Y`` the anomalies at the observed points. Their covariance is then
    ``C_mm - C_mn (C_nn + noise_var I)^(-1) C_nm`` (exact for a linear-Gaussian model),
    which does not depend on the values observed. Per output, from the thin singular
    value decomposition ``Y = U diag(s) V^T`` (``k = min(S, N)`` columns):
    ``T = I + U (diag(1 + s^2 / ((S - 1) noise_var))^(-1/2) - I) U^T``, so the cost is
    ``O(S N k + S M k)``, not that of an ``S x S`` eigendecomposition.

    Args:
        draws: The draws at the points to update, shape ``(S, M, O)``.
        observed: The same draws at the observed points, shape ``(S, N, O)``.
        noise_var: The observation noise variance per output, shape ``(O,)`` (> 0, or
            the update is ill-conditioned when ``N`` reaches the ensemble's rank).

    Returns:
        The updated anomalies, shape ``(S, M, O)``, float64, mean 0 over the draws.
    """
    a = draws.double() - draws.double().mean(dim=0)
    y = observed.double() - observed.double().mean(dim=0)
    dof = max(1, a.shape[0] - 1)
    tiny = torch.finfo(torch.float64).tiny
    y = y * (dof * (noise_var.double() + tiny)).rsqrt()
    u, s, _ = torch.linalg.svd(y.permute(2, 0, 1), full_matrices=False)  # (O, S, k), (O, k)
    shrink = (1 + s.square()).rsqrt() - 1  # (O, k)
    along = torch.einsum("osk,smo->okm", u, a) * shrink.unsqueeze(2)  # (O, k, M)
    return a + torch.einsum("osk,okm->smo", u, along)


def effective_noise_var(trained: Trained) -> torch.Tensor:
    """The observation noise variance (per output, model units) that the training
    objective implies, the one a new run would be weighed with.

    The objective is ``data + w KL`` (``w = trainer.weight_factor``), the posterior of a
    likelihood raised to ``1 / w``: for ``trainer.loss=gaussian_nll`` a Gaussian of
    variance ``w noise^2`` (the learned noise); for ``mse_sum`` (the sum of squared
    errors, ``-log`` of a Gaussian of variance 1/2) of variance ``w / 2``.
    """
    weight = trained.cfg.trainer.kl_weight()
    noise = getattr(trained.model, "noise", None)
    if trained.cfg.trainer.loss == "gaussian_nll" and noise is not None:
        return weight * noise.std.detach().double().cpu().square()
    return torch.full((len(trained.output_names),), weight / 2, dtype=torch.float64)


@dataclass(frozen=True)
class Suggestion:
    """What :func:`suggest_points` found.

    Args:
        points: The suggested inputs in the user's units, shape ``(n, d)``, float64.
        spread: Their epistemic spread (model units, averaged over outputs), ``(n,)``.
        max_spread: The largest spread over all candidates.
        min_distance: The minimum distance asked for (unit box).
        used: The one the picks kept (smaller when the box had too few candidates).
        seed: The seed of the draws and candidates.
    """

    points: np.ndarray
    spread: np.ndarray
    max_spread: float
    min_distance: float
    used: float
    seed: int


@torch.no_grad()
def surrogate_draws(trained: Trained, params: torch.Tensor, x_model: torch.Tensor) -> torch.Tensor:
    """The surrogate's output at points for each parameter draw, without the noise.

    Args:
        trained: The model.
        params: Parameter draws, shape ``(S, P)``.
        x_model: Points in the model's domain, shape ``(M, d)``.

    Returns:
        The draws, shape ``(S, M, O)``, in the model's output units (evaluated in chunks
        of points).
    """
    model = trained.model
    chunk = chunk_points(
        point_elements(model.surrogate_model, 2 * params.shape[0]), x_model.shape[0]
    )
    parts = [
        model.predict(x_model[s : s + chunk].to(params.dtype), params)
        for s in range(0, x_model.shape[0], chunk)
    ]
    return torch.cat(parts, dim=1)


def suggest_points(
    trained: Trained,
    train_x: torch.Tensor,
    n: int,
    options: SuggestOptions,
    seed: int,
) -> Suggestion:
    """The ``n`` next inputs where ``trained`` is least sure, spread out.

    Args:
        trained: The trained model.
        train_x: Its training inputs in the user's units, shape ``(N, d)``.
        n: The number of points.
        options: The ``suggest`` section.
        seed: The seed of the parameter draws and of the candidates' scrambling.

    Returns:
        The suggestion.

    Raises:
        ConfigError: If ``suggest.bounds`` do not fit the model (one pair per input,
            inside the training bounds) or ``n`` exceeds ``suggest.candidates``.
    """
    names = list(trained.input_names)
    d = len(names)
    trained_bounds = trained.maps.bounds.double()
    if options.bounds is None:
        bounds = trained_bounds
    else:
        bounds = torch.as_tensor(options.bounds, dtype=torch.float64).reshape(-1, 2)
        if bounds.shape[0] != d:
            raise ConfigError(
                f"suggest.bounds must give [low, high] for each of the model's {d} input(s) "
                f"({', '.join(names)}), got {len(options.bounds)}"
            )
        outside = (bounds[:, 0] < trained_bounds[:, 0]) | (bounds[:, 1] > trained_bounds[:, 1])
        if outside.any():
            j = int(torch.nonzero(outside)[0])
            raise ConfigError(
                f"suggest.bounds {options.bounds[j]} of input {names[j]!r} reach outside its "
                f"training bounds [{float(trained_bounds[j, 0]):g}, {float(trained_bounds[j, 1]):g}] "
                f"(the model extrapolates there); search within them"
            )
    if n > options.candidates:
        raise ConfigError(
            f"n={n} exceeds suggest.candidates={options.candidates}; raise suggest.candidates"
        )
    model, device = trained.model, trained.device
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    params = model.sample_parameters(options.num_samples, generator=generator)
    low, width = bounds[:, 0], bounds[:, 1] - bounds[:, 0]
    unit = torch.from_numpy(
        design_points(options.candidates, np.c_[np.zeros(d), np.ones(d)], "sobol", seed)
    )
    x_user = low + width * unit
    x_model = trained.maps.inputs.forward(torch.cat([x_user, train_x.double().cpu()]).to(device))
    both = surrogate_draws(trained, params, x_model).double().cpu()
    draws, observed = both[:, : x_user.shape[0]], both[:, x_user.shape[0] :]
    spread = draws.std(dim=0).mean(dim=1)  # (M,)
    existing = (train_x.double().cpu() - low) / width
    radius = (
        auto_min_distance(train_x.shape[0], n, d)
        if options.min_distance is None
        else float(options.min_distance)
    )
    noise = effective_noise_var(trained)
    try:
        picks, used = pick_batch(
            draws, unit, existing, n, radius, options.acquisition, noise, observed=observed
        )
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return Suggestion(
        x_user[picks].numpy(),
        spread[picks].numpy(),
        float(spread.max()),
        radius,
        used,
        seed,
    )


def suggest_file(
    trained: Trained, train_x: torch.Tensor, n: int, output: str, options: SuggestOptions, seed: int
) -> tuple[Path, Suggestion]:
    """Suggest ``n`` points (see :func:`suggest_points`) and write their input columns.

    Returns:
        The file written and the suggestion.
    """
    found = suggest_points(trained, train_x, n, options, seed)
    if found.used < found.min_distance:
        log.info(
            "polymix: the box holds too few candidates %.3g apart; the picks keep %.3g apart",
            found.min_distance,
            found.used,
        )
    return write_table(output, trained.input_names, found.points), found
