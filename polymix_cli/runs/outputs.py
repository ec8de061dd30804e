"""The files a finished (or diverged) run leaves in its run dir: ``metrics.json``,
``history.csv`` and the plots."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from statistics import NormalDist
from typing import Any

from polymix_cli import __version__
from polymix_cli.reporting.evaluation import evaluate_model, model_posterior, write_metrics
from polymix_cli.reporting.run_plots import write_plots
from polymix_cli.runs.prepare import Prepared, data_columns, group_table
from polymix_cli.sparsity import model_active_terms
from polymix_cli.surrogate_models import PolynomialChaosExpansion


def metrics_payload(
    p: Prepared,
    losses: Mapping[str, float],
    train_seconds: float,
    epochs: int,
    splits: Mapping[str, Any],
    noise_std: list[float] | None = None,
) -> dict[str, Any]:
    """The contents of a run's ``metrics.json``.

    Args:
        p: The prepared run.
        losses: The final losses by name.
        train_seconds: The training time.
        epochs: The epochs trained (for ``epochs_per_second``).
        splits: The metrics of each data split.
        noise_std: The learned noise standard deviation per output, or ``None``.

    Returns:
        The payload: version, number of parameters, groups, losses, noise, timing and the
        splits' metrics.
    """
    return {
        "polymix_version": __version__,
        "num_params": p.model.num_params(),
        "groups": group_table(p.specs),
        "losses": dict(losses),
        "noise_std": noise_std,
        "timing": {
            "train_seconds": train_seconds,
            "epochs_per_second": epochs / train_seconds if train_seconds > 0 else None,
        },
        **splits,
    }


def posterior_json(p: Prepared) -> dict[str, Any]:
    """``metrics.json``'s ``posterior``: the posterior of every group (and of every
    parameter, for models of at most ``eval.posterior_params`` parameters), the learned
    noise in the user's units, and the output names."""
    summary = model_posterior(
        p.model, p.maps, p.cfg.eval.posterior_level, p.cfg.eval.num_samples, p.cfg.seed
    )
    names = list(data_columns(p.data).get("outputs") or [])
    return {**summary.to_json(p.cfg.eval.posterior_params), "outputs": names}


def write_run_outputs(
    p: Prepared,
    run_dir: Path,
    history_rows: list[tuple],
    losses: Mapping[str, float],
    train_seconds: float,
    epochs: int,
    extra: Mapping[str, Any] | None = None,
    gradients: str | None = None,
) -> dict[str, Any]:
    """Evaluate a run's model, then write ``metrics.json`` and the plots.

    Args:
        p: The prepared run, with its trained model.
        run_dir: The run's output folder.
        history_rows: The training history's rows (:meth:`History.rows`), for the plots.
        losses: The final losses by name.
        train_seconds: The training time.
        epochs: The epochs trained.
        extra: Keys added to the metrics.
        gradients: The trainer's gradient path, recorded under ``timing``.

    Returns:
        The metrics as written.
    """
    ev = evaluate_model(p.model, p.data, p.cfg.eval, p.cfg.seed, p.maps)
    payload = metrics_payload(p, losses, train_seconds, epochs, ev.splits, ev.noise_std)
    if gradients is not None:
        payload["timing"]["gradients"] = gradients
    if ev.sensitivity is not None:
        payload["sensitivity"] = ev.sensitivity.to_json()
    payload["posterior"] = posterior_json(p)
    if isinstance(p.model.surrogate_model, PolynomialChaosExpansion):
        # active: the central eval.posterior_level interval excludes 0, as in the posterior
        # section and `polymix inspect` (|mean| >= 1.645 std at the default 0.9)
        out, level = p.maps.outputs, p.cfg.eval.posterior_level
        threshold = NormalDist().inv_cdf((1 + level) / 2)
        payload["active_terms"] = model_active_terms(p.model, threshold, out.scale, out.shift)
    payload.update(extra or {})
    write_metrics(run_dir / "metrics.json", payload)
    write_plots(run_dir / "plots", ev, p.data, history_rows)
    return payload
