"""Every command of the docs runs as written: the ```bash blocks of the home page, the
tutorial, the guides and the README, in order, one fresh folder per page, at tiny sizes; the
```console transcripts are run and their shown output checked; ```yaml blocks with a
``# file: PATH`` line are written first. The conventions are in docs/development.md and
the runner in docs/scripts/doc_commands.py. The pages run side by side, two at a time."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import REPO

spec = importlib.util.spec_from_file_location(
    "doc_commands", REPO / "docs" / "scripts" / "doc_commands.py"
)
doc_commands = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = doc_commands  # its dataclass looks itself up there
spec.loader.exec_module(doc_commands)

PAGES = [
    REPO / "docs" / "index.md",
    REPO / "docs" / "tutorial.md",
    *sorted((REPO / "docs" / "guides").glob("*.md")),
    REPO / "README.md",
]
TIMEOUT = 300  # seconds per page
PARALLEL = 2


def _run(page: Path, workdir: Path) -> tuple[int, str, float]:
    start = time.perf_counter()
    process = doc_commands.start(page, workdir, tiny=True)
    try:
        status = process.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        status = process.wait()
    return status, (workdir / ".docs.log").read_text(), time.perf_counter() - start


@pytest.fixture(scope="module")
def page_runs(tmp_path_factory) -> dict[Path, tuple[int, str, float]]:
    """Every page's commands, run in its own fresh folder, PARALLEL pages at a time."""
    root = tmp_path_factory.mktemp("docs")
    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = {page: pool.submit(_run, page, root / page.stem.lower()) for page in PAGES}
        return {page: future.result() for page, future in futures.items()}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_page_commands_run(page, page_runs):
    status, log, seconds = page_runs[page]
    # the log marks each block with '::: PAGE:LINE'; the last one is where it stopped
    assert status == 0, f"{page.name}: exit status {status} after {seconds:.0f} s\n{log[-6000:]}"


def test_every_page_has_commands():
    for page in PAGES:
        runnable = [
            b for b in doc_commands.blocks(page) if b.lang in ("bash", "console") and not b.skip
        ]
        assert runnable, f"{page.name} has no command that the docs test runs"


def test_a_failing_command_or_a_wrong_transcript_fails_the_page(tmp_path):
    """The runner is not a no-op: a failing command, a wrong transcript and a missing
    # file: block each fail the page; a not-run block and a shown text block do not run."""
    cases = {
        "fails": "```bash\ntrue\nfalse\necho never\n```\n",
        "transcript": "```console\n$ polymix frobnicate\npolymix: unknown command 'other'\n```\n",
        "file": "```yaml\n# file: sub/a.yaml\nx: 1\n```\n\n```bash\ntest -s sub/b.yaml\n```\n",
        "ok": (
            "<!-- not-run: a cluster -->\n```bash\nfalse\n```\n\n```text\nfalse\n```\n\n"
            "```yaml\n# file: sub/a.yaml\nx: 1\n```\n\n```bash\ngrep -q 'x: 1' sub/a.yaml\n```\n\n"
            "```console\n$ polymix frobnicate\npolymix: unknown command ... (see polymix --help)\n```\n"
        ),
    }
    for name, text in cases.items():
        page = tmp_path / f"{name}.md"
        page.write_text(text)
        status, log, _ = _run(page, tmp_path / name)
        assert (status == 0) == (name == "ok"), (name, status, log)
    assert "never" not in (tmp_path / "fails" / ".docs.log").read_text()
