"""The config reference of the docs (reference/config.md), generated from the schema: it
lists every field of every schema class with its doc, each group option file of configs/,
and the values those files set (no Hydra, no runs)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest
from helpers import schema_classes

from polymix_cli.config import reference, schema

ROOT = Path(__file__).resolve().parents[2]


def _section(title: str) -> reference.Section:
    return next(s for s in reference.sections() if s.title == title)


def test_every_field_of_every_schema_class_is_listed():
    listed = {(row.owner, row.name) for s in reference.sections() for row in s.rows}
    expected = {
        (cls, f.name)
        for cls in schema_classes()
        for f in dataclasses.fields(cls)
        # the config groups of TrainConfig are listed as sections of their own
        if not (cls is schema.TrainConfig and f.name in reference.GROUPS)
    }
    assert expected - listed == set()
    keys = {row.key for s in reference.sections() for row in s.rows}
    for group in reference.GROUPS:
        assert any(key.startswith(f"{group}.") for key in keys), group


def test_every_row_is_rendered_with_its_doc_type_and_default():
    page = reference.render()
    for section in reference.sections():
        assert f"## {section.title}" in page
        for row in section.rows:
            assert row.doc.strip() and row.type and row.default
            assert f"| `{row.key}` | `{row.type}` | {row.default} |" in page, row.key
    assert "<probe>" not in page  # every check's rule was read from its message


def test_a_field_without_a_doc_fails_the_reference(monkeypatch):
    @dataclasses.dataclass
    class Undocumented(schema.AdamConfig):
        lr: float = 0.01  # a plain field: no option(), no doc

    monkeypatch.setitem(schema.SCHEMAS, "optimizer/adam", Undocumented)
    with pytest.raises(ValueError, match="Undocumented.lr has no doc"):
        reference.render()


def test_every_group_option_file_has_its_table():
    files = {p for s in reference.sections() for p in s.files}
    for group in reference.GROUPS:
        for path in sorted((ROOT / "configs" / group).glob("*.yaml")):
            assert str(path.relative_to(ROOT)) in files, path


def test_values_of_the_group_files_follow_the_schema_defaults():
    degree = next(r for r in _section("model: pce").rows if r.key == "model.degree")
    assert degree.default == "`3`; model=pce: `5`"
    width = next(r for r in _section("model: nn").rows if r.key == "model.width")
    assert width.default == "`16`; model=nn: `32`"
    device = next(r for r in _section("polymix predict").rows if r.key == "trainer.device")
    assert device.default == "`null`" and "(null: cpu)" in device.doc


def test_the_page_lists_the_groups_and_experiments():
    page = reference.render()
    assert "| `model` | `moe` | `moe`, `nn`, `pce` |" in page
    for path in (ROOT / "configs" / "experiment").glob("*.yaml"):
        assert f"| `{path.stem}` |" in page


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="needs the docs extra")
def test_the_docs_hook_generates_the_page_and_the_help_blocks(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "docs"))
    hooks = __import__("hooks")
    try:
        page = type("Page", (), {"file": type("F", (), {"src_path": "x.md"})()})()
        text = hooks.on_page_markdown("<!-- generated: polymix --help -->", page, None, None)
        assert text.startswith("```text\n$ polymix --help\nusage: polymix COMMAND")
        from mkdocs.exceptions import PluginError

        with pytest.raises(PluginError, match="unknown generated block"):
            hooks.on_page_markdown("<!-- generated: polymix nope -->", page, None, None)
    finally:
        sys.modules.pop("hooks", None)
