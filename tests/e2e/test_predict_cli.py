"""User data end to end, in user units: train on a CSV with the real command (run from its
folder, with a relative data.path), evaluate from elsewhere, and `polymix predict`; predict's
handling of bad input rows (reported with their numbers, nothing written) and of
extrapolation, on that run's checkpoint. The README's example runs in
app/test_predict_runs.py."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_FILE, read_csv_array, run_cli, truth

from polymix_cli.cli.apps import parse_config
from polymix_cli.config.validation import ConfigError
from polymix_cli.runs.checkpoint import load_checkpoint, load_trained
from polymix_cli.runs.predict import PredictSettings, output_columns, predict_file

# the inputs live on [0, 10] and [100, 200], the outputs around 1000 and 6
TRAIN = [
    "experiment=pce_file",
    "trainer.loss=mse_sum",
    "data.path=train.csv",
    "data.outputs=[y1,y2]",
    "optimizer.lr=0.05",
    *TINY_FILE,
    "trainer.epochs=600",
    "trainer.progress=log",
]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(3)
    a, b = rng.uniform(0, 10, 120), rng.uniform(100, 200, 120)
    y = truth(a, b) + 0.01 * rng.standard_normal((120, 2))
    np.savetxt(
        folder / "train.csv",
        np.column_stack([a, b, y]),
        delimiter=",",
        header="a,b,y1,y2",
        comments="",
    )
    # new points inside the bounds, columns in another order, plus a label column
    rng = np.random.default_rng(5)
    a, b = rng.uniform(0.5, 9.5, 50), rng.uniform(105, 195, 50)
    rows = "".join(
        f"p{i},{bi!r},{ai!r}\n" for i, (ai, bi) in enumerate(zip(a.tolist(), b.tolist()))
    )
    write(folder / "new.csv", "label,b,a\n" + rows)
    np.savez(folder / "new.npz", a=a, b=b)
    return folder


@pytest.fixture(scope="module")
def file_run(data_dir) -> Path:
    run_dir = data_dir / "run"
    result = run_cli(
        "train", *TRAIN, f"hydra.run.dir={run_dir}", cwd=data_dir
    )  # a relative data.path
    assert result.returncode == 0, result.stderr + result.stdout
    return run_dir


@pytest.fixture(scope="module")
def trained(file_run):
    return load_trained(file_run / "checkpoints" / "last.pt", parse_config)


def test_round_trip_in_user_units(cli, file_run, data_dir, tmp_path, monkeypatch, capsys):
    metrics = json.loads((file_run / "metrics.json").read_text())
    assert (
        metrics["test"]["rmse"] < 0.1
        and metrics["test"]["r2"] > 0.98
        and metrics["test"]["rmse_true"] is None
    )
    plots = sorted(p.name for p in (file_run / "plots").iterdir())
    assert plots == [
        "calibration.png",
        "loss.png",
        "parity.png",
        "slices.png",
        "sobol.png",
    ]  # several inputs: no prediction.png
    assert set(metrics["sensitivity"]["input_distribution"]) >= {
        "low",
        "high",
    }  # uniform on the bounds
    state = load_checkpoint(file_run / "checkpoints" / "last.pt")
    assert state["extra"]["columns"] == {"inputs": ["a", "b"], "outputs": ["y1", "y2"]}
    assert state["extra"]["data_file"]["path"] == str(data_dir / "train.csv")
    assert f"path: {data_dir / 'train.csv'}" in state["config"]  # stored absolutely

    # evaluate from another folder: the checkpoint alone suffices, and the metrics are the same
    monkeypatch.chdir(tmp_path)
    ev = tmp_path / "eval"
    status, err = cli(
        "evaluate", f"ckpt={file_run / 'checkpoints' / 'last.pt'}", f"hydra.run.dir={ev}"
    )
    assert status == 0, err
    again = json.loads((ev / "metrics.json").read_text())
    assert again["train"] == metrics["train"] and again["test"] == metrics["test"]

    # predict from another folder, into user units
    out = tmp_path / "pred.csv"
    status, err = cli(
        "predict",
        f"ckpt={file_run / 'checkpoints' / 'last.pt'}",
        f"input={data_dir / 'new.csv'}",
        "output=pred.csv",
        f"hydra.run.dir={tmp_path / 'p'}",
    )
    assert status == 0, err
    assert "wrote pred.csv: 50 row(s)" in (tmp_path / "p" / "predict.log").read_text()
    header, values = read_csv_array(out)
    assert header == output_columns(["a", "b"], ["y1", "y2"], [0.05, 0.5, 0.95])
    assert header[:4] == ["a", "b", "y1_mean", "y1_std"] and header[6] == "y1_q0.95"
    with (data_dir / "new.csv").open() as handle:
        given = list(csv.DictReader(handle))
    assert values[:, 0].tolist() == [
        float(r["a"]) for r in given
    ]  # inputs echoed exactly, in order
    assert values[:, 1].tolist() == [float(r["b"]) for r in given]
    err = values[:, [2, 7]] - truth(values[:, 0], values[:, 1])
    rmse = np.sqrt((err**2).mean(0))
    assert rmse[0] < 0.1 and rmse[1] < 0.02, rmse  # measured 0.042 and 0.0033
    assert np.abs(values[:, 2]).min() > 990  # user units, not the standardised domain
    for j in (2, 7):  # std > 0 and ordered quantiles
        assert (values[:, j + 1] > 0).all()
        assert (values[:, j + 2] <= values[:, j + 3]).all() and (
            values[:, j + 3] <= values[:, j + 4]
        ).all()


def test_npz_input_and_output_with_draws_agree_with_csv(trained, data_dir, tmp_path):
    settings = PredictSettings(num_samples=32, quantiles=(0.1, 0.9), save_draws=True)
    result = predict_file(trained, data_dir / "new.npz", tmp_path / "out.npz", settings)
    assert result.rows == 50 and result.seed == 1234
    with np.load(tmp_path / "out.npz") as z:
        arrays = {k: z[k] for k in z.files}
    assert set(arrays) == {
        "a",
        "b",
        "y1_mean",
        "y1_std",
        "y1_q0.1",
        "y1_q0.9",
        "y1_draws",
        "y2_mean",
        "y2_std",
        "y2_q0.1",
        "y2_q0.9",
        "y2_draws",
    }
    assert arrays["y1_draws"].shape == (50, 32)
    assert np.allclose(arrays["y1_draws"].mean(1), arrays["y1_mean"], rtol=0, atol=1e-9)
    assert np.allclose(arrays["y2_draws"].std(1, ddof=1), arrays["y2_std"], rtol=1e-9)
    assert np.allclose(np.quantile(arrays["y2_draws"], 0.9, axis=1), arrays["y2_q0.9"], rtol=1e-12)
    csv_settings = PredictSettings(num_samples=32, quantiles=(0.1, 0.9))
    predict_file(trained, data_dir / "new.csv", tmp_path / "out.csv", csv_settings)
    header, values = read_csv_array(tmp_path / "out.csv")
    assert header == [k for k in arrays if not k.endswith("_draws")]
    assert np.array_equal(
        values, np.stack([arrays[k] for k in header], 1)
    )  # the same draws, exactly


def test_predict_streams_in_blocks(trained, data_dir, tmp_path):
    settings = PredictSettings(num_samples=16)
    predict_file(trained, data_dir / "new.csv", tmp_path / "one.csv", settings)
    predict_file(trained, data_dir / "new.csv", tmp_path / "blocks.csv", settings, block_rows=7)
    one, blocks = read_csv_array(tmp_path / "one.csv"), read_csv_array(tmp_path / "blocks.csv")
    assert one[0] == blocks[0] and one[1].shape == blocks[1].shape == (50, 12)
    # the same draws; only the float32 rounding of products over other batch sizes may differ
    assert np.allclose(one[1], blocks[1], rtol=0, atol=1e-4)
    other = PredictSettings(num_samples=16, seed=5)
    predict_file(trained, data_dir / "new.csv", tmp_path / "seed5.csv", other)
    assert np.abs(read_csv_array(tmp_path / "seed5.csv")[1] - one[1]).max() > 1e-3


@pytest.mark.parametrize(
    "text,needles",
    [
        (
            "a,b\n5,150\n5\n",
            ["(line numbers of the file): 1 bad row(s): line 3: 1 field, the header has 2"],
        ),
        ("a,b\n5,150\n5,abc\n6,160\n", ["line 3: b is not a number ('abc')"]),
        ("b,a\n150,nan\n", ["line 2: a is NaN"]),
        ("a,b\n5,150\n,150\n", ["line 3: a is empty"]),
        ("a,b\n\n5,150\n\n5,inf\n", ["line 5: b is inf"]),  # blank lines keep the file's numbering
        (
            "a,b\n5,150\n11,150\n4,99\n",
            [
                "2 row(s) outside the training bounds",
                "line 3: a=11 is outside [",
                "line 4: b=99 is outside [",
                "predict.allow_extrapolation=true",
            ],
        ),
        (
            "a,b\n5,abc\n11,150\n",
            ["1 bad row(s): line 2", "1 row(s) outside the training bounds: line 3"],
        ),
        ("a,c\n5,150\n", ["lacks the model's input column(s) 'b'", "the file's columns: a, c"]),
        ("a,b\n", ["has no data rows"]),
    ],
)
def test_bad_rows_are_reported_and_nothing_is_written(trained, tmp_path, text, needles):
    source = write(tmp_path / "in.csv", text)
    output = write(tmp_path / "out.csv", "an older result\n")
    with pytest.raises(ConfigError) as err:
        predict_file(trained, source, output, PredictSettings(num_samples=8))
    message = str(err.value)
    assert "\n" not in message and message.startswith("input=")
    for needle in needles:
        assert needle in message, (needle, message)
    assert output.read_text() == "an older result\n"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "in.csv",
        "out.csv",
    ]  # no temporary file left


def test_bad_npz_rows_are_numbered_from_one(trained, tmp_path):
    a, b = np.full(6, 5.0), np.full(6, 150.0)
    b[3] = np.nan
    np.savez(tmp_path / "in.npz", a=a, b=b)
    with pytest.raises(
        ConfigError, match=r"\(row numbers, from 1\): 1 bad row\(s\): row 4: b is NaN"
    ):
        predict_file(
            trained, tmp_path / "in.npz", tmp_path / "out.npz", PredictSettings(num_samples=8)
        )
    assert not (tmp_path / "out.npz").exists()


def test_allow_extrapolation_predicts_with_a_warning(trained, tmp_path, caplog):
    source = write(tmp_path / "in.csv", "a,b\n5,150\n12,150\n5,250\n")
    settings = PredictSettings(num_samples=8, allow_extrapolation=True)
    with caplog.at_level(logging.WARNING, logger="polymix"):
        result = predict_file(trained, source, tmp_path / "out.csv", settings)
    assert result.rows == 3 and result.extrapolated == 2
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "2 row(s) outside the training bounds are extrapolated" in warning
    assert "line 3: a=12 is outside" in warning and "line 4: b=250 is outside" in warning
    _, values = read_csv_array(tmp_path / "out.csv")
    assert values.shape == (3, 12) and np.isfinite(values).all()


def test_cli_bad_input_exits_2_with_one_line_and_no_output(file_run, tmp_path):
    source = write(tmp_path / "in.csv", "a,b\n5,150\n5,x\n")
    result = run_cli(
        "predict",
        f"ckpt={file_run / 'checkpoints' / 'last.pt'}",
        f"input={source}",
        f"output={tmp_path / 'out.csv'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("polymix: error: input="), result.stderr
    assert "line 3: b is not a number ('x')" in lines[0] and "nothing was written" in lines[0]
    assert not (tmp_path / "out.csv").exists()
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "failed" and status["exit_status"] == 2


@pytest.mark.parametrize(
    "args,needle",
    [
        (["output=out.txt"], "output=out.txt must end in .csv or .npz"),
        (["predict.save_draws=true"], "predict.save_draws=true needs an .npz output"),
        (["predict.quantiles=[0.5,1.5]"], "predict.quantiles.1 must be a number in (0.0, 1.0)"),
        (["predict.num_samples=1"], "predict.num_samples must be >= 2"),
        (
            ["predict.allow_extrapolation=maybe"],
            "predict.allow_extrapolation must be true or false",
        ),
        (["input=???"], "input must be the path of a CSV or NPZ file of input rows"),
        (["ckpt=nope.pt"], "checkpoint nope.pt does not exist"),
        (["input=missing.csv"], "input=missing.csv does not exist"),
        (["output=nodir/out.csv"], "output=nodir/out.csv: the folder nodir does not exist"),
    ],
)
def test_cli_option_errors(cli, file_run, data_dir, tmp_path, monkeypatch, args, needle):
    options = {
        "ckpt": str(file_run / "checkpoints" / "last.pt"),
        "input": str(data_dir / "new.csv"),
        "output": "out.csv",
    }
    options.update(arg.split("=", 1) for arg in args)
    monkeypatch.chdir(tmp_path)
    status, err = cli(
        "predict", *(f"{k}={v}" for k, v in options.items()), f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("polymix: error: ") and needle in lines[0], err
    assert not (tmp_path / "out.csv").exists()


def test_evaluate_on_a_new_test_file(cli, file_run, tmp_path):
    rng = np.random.default_rng(9)
    a, b = rng.uniform(1, 9, 40), rng.uniform(110, 190, 40)
    y = truth(a, b)
    np.savetxt(
        tmp_path / "more.csv",
        np.column_stack([y, b, a]),
        delimiter=",",
        header="y1,y2,b,a",
        comments="",
    )
    trained = json.loads((file_run / "metrics.json").read_text())
    status, err = cli(
        "evaluate",
        f"ckpt={file_run / 'checkpoints' / 'last.pt'}",
        f"data.test_path={tmp_path / 'more.csv'}",
        f"hydra.run.dir={tmp_path / 'ev'}",
    )
    assert status == 0, err
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["test"]["rmse"] < 0.1 and metrics["test"] != trained["test"]
    status, err = cli(
        "evaluate",
        f"ckpt={file_run / 'checkpoints' / 'last.pt'}",
        "data.num_test=50",
        f"hydra.run.dir={tmp_path / 'ev2'}",
    )
    assert status == 2 and "data.num_test does not apply to data from a file" in err


def test_predict_reads_checkpoints_whose_config_predates_later_options(
    file_run, data_dir, tmp_path
):
    """A stored config without the eval options added later (eval.sensitivity, ...) and a
    checkpoint without column names (x1, x2 are then expected) still predict."""
    from polymix_cli.runs.checkpoint import save_checkpoint

    state = load_checkpoint(file_run / "checkpoints" / "last.pt")
    state["config"] = "\n".join(
        line for line in state["config"].splitlines() if "sensitivity" not in line
    )
    del state["extra"]["columns"]
    old = save_checkpoint(tmp_path / "old.pt", {k: v for k, v in state.items() if k != "format"})
    trained = load_trained(old, parse_config)
    assert trained.input_names == ("x1", "x2") and trained.output_names == ("y1", "y2")
    source = write(tmp_path / "in.csv", "x2,x1\n150,5\n")
    result = predict_file(trained, source, tmp_path / "out.csv", PredictSettings(num_samples=8))
    assert result.rows == 1


def test_predict_adds_the_learned_noise_of_a_gaussian_nll_model(data_dir, tmp_path):
    """With a learned noise the output describes a new observation: its variance is the
    surrogate's plus the learned noise variance (in user units); include_noise=false
    gives the surrogate's spread alone."""
    run_dir = tmp_path / "nll"
    train = [("trainer.loss=gaussian_nll" if a == "trainer.loss=mse_sum" else a) for a in TRAIN]
    result = run_cli("train", *train, f"hydra.run.dir={run_dir}", cwd=data_dir)
    assert result.returncode == 0, result.stderr + result.stdout
    sigma = np.array(json.loads((run_dir / "metrics.json").read_text())["noise_std"])
    trained = load_trained(str(run_dir / "checkpoints" / "last.pt"), parse_config, None)
    with_noise, without = tmp_path / "with.csv", tmp_path / "without.csv"
    predict_file(
        trained, data_dir / "new.csv", with_noise, PredictSettings(num_samples=4000, quantiles=())
    )
    predict_file(
        trained,
        data_dir / "new.csv",
        without,
        PredictSettings(num_samples=4000, quantiles=(), include_noise=False),
    )
    (header, noisy), (_, plain) = read_csv_array(with_noise), read_csv_array(without)
    for j, name in enumerate(("y1", "y2")):
        std = header.index(f"{name}_std")
        expected = np.sqrt(plain[:, std] ** 2 + sigma[j] ** 2)
        assert np.allclose(noisy[:, std], expected, rtol=0.08), name
        assert (noisy[:, std] > plain[:, std]).all()
