"""mkdocs hooks (listed under ``hooks:`` in mkdocs.yml): the pages and blocks generated
from the code at build time, so that they cannot fall behind it.

- ``reference/config.md``: every config option, from the typed schema and configs/
  (:func:`polymix_cli.config.reference.render`).
- ``<!-- generated: COMMAND -->`` in a page: replaced by the help text of COMMAND, one of
  :data:`HELP` (an unknown name fails the build).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

CONFIG_PAGE = "reference/config.md"
MARKER = re.compile(r"<!-- generated: (?P<name>[^>]*?) -->")


def _usage() -> str:
    from polymix_cli.cli.main import usage

    return usage()


def _summarize_help() -> str:
    from polymix_cli.cli.summarize import summarize_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "88"  # argparse wraps to the terminal: the same text everywhere
    try:
        return summarize_parser().format_help()
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous


HELP: dict[str, Callable[[], str]] = {
    "polymix --help": _usage,
    "polymix summarize --help": _summarize_help,
}


def on_files(files: Files, config, **kwargs) -> Files:
    from polymix_cli.config.reference import render

    if files.get_file_from_path(CONFIG_PAGE) is not None:
        raise PluginError(f"docs/{CONFIG_PAGE} is generated from the schema: delete the file")
    files.append(File.generated(config, CONFIG_PAGE, content=render()))
    return files


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    def replace(match: re.Match) -> str:
        name = match["name"].strip()
        if name not in HELP:
            raise PluginError(
                f"{page.file.src_path}: unknown generated block {name!r}; known: {', '.join(HELP)}"
            )
        return f"```text\n$ {name}\n{HELP[name]().rstrip()}\n```"

    return MARKER.sub(replace, markdown)
