"""Run the commands of a documentation page as written.

A page's fenced blocks are read in order:

- ```bash blocks are run, in order, by one bash script per page (``set -euo pipefail``), so
  a variable set in one block (``RUN=$(ls -td outputs/pce_file/*/ | head -1)``) is seen by
  the next, and a failing command fails the page;
- ```console blocks are transcripts: each ``$ COMMAND`` line is run as written, without
  the tiny sizes below (its status is not checked), and every other non-empty line of the
  block must appear in what it printed (stdout and stderr), so a documented error message
  is checked word for word (``...`` in a shown line stands for a part that varies, such as
  an absolute path);
- ```yaml blocks whose first line is ``# file: PATH`` (or the line after a Hydra header
  such as ``# @package _global_``, which must stay first) are written to PATH before the
  page's commands run;
- a block right after ``<!-- not-run: REASON -->`` is skipped (a Slurm cluster, `make`);
- any other block (```text, ```python, ```yaml without ``# file:``) is only shown.

With ``tiny=True`` a ``polymix`` wrapper goes first on PATH: it appends tiny sizes to
every ``polymix train`` (a ``resume=`` keeps its run's tiny config, and a ``trainer.epochs``
that extends it becomes 60), ``evaluate``, ``predict`` and ``export``; a ``-m`` sweep keeps two jobs
(the first two values of the first swept option, the first value of the others) and an
optuna study two trials (later overrides win, so the page's own values are replaced). The page's commands are
otherwise unchanged. ``tests/e2e/test_docs_commands.py`` runs every page this way, and
``docs/scripts/tutorial_figures.py`` runs the tutorial at full size for its pictures.

    python docs/scripts/doc_commands.py PAGE.md [--tiny] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# appended to each command by the tiny wrapper (the settings of tests/helpers.py TINY)
TINY_TRAIN = [
    "trainer.epochs=30",
    "trainer.num_samples=8",
    "trainer.log_every=10",
    "eval.num_samples=64",
    "eval.grid_points=25",
    "eval.sensitivity_base_samples=64",
]
TINY_EVALUATE = ["eval.num_samples=64", "eval.grid_points=25", "eval.sensitivity_base_samples=64"]
TINY_PREDICT = ["predict.num_samples=50"]
TINY_EXPORT = ["export.num_samples=50"]  # as predict's, so that a page can compare them
SWEEP_VALUES = 2  # swept values kept per option, and optuna trials
EXTEND_EPOCHS = "trainer.epochs=60"  # a resume=...trainer.epochs=N (from the tiny 30 epochs)

FENCE = re.compile(r"^```(\S*)\s*$")
NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(.+?)\s*-->\s*$")
FILE = re.compile(r"^#\s*file:\s*(\S+)\s*$")
HEADER = re.compile(r"^#\s*@")


@dataclass
class Block:
    lang: str
    text: str
    line: int  # the line of the opening fence, counted from 1
    skip: str | None = None  # the reason given in <!-- not-run: ... -->

    @property
    def file(self) -> str | None:
        """The PATH of a ```yaml block that starts with ``# file: PATH`` (after Hydra's
        ``# @package`` header line, if any: Hydra reads the header at the top only)."""
        if self.lang != "yaml":
            return None
        lines = [line for line in self.text.splitlines() if not HEADER.match(line)]
        match = FILE.match(lines[0]) if lines else None
        return match.group(1) if match else None


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a markdown page, in order."""
    found: list[Block] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        skip = NOT_RUN.match(before.strip())
        found.append(
            Block(
                match.group(1), "\n".join(body) + "\n", start + 1, skip.group(1) if skip else None
            )
        )
        i += 1
    return found


def script(page: Path) -> str:
    """The bash script that runs ``page``'s commands (see the module docstring)."""
    parts = [
        "set -euo pipefail",
        "__expect() {  # every non-empty line of stdin must occur in $__out",
        "  local line",
        "  while IFS= read -r line; do",
        '    [ -z "$line" ] && continue',
        '    if ! grep -qF -- "$line" <<<"$__out"; then',
        '      printf "expected output not found: %s\\n--- got:\\n%s\\n" "$line" "$__out" >&2',
        "      exit 1",
        "    fi",
        "  done",
        "}",
    ]
    page_blocks = [b for b in blocks(page) if not b.skip]
    for block in page_blocks:
        if block.file:
            path = shlex.quote(block.file)
            parts += [
                f'mkdir -p "$(dirname {path})"',
                f"cat > {path} <<'POLYMIX_FILE'",
                block.text.rstrip("\n"),
                "POLYMIX_FILE",
            ]
    for block in page_blocks:
        where = f"{page.name}:{block.line}"
        if block.lang in ("bash", "sh", "shell"):
            parts += [f"echo '::: {where}' >&2", block.text.rstrip("\n")]
        elif block.lang == "console":
            parts += _transcript(block, where)
    return "\n".join(parts) + "\n"


def _transcript(block: Block, where: str) -> list[str]:
    parts: list[str] = []
    command: list[str] = []
    expected: list[str] = []

    def flush() -> None:
        if command:
            parts.extend(
                [
                    f"echo '::: {where}' >&2",
                    f"__out=$( POLYMIX_DOCS_PLAIN=1 {' '.join(command)} 2>&1 ) || true",
                ]
            )
            parts.extend(["__expect <<'POLYMIX_EXPECT'", *expected, "POLYMIX_EXPECT"])

    continued = False
    for line in block.text.splitlines():
        if continued:
            command.append(line.rstrip("\\").rstrip())
            continued = line.endswith("\\")
        elif line.startswith("$ "):
            flush()
            command, expected = [line[2:].rstrip("\\").rstrip()], []
            continued = line.endswith("\\")
        elif line.strip():  # "..." in a shown line stands for a part that varies (a path)
            expected.extend(piece.strip() for piece in line.split("...") if piece.strip())
    flush()
    return parts


WRAPPER = """#!{python}
# polymix at tiny sizes, for the docs test (docs/scripts/doc_commands.py)
import os, re, sys
REAL = {real!r}
args = sys.argv[1:]
command = args[0] if args else ""
if os.environ.get("POLYMIX_DOCS_PLAIN"):  # a transcript: run as written
    command = ""
flags = ("--help", "-h", "--cfg", "-c", "--info", "--version")
if command == "train" and any(a.startswith("resume=") for a in args):
    # a resumed run keeps its (tiny) config; it may only be extended (scheduler none)
    args = [{extend!r} if a.startswith("trainer.epochs=") else a for a in args]
elif command == "train" and not any(a in flags for a in args):
    if "-m" in args or "--multirun" in args:
        kept = [{keep}]  # the first swept option keeps two values, the others one
        def few(arg):
            key, sep, value = arg.partition("=")
            if not sep or key.startswith(("hydra", "-")) or re.search(r"[\\[\\](){{}}'\\"]", value):
                return arg
            if "," not in value:
                return arg
            values = value.split(",")[: kept[0]]
            kept[0] = 1
            return key + "=" + ",".join(values)
        args = [few(a) for a in args]
        if any(a.startswith("hparams_search=") for a in args):
            args.append("hydra.sweeper.n_trials={keep}")
    args += {train!r}
elif command == "evaluate" and not any(a in flags for a in args):
    args += {evaluate!r}
elif command == "predict" and not any(a in flags for a in args):
    args += {predict!r}
elif command == "export" and not any(a in flags for a in args):
    args += {export!r}
os.execv(REAL, [REAL, *args])
"""


def environment(workdir: Path, tiny: bool) -> dict[str, str]:
    """The environment of a page's script: the venv's ``polymix`` and ``python`` on PATH
    (behind the tiny wrapper, if any)."""
    venv_bin = Path(sys.executable).parent
    path = [str(venv_bin), os.environ.get("PATH", "")]
    if tiny:
        bin_dir = workdir / ".docs-bin"
        bin_dir.mkdir(exist_ok=True)
        wrapper = bin_dir / "polymix"
        wrapper.write_text(
            WRAPPER.format(
                python=sys.executable,
                real=str(venv_bin / "polymix"),
                keep=SWEEP_VALUES,
                extend=EXTEND_EPOCHS,
                train=TINY_TRAIN,
                evaluate=TINY_EVALUATE,
                predict=TINY_PREDICT,
                export=TINY_EXPORT,
            )
        )
        wrapper.chmod(0o755)
        path.insert(0, str(bin_dir))
    env = {**os.environ, "PATH": os.pathsep.join(path), "PYTHONHASHSEED": "0"}
    env.pop("POLYMIX_DEBUG", None)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def prepare(workdir: Path) -> None:
    """A fresh folder as the docs assume one: the repository's examples/ in it."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "examples", workdir / "examples", dirs_exist_ok=True)


def start(page: Path, workdir: Path, tiny: bool) -> subprocess.Popen:
    """Start running ``page``'s commands in ``workdir`` (prepared); stdout and stderr go to
    ``workdir/.docs.log``."""
    prepare(workdir)
    (workdir / ".docs.sh").write_text(script(page))
    log = (workdir / ".docs.log").open("w")
    return subprocess.Popen(
        ["bash", ".docs.sh"],
        cwd=workdir,
        env=environment(workdir, tiny),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (as the test runs it)")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="polymix-docs-"))
    process = start(args.page.resolve(), workdir.resolve(), args.tiny)
    status = process.wait()
    print((workdir / ".docs.log").read_text(), end="")
    print(f"{args.page}: exit status {status} (in {workdir})", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
