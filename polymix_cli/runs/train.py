"""``polymix train``: train, checkpoint and evaluate one run; resume from a checkpoint.

During training, SIGINT/SIGTERM save ``checkpoints/last.pt`` and raise
:class:`RunInterrupted`; a non-finite loss saves the last good state, writes its metrics
and plots and raises :class:`RunDiverged`. :func:`resume_config` and
``train(..., resume=state)`` continue a run from a checkpoint, bit for bit on CPU.

With ``trainer.early_stopping.patience`` set, an :class:`~polymix_cli.training.early_stopping.EarlyStopping`
hook checks the validation objective; its state (the best epoch and model) travels in
every checkpoint, ``checkpoints/best.pt`` holds the best state beside ``last.pt``, and the
run is evaluated in the best state."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from polymix_cli.config.schema import TrainConfig
from polymix_cli.config.validation import ConfigError, config_dict
from polymix_cli.reporting.evaluation import write_history
from polymix_cli.reporting.loggers import Loggers, RunInfo, flatten_config, metric_values
from polymix_cli.reporting.loo import psis_metrics
from polymix_cli.runs.checkpoint import (
    CheckpointError,
    checkpoint_maps,
    checkpoint_payload,
    save_checkpoint,
    warn_changed_files,
)
from polymix_cli.runs.outputs import write_run_outputs
from polymix_cli.runs.prepare import UI, check_output_dir, prepare
from polymix_cli.runs.replicas import build_replicas, choose_replicas, model_for_evaluation
from polymix_cli.runs.threads import set_threads
from polymix_cli.training.early_stopping import EarlyStopping, ValidationObjective
from polymix_cli.training.interrupts import stop_on_signals
from polymix_cli.training.loop import (
    History,
    NonFiniteLoss,
    Trainer,
    build_optimizer,
    build_scheduler,
    set_rng_state,
)

log = logging.getLogger("polymix")


class RunInterrupted(Exception):
    """Training was stopped by a signal; the state so far is saved.

    The process should exit with ``exit_status = 128 + signum`` (130 SIGINT, 143 SIGTERM).

    Args:
        signum: The signal's number.
        epoch: The epochs completed.
        checkpoint: The checkpoint that holds that state (resume from it).
    """

    def __init__(self, signum: int, epoch: int, checkpoint: Path):
        super().__init__(
            f"interrupted at epoch {epoch}; resume with: polymix train resume={checkpoint}"
        )
        self.signum, self.epoch, self.checkpoint = signum, epoch, checkpoint
        self.exit_status = 128 + signum


class RunDiverged(Exception):
    """Training met a non-finite loss; the last good state is saved.

    Args:
        epoch: The epoch whose loss or gradient was not finite.
        checkpoint: The checkpoint that holds the last good state.
        good_epoch: The epoch of that state.
    """

    def __init__(self, epoch: int, checkpoint: Path, good_epoch: int, cause: str | None = None):
        hint = cause or "try a smaller optimizer.lr"
        super().__init__(
            f"non-finite loss at epoch {epoch}; last good checkpoint: {checkpoint} "
            f"(epoch {good_epoch}); {hint}"
        )
        self.epoch, self.checkpoint, self.good_epoch = epoch, checkpoint, good_epoch


def _restore(trainer: Trainer, state: Mapping[str, Any], device: torch.device, path: Any) -> None:
    """Load a checkpoint's model, optimizer, scheduler, history and RNG states into ``trainer``."""
    try:
        if state.get("optimizer") is None and "early_stopping" in (state.get("extra") or {}):
            raise TypeError(
                "it is the best state kept by early stopping (checkpoints/best.pt), which holds "
                "no optimizer state; resume from last.pt beside it"
            )
        for key in ("optimizer", "rng") + (("scheduler",) if trainer.scheduler is not None else ()):
            if not isinstance(state.get(key), dict):
                raise TypeError(f"it holds no {key} state")
        trainer.model.load_state_dict(state["model"])
        if trainer.replicas is not None:
            if not isinstance(state.get("replicas"), dict):
                raise TypeError("it holds no replicas state")
            trainer.replicas.load_state_dict(state["replicas"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        if trainer.scheduler is not None:
            trainer.scheduler.load_state_dict(state["scheduler"])
        history = History.from_state(state["history"], device)
        if len(history.epochs) != state["epoch"]:
            raise ValueError(f"its history has {len(history.epochs)} epochs, not {state['epoch']}")
        trainer.history, trainer.epoch = history, state["epoch"]
        trainer.train_seconds = float((state.get("extra") or {}).get("train_seconds", 0.0))
        set_rng_state(state["rng"], device)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path} cannot be resumed: {reason}") from None


def _early_stopping(p: Any) -> EarlyStopping | None:
    """The early-stopping hook of a prepared run, or ``None`` when it is off."""
    settings = p.cfg.trainer.early_stopping
    if settings.patience is None:
        return None
    objective = ValidationObjective.of_run(p, settings.num_samples)
    if objective is None:  # validation refuses this; a config built in code may not be validated
        raise ConfigError("trainer.early_stopping.patience needs a validation set")
    return EarlyStopping(objective, settings)


def _restore_early_stopping(
    early: EarlyStopping, state: Mapping[str, Any], device: torch.device, path: Any
) -> None:
    try:
        early.load_state(state.get("early_stopping"), device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint {path} cannot be resumed: {err}") from None


def _best_payload(payload: dict[str, Any], early: EarlyStopping) -> dict[str, Any]:
    """``checkpoints/best.pt``: ``payload`` (of ``last.pt``) with the best epoch's model and
    history; without optimizer, scheduler and RNG states (resume from ``last.pt``)."""
    epoch = early.best_epoch
    history = payload["history"]
    best = dict(payload, epoch=epoch, model=early.best_state, optimizer=None, scheduler=None)
    best["rng"] = None
    best["history"] = {
        "epoch": history["epoch"][:epoch],
        "lr": history["lr"][:epoch],
        "losses": history["losses"][:epoch].clone(),
    }
    best.pop("early_stopping", None)
    best["extra"] = dict(payload["extra"], early_stopping=early.summary(payload["epoch"]))
    return best


def _evaluated_state(
    trainer: Trainer, early: EarlyStopping | None
) -> tuple[dict[str, float], dict[str, Any] | None]:
    """Load the best state into the model when early stopping kept one; the losses of the
    state evaluated and the metrics' ``early_stopping`` block."""
    losses = trainer.history.last()
    if early is None:
        return losses, None
    if early.best_state is not None:
        trainer.model.load_state_dict(early.best_state)
        data, dist, total = trainer.history.losses[early.best_epoch - 1].tolist()
        losses = {"data": data, "distribution": dist, "total": total}
        log.info(
            "early stopping: evaluating the best state, of epoch %d (validation NLL %.6g); "
            "checkpoints/best.pt holds it",
            early.best_epoch,
            early.best_value,
        )
    else:
        log.warning(
            "early stopping: no check gave a finite validation NLL; evaluating the last state"
        )
    return losses, {"early_stopping": early.summary(trainer.epoch)}


def train(
    cfg: TrainConfig | Mapping[str, Any],
    run_dir: Path,
    config_yaml: str,
    ui: UI,
    resume: Mapping[str, Any] | None = None,
    max_threads: int | None = None,
    run_info: RunInfo | None = None,
) -> dict[str, Any]:
    """Train, checkpoint and evaluate one run, feeding the config's loggers
    (:mod:`~polymix_cli.reporting.loggers`) on the way.

    Args:
        cfg: The run's config (a :class:`TrainConfig`, or a plain dict as composed).
        run_dir: The run's output folder (checkpoints, plots, ``history.csv``,
            ``metrics.json``).
        config_yaml: The config as YAML, stored in the checkpoints.
        ui: The progress display (:class:`~polymix_cli.runs.prepare.UI`).
        resume: A loaded checkpoint whose states continue training (``cfg`` must be its
            config, see :func:`resume_config`), or ``None`` for a new run.
        max_threads: The torch threads this job may use (a parallel launcher's share of
            the cores).
        run_info: Where the run is and its sweep, for the loggers (default: ``run_dir``
            alone, named by the config's ``name``).

    Returns:
        The run's metrics (as written to ``metrics.json``).

    Raises:
        ConfigError: If the config is invalid or the output folder is not writable.
        CheckpointError: If ``resume`` cannot be resumed.
        RunInterrupted: After saving ``last.pt`` on SIGINT/SIGTERM.
        RunDiverged: On a non-finite loss.
    """
    name = cfg.name if isinstance(cfg, TrainConfig) else str(cfg.get("name"))
    loggers = _loggers(cfg, run_info or RunInfo(Path(run_dir), name))
    status = "failed"
    try:
        metrics = _train(cfg, run_dir, config_yaml, ui, resume, max_threads, loggers)
        status = "ok"
        return metrics
    except RunInterrupted:
        status = "interrupted"
        raise
    finally:
        if loggers:
            final = Path(run_dir) / "metrics.json"  # also that of a diverged run, when written
            try:
                values = metric_values(json.loads(final.read_text())) if final.exists() else {}
            except (OSError, ValueError):
                values = {}
            loggers.finish(values, status)


def _loggers(cfg: TrainConfig | Mapping[str, Any], info: RunInfo) -> Loggers:
    """The loggers of the config's ``logger`` section (none if the config is invalid:
    training then reports it)."""
    if isinstance(cfg, TrainConfig):
        return Loggers.build(cfg.logger, info)
    from polymix_cli.config.validation import parse_train_config

    try:
        return Loggers.build(parse_train_config(dict(cfg)).logger, info)
    except ConfigError:
        return Loggers([])


def _train(
    cfg: TrainConfig | Mapping[str, Any],
    run_dir: Path,
    config_yaml: str,
    ui: UI,
    resume: Mapping[str, Any] | None,
    max_threads: int | None,
    loggers: Loggers,
) -> dict[str, Any]:
    """:func:`train`'s body, its arguments and errors as there; ``loggers`` are fed on
    the way (the caller finishes them)."""
    maps = None
    if resume is not None:  # continue in the domain the checkpoint's model was trained in
        cfg = config_dict(cfg) if isinstance(cfg, TrainConfig) else copy.deepcopy(dict(cfg))
        maps = checkpoint_maps(resume, cfg, cfg["resume"])
    p = prepare(cfg, maps)
    replicas = build_replicas(p)  # None without replicas; draws their initial states
    if resume is not None:
        warn_changed_files(p.data, resume)
    check_output_dir(run_dir, ("checkpoints", "plots"), ("history.csv", "metrics.json"))
    loggers.start(flatten_config(config_dict(p.cfg)), config_yaml)  # in the background
    settings = t = p.cfg.trainer
    threads = set_threads(t.num_threads, p, max_threads)
    trained = p.model if replicas is None else replicas
    optimizer = build_optimizer(p.cfg.optimizer, trained.parameters())
    trainer = Trainer(p.model, p.x_train, p.y_train, settings, optimizer, replicas=replicas)
    trainer.scheduler = build_scheduler(
        p.cfg.scheduler, optimizer, t.epochs * trainer.steps_per_epoch
    )
    early = _early_stopping(p)
    if resume is not None:
        # after building the model, which drew from the RNG: the RNG is the checkpoint's again
        _restore(trainer, resume, p.device, p.cfg.resume)
        if early is not None:
            _restore_early_stopping(early, resume, p.device, p.cfg.resume)
            trainer.stop_requested = early.stopped  # a run that stopped early stays stopped
    ui.groups(p.specs, p.model.num_params())
    start = f" at epoch {trainer.epoch} of {settings.epochs}" if resume is not None else ""
    log.info(
        "%s %s%s: %d parameters in %d groups on %s",
        "Resuming" if resume is not None else "Training",
        p.cfg.name,
        start,
        p.model.num_params(),
        len(p.specs),
        p.device,
    )
    log.info(
        "torch threads: %d; %d step(s) per epoch; gradients: %s; allocator: %s",
        threads,
        trainer.steps_per_epoch,
        trainer.gradient_path,
        os.environ.get("POLYMIX_MALLOC", "system"),
    )
    ckpt_dir = run_dir / "checkpoints"

    def payload(tr: Trainer, kept: int | None = None) -> dict[str, Any]:
        out = checkpoint_payload(p, tr, config_yaml, kept)
        if early is not None:
            out["early_stopping"] = early.state()
        return out

    def log_line(tr: Trainer) -> None:
        if tr.epoch % t.log_every == 0 or tr.epoch == settings.epochs:
            last = tr.history.last()
            log.info(
                f"Epoch {tr.epoch:5d} | learning rate = {tr.current_lr():.6f} | "
                f"data loss = {last['data']:.4f} | distribution loss = {last['distribution']:.4f} | "
                f"total loss = {last['total']:.4f}"
            )

    def periodic_checkpoint(tr: Trainer) -> None:
        every = t.checkpoint_every
        if every and tr.epoch % every == 0:
            save_checkpoint(ckpt_dir / f"epoch_{tr.epoch}.pt", payload(tr))

    def stop(signum: int) -> None:
        trainer.stop_requested = True

    # early stopping first: the log line and the checkpoints of an epoch see its check
    hooks = [*([early] if early is not None else []), log_line, periodic_checkpoint]
    if loggers:
        hooks.append(loggers.hook(t.log_every, settings.epochs))
    progress = ui.training(trainer)
    if progress is not None:
        hooks.append(progress)
    fault: NonFiniteLoss | None = None
    # Signals only stop the loop; the state is saved below, still under the handlers, so
    # that a signal during the final save cannot leave a run without its last.pt.
    with stop_on_signals(stop) as received:
        try:
            trainer.fit(hooks)
        except NonFiniteLoss as err:  # the trainer kept the last good state
            fault = err
        finally:
            ui.finished()
        choice = None
        if replicas is not None and trainer.history.losses:
            choice = choose_replicas(p, trainer)
            log.info(
                "replicas: kept %s (%s of %d by %s)",
                "their ensemble" if choice.selection == "ensemble" else f"replica {choice.kept}",
                choice.selection,
                replicas.num_replicas,
                choice.criterion,
            )
        kept = choice.kept if choice is not None else None
        last_payload = payload(trainer, kept)
        last = save_checkpoint(ckpt_dir / "last.pt", last_payload)
        if early is not None and early.best_state is not None:
            save_checkpoint(ckpt_dir / "best.pt", _best_payload(last_payload, early))
        rows = trainer.history.rows(kept)
        write_history(run_dir / "history.csv", rows, trainer.history.columns())
    outputs = p
    if choice is not None:
        model = model_for_evaluation(p.model, t, replicas.state_dict())
        outputs = dataclasses.replace(p, model=model)

    def evaluated_state() -> tuple[dict[str, float], dict[str, Any] | None]:
        losses, extra = _evaluated_state(trainer, early)
        if choice is None:
            return losses, extra
        return trainer.history.last(kept), {**(extra or {}), "replicas": choice.to_json()}

    if fault is not None:
        log.error(
            "non-finite loss at epoch %d; kept the state of epoch %d in %s",
            fault.epoch,
            trainer.epoch,
            last,
        )
        try:
            losses, extra = evaluated_state()
            write_run_outputs(
                outputs,
                run_dir,
                rows,
                losses,
                trainer.train_seconds,
                trainer.epoch,
                {**(extra or {}), **_loo_metrics(trainer, outputs)},
                gradients=trainer.gradient_path,
            )
        except Exception as err:  # noqa: BLE001 - report the divergence even if the plots fail
            log.error("could not write the metrics and plots of epoch %d: %s", trainer.epoch, err)
        cause = _first_step_cause(trainer, p.cfg) if trainer.epoch == 0 else None
        raise RunDiverged(fault.epoch, last, trainer.epoch, cause)
    if received:
        log.warning("interrupted at epoch %d; saved %s", trainer.epoch, last)
        raise RunInterrupted(received[0], trainer.epoch, last)
    if early is not None and early.stopped:
        log.info(
            "early stopping at epoch %d: the validation NLL has not improved by more than %g "
            "for %d epochs",
            early.stopped_epoch,
            early.settings.min_delta,
            early.settings.patience,
        )
    losses, extra = evaluated_state()
    metrics = write_run_outputs(
        outputs,
        run_dir,
        rows,
        losses,
        trainer.train_seconds,
        trainer.epoch,
        {**(extra or {}), **_loo_metrics(trainer, outputs)},
        gradients=trainer.gradient_path,
    )
    ui.summary(metrics, run_dir)
    return metrics


def _first_step_cause(trainer: Trainer, cfg: TrainConfig) -> str:
    """What was not finite before any update (so not the learning rate), and the options
    that feed it: the data term, the distribution term (KL), their weighted sum, or the
    gradients."""
    data_options = (
        "the data's outputs (data.noise_std; data.output_scaling=standardize for large outputs)"
    )
    if cfg.trainer.loss == "gaussian_nll":
        data_options += ", trainer.noise.init_std"
    init = "layout.default.options / layout.rules[*].options (e.g. init_log_std, init_scale)"
    try:
        with torch.no_grad():
            data, dist, total = (float(v) for v in trainer.losses())
    except Exception:  # noqa: BLE001 - the generic advice then
        return "no update had happened yet: check the data and the layout's initial values"
    if not math.isfinite(data):
        return (
            f"no update had happened yet: the data term was {data} (fed by {data_options} and "
            f"the initial parameters: {init})"
        )
    if not math.isfinite(dist):
        return (
            f"no update had happened yet: the distribution term (KL to the prior) was {dist} "
            f"(fed by the priors and initial values: layout.*.prior, {init})"
        )
    if not math.isfinite(total):
        return (
            f"no update had happened yet: data {data:.6g} + trainer.weight_factor="
            f"{cfg.trainer.kl_weight():g} x distribution {dist:.6g} overflows"
        )
    return (
        f"no update had happened yet: the losses were finite (data {data:.6g}, distribution "
        f"{dist:.6g}) but a gradient was not; check {data_options} and {init}"
    )


def _loo_metrics(trainer: Trainer, p: Any) -> dict[str, Any]:
    """The leave-one-out error: exact, with the fit's figures, for a closed-form sparse PCE
    fit (see :mod:`polymix_cli.training.closed_form`); PSIS from the posterior draws for
    other models with a likelihood (:mod:`polymix_cli.reporting.loo`); else nothing."""
    fit = trainer.closed_form
    if fit is not None:
        return fit.report(p.maps.outputs.scale)
    return psis_metrics(p.model, p.cfg, p.x_train, p.y_train, p.maps.outputs.scale)


# Options that may be set on the command line when resuming: they change where and how a
# run reports, never its numbers (trainer.device: only CPU runs are reproducible bit for bit).
# "logger" stands for the group and every option in it.
RESUME_FREE = (
    "name",
    "trainer.progress",
    "trainer.log_every",
    "trainer.checkpoint_every",
    "trainer.device",
    "logger",
)


def _lookup(cfg: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = cfg
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return False, None
        node = node[key]
    return True, node


def resume_config(
    stored: Mapping[str, Any], requested: Mapping[str, Any], overridden: Iterable[str], epoch: int
) -> dict[str, Any]:
    """The config of a run resumed from a checkpoint.

    The checkpoint's own config, with the options of :data:`RESUME_FREE` that the user
    set on the command line. ``trainer.epochs`` may be raised when the scheduler is
    ``none``.

    Args:
        stored: The checkpoint's config.
        requested: The config composed from the command line (its ``resume`` is kept).
        overridden: The dotted keys the user set on the command line.
        epoch: The checkpoint's epoch.

    Returns:
        The config to resume with, a plain dict.

    Raises:
        ConfigError: For any other override, since it would silently not apply.
    """
    cfg = copy.deepcopy(dict(stored))
    cfg["resume"] = requested["resume"]
    for key in overridden:
        if key == "resume":
            continue
        has_new, new = _lookup(requested, key)
        has_old, old = _lookup(stored, key)
        if key in RESUME_FREE or key.startswith("logger.") or (has_new and has_old and new == old):
            if has_new:
                _set(cfg, key, new)
            continue
        if key == "trainer.epochs" and has_new:
            scheduler = cfg["scheduler"]["name"]
            if scheduler != "none":
                raise ConfigError(
                    f"trainer.epochs={new} cannot change on resume: the {scheduler} "
                    f"scheduler spans the checkpoint's {old} epochs (only scheduler none can be extended)"
                )
            if not isinstance(new, int) or new < epoch:
                raise ConfigError(
                    f"trainer.epochs={new} must be >= the checkpoint's epoch {epoch} on resume"
                )
            _set(cfg, key, new)
            continue
        if not has_new or isinstance(new, Mapping):
            # a config group (experiment=..., model=...): refused only if what it sets differs
            changed = _changes(stored, requested, key if has_new else None, overridden)
            if not changed:
                continue
            shown = "; ".join(f"{k}: stored {o!r}, requested {n!r}" for k, o, n in changed[:3])
            more = f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""
            raise ConfigError(
                f"{key} cannot be changed on resume: it changes {shown}{more}; resume=PATH "
                f"continues the checkpoint's run with its own config"
            )
        raise ConfigError(
            f"{key} cannot be changed on resume: stored {old!r}, requested {new!r}; resume=PATH "
            f"continues the checkpoint's run with its own config; allowed overrides: "
            f"trainer.epochs (scheduler none), {', '.join(RESUME_FREE)}"
        )
    return cfg


def _leaves(cfg: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(cfg, Mapping):
        return {prefix: cfg}
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        out.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _changes(
    stored: Mapping[str, Any],
    requested: Mapping[str, Any],
    section: str | None,
    overridden: Iterable[str],
) -> list[tuple[str, Any, Any]]:
    """The options (dotted, stored value, requested value) that ``requested`` would change,
    within ``section`` (``None``: the whole config), ignoring ``resume``, the options free
    on resume and the other keys the user set (checked on their own). Both sides are
    compared with every option present (the schema's defaults filled in)."""
    from polymix_cli.config.validation import parse_train_config

    def full(cfg: Mapping[str, Any]) -> dict[str, Any]:
        cfg = {k: v for k, v in cfg.items() if k != "resume"}
        try:
            return _leaves(config_dict(parse_train_config(cfg)))
        except ConfigError:
            return _leaves(cfg)

    old, new = full(stored), full(requested)
    skip = {*RESUME_FREE, *(k for k in overridden if k != section)}
    changed = []
    for key in sorted(set(old) | set(new)):
        if section is not None and not key.startswith(f"{section}."):
            continue
        if any(key == s or key.startswith(f"{s}.") for s in skip):
            continue
        if old.get(key) != new.get(key):
            changed.append((key, old.get(key), new.get(key)))
    return changed


def _set(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = cfg
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
