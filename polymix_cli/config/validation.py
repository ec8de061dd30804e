"""Checking a config (a plain dict, as resolved from Hydra's YAML or read from a
checkpoint) against the typed schema of :mod:`polymix_cli.config.schema`, and turning it
into the schema's dataclasses.

Every bad option is reported, one message each, naming the option, the value and what is
allowed (types, choices and ranges come from the fields' metadata). An option that is
absent takes the schema's default. Runs before any training or file writing."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from polymix_cli.config.safety import find_callable_key
from polymix_cli.config.schema import MISSING, PredictConfig, TrainConfig

__all__ = [
    "ConfigError",
    "config_dict",
    "parse_predict_config",
    "parse_section",
    "parse_train_config",
    "refuse_callables",
    "validate_predict_config",
    "validate_train_config",
]

T = TypeVar("T")


class ConfigError(ValueError):
    """Invalid options in a config or on the command line.

    ``messages`` holds one line for each bad option; ``str(err)`` joins them with newlines.

    Args:
        messages: One message, or a list of them (one per bad option).
    """

    def __init__(self, messages: str | list[str]):
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("\n".join(self.messages))


def refuse_callables(cfg: Mapping[str, Any]) -> None:
    """Refuse a config that would name a callable anywhere in it.

    The keys are :data:`~polymix_cli.config.safety.CALLABLE_KEYS` (``_target_`` and
    friends); see :mod:`polymix_cli.config.safety`.

    Args:
        cfg: A config as a plain (nested) mapping.

    Raises:
        ConfigError: Naming the first such key (its dotted path) and its value.
    """
    found = find_callable_key(cfg)
    if found is not None:
        where, value = found
        raise ConfigError(
            f"{where}={value!r} is refused: polymix never imports or calls a callable named in a "
            f"config; components are chosen by name from polymix's own registry (e.g. model.kind)"
        )


_BAD = object()  # a value that failed its checks (its message is already recorded)

# the largest integer an option takes (torch's seeds and sizes are signed 64-bit integers)
INT_MAX = 2**63 - 1
# the largest magnitude a number option takes: models train in float32
FLOAT32_MAX = 3.4028234663852886e38
_FLOAT32_TINY = 1.401298464324817e-45 / 2  # below it, a number rounds to 0 in float32


def _join(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def _choices(meta: Mapping[str, Any]) -> tuple | None:
    choices = meta.get("choices")
    return choices() if callable(choices) else choices


def _check_int(value: Any, name: str, meta: Mapping[str, Any], siblings: dict, errors: list) -> Any:
    low, high = meta.get("ge"), meta.get("le")
    if high is not None:  # an upper bound: a number, or a sibling option (if it is valid)
        where = f"{name.rpartition('.')[0]}.{high}" if isinstance(high, str) else None
        limit = siblings.get(high) if where else high
        if where is not None and limit is None:
            return value if isinstance(value, int) and not isinstance(value, bool) else _BAD
        shown = f"{where}={limit}" if where else f"{limit}"
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or (low is not None and value < low)
            or value > limit
        ):
            errors.append(f"{name} must be null or an integer in [{low}, {shown}], got {value!r}")
            return _BAD
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(f"{name} must be an integer >= {low}, got {value!r}")
        return _BAD
    if low is not None and value < low:
        errors.append(f"{name} must be >= {low}, got {value}")
        return _BAD
    if value > INT_MAX:
        errors.append(f"{name} must be an integer in [{low}, 2**63-1], got {value}")
        return _BAD
    return value


def _check_float(value: Any, name: str, meta: Mapping[str, Any], errors: list) -> Any:
    ge, gt, le, lt = (meta.get(k) for k in ("ge", "gt", "le", "lt"))
    if (ge, gt, le, lt) == (None, None, None, None):
        allowed = "a finite number"
    else:
        low = "(" + str(gt) if gt is not None else "[" + str(ge) if ge is not None else "(-inf"
        high = str(le) + "]" if le is not None else str(lt) + ")" if lt is not None else "inf)"
        allowed = f"a number in {low}, {high}"
    if not _number(value):
        errors.append(f"{name} must be {allowed}, got {value!r}")
        return _BAD
    bad = (
        not math.isfinite(value)
        or (ge is not None and value < ge)
        or (gt is not None and value <= gt)
        or (le is not None and value > le)
        or (lt is not None and value >= lt)
    )
    if bad:
        errors.append(f"{name} must be {allowed}, got {value}")
        return _BAD
    if abs(value) > FLOAT32_MAX:
        errors.append(f"{name} must be {allowed} that float32 holds (|x| <= 3.4e38), got {value}")
        return _BAD
    if value != 0 and abs(value) < _FLOAT32_TINY and gt == 0:
        errors.append(f"{name} must be {allowed}, got {value}, which float32 rounds to 0")
        return _BAD
    return float(value)


# what a string option receives for YAML's `off` (false), or for false itself
_OFF = (False, "False", "false")


def _value(tp: Any, value: Any, name: str, meta: Mapping[str, Any], siblings: dict, errors: list):
    """``value`` checked against the type ``tp`` and the field's ``meta``; :data:`_BAD`
    (with the message in ``errors``) if it fails."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        tp = next(a for a in args if a is not type(None))
        if value is None and "check" not in meta:
            return None
    origin = typing.get_origin(tp)
    if "check" in meta:
        message = meta["check"](value, name)
        if message is not None:
            errors.append(message)
            return _BAD
        return _plain(value)
    if dataclasses.is_dataclass(tp):
        return _section(tp, value, name, errors)
    if origin is list:
        if not isinstance(value, list):
            errors.append(f"{name} must be a list, got {value!r}")
            return _BAD
        item = typing.get_args(tp)[0]
        if not dataclasses.is_dataclass(item):
            return _plain(value)
        items = [_section(item, v, f"{name}[{i}]", errors) for i, v in enumerate(value)]
        return _BAD if any(v is _BAD for v in items) else items
    if origin is dict:
        if not isinstance(value, Mapping):
            errors.append(f"{name} must be a mapping of options, got {value!r}")
            return _BAD
        return _plain(value)
    if tp is bool:
        if not isinstance(value, bool):
            errors.append(f"{name} must be true or false, got {value!r}")
            return _BAD
        return value
    if tp is int:
        return _check_int(value, name, meta, siblings, errors)
    if tp is float:
        return _check_float(value, name, meta, errors)
    if tp is str:
        choices = _choices(meta)
        if choices is not None and "off" in choices and value in _OFF:
            # YAML 1.1 reads a bare `off` as false, which a string option receives as
            # "False": a choice named off means it (`eval.sensitivity: off` in a file)
            return "off"
        if choices is not None and value not in choices:
            errors.append(f"{name} must be one of {list(choices)}, got {value!r}")
            return _BAD
        if not isinstance(value, str):
            errors.append(f"{name} must be a string, got {value!r}")
            return _BAD
        return value
    return _plain(value)


def _plain(value: Any) -> Any:
    """A copy of nested lists and mappings (as lists and dicts)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _section(cls: type, value: Any, name: str, errors: list) -> Any:
    """An instance of the dataclass ``cls`` (or of the variant its discriminator names)."""
    if not isinstance(value, Mapping):
        errors.append(f"{name} must be a mapping of options, got {value!r}")
        return _BAD
    if "variants" in vars(cls):  # a group with several options, told apart by one key
        variants = cls.variants()
        chosen = value.get(cls.VARIANT_KEY)
        if chosen not in variants:
            errors.append(
                f"{_join(name, cls.VARIANT_KEY)} must be one of {list(variants)}, got {chosen!r}"
            )
            return _BAD
        cls = variants[chosen]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    start = len(errors)
    unknown = getattr(cls, "unknown_message", None)
    foreign = None
    if hasattr(cls, "variants") and hasattr(cls, "VARIANT_KEY") and unknown is None:
        foreign = _foreign_keys(cls, cls.variants(), value, name)
    if foreign is not None:
        errors.append(foreign)
    else:
        for key in value:
            if key not in fields:
                errors.append(unknown(name, key, value) if unknown else _unknown(name, key, fields))
    kwargs: dict[str, Any] = {}
    for f in fields.values():
        if f.name in value:
            raw = value[f.name]
        elif f.default == MISSING:
            raw = None  # required: its check says what is expected
            if "check" not in f.metadata and "choices" not in f.metadata:
                errors.append(f"missing option {_join(name, f.name)}")
                continue
        else:
            continue  # the schema's default
        out = _value(hints[f.name], raw, _join(name, f.name), f.metadata, kwargs, errors)
        if out is not _BAD:
            kwargs[f.name] = out
    if len(errors) > start:
        return _BAD
    instance = cls(**kwargs)
    whole = getattr(instance, "invalid", None)  # checks of the section as a whole
    if whole is not None:
        errors += whole(name)
        if len(errors) > start:
            return _BAD
    return instance


def _foreign_keys(
    cls: type, variants: Mapping[str, type], value: Mapping[str, Any], name: str
) -> str | None:
    """One line when several keys ``cls`` lacks are all another variant's (the variant key
    changed on its own: ``model=pce model.kind=nn`` keeps the options of ``pce``)."""
    own = [f.name for f in dataclasses.fields(cls)]
    foreign = [k for k in value if k not in own]
    chosen = value.get(cls.VARIANT_KEY)
    if len(foreign) < 2:  # one is the usual one line
        return None
    for other, variant in variants.items():
        if other != chosen and set(foreign) <= {f.name for f in dataclasses.fields(variant)}:
            key = _join(name, cls.VARIANT_KEY)
            keys = ", ".join(_join(name, k) for k in foreign)
            how = (
                f"; a {cls.VARIANT_KEY} is chosen with {name}=<{cls.VARIANT_KEY}>, which brings "
                f"its own options"
                if name.isidentifier()
                else ""
            )
            return (
                f"unknown options {keys} for {key}={chosen} (options of {key}={other}{how}); "
                f"allowed keys in {name}: {', '.join(own)}"
            )
    return None


def _unknown(name: str, key: str, fields: Mapping[str, Any]) -> str:
    where = f"in {name}" if name else "at the top level"
    return f"unknown option {_join(name, key)}; allowed keys {where}: {', '.join(fields)}"


def config_dict(config: Any) -> dict[str, Any]:
    """A config (a schema dataclass) as a plain dict, every option present.

    Args:
        config (Any): An instance of a schema dataclass (e.g.
            :class:`~polymix_cli.config.schema.TrainConfig`).

    Returns:
        The nested options as plain dicts and lists (:func:`dataclasses.asdict`).
    """
    return dataclasses.asdict(config)


def parse_section(cls: type[T], cfg: Mapping[str, Any], name: str = "") -> T:
    """``cfg`` as an instance of the schema class ``cls``.

    Options ``cfg`` lacks take their defaults. A section with variants (told apart by one
    key) becomes the variant that key names. After the options' own checks, the instance's
    ``problems()`` (where the class has one) report the checks across options.

    Args:
        cls: A schema dataclass.
        cfg: Its options as a plain mapping.
        name: Where ``cfg`` sits in the whole config (e.g. ``layout``), for the messages;
            empty for the top level.

    Returns:
        The instance of ``cls`` (or of the chosen variant).

    Raises:
        ConfigError: Listing every bad option.
    """
    errors: list[str] = []
    out = _section(cls, cfg, name, errors)
    if out is not _BAD:
        errors += out.problems() if hasattr(out, "problems") else []
    if errors:
        raise ConfigError(errors)
    return out


def parse_train_config(cfg: Mapping[str, Any] | TrainConfig) -> TrainConfig:
    """A train config (a plain dict) as a :class:`~polymix_cli.config.schema.TrainConfig`.

    Args:
        cfg: The config as a plain mapping; a ``TrainConfig`` is returned as it is.

    Returns:
        The parsed config.

    Raises:
        ConfigError: For a callable anywhere in it (see :func:`refuse_callables`), or
            listing every bad option.
    """
    if isinstance(cfg, TrainConfig):
        return cfg
    refuse_callables(cfg)
    return parse_section(TrainConfig, cfg)


def parse_predict_config(cfg: Mapping[str, Any]) -> PredictConfig:
    """A ``polymix predict`` config as a :class:`~polymix_cli.config.schema.PredictConfig`.

    Args:
        cfg: The config as a plain mapping.

    Returns:
        The parsed config.

    Raises:
        ConfigError: For a callable anywhere in it (see :func:`refuse_callables`), or
            listing every bad option.
    """
    refuse_callables(cfg)
    return parse_section(PredictConfig, cfg)


def validate_train_config(cfg: Mapping[str, Any]) -> None:
    """Check a train config without keeping the result.

    Args:
        cfg: The config as a plain mapping.

    Raises:
        ConfigError: Listing every invalid option (or naming a callable key).
    """
    parse_train_config(cfg)


def validate_predict_config(cfg: Mapping[str, Any]) -> None:
    """Check a predict config without keeping the result.

    Args:
        cfg: The config as a plain mapping.

    Raises:
        ConfigError: Listing every invalid option (or naming a callable key).
    """
    parse_predict_config(cfg)
