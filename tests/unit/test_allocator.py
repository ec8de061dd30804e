"""glibc's malloc tunables, set in-process (no re-exec); each case in a fresh process,
since they change the allocator of the process that sets them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from polymix_cli.cli import allocator

# after tune_malloc: does a 100 MiB block come from the heap (tuned) or from mmap (glibc's
# default above 32 MiB), and what do the process and its children see?
PROBE = """
import ctypes, json, os
from polymix_cli.cli.allocator import glibc, tune_malloc

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

state = tune_malloc()
libc = glibc()
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
block = libc.malloc(100 << 20)
mmapped = libc.mallinfo2().hblkhd >= 100 << 20
libc.free(block)
print(json.dumps({"state": state, "mmapped": mmapped, "env": os.environ.get("POLYMIX_MALLOC"),
                  "threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_")}))
"""

needs_glibc = pytest.mark.skipif(allocator.glibc() is None, reason="glibc on Linux only")


def probe(**env: str) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "POLYMIX_MALLOC"))}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        check=False,
        env={**base, **env},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@needs_glibc
def test_tuned_in_process():
    result = probe()
    assert result["state"] == "tuned" and result["env"] == "tuned"
    assert not result["mmapped"]  # freed memory stays in the heap for the next step
    assert result["threshold"] == str(allocator.THRESHOLD)  # children start tuned


@needs_glibc
def test_system_opts_out():
    result = probe(POLYMIX_MALLOC="system")
    assert result["state"] == "system" and result["env"] == "system"
    assert result["mmapped"] and result["threshold"] is None


def test_no_op_off_glibc(monkeypatch):
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    monkeypatch.delenv("POLYMIX_MALLOC", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert allocator.tune_malloc() == "system"
    assert "POLYMIX_MALLOC" not in os.environ and "MALLOC_MMAP_THRESHOLD_" not in os.environ
