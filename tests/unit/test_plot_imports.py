"""The code that chooses a run's figures loads matplotlib only when a figure is drawn."""

from __future__ import annotations

import subprocess
import sys


def test_run_plots_and_run_outputs_import_without_matplotlib() -> None:
    code = (
        "import sys\n"
        "import polymix_cli.reporting.run_plots, polymix_cli.runs.outputs\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
