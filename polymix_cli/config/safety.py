"""Never execute what is read: the config keys with which Hydra's ``instantiate`` would
import and call an arbitrary callable. polymix builds every component by name from its
own registries (see :mod:`polymix_cli.config.build`), so these keys are refused wherever they
appear: on the command line, in a resolved config, in a checkpoint's stored config.

Imports nothing, so that ``polymix`` can check its arguments before loading torch or Hydra.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["CALLABLE_KEYS", "find_callable_key"]

CALLABLE_KEYS = ("_target_", "_partial_", "_args_", "_recursive_", "_convert_")


def find_callable_key(node: Any, path: str = "") -> tuple[str, Any] | None:
    """The first key of :data:`CALLABLE_KEYS` anywhere in ``node``.

    Searches nested mappings, lists and tuples depth-first, in order.

    Args:
        node (Any): A config or part of it: a mapping, list or tuple (anything else has
            no keys).
        path: The dotted path of ``node`` in the whole config, for the result; empty for
            the top level.

    Returns:
        The dotted path (list items as ``[i]``) and the value of the first such key, or
        ``None`` if there is none.
    """
    if isinstance(node, Mapping):
        items = node.items()
    elif isinstance(node, (list, tuple)):
        items = enumerate(node)
    else:
        return None
    for key, value in items:
        where = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key)
        if key in CALLABLE_KEYS:
            return where, value
        found = find_callable_key(value, where)
        if found is not None:
            return found
    return None
