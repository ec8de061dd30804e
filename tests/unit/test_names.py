"""Every public class and function of polymix_cli has a name of its own across modules."""

from __future__ import annotations

import ast
import pkgutil
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import polymix_cli

PACKAGE_DIR = Path(polymix_cli.__file__).parent


def _modules(directory: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    """``(dotted name, file)`` of every module under ``directory``, found without importing."""
    for info in pkgutil.iter_modules([str(directory)]):
        name = prefix + info.name
        if info.ispkg:
            yield name, directory / info.name / "__init__.py"
            yield from _modules(directory / info.name, name + ".")
        else:
            yield name, directory / f"{info.name}.py"


def _top_level_definitions(body: list[ast.stmt]) -> Iterator[str]:
    """Names of the classes and functions a module body defines (also under a top-level
    ``if``, ``try`` or ``with``); imports are not definitions."""
    for node in body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for block in ("body", "orelse", "finalbody"):
                yield from _top_level_definitions(getattr(node, block, []))
            for handler in getattr(node, "handlers", []):
                yield from _top_level_definitions(handler.body)


def public_definitions() -> dict[str, set[str]]:
    """Public (no leading underscore) top-level class and function name -> the modules of
    polymix_cli that define it."""
    where: dict[str, set[str]] = defaultdict(set)
    for module, path in _modules(PACKAGE_DIR, "polymix_cli."):
        if not path.is_file():
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name in _top_level_definitions(tree.body):
            if not name.startswith("_"):
                where[name].add(module)
    return where


def test_the_walk_sees_the_whole_package() -> None:
    modules = {name for name, _ in _modules(PACKAGE_DIR, "polymix_cli.")}
    assert {
        "polymix_cli.stochastic_model",
        "polymix_cli.surrogate_models.moe",
        "polymix_cli.training.analytic_step",
        "polymix_cli.reporting.evaluation",
        "polymix_cli.cli.callbacks",
    } <= modules
    where = public_definitions()
    assert where["StochasticModel"] == {"polymix_cli.stochastic_model"}
    assert where["MixtureOfExperts"] == {"polymix_cli.surrogate_models.moe"}


def test_public_class_and_function_names_are_unique_across_modules() -> None:
    shared = {name: sorted(mods) for name, mods in public_definitions().items() if len(mods) > 1}
    assert not shared, "public names defined in more than one module: " + "; ".join(
        f"{name} in {', '.join(mods)}" for name, mods in sorted(shared.items())
    )


def test_no_evidence_wording_in_the_package() -> None:
    """A run's outputs are its metrics and plots: in variational inference "evidence" is the
    marginal likelihood, so the word would mislead."""
    found = [
        str(path.relative_to(PACKAGE_DIR))
        for _, path in _modules(PACKAGE_DIR, "polymix_cli.")
        if path.is_file() and "evidence" in path.read_text(encoding="utf-8").lower()
    ]
    assert not found, f"'evidence' in {found}"
