"""Early validation of a resolved run config (a plain dict), with messages that name the
option, the value and what is allowed. Runs before any training or file writing."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from polymix_cli.config.build import NOISE_PRIOR_KINDS
from polymix_cli.config.safety import find_callable_key
from polymix_cli.data.files import FILE_GENERATOR
from polymix_cli.data.scaling import INPUT_SCALINGS, OUTPUT_SCALINGS
from polymix_cli.data.synthetic import GENERATORS
from polymix_cli.reporting.sweep import METRICS
from polymix_cli.training.loop import GRADIENTS, LOSSES, OPTIMIZERS, SCHEDULERS

__all__ = [
    "DATA_DEFAULTS",
    "DEVICES",
    "EVAL_DEFAULTS",
    "FILE_DATA_KEYS",
    "PROGRESS",
    "SENSITIVITY",
    "ConfigError",
    "refuse_callables",
    "validate_predict_config",
    "validate_train_config",
]

DEVICES = ("cpu", "cuda", "auto")
PROGRESS = ("auto", "bar", "log")
# Data options added after the first release: configs stored in older checkpoints lack them.
DATA_DEFAULTS = {"input_scaling": "auto", "output_scaling": "none"}
# Evaluation options added after the first release (likewise absent from older checkpoints).
EVAL_DEFAULTS = {
    "sensitivity": "auto",
    "sensitivity_samples": None,
    "sensitivity_base_samples": 2048,
}
SENSITIVITY = ("auto", "pce", "monte_carlo", "off")


class ConfigError(ValueError):
    """An invalid option in a config or on the command line."""


def _get(cfg: Mapping[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            raise ConfigError(f"missing option {dotted}")
        node = node[key]
    return node


def check_int(cfg: Mapping[str, Any], option: str, minimum: int) -> int:
    value = _get(cfg, option)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{option} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{option} must be >= {minimum}, got {value}")
    return value


def check_float(
    cfg: Mapping[str, Any],
    option: str,
    low: float,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = True,
) -> float:
    value = _get(cfg, option)
    lo_s, hi_s = ("(" if low_open else "["), (")" if high_open else "]")
    allowed = f"a number in {lo_s}{low}, {'inf' if high is None else high}{hi_s}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{option} must be {allowed}, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{option} must be {allowed}, got {value}")
    bad_low = value <= low if low_open else value < low
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high:
        raise ConfigError(f"{option} must be {allowed}, got {value}")
    return float(value)


def check_choice(cfg: Mapping[str, Any], option: str, allowed: tuple[str, ...]) -> str:
    value = _get(cfg, option)
    if value not in allowed:
        raise ConfigError(f"{option} must be one of {list(allowed)}, got {value!r}")
    return value


def refuse_callables(cfg: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` naming the first key that would name a callable
    (``_target_`` and friends) anywhere in ``cfg``; see :mod:`polymix_cli.config.safety`."""
    found = find_callable_key(cfg)
    if found is not None:
        where, value = found
        raise ConfigError(
            f"{where}={value!r} is refused: polymix never imports or calls a callable named in a "
            f"config; components are chosen by name from polymix's own registry (e.g. model.kind)"
        )


SECTIONS = ("data", "model", "layout", "optimizer", "scheduler", "trainer", "eval")


def check_structure(cfg: Mapping[str, Any]) -> None:
    """Sections are mappings and lists are lists, so that no option is read from a number."""
    for section in SECTIONS:
        value = _get(cfg, section)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{section} must be a mapping of options, got {value!r}")
    model, layout = cfg["model"], cfg["layout"]
    for option, node, key, kind in (
        ("model.gate", model, "gate", Mapping),
        ("model.expert", model, "expert", Mapping),
        ("model.experts", model, "experts", list),
        ("layout.default", layout, "default", Mapping),
        ("layout.rules", layout, "rules", list),
    ):
        value = node.get(key)
        if value is not None and not isinstance(value, kind):
            what = "a mapping of options" if kind is Mapping else "a list"
            raise ConfigError(f"{option} must be {what}, got {value!r}")
    for option in ("model.experts", "layout.rules"):
        for i, item in enumerate(_get(cfg, option) or []) if _has(cfg, option) else ():
            if not isinstance(item, Mapping):
                raise ConfigError(f"{option}[{i}] must be a mapping of options, got {item!r}")
    resume = cfg.get("resume")
    if resume is not None and (not isinstance(resume, str) or not resume):
        raise ConfigError(
            f"resume must be null or the path of a polymix checkpoint, got {resume!r}"
        )


def _has(cfg: Mapping[str, Any], dotted: str) -> bool:
    try:
        _get(cfg, dotted)
    except ConfigError:
        return False
    return True


# The options of data=file (configs/data/file.yaml).
FILE_DATA_KEYS = (
    "generator",
    "path",
    "inputs",
    "outputs",
    "test_path",
    "test_fraction",
    "seed",
    "bounds",
    "input_scaling",
    "output_scaling",
)
FILE_ONLY_KEYS = ("path", "inputs", "outputs", "test_path", "test_fraction")


def check_path(cfg: Mapping[str, Any], option: str, what: str, required: bool = True) -> str | None:
    """A non-empty path string (``???``, Hydra's missing value, is not one); ``None`` when
    not ``required``."""
    value = _get(cfg, option)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or value == "???":
        raise ConfigError(f"{option} must be the path of {what}, got {value!r}")
    return value


def check_names(cfg: Mapping[str, Any], option: str, nullable: bool = False) -> list[str] | None:
    value = _get(cfg, option)
    if value is None and nullable:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        null = " or null" if nullable else ""
        raise ConfigError(
            f"{option} must be a non-empty list of column names{null}, e.g. {option}=[a,b], "
            f"got {value!r}"
        )
    dupes = sorted({v for v in value if value.count(v) > 1})
    if dupes:
        raise ConfigError(f"{option} names {', '.join(map(repr, dupes))} more than once")
    return value


def check_bounds(cfg: Mapping[str, Any], option: str, nullable: bool = False) -> None:
    value = _get(cfg, option)
    if value is None and nullable:
        return
    pair_ok = lambda p: (
        isinstance(p, list)
        and len(p) == 2
        and all(
            not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) for v in p
        )
    )
    if not isinstance(value, list) or not value or not all(pair_ok(p) for p in value):
        null = " (or null: the min and max of the data)" if nullable else ""
        raise ConfigError(
            f"{option} must be a list of [low, high] pairs, one per input{null}, "
            f"e.g. {option}=[[0,10],[100,200]], got {value!r}"
        )
    for i, (low, high) in enumerate(value):
        if not low < high:
            raise ConfigError(
                f"{option} must have low < high for every input, got {value[i]} for input {i + 1}"
            )


def validate_file_data(cfg: Mapping[str, Any]) -> None:
    """data=file: the file, its columns, the test set and the bounds (the file itself is
    read later, by :func:`polymix_cli.data.files.load_file_dataset`)."""
    for key in cfg["data"]:
        if key not in FILE_DATA_KEYS:
            raise ConfigError(
                f"data.{key} does not apply to data from a file (data.generator=file); its options: "
                f"{', '.join(FILE_DATA_KEYS[1:])}"
            )
    check_path(
        cfg, "data.path", "a CSV file (with a header row) or an NPZ file, e.g. data.path=data.csv"
    )
    check_names(cfg, "data.outputs")
    check_names(cfg, "data.inputs", nullable=True)
    check_path(
        cfg,
        "data.test_path",
        "a CSV or NPZ test file with the same columns, or null",
        required=False,
    )
    check_float(cfg, "data.test_fraction", 0.0, 1.0, low_open=True)
    check_int(cfg, "data.seed", 0)
    check_bounds(cfg, "data.bounds", nullable=True)
    check_choice(cfg, "data.input_scaling", INPUT_SCALINGS)
    check_choice(cfg, "data.output_scaling", OUTPUT_SCALINGS)


def validate_data(cfg: Mapping[str, Any]) -> None:
    check_choice(cfg, "data.generator", tuple(sorted(GENERATORS)) + (FILE_GENERATOR,))
    if cfg["data"]["generator"] == FILE_GENERATOR:
        validate_file_data(cfg)
        return
    for key in FILE_ONLY_KEYS:
        if cfg["data"].get(key) is not None:
            raise ConfigError(
                f"data.{key} applies only to data from a file (data=file); these data come "
                f"from the generator {cfg['data']['generator']!r}"
            )
    check_int(cfg, "data.num_train", 1)
    check_int(cfg, "data.num_test", 1)
    check_float(cfg, "data.noise_std", 0.0)
    check_int(cfg, "data.seed", 0)
    check_int(cfg, "data.test_seed", 0)
    check_choice(cfg, "data.input_scaling", INPUT_SCALINGS)
    check_choice(cfg, "data.output_scaling", OUTPUT_SCALINGS)


NOISE_OPTIONS = ("init_std", "prior", "prior_scale", "prior_log_std")


def validate_noise(cfg: Mapping[str, Any]) -> None:
    noise = _get(cfg, "trainer.noise")
    if not isinstance(noise, Mapping):
        raise ConfigError(f"trainer.noise must be a mapping of options, got {noise!r}")
    unknown = sorted(set(noise) - set(NOISE_OPTIONS))
    if unknown:
        raise ConfigError(
            f"unknown option trainer.noise.{unknown[0]}; allowed keys in trainer.noise: "
            f"{', '.join(NOISE_OPTIONS)}"
        )
    check_float(cfg, "trainer.noise.init_std", 0.0, low_open=True)
    check_choice(cfg, "trainer.noise.prior", NOISE_PRIOR_KINDS)
    check_float(cfg, "trainer.noise.prior_scale", 0.0, low_open=True)
    check_float(cfg, "trainer.noise.prior_log_std", 0.0, low_open=True)


def validate_eval(cfg: Mapping[str, Any]) -> None:
    check_int(cfg, "eval.num_samples", 1)
    check_float(cfg, "eval.band", 0.0, 1.0, low_open=True)
    levels = _get(cfg, "eval.levels")
    if not isinstance(levels, list) or not levels:
        raise ConfigError(
            f"eval.levels must be a non-empty list of numbers in (0, 1), got {levels!r}"
        )
    for i, _ in enumerate(levels):
        check_float(
            {"eval": {"levels": {str(i): levels[i]}}}, f"eval.levels.{i}", 0.0, 1.0, low_open=True
        )
    check_int(cfg, "eval.grid_points", 2)
    method = check_choice(cfg, "eval.sensitivity", SENSITIVITY)
    kind = cfg["model"].get("kind") if isinstance(cfg.get("model"), Mapping) else None
    if method == "pce" and kind != "pce":
        raise ConfigError(
            f"eval.sensitivity=pce needs model.kind=pce (the closed form reads a PCE's "
            f"coefficients), got model.kind={kind!r}; use auto or monte_carlo"
        )
    samples = _get(cfg, "eval.sensitivity_samples")
    num_samples = _get(cfg, "eval.num_samples")
    if samples is not None and (
        isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= num_samples
    ):
        raise ConfigError(
            f"eval.sensitivity_samples must be null or an integer in [1, eval.num_samples="
            f"{num_samples}], got {samples!r}"
        )
    check_int(cfg, "eval.sensitivity_base_samples", 2)


def validate_train_config(cfg: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for the first invalid option of a train config."""
    refuse_callables(cfg)
    check_structure(cfg)
    check_int(cfg, "seed", 0)
    validate_data(cfg)
    check_choice(cfg, "optimizer.name", OPTIMIZERS)
    check_float(cfg, "optimizer.lr", 0.0, low_open=True)
    check_float(cfg, "optimizer.weight_decay", 0.0)
    if "momentum" in cfg["optimizer"]:
        check_float(cfg, "optimizer.momentum", 0.0, 1.0)
    name = check_choice(cfg, "scheduler.name", SCHEDULERS)
    if name == "onecycle":
        check_float(cfg, "scheduler.max_lr_factor", 0.0, low_open=True)
        check_float(cfg, "scheduler.pct_start", 0.0, 1.0, low_open=True)
    if name == "cosine":
        check_float(cfg, "scheduler.min_lr_factor", 0.0)
    check_int(cfg, "trainer.epochs", 1)
    check_int(cfg, "trainer.num_samples", 1)
    check_float(cfg, "trainer.weight_factor", 0.0)
    loss = check_choice(cfg, "trainer.loss", LOSSES)
    # the noise options matter only to gaussian_nll; they are checked whenever present so
    # that a typo is caught early, and may be absent from configs written before they existed
    if loss == "gaussian_nll" or "noise" in cfg["trainer"]:
        validate_noise(cfg)
    check_int(cfg, "trainer.log_every", 1)
    check_int(cfg, "trainer.checkpoint_every", 0)
    if _get(cfg, "trainer.batch_size") is not None:
        check_int(cfg, "trainer.batch_size", 1)
    if _get(cfg, "trainer.num_threads") is not None:
        check_int(cfg, "trainer.num_threads", 1)
    if not isinstance(_get(cfg, "trainer.compile"), bool):
        raise ConfigError(
            f"trainer.compile must be true or false, got {_get(cfg, 'trainer.compile')!r}"
        )
    if "gradients" in cfg["trainer"]:  # absent from configs written before it existed
        check_choice(cfg, "trainer.gradients", GRADIENTS)
    check_choice(cfg, "trainer.device", DEVICES)
    check_choice(cfg, "trainer.progress", PROGRESS)
    validate_eval(cfg)
    if "sweep" in cfg:
        check_choice(cfg, "sweep.sort_by", tuple(METRICS))
        check_choice(cfg, "sweep.objective", tuple(METRICS))


PREDICT_FORMATS = (".csv", ".npz")


def validate_predict_config(cfg: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for the first invalid option of a ``polymix predict`` config."""
    refuse_callables(cfg)
    check_path(
        cfg, "ckpt", "a polymix checkpoint, e.g. ckpt=outputs/<name>/<run>/checkpoints/last.pt"
    )
    for option, what in (
        ("input", "a CSV or NPZ file of input rows, e.g. input=new.csv"),
        ("output", "the CSV or NPZ file to write, e.g. output=predictions.csv"),
    ):
        path = check_path(cfg, option, what)
        suffix = "." + path.rpartition(".")[2].lower() if "." in path else ""
        if suffix not in PREDICT_FORMATS:
            raise ConfigError(
                f"{option}={path} must end in .csv or .npz (the format is chosen by the extension)"
            )
    if _get(cfg, "seed") is not None:
        check_int(cfg, "seed", 0)
    check_int(cfg, "predict.num_samples", 2)
    quantiles = _get(cfg, "predict.quantiles")
    if not isinstance(quantiles, list):
        raise ConfigError(
            f"predict.quantiles must be a list of probabilities in (0, 1) (may be empty), "
            f"got {quantiles!r}"
        )
    for i, _ in enumerate(quantiles):
        check_float(
            {"predict": {"quantiles": {str(i): quantiles[i]}}},
            f"predict.quantiles.{i}",
            0.0,
            1.0,
            low_open=True,
        )
    if len({float(q) for q in quantiles}) != len(quantiles):
        raise ConfigError(f"predict.quantiles lists a probability more than once: {quantiles}")
    for option in ("predict.allow_extrapolation", "predict.save_draws", "predict.include_noise"):
        if not isinstance(_get(cfg, option), bool):
            raise ConfigError(f"{option} must be true or false, got {_get(cfg, option)!r}")
    if _get(cfg, "predict.save_draws") and not str(cfg["output"]).lower().endswith(".npz"):
        raise ConfigError(
            f"predict.save_draws=true needs an .npz output (the draws are an array per output), "
            f"got output={cfg['output']}"
        )
    if _get(cfg, "trainer.device") is not None:
        check_choice(cfg, "trainer.device", DEVICES)
