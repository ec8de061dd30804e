"""The package's layers, read from the import statements of every module (no imports run):
the library at the top of ``polymix_cli`` imports nothing of the application, and no
modules import each other in a cycle at import time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "polymix_cli"
# the application's subpackages; everything else at the top of polymix_cli is the library
APPLICATION = ("cli", "config", "configs", "data", "reporting", "runs", "training")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(name: str, path: Path, *, lazy: bool = False) -> set[str]:
    """The polymix modules ``name`` imports when it is imported (``lazy``: also those
    imported inside functions); imports under ``if TYPE_CHECKING:`` never run."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("polymix_cli"))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not target.startswith("polymix_cli"):
                    continue
                for alias in node.names:  # `from pkg import module` imports the module
                    sub = f"{target}.{alias.name}"
                    found.add(sub if sub in MODULES else target)
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list) and (
                    lazy or not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                ):
                    visit(
                        [n for n in inner if isinstance(n, ast.stmt)]
                        + [s for h in inner if isinstance(h, ast.ExceptHandler) for s in h.body]
                    )

    visit(ast.parse(path.read_text()).body)
    found.discard(name)
    return found


def _is_application(module: str) -> bool:
    parts = module.split(".")
    return len(parts) > 1 and parts[1] in APPLICATION


def test_the_walk_sees_the_whole_package():
    assert {
        "polymix_cli.stochastic_model",
        "polymix_cli.runs.train",
        "polymix_cli.cli.main",
    } <= set(MODULES)
    assert _module_level_imports("polymix_cli.runs.train", MODULES["polymix_cli.runs.train"])


@pytest.mark.parametrize(
    "module", sorted(m for m in MODULES if not _is_application(m) and m != "polymix_cli.__main__")
)
def test_the_library_imports_nothing_of_the_application(module):
    imported = _module_level_imports(module, MODULES[module], lazy=True)
    assert not [m for m in imported if _is_application(m)], imported


def test_no_import_cycles():
    graph = {m: _module_level_imports(m, p) & set(MODULES) for m, p in MODULES.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for nxt in sorted(graph[module]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            assert cycle is None, " -> ".join(cycle)
