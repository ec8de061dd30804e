"""Importing polymix leaves matplotlib's backend alone (a notebook's stays its own); the
CLI picks Agg for its plot files unless MPLBACKEND says otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

IMPORT_ALL = """
import importlib, pkgutil
import matplotlib
matplotlib.use("svg")
import polymix_cli
names = [m.name for m in pkgutil.walk_packages(polymix_cli.__path__, "polymix_cli.")
         if not m.name.endswith("__main__")]
optional = ("ray", "hydra_plugins.hydra_ray_launcher", "mlflow", "tensorboard")
for name in names:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as err:  # a module of an extra (ray, tracking) not installed
        if not (err.name or "").startswith(optional):
            raise
import matplotlib.pyplot  # the backend is resolved by now
assert "polymix_cli.reporting.plots" in names or any("plots" in n for n in names), names
print(len(names), matplotlib.get_backend())
"""


def test_importing_polymix_keeps_the_backend():
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL], check=False, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    count, backend = out.stdout.split()
    assert int(count) > 30
    assert backend == "svg"


def test_cli_chooses_agg_unless_the_user_did(monkeypatch):
    from polymix_cli.cli import main

    monkeypatch.delenv("MPLBACKEND", raising=False)
    main._use_noninteractive_backend()
    assert os.environ["MPLBACKEND"] == "Agg"
    monkeypatch.setenv("MPLBACKEND", "svg")
    main._use_noninteractive_backend()
    assert os.environ["MPLBACKEND"] == "svg"
