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


# --------------------------------------------------- hydra.job.chdir=true and relative paths


def test_relative_paths_start_from_the_launch_dir_under_chdir(tmp_path):
    """With ``hydra.job.chdir=true`` the run dir becomes current, but ``data.path``,
    ``data.test_path``, ``resume``, and evaluate's and predict's ``ckpt``, ``input`` and
    ``output`` are still taken from the folder polymix was started in."""
    import shutil

    from helpers import TINY_FILE, run_cli

    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    shutil.copy(REPO / "examples" / "heat.csv", work / "data" / "heat.csv")
    shutil.copy(REPO / "examples" / "heat.csv", work / "data" / "heat_test.csv")
    shutil.copy(REPO / "examples" / "heat_new.csv", work / "data" / "new.csv")
    chdir = "hydra.job.chdir=true"

    train = run_cli(
        "train",
        "experiment=pce_file",
        "data.path=data/heat.csv",
        "data.test_path=data/heat_test.csv",
        "data.inputs=[power,flow]",
        "data.outputs=[temperature]",
        *TINY_FILE,
        "hydra.run.dir=runs/train",
        chdir,
        cwd=work,
    )
    assert train.returncode == 0, train.stderr
    ckpt = "runs/train/checkpoints/last.pt"
    assert (work / ckpt).is_file()

    resumed = run_cli("train", f"resume={ckpt}", "hydra.run.dir=runs/resume", chdir, cwd=work)
    assert resumed.returncode == 0, resumed.stderr

    evaluate = run_cli("evaluate", f"ckpt={ckpt}", "hydra.run.dir=runs/eval", chdir, cwd=work)
    assert evaluate.returncode == 0, evaluate.stderr
    assert (work / "runs" / "eval" / "metrics.json").is_file()

    predict = run_cli(
        "predict",
        f"ckpt={ckpt}",
        "input=data/new.csv",
        "output=pred.csv",
        "hydra.run.dir=runs/predict",
        chdir,
        cwd=work,
    )
    assert predict.returncode == 0, predict.stderr
    assert (work / "pred.csv").is_file()
    assert not (work / "runs" / "predict" / "pred.csv").exists()
