"""Orchestration of a training or evaluation run from a plain, resolved config dict.

Hydra-free: the CLI resolves the config and the run dir, then calls :func:`train` or
:func:`evaluate_checkpoint`; tests and sweeps can call them directly. Terminal output
goes through the ``ui`` object (see :mod:`polymix_cli.cli.console`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from . import StochasticModel, __version__
from .build import build_model
from .checkpoint import load_checkpoint, save_checkpoint
from .config import ConfigError, validate_train_config
from .data import Dataset, make_dataset
from .layout import GroupSpec
from .report import evaluate, write_history, write_metrics, write_plots
from .training import History, Trainer, TrainSettings, build_optimizer, build_scheduler

__all__ = ["Prepared", "TrainingDiverged", "evaluate_checkpoint", "prepare", "resolve_device", "train"]

log = logging.getLogger("polymix")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite (a numerical blow-up)."""


class UI(Protocol):
    def groups(self, specs: list[GroupSpec], num_params: int) -> None: ...
    def training(self, trainer: Trainer) -> Callable[[Trainer], None] | None: ...
    def finished(self) -> None: ...
    def summary(self, metrics: Mapping[str, Any], run_dir: Path) -> None: ...


def resolve_device(name: str | None) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (cuda when available)."""
    name = name or "cpu"
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA device is available; use cpu or auto")
    return torch.device(name)


@dataclass
class Prepared:
    """Everything a run needs, built and validated before any file is written."""

    cfg: dict[str, Any]
    data: Dataset
    model: StochasticModel
    specs: list[GroupSpec]
    device: torch.device


def prepare(cfg: Mapping[str, Any]) -> Prepared:
    """Validate ``cfg``, draw the data and build the model (initialised from ``cfg['seed']``).

    Raises :class:`ConfigError` naming the offending option."""
    cfg = copy.deepcopy(dict(cfg))
    validate_train_config(cfg)
    device = resolve_device(cfg["trainer"]["device"])
    d = cfg["data"]
    try:
        data = make_dataset(d["generator"], d["num_train"], d["num_test"], d["noise_std"],
                            d["bounds"], d["seed"], d["test_seed"])
    except ValueError as err:
        raise ConfigError(str(err)) from None
    torch.manual_seed(cfg["seed"])
    try:
        model, specs = build_model(cfg["model"], cfg["layout"], data.num_inputs, data.num_outputs)
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err)) from None
    return Prepared(cfg, data.to(device), model.to(device), specs, device)


def group_table(specs: list[GroupSpec]) -> list[dict[str, Any]]:
    return [{"name": s.name, "kind": s.kind, "size": s.size, "block": s.block, "rule": s.rule} for s in specs]


def _history_state(history: History) -> dict[str, Any]:
    losses = torch.stack(history.losses).cpu() if history.losses else torch.zeros(0, 3)
    return {"epoch": list(history.epochs), "lr": list(history.lr), "losses": losses}


def _checkpoint_payload(p: Prepared, trainer: Trainer, config_yaml: str) -> dict[str, Any]:
    return {
        "epoch": trainer.epoch,
        "config": config_yaml,
        "model": p.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
        "rng": {"torch": torch.get_rng_state()},
        "history": _history_state(trainer.history),
        "extra": {"train_seconds": trainer.train_seconds, "groups": group_table(p.specs)},
    }


def _metrics_payload(p: Prepared, losses: Mapping[str, float], train_seconds: float, epochs: int,
                     splits: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "polymix_version": __version__,
        "num_params": p.model.num_params(),
        "groups": group_table(p.specs),
        "losses": dict(losses),
        "timing": {
            "train_seconds": train_seconds,
            "epochs_per_second": epochs / train_seconds if train_seconds > 0 else None,
        },
        **splits,
    }


def _write_evidence(p: Prepared, run_dir: Path, history_rows: list[tuple], losses: Mapping[str, float],
                    train_seconds: float, epochs: int) -> dict[str, Any]:
    ev = evaluate(p.model, p.data, p.cfg["eval"], p.cfg["seed"])
    payload = _metrics_payload(p, losses, train_seconds, epochs, ev.splits)
    write_metrics(run_dir / "metrics.json", payload)
    write_plots(run_dir / "plots", ev, p.data, history_rows)
    return payload


def train(cfg: Mapping[str, Any], run_dir: Path, config_yaml: str, ui: UI) -> dict[str, Any]:
    """Train, checkpoint and evaluate one run; return its metrics."""
    p = prepare(cfg)
    t = p.cfg["trainer"]
    ui.groups(p.specs, p.model.num_params())
    log.info("Training %s: %d parameters in %d groups on %s", p.cfg.get("name", "run"),
             p.model.num_params(), len(p.specs), p.device)
    optimizer = build_optimizer(p.cfg["optimizer"], p.model.parameters())
    scheduler = build_scheduler(p.cfg["scheduler"], optimizer, t["epochs"])
    settings = TrainSettings(t["epochs"], t["num_samples"], t["weight_factor"], t["loss"])
    trainer = Trainer(p.model, p.data.x_train, p.data.y_train, settings, optimizer, scheduler)
    ckpt_dir = run_dir / "checkpoints"

    def log_line(tr: Trainer) -> None:
        if tr.epoch % t["log_every"] == 0 or tr.epoch == settings.epochs:
            last = tr.history.last()
            log.info(f"Epoch {tr.epoch:5d} | learning rate = {tr.current_lr():.6f} | "
                     f"data loss = {last['data']:.4f} | distribution loss = {last['distribution']:.4f} | "
                     f"total loss = {last['total']:.4f}")

    def periodic_checkpoint(tr: Trainer) -> None:
        every = t["checkpoint_every"]
        if every and tr.epoch % every == 0:
            save_checkpoint(ckpt_dir / f"epoch_{tr.epoch}.pt", _checkpoint_payload(p, tr, config_yaml))

    def check_finite(tr: Trainer) -> None:
        total = tr.history.losses[-1][2]
        if not torch.isfinite(total):
            raise TrainingDiverged(f"training diverged at epoch {tr.epoch}: the total loss is "
                                   f"{float(total)} (try a lower optimizer.lr)")

    hooks = [check_finite, log_line, periodic_checkpoint]
    progress = ui.training(trainer)
    if progress is not None:
        hooks.append(progress)
    try:
        trainer.fit(hooks)
    finally:
        ui.finished()
    save_checkpoint(ckpt_dir / "last.pt", _checkpoint_payload(p, trainer, config_yaml))
    rows = trainer.history.rows()
    write_history(run_dir / "history.csv", rows, History.COLUMNS)
    metrics = _write_evidence(p, run_dir, rows, trainer.history.last(), trainer.train_seconds, trainer.epoch)
    ui.summary(metrics, run_dir)
    return metrics


def _override(base: dict[str, Any], overrides: Mapping[str, Any] | None) -> None:
    for key, value in (overrides or {}).items():
        if value is not None:
            base[key] = value


def evaluate_checkpoint(ckpt: str | Path, overrides: Mapping[str, Any], run_dir: Path, ui: UI,
                        parse_config: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """Rebuild a model from a checkpoint alone and write its metrics and plots.

    ``overrides`` holds non-null ``data``, ``eval``, ``seed`` and ``trainer.device`` values
    that replace the checkpoint's own; ``parse_config`` turns the stored YAML into a dict."""
    state = load_checkpoint(ckpt)
    cfg = parse_config(state["config"])
    _override(cfg["data"], overrides.get("data"))
    _override(cfg["eval"], overrides.get("eval"))
    _override(cfg["trainer"], overrides.get("trainer"))
    if overrides.get("seed") is not None:
        cfg["seed"] = overrides["seed"]
    p = prepare(cfg)
    p.model.load_state_dict(state["model"])
    hist = state["history"]
    rows = [(e, lr, *v) for e, lr, v in zip(hist["epoch"], hist["lr"], hist["losses"].tolist())]
    last = rows[-1] if rows else (0, 0.0, float("nan"), float("nan"), float("nan"))
    losses = {"data": last[2], "distribution": last[3], "total": last[4]}
    ui.groups(p.specs, p.model.num_params())
    metrics = _write_evidence(p, run_dir, rows, losses, state["extra"]["train_seconds"], state["epoch"])
    metrics["checkpoint"] = {"path": str(ckpt), "epoch": state["epoch"], "polymix_version": state["polymix_version"]}
    write_metrics(run_dir / "metrics.json", metrics)
    ui.summary(metrics, run_dir)
    return metrics


