"""Conventions of a command-line program that need a real process (issue 17): a stdout
whose reader went away (`polymix evaluate --help | head -1`)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import REPO


def _with_closed_stdout(*args: str) -> subprocess.CompletedProcess:
    """``polymix ARGS`` writing into a pipe whose reading end is already closed."""
    read, write = os.pipe()
    os.close(read)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("POLYMIX_DEBUG", None)
    try:
        return subprocess.run(
            [sys.executable, "-m", "polymix_cli", *args],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=env,
            check=False,
            timeout=120,
        )
    finally:
        os.close(write)


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["train", "--help"],
        ["evaluate", "--help"],
        ["predict", "--hydra-help"],
        ["train", "--cfg", "job"],
        ["train", "-sc", "install=bash"],
    ],
)
def test_closed_stdout_exits_quietly(args):
    result = _with_closed_stdout(*args)
    assert result.returncode in (0, 141)
    assert result.stderr == ""
