"""`polymix` sets glibc's malloc tunables in its own process: no restart (re-exec)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import TINY

from polymix_cli.cli import allocator


@pytest.mark.skipif(allocator.glibc() is None, reason="glibc on Linux only")
def test_cli_does_not_restart_and_logs_the_allocator(tmp_path):
    """`polymix train` runs in the process it was started in, tuned: the program that
    called ``main`` goes on after it (an exec would have replaced that program)."""
    script = (
        "import os, sys; from polymix_cli.cli.main import main; "
        "sys.argv = ['polymix', *sys.argv[1:]]; main(); "
        "print('still here', os.environ['POLYMIX_MALLOC'])"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "POLYMIX_MALLOC"))}
    out = subprocess.run(
        [sys.executable, "-c", script, "train", *TINY, f"hydra.run.dir={tmp_path}"],
        check=False,
        env=base,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "still here tuned" in out.stdout
    assert "allocator: tuned" in (tmp_path / "train.log").read_text()
