"""``polymix evaluate``: rebuild a model from its checkpoint and write its metrics and plots,
optionally on other data or with other evaluation settings."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from polymix_cli.reporting.loo import psis_metrics
from polymix_cli.runs.checkpoint import (
    CheckpointError,
    checkpoint_config,
    checkpoint_maps,
    load_checkpoint,
    warn_changed_files,
)
from polymix_cli.runs.outputs import write_run_outputs
from polymix_cli.runs.prepare import UI, check_output_dir, prepare
from polymix_cli.runs.replicas import model_for_evaluation
from polymix_cli.training.closed_form import closed_form_reason, fitted_report
from polymix_cli.training.loop import (
    History,
)


def _override(base: dict[str, Any], overrides: Mapping[str, Any] | None) -> None:
    for key, value in (overrides or {}).items():
        if value is not None:
            base[key] = value


def evaluate_checkpoint(
    ckpt: str | Path,
    overrides: Mapping[str, Any],
    run_dir: Path,
    ui: UI,
    parse_config: Callable[[str], dict[str, Any]],
) -> dict[str, Any]:
    """Rebuild a model from a checkpoint alone and write its metrics and plots.

    Args:
        ckpt: The checkpoint's path.
        overrides: Non-null ``data``, ``eval``, ``seed`` and ``trainer.device`` values that
            replace the checkpoint's own.
        run_dir: The output folder.
        ui: The progress display.
        parse_config: Turns the stored YAML into a dict.

    Returns:
        The metrics as written to ``metrics.json``.

    Raises:
        CheckpointError: If the checkpoint cannot be read or does not match its config.
        ConfigError: If the resulting config is invalid.
    """
    state = load_checkpoint(ckpt)
    cfg = checkpoint_config(state, ckpt, parse_config)
    for group in ("data", "eval", "trainer"):
        if not isinstance(cfg.get(group), dict):
            raise CheckpointError(f"checkpoint {ckpt} holds a config without a {group} section")
        _override(cfg[group], overrides.get(group))
    if overrides.get("seed") is not None:
        cfg["seed"] = overrides["seed"]
    early = cfg["trainer"].get("early_stopping")
    if isinstance(early, dict):  # nothing is trained here: data without a validation set do
        early["patience"] = None
    p = prepare(cfg, checkpoint_maps(state, cfg, ckpt))
    warn_changed_files(p.data, state)
    check_output_dir(run_dir, ("plots",), ("metrics.json",))
    try:
        p.model.load_state_dict(state["model"])
        model = model_for_evaluation(p.model, p.cfg.trainer, state.get("replicas"))
        hist = History.from_state(state["history"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"checkpoint {ckpt} does not match the model its config describes "
            f"({str(err).strip().splitlines()[0][:200]})"
        ) from None
    kept = (state.get("extra") or {}).get("replica_kept")
    kept = kept if isinstance(kept, int) and 0 <= kept < hist.num_replicas else None
    rows = hist.rows(kept)
    losses = hist.last(kept)
    p = dataclasses.replace(p, model=model)
    ui.groups(p.specs, p.model.num_params())
    seconds = float((state.get("extra") or {}).get("train_seconds", 0.0))
    source = {
        "path": str(ckpt),
        "epoch": state["epoch"],
        "polymix_version": state.get("polymix_version"),
    }
    extra: dict[str, Any] = {"checkpoint": source}
    if (
        state.get("replicas") is None
        and closed_form_reason(model, p.cfg.trainer, p.x_train.shape[0]) is None
    ):  # a closed-form sparse fit: its LOO error on the training rows, as train's
        extra.update(fitted_report(model, p.x_train, p.y_train, p.maps.outputs.scale))
    else:  # PSIS from the posterior draws, for a model with a likelihood
        extra.update(psis_metrics(model, p.cfg, p.x_train, p.y_train, p.maps.outputs.scale))
    metrics = write_run_outputs(p, run_dir, rows, losses, seconds, state["epoch"], extra)
    ui.summary(metrics, run_dir)
    return metrics
