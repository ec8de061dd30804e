"""Orchestration of a training or evaluation run from a plain, resolved config dict.

Hydra-free: the CLI resolves the config and the run dir, then calls :func:`train` or
:func:`evaluate_checkpoint`; tests and sweeps can call them directly. Terminal output
goes through the ``ui`` object (see :mod:`polymix_cli.cli.console`).

Everything is validated (config, model, output dir) before training starts. During
training, SIGINT/SIGTERM save ``checkpoints/last.pt`` and raise :class:`RunInterrupted`;
a non-finite loss saves the last good state, writes its metrics and plots and raises
:class:`RunDiverged`. :func:`resume_config` and ``train(..., resume=state)`` continue a
run from a checkpoint, bit for bit on CPU.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from . import StochasticModel, __version__
from .build import build_model
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import DATA_DEFAULTS, EVAL_DEFAULTS, ConfigError, validate_train_config
from .data import Dataset, dataset_from_config
from .interrupts import stop_on_signals
from .layout import GroupSpec
from .report import evaluate, write_history, write_metrics, write_plots
from .safety import find_callable_key
from .scaling import DataMaps, fit_maps, input_domain
from .training import (
    History,
    NonFiniteLoss,
    Trainer,
    TrainSettings,
    build_optimizer,
    build_scheduler,
    get_rng_state,
    set_rng_state,
)

__all__ = [
    "RESUME_FREE",
    "Prepared",
    "RunDiverged",
    "RunInterrupted",
    "Trained",
    "check_output_dir",
    "checkpoint_config",
    "data_columns",
    "evaluate_checkpoint",
    "load_trained",
    "prepare",
    "resolve_device",
    "resume_config",
    "train",
]

log = logging.getLogger("polymix")


class UI(Protocol):
    def groups(self, specs: list[GroupSpec], num_params: int) -> None: ...
    def training(self, trainer: Trainer) -> Callable[[Trainer], None] | None: ...
    def finished(self) -> None: ...
    def summary(self, metrics: Mapping[str, Any], run_dir: Path) -> None: ...


class RunInterrupted(Exception):
    """Training was stopped by signal ``signum`` after ``epoch`` epochs; ``checkpoint`` holds
    that state. The process should exit with ``128 + signum`` (130 SIGINT, 143 SIGTERM)."""

    def __init__(self, signum: int, epoch: int, checkpoint: Path):
        super().__init__(
            f"interrupted at epoch {epoch}; resume with: polymix train resume={checkpoint}"
        )
        self.signum, self.epoch, self.checkpoint = signum, epoch, checkpoint
        self.exit_status = 128 + signum


class RunDiverged(Exception):
    """A non-finite loss at ``epoch``; ``checkpoint`` holds the last good state (``good_epoch``)."""

    def __init__(self, epoch: int, checkpoint: Path, good_epoch: int):
        super().__init__(
            f"non-finite loss at epoch {epoch}; last good checkpoint: {checkpoint} "
            f"(epoch {good_epoch}); try a smaller optimizer.lr"
        )
        self.epoch, self.checkpoint, self.good_epoch = epoch, checkpoint, good_epoch


def resolve_device(name: str | None) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (cuda when available)."""
    name = name or "cpu"
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA device is available; use cpu or auto")
    return torch.device(name)


def set_threads(requested: int | None, p: Prepared, max_threads: int | None = None) -> int:
    """Set torch's intra-op threads: ``requested``, or with ``None`` one thread for small
    steps (where threading costs more than it saves) and otherwise ``max_threads`` (a
    parallel launcher's share of the cores) or torch's default."""
    if requested is None:
        t = p.cfg["trainer"]
        points = min(t["batch_size"] or p.data.x_train.shape[0], p.data.x_train.shape[0])
        work = points * t["num_samples"] * p.model.num_params()  # ~ multiply-adds per step
        requested = 1 if work < _SMALL_STEP else (max_threads or _DEFAULT_THREADS)
    torch.set_num_threads(requested)
    return torch.get_num_threads()


_SMALL_STEP = 1 << 22  # points x draws x parameters below which one thread is faster
_DEFAULT_THREADS = torch.get_num_threads()


@dataclass
class Prepared:
    """Everything a run needs, built and validated before any file is written."""

    cfg: dict[str, Any]
    data: Dataset
    model: StochasticModel
    specs: list[GroupSpec]
    device: torch.device
    maps: DataMaps  # user units <-> the model's domain
    x_train: torch.Tensor  # (N, D) training inputs in the model's domain
    y_train: torch.Tensor  # (N, O) training outputs in the model's domain


def with_defaults(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``cfg`` with the data and eval options added after the first release
    (configs stored in older checkpoints lack them) set to their defaults where missing."""
    cfg = copy.deepcopy(dict(cfg))
    if isinstance(cfg.get("data"), dict):
        cfg["data"] = {**DATA_DEFAULTS, **cfg["data"]}
    if isinstance(cfg.get("eval"), dict):
        cfg["eval"] = {**EVAL_DEFAULTS, **cfg["eval"]}
    return cfg


def prepare(cfg: Mapping[str, Any], maps: DataMaps | None = None) -> Prepared:
    """Validate ``cfg``, draw the data and build the model (initialised from ``cfg['seed']``).
    ``maps``: the data maps of a trained model (default: fitted to the training data).

    Raises :class:`ConfigError` naming the offending option."""
    cfg = with_defaults(cfg)
    validate_train_config(cfg)
    device = resolve_device(cfg["trainer"]["device"])
    d = cfg["data"]
    try:
        data = dataset_from_config(d)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    torch.manual_seed(cfg["seed"])
    try:
        model, specs = build_model(
            cfg["model"], cfg["layout"], data.num_inputs, data.num_outputs, cfg["trainer"]
        )
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err)) from None
    if maps is None:
        maps = fit_maps(
            data.x_train,
            data.y_train,
            data.bounds,
            input_domain(cfg["model"]),
            d["input_scaling"],
            d["output_scaling"],
        )
    elif maps.inputs.dim != data.num_inputs or maps.outputs.dim != data.num_outputs:
        raise ConfigError(
            f"the data have {data.num_inputs} input(s) and {data.num_outputs} output(s), but the "
            f"model was trained on {maps.inputs.dim} and {maps.outputs.dim}"
        )
    else:  # the bounds the model was trained within (plots and checks use them)
        data.bounds = maps.bounds.to(data.bounds.dtype)
    _warn_outside(data)
    data = data.to(device)
    # mapped in the data's dtype (float64 for data files: large offsets keep their digits),
    # then trained in the default dtype
    dtype = torch.get_default_dtype()
    x_train = maps.inputs.forward(data.x_train).to(dtype)
    y_train = maps.outputs.forward(data.y_train).to(dtype)
    return Prepared(cfg, data, model.to(device), specs, device, maps, x_train, y_train)


def _warn_outside(data: Dataset) -> None:
    """Log a warning when test inputs lie outside the bounds (the model extrapolates there)."""
    bounds = data.bounds.to(data.x_test.dtype)
    outside = ((data.x_test < bounds[:, 0]) | (data.x_test > bounds[:, 1])).any(1)
    count = int(outside.sum())
    if count:
        log.warning(
            "polymix: warning: %d of the %d test rows lie outside the input bounds of the training "
            "data; the model extrapolates there",
            count,
            data.x_test.shape[0],
        )


def check_output_dir(run_dir: Path, subdirs: Iterable[str] = (), files: Iterable[str] = ()) -> None:
    """Raise :class:`ConfigError` unless ``run_dir`` and its ``subdirs`` exist (or can be
    created) and are writable, and none of ``files`` is a folder. Run before training, so
    that a run never fails at its end for want of a place to write its results."""
    folder = run_dir
    try:
        for folder in (run_dir, *(run_dir / d for d in subdirs)):
            if folder.exists() and not folder.is_dir():
                raise NotADirectoryError(20, "exists and is not a folder", str(folder))
            folder.mkdir(parents=True, exist_ok=True)
            handle, probe = tempfile.mkstemp(prefix=".polymix-write-test-", dir=folder)
            os.close(handle)
            os.unlink(probe)
        for name in files:
            if (run_dir / name).is_dir():
                raise IsADirectoryError(21, "is a folder", str(run_dir / name))
    except OSError as err:
        where = err.filename or folder
        raise ConfigError(
            f"output directory {run_dir} is not writable: {where}: {err.strerror or err}; "
            f"choose another with hydra.run.dir=PATH"
        ) from None


def group_table(specs: list[GroupSpec]) -> list[dict[str, Any]]:
    return [
        {"name": s.name, "kind": s.kind, "size": s.size, "block": s.block, "rule": s.rule}
        for s in specs
    ]


def _checkpoint_payload(p: Prepared, trainer: Trainer, config_yaml: str) -> dict[str, Any]:
    return {
        "epoch": trainer.epoch,
        "config": config_yaml,
        "model": p.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
        "rng": get_rng_state(p.device),
        "history": trainer.history.state(),
        "extra": {
            "train_seconds": trainer.train_seconds,
            "groups": group_table(p.specs),
            "data_maps": p.maps.state(),
            "columns": data_columns(p.data),
            **({"data_file": p.data.source} if p.data.source is not None else {}),
        },
    }


def data_columns(data: Dataset) -> dict[str, list[str]]:
    """The names of the inputs and outputs (stored in checkpoints for ``polymix predict``)."""
    return {"inputs": list(data.input_names), "outputs": list(data.output_names)}


def _metrics_payload(
    p: Prepared,
    losses: Mapping[str, float],
    train_seconds: float,
    epochs: int,
    splits: Mapping[str, Any],
    noise_std: list[float] | None = None,
) -> dict[str, Any]:
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


def _write_evidence(
    p: Prepared,
    run_dir: Path,
    history_rows: list[tuple],
    losses: Mapping[str, float],
    train_seconds: float,
    epochs: int,
    extra: Mapping[str, Any] | None = None,
    gradients: str | None = None,
) -> dict[str, Any]:
    """Evaluate, then write metrics.json (with ``extra`` keys; ``gradients``: the trainer's
    gradient path, recorded under ``timing``) and the plots."""
    ev = evaluate(p.model, p.data, p.cfg["eval"], p.cfg["seed"], p.maps)
    payload = _metrics_payload(p, losses, train_seconds, epochs, ev.splits, ev.noise_std)
    if gradients is not None:
        payload["timing"]["gradients"] = gradients
    if ev.sensitivity is not None:
        payload["sensitivity"] = ev.sensitivity.to_json()
    payload.update(extra or {})
    write_metrics(run_dir / "metrics.json", payload)
    write_plots(run_dir / "plots", ev, p.data, history_rows)
    return payload


def _restore(trainer: Trainer, state: Mapping[str, Any], device: torch.device, path: Any) -> None:
    """Load a checkpoint's model, optimizer, scheduler, history and RNG states into ``trainer``."""
    try:
        for key in ("optimizer", "rng") + (("scheduler",) if trainer.scheduler is not None else ()):
            if not isinstance(state.get(key), dict):
                raise TypeError(f"it holds no {key} state")
        trainer.model.load_state_dict(state["model"])
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


def train(
    cfg: Mapping[str, Any],
    run_dir: Path,
    config_yaml: str,
    ui: UI,
    resume: Mapping[str, Any] | None = None,
    max_threads: int | None = None,
) -> dict[str, Any]:
    """Train, checkpoint and evaluate one run; return its metrics. ``max_threads``: the
    torch threads this job may use (a parallel launcher's share of the cores).

    ``resume`` is a loaded checkpoint whose states continue training (``cfg`` must be its
    config, see :func:`resume_config`). Raises :class:`RunInterrupted` after saving
    ``last.pt`` on SIGINT/SIGTERM, and :class:`RunDiverged` on a non-finite loss."""
    maps = None
    if resume is not None:  # continue in the domain the checkpoint's model was trained in
        cfg = copy.deepcopy(dict(cfg))
        maps = checkpoint_maps(resume, cfg, cfg.get("resume"))
    p = prepare(cfg, maps)
    if resume is not None:
        _warn_changed_files(p.data, resume)
    check_output_dir(run_dir, ("checkpoints", "plots"), ("history.csv", "metrics.json"))
    t = p.cfg["trainer"]
    settings = TrainSettings(
        t["epochs"],
        t["num_samples"],
        t["weight_factor"],
        t["loss"],
        t["batch_size"],
        t["compile"],
        t.get("gradients", "auto"),
    )
    threads = set_threads(t["num_threads"], p, max_threads)
    optimizer = build_optimizer(p.cfg["optimizer"], p.model.parameters())
    trainer = Trainer(p.model, p.x_train, p.y_train, settings, optimizer)
    trainer.scheduler = build_scheduler(
        p.cfg["scheduler"], optimizer, t["epochs"] * trainer.steps_per_epoch
    )
    if resume is not None:
        # after building the model, which drew from the RNG: the RNG is the checkpoint's again
        _restore(trainer, resume, p.device, p.cfg.get("resume"))
    ui.groups(p.specs, p.model.num_params())
    start = f" at epoch {trainer.epoch} of {settings.epochs}" if resume is not None else ""
    log.info(
        "%s %s%s: %d parameters in %d groups on %s",
        "Resuming" if resume is not None else "Training",
        p.cfg.get("name", "run"),
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

    def log_line(tr: Trainer) -> None:
        if tr.epoch % t["log_every"] == 0 or tr.epoch == settings.epochs:
            last = tr.history.last()
            log.info(
                f"Epoch {tr.epoch:5d} | learning rate = {tr.current_lr():.6f} | "
                f"data loss = {last['data']:.4f} | distribution loss = {last['distribution']:.4f} | "
                f"total loss = {last['total']:.4f}"
            )

    def periodic_checkpoint(tr: Trainer) -> None:
        every = t["checkpoint_every"]
        if every and tr.epoch % every == 0:
            save_checkpoint(
                ckpt_dir / f"epoch_{tr.epoch}.pt", _checkpoint_payload(p, tr, config_yaml)
            )

    def stop(signum: int) -> None:
        trainer.stop_requested = True

    hooks = [log_line, periodic_checkpoint]
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
        last = save_checkpoint(ckpt_dir / "last.pt", _checkpoint_payload(p, trainer, config_yaml))
        rows = trainer.history.rows()
        write_history(run_dir / "history.csv", rows, History.COLUMNS)
    if fault is not None:
        log.error(
            "non-finite loss at epoch %d; kept the state of epoch %d in %s",
            fault.epoch,
            trainer.epoch,
            last,
        )
        try:
            _write_evidence(
                p,
                run_dir,
                rows,
                trainer.history.last(),
                trainer.train_seconds,
                trainer.epoch,
                gradients=trainer.gradient_path,
            )
        except Exception as err:  # noqa: BLE001 - report the divergence even if the plots fail
            log.error("could not write the metrics and plots of epoch %d: %s", trainer.epoch, err)
        raise RunDiverged(fault.epoch, last, trainer.epoch)
    if received:
        log.warning("interrupted at epoch %d; saved %s", trainer.epoch, last)
        raise RunInterrupted(received[0], trainer.epoch, last)
    metrics = _write_evidence(
        p,
        run_dir,
        rows,
        trainer.history.last(),
        trainer.train_seconds,
        trainer.epoch,
        gradients=trainer.gradient_path,
    )
    ui.summary(metrics, run_dir)
    return metrics


def checkpoint_config(
    state: Mapping[str, Any], path: str | Path, parse_config: Callable[[str], dict[str, Any]]
) -> dict[str, Any]:
    """The config stored in a loaded checkpoint, as a dict; refuses a config that names a
    callable (``_target_`` and friends) before anything is built from it."""
    try:
        cfg = parse_config(state["config"])
    except Exception as err:  # noqa: BLE001 - any parse failure means a corrupt checkpoint
        raise CheckpointError(
            f"checkpoint {path} holds an unreadable config ({type(err).__name__})"
        ) from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"checkpoint {path} holds a config that is not a mapping")
    found = find_callable_key(cfg)
    if found is not None:
        raise CheckpointError(
            f"checkpoint {path} was refused: its config names a callable "
            f"({found[0]}={found[1]!r}); polymix builds models only from its own registry"
        )
    return cfg


# Options that may be set on the command line when resuming: they change where and how a
# run reports, never its numbers (trainer.device: only CPU runs are reproducible bit for bit).
RESUME_FREE = (
    "name",
    "trainer.progress",
    "trainer.log_every",
    "trainer.checkpoint_every",
    "trainer.device",
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
    """The config of a run resumed from a checkpoint at ``epoch``: the checkpoint's own
    (``stored``), with the options of :data:`RESUME_FREE` that the user set on the command
    line (``overridden`` keys, values from ``requested``). ``trainer.epochs`` may be raised
    when the scheduler is ``none``. Any other override raises :class:`ConfigError`, since
    it would silently not apply."""
    cfg = copy.deepcopy(dict(stored))
    cfg["resume"] = requested.get("resume")
    for key in overridden:
        if key == "resume":
            continue
        has_new, new = _lookup(requested, key)
        has_old, old = _lookup(stored, key)
        if key in RESUME_FREE or (has_new and has_old and new == old):
            if has_new:
                _set(cfg, key, new)
            continue
        if key == "trainer.epochs" and has_new:
            scheduler = cfg.get("scheduler", {}).get("name")
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
        raise ConfigError(
            f"{key} cannot be changed on resume: resume=PATH continues the checkpoint's run "
            f"with its own config; allowed overrides: trainer.epochs (scheduler none), "
            f"{', '.join(RESUME_FREE)}"
        )
    return cfg


def _set(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = cfg
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def _override(base: dict[str, Any], overrides: Mapping[str, Any] | None) -> None:
    for key, value in (overrides or {}).items():
        if value is not None:
            base[key] = value


def stored_maps(state: Mapping[str, Any], path: Any) -> DataMaps | None:
    """The data maps a checkpoint's model was trained with (``None`` in checkpoints
    written before maps were stored; see :func:`checkpoint_maps`)."""
    stored = (state.get("extra") or {}).get("data_maps")
    if stored is None:
        return None
    try:
        return DataMaps.from_state(stored)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} holds unreadable data maps ({err})") from None


def checkpoint_maps(state: Mapping[str, Any], cfg: dict[str, Any], path: Any) -> DataMaps | None:
    """The data maps of a checkpoint's model. A checkpoint written before maps were stored
    holds a model trained on raw data: then ``None``, and ``cfg``'s data scaling is set to
    ``none`` so that :func:`prepare` fits identity maps."""
    maps = stored_maps(state, path)
    if maps is None and isinstance(cfg.get("data"), dict):
        cfg["data"].update(input_scaling="none", output_scaling="none")
    return maps


@dataclass
class Trained:
    """A trained model rebuilt from its checkpoint alone (no data are read)."""

    cfg: dict[str, Any]
    model: StochasticModel
    maps: DataMaps  # user units <-> the model's domain, with the training bounds
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    device: torch.device
    epoch: int


def load_trained(
    ckpt: str | Path, parse_config: Callable[[str], dict[str, Any]], device: str | None = None
) -> Trained:
    """Load ``ckpt`` and rebuild its model on ``device`` (cpu | cuda | auto; ``None``: cpu)
    with its stored data maps and column names. Raises :class:`CheckpointError`."""
    state = load_checkpoint(ckpt)
    cfg = with_defaults(checkpoint_config(state, ckpt, parse_config))
    try:
        validate_train_config(cfg)
    except ConfigError as err:
        raise CheckpointError(f"checkpoint {ckpt} holds an invalid config ({err})") from None
    maps = stored_maps(state, ckpt)
    if maps is None:
        raise CheckpointError(
            f"checkpoint {ckpt} predates stored data maps (extra.data_maps); train the model "
            f"again to use it here"
        )
    num_inputs, num_outputs = maps.inputs.dim, maps.outputs.dim
    columns = (state.get("extra") or {}).get("columns") or {}
    inputs = tuple(columns.get("inputs") or (f"x{i + 1}" for i in range(num_inputs)))
    outputs = tuple(columns.get("outputs") or (f"y{j + 1}" for j in range(num_outputs)))
    if len(inputs) != num_inputs or len(outputs) != num_outputs:
        raise CheckpointError(
            f"checkpoint {ckpt} names {len(inputs)} input(s) and {len(outputs)} output(s), but "
            f"its data maps have {num_inputs} and {num_outputs}"
        )
    torch_device = resolve_device(device)
    try:
        model, _ = build_model(cfg["model"], cfg["layout"], num_inputs, num_outputs, cfg["trainer"])
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"checkpoint {ckpt} does not match the model its config describes "
            f"({str(err).strip().splitlines()[0][:200]})"
        ) from None
    return Trained(cfg, model.to(torch_device), maps, inputs, outputs, torch_device, state["epoch"])


def _warn_changed_files(data: Dataset, state: Mapping[str, Any]) -> None:
    """Log a warning when a data file the checkpoint was trained on has changed since."""
    trained = (state.get("extra") or {}).get("data_file")
    if not isinstance(trained, Mapping) or data.source is None:
        return
    for key in ("", "test_"):
        path, digest = data.source.get(f"{key}path"), data.source.get(f"{key}sha256")
        if (
            path is not None
            and path == trained.get(f"{key}path")
            and digest != trained.get(f"{key}sha256")
        ):
            log.warning(
                "polymix: warning: %s has changed since the model was trained (its sha256 differs); "
                "the metrics describe the file as it is now",
                path,
            )


def evaluate_checkpoint(
    ckpt: str | Path,
    overrides: Mapping[str, Any],
    run_dir: Path,
    ui: UI,
    parse_config: Callable[[str], dict[str, Any]],
) -> dict[str, Any]:
    """Rebuild a model from a checkpoint alone and write its metrics and plots.

    ``overrides`` holds non-null ``data``, ``eval``, ``seed`` and ``trainer.device`` values
    that replace the checkpoint's own; ``parse_config`` turns the stored YAML into a dict."""
    state = load_checkpoint(ckpt)
    cfg = checkpoint_config(state, ckpt, parse_config)
    for group in ("data", "eval", "trainer"):
        if not isinstance(cfg.get(group), dict):
            raise CheckpointError(f"checkpoint {ckpt} holds a config without a {group} section")
        _override(cfg[group], overrides.get(group))
    if overrides.get("seed") is not None:
        cfg["seed"] = overrides["seed"]
    p = prepare(cfg, checkpoint_maps(state, cfg, ckpt))
    _warn_changed_files(p.data, state)
    check_output_dir(run_dir, ("plots",), ("metrics.json",))
    try:
        p.model.load_state_dict(state["model"])
        hist = History.from_state(state["history"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"checkpoint {ckpt} does not match the model its config describes "
            f"({str(err).strip().splitlines()[0][:200]})"
        ) from None
    rows = hist.rows()
    losses = hist.last()
    ui.groups(p.specs, p.model.num_params())
    seconds = float((state.get("extra") or {}).get("train_seconds", 0.0))
    source = {
        "path": str(ckpt),
        "epoch": state["epoch"],
        "polymix_version": state.get("polymix_version"),
    }
    metrics = _write_evidence(
        p, run_dir, rows, losses, seconds, state["epoch"], {"checkpoint": source}
    )
    ui.summary(metrics, run_dir)
    return metrics
