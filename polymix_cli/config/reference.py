"""The config reference: every option of every config group as Markdown tables, generated
from the typed schema (:mod:`polymix_cli.config.schema`) and the YAML files of
``configs/``.

Each table row is one option as it is typed on the command line (``trainer.noise.init_std``)
with its type, default, what is allowed and its one-line doc, all read from the fields of
the schema's dataclasses; a group option whose YAML file sets a value of its own (e.g.
``model=pce`` sets ``degree: 5``) shows it beside the schema's default. The docs build
(``docs/hooks.py``) writes :func:`render` as ``reference/config.md``, so the page cannot
fall behind the schema. Imports neither torch nor Hydra (the choices that the library
owns are read from its modules, which import torch, when rendering).
"""

from __future__ import annotations

import dataclasses
import html
import importlib.util
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from polymix_cli.config.schema import (
    MISSING,
    SCHEMAS,
    DesignConfig,
    EvaluateConfig,
    InputDistributionConfig,
    PredictConfig,
    RuleConfig,
    SuggestConfig,
    TrainConfig,
)

__all__ = ["CONFIGS_DIR", "GROUPS", "Row", "Section", "render", "sections"]


def _configs_dir() -> Path:
    """The configs the CLI reads: the package ``polymix_cli.configs`` (the repository's
    configs/ folder with an editable install, its copy in an installed wheel)."""
    spec = importlib.util.find_spec("polymix_cli.configs")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parents[2] / "configs"


CONFIGS_DIR = _configs_dir()

# The config groups of configs/train.yaml, in the order of its defaults list.
GROUPS = ("data", "model", "layout", "optimizer", "scheduler", "trainer", "eval", "logger")

# Fields typed ``Any`` in the schema so that validation reports a wrong type itself, shown
# here as what they hold.
DISPLAY_TYPES: dict[tuple[type, str], str] = {(TrainConfig, "resume"): "str | null"}


@dataclass(frozen=True)
class Row:
    """One option: ``key`` as typed on the command line, and the field it comes from
    (``owner``, the dataclass whose ``fields()`` hold it, and ``name``)."""

    key: str
    type: str
    default: str
    allowed: str
    doc: str
    owner: type
    name: str


@dataclass
class Section:
    """One table: the options of one schema class (one or more YAML files share it)."""

    title: str
    schema: type
    summary: str
    files: list[str]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------ values


class _Probe:
    """A value no check accepts: its message says what is allowed."""

    def __repr__(self) -> str:
        return "<probe>"


def _show(value: Any) -> str:
    """A value as it is written in YAML flow style (and on the command line)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    return str(value)


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _type_name(kind: Any) -> str:
    if kind is type(None):
        return "null"
    if kind is Any:
        return "any"
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " | ".join(names + (["null"] if type(None) in args else []))
    if origin is list:
        inner = args[0] if args else Any
        if inner is Any:
            return "list"
        if dataclasses.is_dataclass(inner):
            return f"list[{inner.__name__}]"
        return f"list[{_type_name(inner)}]"
    if origin is dict:
        return "dict"
    return getattr(kind, "__name__", str(kind))


def _allowed(meta: Mapping[str, Any], key: str, fields: Mapping[str, str]) -> str:
    """What the field's metadata allows: its choices, its range or its check's rule."""
    choices = meta.get("choices")
    if choices is not None:
        values = choices() if callable(choices) else choices
        return ", ".join(f"`{v}`" for v in values)
    low = [(op, meta[op]) for op in ("ge", "gt") if op in meta]
    high = [(op, meta[op]) for op in ("le", "lt") if op in meta]
    if low or high:
        parts = []
        for op, value in low + high:
            if isinstance(value, str):  # a sibling option
                value = f"`{fields.get(value, value)}`"
            else:
                value = _number(value)
            parts.append((op, value))
        if len(parts) == 2:
            (lo_op, lo), (hi_op, hi) = parts
            left = "[" if lo_op == "ge" else "("
            right = "]" if hi_op == "le" else ")"
            return f"in {left}{lo}, {hi}{right}"
        op, value = parts[0]
        return {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}[op] + f" {value}"
    check = meta.get("check")
    if check is not None:
        message = check(_Probe(), key) or ""
        message = message.removesuffix(", got <probe>")
        return message.removeprefix(f"{key} must be ")
    return ""


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


# -------------------------------------------------------------------------- rows


def _rows(cls: type, prefix: str, skip: tuple[str, ...] = ()) -> Iterator[tuple[Row, Any]]:
    """The options of ``cls`` under ``prefix``, nested dataclasses flattened, each with
    its default value."""
    fields = {f.name: f"{prefix}{f.name}" for f in dataclasses.fields(cls)}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        doc = f.metadata.get("doc")
        if not isinstance(doc, str) or not doc.strip():
            raise ValueError(f"{cls.__name__}.{f.name} has no doc in its metadata")
        key = fields[f.name]
        default = _default(f)
        if dataclasses.is_dataclass(default):  # a section: its row, then its options
            yield Row(key, "mapping", "(its options follow)", "", doc, cls, f.name), default
            yield from _rows(type(default), f"{key}.")
            continue
        kind = DISPLAY_TYPES.get((cls, f.name)) or _type_name(f.type)
        shown = "*required*" if default is MISSING else f"`{_show(default)}`"
        row = Row(key, kind, shown, _allowed(f.metadata, key, fields), doc, cls, f.name)
        yield row, default


def _flatten(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _values(path: Path) -> dict[str, Any]:
    """The options a YAML file sets (its defaults list aside), flattened."""
    text = yaml.safe_load(path.read_text()) or {}
    return _flatten({k: v for k, v in text.items() if k not in ("defaults", "hydra")})


def _schema_of(path: Path) -> str | None:
    """The key in :data:`SCHEMAS` that a YAML file names first in its defaults list."""
    text = yaml.safe_load(path.read_text()) or {}
    for entry in text.get("defaults") or []:
        if isinstance(entry, str) and entry.startswith("/schema/"):
            return entry.removeprefix("/schema/").partition("@")[0]
    return None


def _table_rows(
    cls: type, prefix: str, files: Mapping[str, dict[str, Any]], skip: tuple[str, ...] = ()
) -> list[Row]:
    """The rows of ``cls``, each default followed by the files that set another value."""
    rows = []
    for row, default in _rows(cls, prefix, skip):
        own = []
        for option, values in files.items():
            key = row.key.removeprefix(prefix)
            if key in values and values[key] != default:
                own.append(f"{option}: `{_show(values[key])}`")
        if own:
            row = dataclasses.replace(row, default=row.default + "; " + "; ".join(own))
        rows.append(row)
    return rows


def _summary(cls: type) -> str:
    doc = " ".join((cls.__doc__ or "").split())
    return _markdown(doc)


def _markdown(text: str) -> str:
    """reStructuredText inline markup of the docstrings as Markdown."""

    def role(match: re.Match) -> str:
        target = match[1]
        return f"`{target[1:].rsplit('.', 1)[-1] if target.startswith('~') else target}`"

    text = re.sub(r":(?:class|func|mod|data|meth|attr):`(~?[\w.]+)`", role, text)
    return text.replace("``", "`")


# ---------------------------------------------------------------------- sections


def _group_options(configs: Path, group: str) -> dict[str, dict[str, str]]:
    """``{schema key: {option: file}}`` of a config group's YAML files."""
    found: dict[str, dict[str, str]] = {}
    for path in sorted((configs / group).glob("*.yaml")):
        key = _schema_of(path)
        if key is not None:
            found.setdefault(key, {})[path.stem] = str(path.relative_to(configs.parent))
    return found


def sections(configs: Path = CONFIGS_DIR) -> list[Section]:
    """The reference's tables: the top-level options of ``polymix train``, one table per
    schema class of each config group (with the group options whose YAML files use it),
    the options of a layout rule and of an input distribution, ``polymix evaluate``,
    ``predict``, ``design`` and ``suggest``."""
    configs = Path(configs)
    out = [
        Section(
            "polymix train: top-level options",
            TrainConfig,
            _summary(TrainConfig),
            ["configs/train.yaml"],
            _table_rows(TrainConfig, "", {"train.yaml": _values(configs / "train.yaml")}, GROUPS),
            notes=["The config groups below are chosen in `configs/train.yaml`'s defaults list."],
        )
    ]
    for group in GROUPS:
        options = _group_options(configs, group)
        order = [key for key in SCHEMAS if key.startswith(f"{group}/")]
        for key in order + sorted(set(options) - set(order)):
            files = options.get(key, {})
            values = {f"{group}={name}": _values(configs.parent / p) for name, p in files.items()}
            title = f"{group}: {', '.join(files) or '(schema only)'}"
            cls = SCHEMAS[key]
            prefix = f"{group}."
            if group == "logger" and key != "logger/logger":  # one section per logger
                prefix, name = f"logger.{key.rpartition('/')[2]}.", key.rpartition("/")[2]
                values = {
                    option: {k.removeprefix(f"{name}."): v for k, v in set_.items()}
                    for option, set_ in values.items()
                }
            rows = _table_rows(cls, prefix, values)
            out.append(Section(title, cls, _summary(cls), list(files.values()), rows))
            if cls is SCHEMAS.get("layout/layout"):
                rule_rows = _table_rows(RuleConfig, "layout.rules[i].", {})
                out.append(
                    Section(
                        "layout.rules: each rule",
                        RuleConfig,
                        _summary(RuleConfig),
                        [],
                        rule_rows,
                        notes=[RULES_NOTE],
                    )
                )
            if cls is SCHEMAS.get("eval/eval"):
                entry_rows = _table_rows(
                    InputDistributionConfig, "eval.input_distributions[i].", {}
                )
                out.append(
                    Section(
                        "eval.input_distributions: each entry",
                        InputDistributionConfig,
                        _summary(InputDistributionConfig),
                        [],
                        entry_rows,
                        notes=[DISTRIBUTIONS_NOTE],
                    )
                )
    for name, cls in (
        ("evaluate", EvaluateConfig),
        ("predict", PredictConfig),
        ("design", DesignConfig),
        ("suggest", SuggestConfig),
    ):
        path = f"configs/{name}.yaml"
        values = {f"{name}.yaml": _values(configs / f"{name}.yaml")}
        out.append(
            Section(f"polymix {name}", cls, _summary(cls), [path], _table_rows(cls, "", values))
        )
    return out


def _defaults_list(configs: Path) -> list[tuple[str, str]]:
    """``(group, option)`` of configs/train.yaml's defaults list."""
    text = yaml.safe_load((configs / "train.yaml").read_text()) or {}
    out = []
    for entry in text.get("defaults") or []:
        if isinstance(entry, Mapping):
            for group, option in entry.items():
                if not str(group).startswith("override "):
                    out.append((str(group), _show(option)))
    return out


def _first_sentence(path: Path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if text.startswith("@package"):
            continue
        lines.append(text)
    text = " ".join(lines)
    end = re.search(r"\.(\s|$)", text)
    return text[: end.start() + 1] if end else text


def _experiments(configs: Path) -> list[tuple[str, str, str, str]]:
    """``(name, what it is, groups it chooses, values it sets)`` of configs/experiment."""
    out = []
    for path in sorted((configs / "experiment").glob("*.yaml")):
        text = yaml.safe_load(path.read_text()) or {}
        chosen = []
        for entry in text.get("defaults") or []:
            if isinstance(entry, str):
                chosen.append(f"experiment={entry}")
            elif isinstance(entry, Mapping):
                for group, option in entry.items():
                    group = str(group).removeprefix("override ").lstrip("/")
                    chosen.append(f"{group}={_show(option)}")
        values = _values(path)
        sets = ", ".join(f"`{k}={_show(v)}`" for k, v in values.items())
        out.append((path.stem, _first_sentence(path), ", ".join(f"`{c}`" for c in chosen), sets))
    return out


# ------------------------------------------------------------------------ render

GENERATED = (
    "<!-- generated from polymix_cli/config/schema.py and configs/ by "
    "polymix_cli.config.reference at docs build time: do not edit -->"
)
INTRO = (
    "Every option of `polymix train`, `evaluate`, `predict`, `design` and `suggest`, read from "
    "the typed schema (`polymix_cli/config/schema.py`) when the docs are built. Set an "
    "option on the command line as `key=value` (e.g. `trainer.epochs=2000`), choose a "
    "group's option as `group=option` (e.g. `model=pce`), or print the resolved config "
    "with `polymix train --cfg job`. A value that the schema does not allow is refused "
    "before anything runs, with one line per bad option and exit status 2."
)
DEFAULTS_NOTE = (
    "**Default** is the schema's; where a group option's YAML file sets another value it "
    "follows, e.g. `model=pce: 5`. The experiment in force (`experiment=moe_sign` unless "
    "you choose another, see [Experiments](#experiments)) may set values on top of these. "
    "*required*: there is no default, the option must be given. `null` is YAML's "
    "`None`: on the command line, `key=null`. A `mapping` row is a section of the config "
    "whose options follow it."
)
RULES_NOTE = (
    "A rule is a mapping in the list `layout.rules`, e.g. "
    '`{match: "experts.*.coeffs[:2]", kind: iid_gaussian}`. Rules may not overlap (two '
    "rules that claim the same entries are an error), and `layout.default` claims what no "
    "rule does."
)
DISTRIBUTIONS_NOTE = (
    "One entry per input, in the order of the inputs, e.g. "
    "`eval.input_distributions=[{kind: lognormal, log_mean: 0, log_std: 0.25}, "
    "{kind: uniform, low: 0, high: 1}]`. Each kind takes its own parameters, all of them "
    "and no others: see [Sensitivity analysis](../guides/sensitivity.md#input-distributions)."
)
EXPERIMENTS_NOTE = (
    "`experiment=NAME` (`configs/experiment/NAME.yaml`) is an overlay applied after the "
    "groups: it chooses group options and sets values for one study. The default is "
    "`experiment=moe_sign`; `'~experiment'` (on the command line) drops it, leaving the "
    "groups as `configs/train.yaml` chooses them."
)


def _cell(text: str) -> str:
    """A table cell on one line, its pipes and HTML characters escaped outside code spans
    (inside them a table keeps them as they are): ``outputs/<name>`` must not read as a tag."""
    parts = re.split(r"(`[^`]*`)", " ".join(text.split()))
    return "".join(
        p if p.startswith("`") else html.escape(p, quote=False).replace("|", "\\|") for p in parts
    )


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def render(configs: Path = CONFIGS_DIR, api_links: bool = True) -> str:
    """The config reference as one Markdown page. ``api_links``: link each table to its
    class in the API reference (``reference/api/application.md``, through mkdocs-autorefs)."""
    configs = Path(configs)
    parts = [
        "# Config options",
        "",
        GENERATED,
        "",
        INTRO,
        "",
        DEFAULTS_NOTE,
        "",
        "## Config groups of polymix train",
        "",
        "| group | default | options |",
        "|---|---|---|",
    ]
    for group, option in _defaults_list(configs):
        names = sorted(p.stem for p in (configs / group).glob("*.yaml"))
        shown = ", ".join(f"`{n}`" for n in names) if names else ""
        parts.append(f"| `{group}` | `{option}` | {shown} |")
    launchers = sorted(p.stem for p in (configs / "hydra" / "launcher").glob("*.yaml"))
    shown = ", ".join(f"`{n}`" for n in ["basic", *launchers])
    parts += [f"| `hydra/launcher` | `basic` | {shown} |", ""]
    for section in sections(configs):
        parts += ["", f"## {section.title}", "", section.summary, ""]
        link = f"[`{section.schema.__name__}`]"
        if api_links:
            link += f"[polymix_cli.config.schema.{section.schema.__name__}]"
        files = ", ".join(f"`{p}`" for p in section.files)
        parts.append(f"Schema: {link}" + (f"; file(s): {files}." if files else "."))
        parts.append("")
        parts += [*section.notes, ""] if section.notes else []
        parts += ["| option | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        for row in section.rows:
            cells = [f"`{row.key}`", f"`{row.type}`", row.default, row.allowed, row.doc]
            parts.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    parts += [
        "",
        "## Experiments",
        "",
        EXPERIMENTS_NOTE,
        "",
        "| experiment | what it is | chooses | sets |",
        "|---|---|---|---|",
    ]
    for name, what, chosen, sets in _experiments(configs):
        parts.append("| " + " | ".join(_cell(c) for c in (f"`{name}`", what, chosen, sets)) + " |")
    return "\n".join(parts) + "\n"
