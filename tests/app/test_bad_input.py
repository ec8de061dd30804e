"""Bad input found by fuzzing (issue 17): every case is one line and the right exit status
(2 for bad options and data, 1 for failures while running), no silent nonsense, nothing
left behind. Each case runs the real entry point in this process (the ``cli`` fixture)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from helpers import assert_one_line, write_csv

pytestmark = pytest.mark.usefixtures("one_thread")

# a tiny synthetic run: a few epochs, few draws, no Sobol step
S = [
    "trainer.epochs=3",
    "trainer.num_samples=4",
    "eval.num_samples=8",
    "eval.grid_points=5",
    "data.num_train=20",
    "data.num_test=20",
    "eval.sensitivity=off",
    "trainer.progress=log",
]
F = [
    "data=file",
    "model=pce",
    "layout=pce_iid",
    "data.outputs=[y]",
    "trainer.epochs=3",
    "trainer.num_samples=4",
    "eval.num_samples=8",
    "eval.grid_points=5",
    "trainer.progress=log",
]


def _rows(n: int, y=lambda x: 2 * x + 0.1) -> list[str]:
    return [f"{i / n:.4f},{y(i / n):.6g}" for i in range(n)]


def assert_error(cli, args, status, *needles, written: Path | None = None):
    """``polymix ARGS`` fails with ``status`` and one error line holding every needle."""
    got, err = cli(*args)
    assert got == status, err
    assert_one_line(err.splitlines()[-1] if status == 1 else err, *needles)
    assert "Traceback" not in err
    if written is not None:
        assert not written.exists() or not any(written.iterdir()), list(written.iterdir())


# ------------------------------------------------------- values that overflowed inside torch


@pytest.mark.parametrize(
    ("option", "needle"),
    [
        ("seed=18446744073709551616", "seed must be an integer in [0, 2**63-1]"),
        ("data.seed=18446744073709551616", "data.seed must be an integer in [0, 2**63-1]"),
        ("data.test_seed=18446744073709551616", "data.test_seed must be an integer"),
        (
            "trainer.num_threads=2147483648",
            "trainer.num_threads must be null or an integer in [1, 4096]",
        ),
        (
            "trainer.weight_factor=1e300",
            "trainer.weight_factor must be a number in [0.0, inf) that float32 holds",
        ),
        ("data.noise_std=1e300", "data.noise_std must be a number"),
        (
            "optimizer.lr=1e-300",
            "optimizer.lr must be a number in (0.0, inf), got 1e-300, which float32 rounds to 0",
        ),
        ("data.bounds=abc", "data.bounds must be a list of [low, high] pairs"),
        ("data.bounds=null", "data.bounds must be a list of [low, high] pairs"),
        ("data.bounds=[[0,1,2]]", "data.bounds must be a list of [low, high] pairs"),
        ("data.bounds=1e-320", "data.bounds must be a list of [low, high] pairs"),
        ("data.bounds=[[-inf,inf]]", "data.bounds must be a list of [low, high] pairs"),
        ("data.bounds=[[-1e39,1e39]]", "data.bounds must lie within float32's range"),
        ("data.bounds=[[1,1.00000001]]", "data.bounds must have low < high in float32"),
    ],
)
def test_overflowing_options_are_usage_errors(cli, tmp_path, option, needle):
    run = tmp_path / "run"
    assert_error(cli, ["train", *S, option, f"hydra.run.dir={run}"], 2, needle)
    assert not run.exists()


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_seed_overflow_of_evaluate_and_predict(cli, tmp_path, command):
    args = [command, "ckpt=x.pt", "seed=18446744073709551616", f"hydra.run.dir={tmp_path / 'r'}"]
    if command == "predict":
        args += ["input=in.csv", "output=out.csv"]
    status, err = cli(*args)
    assert status == 2 and "seed must be an integer in [0, 2**63-1]" in err, err


def test_file_bounds_of_infinite_scale_are_refused(cli, tmp_path):
    data = write_csv(tmp_path / "d.csv", "x,y", _rows(20))
    args = ["train", *F, f"data.path={data}", "data.bounds=[[-1e308,1e308]]"]
    assert_error(cli, [*args, f"hydra.run.dir={tmp_path / 'r'}"], 2, "data.bounds must lie within")


# ----------------------------------------------------- data that overflow the model's domain


@pytest.mark.parametrize(
    ("rows", "needle"),
    [
        (_rows(20) + ["1e308,0.5"], "the input 'x' overflows float32"),
        (_rows(20, lambda x: x * 1e300), "the output 'y' overflows float32"),
    ],
)
def test_data_overflowing_float32_is_an_error(cli, tmp_path, rows, needle):
    data = write_csv(tmp_path / "d.csv", "x,y", rows)
    run = tmp_path / "run"
    assert_error(cli, ["train", *F, f"data.path={data}", f"hydra.run.dir={run}"], 2, needle)
    assert not (run / "metrics.json").exists()


# ------------------------------------------------------------ non-finite loss at the first step


@pytest.mark.parametrize(
    ("options", "needles"),
    [
        (
            ["data.noise_std=1e30"],
            ["no update had happened yet", "the data term was inf", "data.noise_std"],
        ),
        (["trainer.weight_factor=1e38"], ["trainer.weight_factor=1e+38", "overflows"]),
        (
            ["trainer.loss=gaussian_nll", "trainer.noise.init_std=1e-40"],
            ["the data term was", "trainer.noise.init_std"],
        ),
    ],
)
def test_non_finite_first_step_names_its_source(cli, tmp_path, options, needles):
    status, err = cli("train", *S, *options, f"hydra.run.dir={tmp_path / 'r'}")
    assert status == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("polymix: error: non-finite loss at epoch 1"), err
    assert "optimizer.lr" not in last
    for needle in needles:
        assert needle in last, (needle, last)


# ------------------------------------------------------------------ unknown keys are refused


@pytest.mark.parametrize(
    "args",
    [
        ["train", *S, "+trainer.foo=1"],
        ["train", *S, "+new.key=1"],
        ["train", *S, "+model.gate.foo=1"],
        ["train", *S, "optimizer=adamw", "+optimizer.momentum=0.5"],
        ["evaluate", "ckpt=x.pt", "+model.kind=nn"],
        ["predict", "ckpt=x.pt", "input=i.csv", "output=o.csv", "+predict.bogus=1"],
    ],
)
def test_added_keys_are_unknown_options(cli, tmp_path, args):
    status, err = cli(*args, f"hydra.run.dir={tmp_path / 'r'}")
    assert status == 2, err
    assert err.startswith("polymix: error: unknown option"), err
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------- paths: folders, files, required


def test_evaluate_without_ckpt_says_it_is_required(cli, tmp_path):
    assert_error(cli, ["evaluate", f"hydra.run.dir={tmp_path / 'r'}"], 2, "ckpt= is required")


@pytest.mark.parametrize(
    "args",
    [
        ["evaluate", "ckpt={d}"],
        ["train", "resume={d}"],
        ["predict", "ckpt={d}", "input=i.csv", "output={d}/o.csv"],
    ],
)
def test_a_folder_as_checkpoint_is_named_a_folder(cli, tmp_path, args):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "i.csv").write_text("x1\n0.1\n")
    args = [a.format(d=folder) for a in args]
    args = [a.replace("input=i.csv", f"input={folder / 'i.csv'}") for a in args]
    assert_error(
        cli, [*args, f"hydra.run.dir={tmp_path / 'r'}"], 2, f"checkpoint {folder} is a folder"
    )


def test_summarize_a_file_says_it_is_a_file(cli, tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("x")
    status, err = cli("summarize", str(path))
    assert status == 2, err
    assert "is a file; name the folder of a sweep" in err, err


def _metrics_numbers(metrics: dict) -> list:
    out = []
    for value in metrics.values():
        if isinstance(value, dict):
            out += _metrics_numbers(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(value)
    return out


def test_metrics_of_a_normal_run_are_finite(cli, tmp_path):
    status, err = cli("train", *S, f"hydra.run.dir={tmp_path / 'r'}")
    assert status == 0, err
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert all(math.isfinite(v) for v in _metrics_numbers(metrics))
