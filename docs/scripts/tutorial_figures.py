"""The pictures of docs/tutorial.md: run the tutorial's commands as written (full size, in
a temporary folder, see doc_commands.py) and copy the plots of its runs into
docs/tutorial/. ``make docs-figures`` runs it (about a minute).

    python docs/scripts/tutorial_figures.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from doc_commands import REPO, start

PAGE = REPO / "docs" / "tutorial.md"
TARGET = REPO / "docs" / "tutorial"

# picture in docs/tutorial/ <- (the run's name, the plot in its run dir)
FIGURES = {
    "parity.png": ("pce_file", "plots/parity.png"),
    "loss.png": ("pce_file", "plots/loss.png"),
    "slices.png": ("pce_file", "plots/slices.png"),
    "calibration.png": ("pce_file", "plots/calibration.png"),
    "sobol.png": ("pce_file", "plots/sobol.png"),
    "calibration_mse.png": ("heat_mse", "plots/calibration.png"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args()
    workdir = (args.keep or Path(tempfile.mkdtemp(prefix="polymix-tutorial-"))).resolve()
    status = start(PAGE, workdir, tiny=False).wait()
    if status != 0:
        print((workdir / ".docs.log").read_text(), file=sys.stderr)
        print(f"the tutorial's commands failed (status {status}) in {workdir}", file=sys.stderr)
        return 1
    TARGET.mkdir(exist_ok=True)
    for picture, (name, plot) in FIGURES.items():
        runs = sorted((workdir / "outputs" / name).iterdir())  # one run of each name
        shutil.copyfile(runs[-1] / plot, TARGET / picture)
        print(f"docs/tutorial/{picture} <- outputs/{name}/{runs[-1].name}/{plot}")
    if not args.keep:
        shutil.rmtree(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
