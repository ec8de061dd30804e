"""One-line error messages and exit statuses of the ``polymix`` command.

Exit status 2: a configuration or usage error; 1: a failure while running; 128 + the
signal number: interrupted. ``POLYMIX_DEBUG=1`` re-raises instead, with the traceback.
Imports nothing heavy: Hydra and OmegaConf are imported only to classify their errors.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

__all__ = [
    "RUNTIME",
    "USAGE",
    "debug",
    "describe_hydra_error",
    "fail",
    "first_line",
    "leave",
    "one_line",
]

USAGE, RUNTIME = 2, 1


def debug() -> bool:
    """Whether ``POLYMIX_DEBUG=1``: show tracebacks instead of one-line messages."""
    return os.environ.get("POLYMIX_DEBUG") == "1"


def first_line(text: object) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def one_line(text: object, stop: tuple[str, ...] = ("Config search path", "See https://")) -> str:
    """The lines of ``text`` joined with spaces, up to the first line starting with ``stop``."""
    lines = []
    for line in str(text).strip().splitlines():
        if line.strip().startswith(stop):
            break
        if line.strip():
            lines.append(line.strip())
    return " ".join(lines)


def leave(message: str, status: int) -> NoReturn:
    """Print ``polymix: <line>`` on stderr for each line of ``message`` and exit with ``status``."""
    lines = [line for line in message.splitlines() if line.strip()] or [message]
    sys.stderr.write("".join(f"polymix: {line}\n" for line in lines))
    sys.stderr.flush()
    raise SystemExit(status)


def fail(message: str, status: int, kind: str | None = None) -> NoReturn:
    """``polymix: error: <message>``, or ``polymix: error (<kind>): <message>``; one such
    line for each line of ``message``."""
    label = f"error ({kind})" if kind else "error"
    lines = [line for line in message.splitlines() if line.strip()] or [message]
    leave("\n".join(f"{label}: {line}" for line in lines), status)


def _unknown_key(err: Exception) -> str | None:
    """``unknown option a.b.c; allowed keys in a.b: ...`` for Hydra's struct-mode errors."""
    cause = err.__cause__
    full_key = getattr(cause, "full_key", None)
    if not full_key or "not in" not in str(cause):
        return None
    parent_path = full_key.rpartition(".")[0]
    node = getattr(cause, "parent_node", None)
    try:
        keys = [str(k) for k in node] if node is not None else []  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - the list of keys is a courtesy
        keys = []
    where = f"in {parent_path}" if parent_path else "at the top level"
    allowed = (
        f"; allowed keys {where}: {', '.join(keys)}"
        if keys
        else f"; {parent_path or 'it'} has no keys"
    )
    return f"unknown option {full_key}{allowed}"


def _key_in_null_option() -> str:
    """The message for an override of a key inside an option that is off (null), such as
    ``logger.mlflow.tracking_uri=...`` without ``logger=mlflow`` (OmegaConf then asserts)."""
    import sys

    args = [a for a in sys.argv[1:] if "=" in a and not a.startswith(("+", "~", "-"))]
    chosen = " ".join(a.partition("=")[2] for a in args if a.partition("=")[0] == "logger")
    for arg in args:
        parts = arg.partition("=")[0].split(".")
        if len(parts) > 2 and parts[0] == "logger" and parts[1] not in chosen:
            return (
                f"{arg} sets an option of logger {parts[1]}, which is off; turn it on with "
                f"logger={parts[1]} (or a list, e.g. logger=[csv,{parts[1]}])"
            )
    return "an override sets a key inside an option that is off (null); choose that option first"


def describe_hydra_error(err: BaseException) -> tuple[int, str | None, str]:
    """Exit status, the error's type name (for unexpected errors only) and a one-line message for an error raised by Hydra around the task:
    composing the config, parsing overrides, creating the run dir and its log file."""
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    messages = getattr(err, "messages", None)  # a ConfigError: every bad option, one a line
    if isinstance(err, ValueError) and isinstance(messages, list) and messages:
        return USAGE, None, "\n".join(first_line(m) for m in messages)
    if isinstance(err, MissingConfigException):
        missing = err.missing_cfg_file or ""
        group, _, name = missing.rpartition("/")
        if group and err.options:
            return (
                USAGE,
                None,
                (
                    f"{group}={name} is not an option of config group {group!r}; "
                    f"allowed: {', '.join(err.options)}"
                ),
            )
        message = one_line(err)
        for app in ("train", "evaluate", "predict"):
            message = message.removeprefix(f"In '{app}': ")
        return USAGE, None, message
    if isinstance(err, OverrideParseException):
        return USAGE, None, f"invalid override {err.override!r}: {first_line(err.message)}"
    if isinstance(err, HydraException):
        message = _unknown_key(err) or one_line(err)
        cause = err.__cause__
        if cause is not None and not _unknown_key(err) and first_line(cause):
            message = f"{message} ({first_line(cause)})"
        return USAGE, None, message
    if isinstance(err, OmegaConfBaseException):
        return USAGE, None, first_line(err)
    if isinstance(err, OSError):
        where = f" {err.filename}" if err.filename else ""
        return (
            USAGE,
            None,
            (
                f"cannot create or write the output directory{where}: {err.strerror or err}; "
                f"choose a writable folder with hydra.run.dir=PATH"
            ),
        )
    if isinstance(err, ValueError):  # e.g. Hydra's own flag checks (--resolve without --cfg)
        return USAGE, None, first_line(err)
    if isinstance(err, AssertionError) and "for root: NoneType" in str(err):
        return USAGE, None, _key_in_null_option()
    return RUNTIME, type(err).__name__, first_line(err) or type(err).__name__
