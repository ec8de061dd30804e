"""Fixtures shared by the three levels of tests, and their markers.

- tests/unit: the library and pure functions (no Hydra, no runs);
- tests/app: in-process runs (``compose_train``, ``prepare``, ``train`` with ``QuietUI``,
  and the ``cli`` fixture, which calls ``polymix_cli.cli.main.main``);
- tests/e2e: the real command in a subprocess (``run_cli``, ``tiny_run``), sweeps and
  launchers; a test that needs a subprocess run, even through a fixture, is e2e.

Every test is marked with its level (``pytest -m unit``, ``-m "not e2e"``). The settings
and helpers shared by all (``TINY``, ``compose_train``, ``run_cli``, ``QuietUI``, ...) are
in tests/helpers.py; they are imported here too, so ``from conftest import ...`` keeps
working, but new tests should import them from ``helpers``. There is one conftest.py on
purpose: a conftest.py in a subfolder would take over the module name ``conftest``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from helpers import (  # noqa: F401 (re-exported for ``from conftest import ...``)
    CONFIGS,
    REPO,
    TINY,
    QuietUI,
    compose_train,
    main_in_process,
    run_cli,
)

from polymix_cli.config.schema import register

# the typed schemas the YAML files name in their defaults lists: tests that compose the
# configs with Hydra's own API (not through polymix_cli.cli.apps) need them registered
register()

LEVELS = ("unit", "app", "e2e")
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    """Mark each test with its level: the name of its folder under tests/."""
    for item in items:
        parts = Path(item.path).resolve().relative_to(TESTS).parts
        if len(parts) > 1 and parts[0] in LEVELS:
            item.add_marker(parts[0])


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One real `polymix train` run at tiny sizes; returns its run dir."""
    run_dir = tmp_path_factory.mktemp("train") / "run"
    result = run_cli("train", *TINY, "trainer.checkpoint_every=10", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr + result.stdout
    return run_dir


def _in_process(capsys, monkeypatch):
    """``run(*args)`` runs ``polymix ARGS`` in this process (the real entry point, without
    paying an interpreter and torch import per case); returns (exit status, stdout, stderr)."""
    monkeypatch.delenv("POLYMIX_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", list(sys.argv))

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = main_in_process(list(args))
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


@pytest.fixture
def cli(capsys, monkeypatch):
    """``cli(*args)`` runs ``polymix ARGS`` in this process; returns (exit status, stderr)."""
    run_with_output = _in_process(capsys, monkeypatch)

    def run(*args: str) -> tuple[int, str]:
        status, _, err = run_with_output(*args)
        return status, err

    return run


@pytest.fixture
def cli_output(capsys, monkeypatch):
    """``cli_output(*args)`` as ``cli``, returning (exit status, stdout, stderr)."""
    return _in_process(capsys, monkeypatch)


@pytest.fixture
def one_thread():
    """One torch intra-op thread for the test, restored after it. The per-step work of tiny
    models is small: intra-op threads only add overhead (several times slower on a busy
    two-core machine). Use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
