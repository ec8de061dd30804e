"""A griffe extension for the API reference: the docstrings of polymix write their
cross-references as reStructuredText roles (:class:`StochasticModel`,
:func:`~polymix_cli.config.migrate.migrate`, :mod:`.validation`); this turns each into a
link to the object's entry when the reference shows it, and into plain code when it does not
(a private helper, a module the reference leaves out), so that a role never breaks the
strict build. ``code`` in double backticks is Markdown already.

Listed in mkdocs.yml under the python handler's ``extensions``.
"""

from __future__ import annotations

import html
import re
from functools import partial
from typing import Any

import griffe

ROLE = re.compile(r":(?P<role>class|func|mod|meth|attr|data|exc|obj):`(?P<target>[^`]+)`")


def _objects(obj: griffe.Object) -> Any:
    """``obj`` and everything it defines (not what it imports)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


def _relative(obj: griffe.Object, target: str) -> str:
    """A target that starts with dots, from the package of ``obj``'s module."""
    module = obj.module
    base = module if module.is_package else module.parent
    dots = len(target) - len(target.lstrip("."))
    for _ in range(dots - 1):
        base = base.parent if base.parent is not None else base
    return f"{base.path}.{target.lstrip('.')}"


def _resolve(obj: griffe.Object, target: str) -> str | None:
    """The full path that ``target`` names in the scope of ``obj`` (None if unknown)."""
    if target.startswith("."):
        return _relative(obj, target)
    if target.startswith("polymix_cli"):
        return target
    first, _, rest = target.partition(".")
    scope: griffe.Object | None = obj
    while scope is not None:
        if first in scope.members:
            member = scope.members[first]
            path = member.target_path if member.is_alias else member.path
            return f"{path}.{rest}" if rest else path
        scope = scope.parent
    return None


class RstRoles(griffe.Extension):
    """Turn the docstrings' reStructuredText roles into optional cross-references."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _objects(pkg):
            docstring = obj.docstring
            if docstring is not None and ":" in docstring.value:
                docstring.value = ROLE.sub(partial(_link, obj), docstring.value)


def _link(obj: griffe.Object, match: re.Match) -> str:
    target = match["target"].strip()
    shown = target.lstrip("~")
    if target.startswith("~"):
        shown = shown.rsplit(".", 1)[-1]
    path = _resolve(obj, target.lstrip("~"))
    code = f"<code>{html.escape(shown)}</code>"
    if path is None:
        return code
    # optional: a link where the reference shows the object, plain code where it does not
    return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'
