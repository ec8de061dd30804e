"""data=file through the configs: reading CSV and NPZ tables into a prepared run, the test
split, bounds, validation messages, and the plots of a one-input file model. No training here
(see e2e/test_predict_cli.py); the reader and the plots alone are in unit/test_datafile.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import compose_train, is_png, truth, write_csv

from polymix_cli.config.validation import ConfigError, validate_train_config
from polymix_cli.runs.prepare import prepare

N = 60


@pytest.fixture
def table(tmp_path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 10, N), rng.uniform(100, 200, N)
    y = truth(a, b)
    return {"a": a, "b": b, "y1": y[:, 0], "y2": y[:, 1]}


@pytest.fixture
def csv_file(tmp_path, table) -> Path:
    rows = [
        f"{a!r},{b!r},id{i},{y1!r},{y2!r}"
        for i, (a, b, y1, y2) in enumerate(
            zip(*(table[k].tolist() for k in ("a", "b", "y1", "y2")))
        )
    ]
    return write_csv(tmp_path / "data.csv", "a,b,id,y1,y2", rows)


def file_cfg(
    path: Path | str, *extra: str, outputs: str = "[y1,y2]", inputs: str = "[a,b]"
) -> dict:
    return compose_train(
        [
            "experiment=pce_file",
            f"data.path={path}",
            f"data.outputs={outputs}",
            f"data.inputs={inputs}",
            *extra,
        ]
    )


# ----------------------------------------------------------------------------- reading


def test_csv_and_npz_give_the_same_dataset_in_user_units(tmp_path, table, csv_file):
    np.savez(tmp_path / "data.npz", **table)  # one 1-D array per column
    from_csv, from_npz = prepare(file_cfg(csv_file)), prepare(file_cfg(tmp_path / "data.npz"))
    for key in ("x_train", "y_train", "x_test", "y_test", "x_val", "y_val"):
        assert torch.equal(getattr(from_csv.data, key), getattr(from_npz.data, key)), key
    data = from_csv.data
    assert (
        data.input_names == ("a", "b")
        and data.output_names == ("y1", "y2")
        and data.true_fn is None
    )
    # 12 test rows; 10 of the 48 others (data.val_fraction 0.2) are the validation set
    assert data.x_train.shape == (38, 2) and data.x_test.shape == (12, 2)
    assert data.x_val.shape == (10, 2) and data.y_val.shape == (10, 2)
    # bounds: the min and max of every row of the file, in float64 as read
    expected = np.stack(
        [[table["a"].min(), table["a"].max()], [table["b"].min(), table["b"].max()]]
    )
    assert torch.equal(data.bounds, torch.from_numpy(expected))
    # the model trains on inputs in [-1, 1] and standardised outputs (file data's default)
    assert from_csv.x_train.abs().max() <= 1 + 1e-6 and from_csv.x_train.abs().max() > 0.9
    assert torch.allclose(from_csv.y_train.mean(0), torch.zeros(2), atol=1e-4)
    assert torch.allclose(from_csv.y_train.std(0), torch.ones(2), atol=1e-4)
    assert from_csv.data.source["rows"] == N and len(from_csv.data.source["sha256"]) == 64


def test_seeded_split_is_reproducible_disjoint_and_complete(csv_file, table):
    one, again = prepare(file_cfg(csv_file)).data, prepare(file_cfg(csv_file)).data
    other = prepare(file_cfg(csv_file, "data.seed=7", "data.test_fraction=0.25")).data
    assert torch.equal(one.x_test, again.x_test) and torch.equal(one.x_train, again.x_train)
    assert other.x_test.shape[0] == 15 and not torch.equal(one.x_test[:12], other.x_test[:12])
    file_rows = [
        tuple(r)
        for r in torch.tensor(np.stack([table["a"], table["b"]], 1), dtype=torch.float64).tolist()
    ]
    assert torch.equal(one.x_val, again.x_val)
    # every row in exactly one of the three sets
    assert sorted(
        tuple(r) for r in torch.cat([one.x_train, one.x_val, one.x_test]).tolist()
    ) == sorted(file_rows)
    position = {row: i for i, row in enumerate(file_rows)}
    for rows in (one.x_train, one.x_val, one.x_test):  # every set keeps the file's order
        index = [position[tuple(r)] for r in rows.tolist()]
        assert index == sorted(index)


def test_test_path_gives_every_row_to_training(tmp_path, csv_file):
    test = write_csv(tmp_path / "test.csv", "y2,b,a,y1", ["6.0,150,5,1001", "6.5,180,7,1002"])
    data = prepare(file_cfg(csv_file, f"data.test_path={test}", "data.val_fraction=0")).data
    assert data.x_train.shape == (N, 2) and data.x_test.tolist() == [[5.0, 150.0], [7.0, 180.0]]
    assert data.x_val is None and "val_split" not in data.source
    assert data.y_test.tolist() == [[1001.0, 6.0], [1002.0, 6.5]]
    assert data.source["test_rows"] == 2


def test_inputs_default_to_every_other_column(tmp_path):
    path = write_csv(tmp_path / "d.csv", "p,q,y", [f"{i},{i * i % 7},{i / 2}" for i in range(10)])
    data = prepare(
        compose_train(["experiment=pce_file", f"data.path={path}", "data.outputs=[y]"])
    ).data
    assert data.input_names == ("p", "q") and data.num_outputs == 1
    labelled = write_csv(tmp_path / "l.csv", "id,p,y", [f"run{i},{i},{i / 2}" for i in range(10)])
    with pytest.raises(
        ConfigError,
        match=r"column 'id' of data.path=.*l.csv holds no numbers; name the numeric "
        r"columns in data.inputs",
    ):
        prepare(compose_train(["experiment=pce_file", f"data.path={labelled}", "data.outputs=[y]"]))


def test_configured_bounds_are_kept(csv_file):
    p = prepare(file_cfg(csv_file, "data.bounds=[[-5,15],[50,250]]"))
    assert p.data.bounds.tolist() == [[-5.0, 15.0], [50.0, 250.0]]
    assert p.x_train.abs().max() <= 0.51  # [0, 10] inside [-5, 15] maps into [-0.5, 0.5]


# ----------------------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    "header,rows,args,needles",
    [
        (
            "a,b,y1,y2",
            ["1,100,1000,5", "2,x,1001,5", "3,120,1002,5", "4,130,nan,5", "5,140,1003,"],
            [],
            [
                "bad rows (line numbers of the file)",
                "line 3: b is not a number ('x')",
                "line 5: y1 is NaN",
                "line 6: y2 is empty",
            ],
        ),
        (
            "a,b,y1,y2",
            ["1,100,1000,5", "2,110,1001,5,9"],
            [],
            ["line 3: 5 fields, the header has 4"],
        ),
        (
            "a,b,y1,y2",
            ["1,100,1000,5", "2,110,1001,5"],
            [],
            ["2 data rows", "at least 2 training rows"],
        ),
        (
            "a,b,y1,y2",
            [f"{i},7,{i},{i}" for i in range(10)],
            [],
            ["input column 'b' is constant (7)", "drop it"],
        ),
        (
            "a,b,y1,y2",
            [f"{i},{i},{i},{i}" for i in range(10)],
            ["data.outputs=[zz,y1]"],
            ["data.outputs names 1 column 'zz'", "its columns: a, b, y1, y2"],
        ),
        (
            "a,b,y1,y2",
            [f"{i},{i},{i},{i}" for i in range(10)],
            ["data.inputs=[a,y1]", "data.outputs=[y1]"],
            ["'y1' is both in data.inputs and in data.outputs"],
        ),
        (
            "1,2,3,4",
            [f"{i},{i},{i},{i}" for i in range(10)],
            [],
            ["its first line 1 holds numbers", "header row"],
        ),
        ("a,a,y1,y2", [f"{i},{i},{i},{i}" for i in range(10)], [], ["names 'a' more than once"]),
        (
            "a,b,y1,y2",
            [f"{i},{i + 100},{i},{i}" for i in range(10)],
            ["data.bounds=[[0,5],[0,200]]"],
            ["data.bounds [0, 5] of input 'a' do not contain its training values (min 0, max 9)"],
        ),
        (
            "a,b,y1,y2",
            [f"{i},{i + 100},{i},{i}" for i in range(10)],
            ["data.bounds=[[0,10]]"],
            ["data.bounds must give [low, high] for each of the 2 input(s) (a, b), got 1"],
        ),
    ],
)
def test_bad_training_files_are_named_with_their_rows(tmp_path, header, rows, args, needles):
    path = write_csv(tmp_path / "d.csv", header, rows)
    overrides = {"data.outputs": "[y1,y2]", "data.inputs": "[a,b]"}
    for arg in args:
        key, _, value = arg.partition("=")
        overrides[key] = value
    cfg = compose_train(
        ["experiment=pce_file", f"data.path={path}", *(f"{k}={v}" for k, v in overrides.items())]
    )
    with pytest.raises(ConfigError) as err:
        prepare(cfg)
    message = str(err.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


def test_missing_and_misnamed_files(tmp_path, csv_file):
    with pytest.raises(
        ConfigError, match=r"data.path=.*nope.csv does not exist \(relative paths start from"
    ):
        prepare(file_cfg(tmp_path / "nope.csv"))
    with pytest.raises(ConfigError, match="must be a .csv or .npz file, got the extension '.txt'"):
        prepare(file_cfg(tmp_path / "data.txt"))
    test = write_csv(tmp_path / "test.csv", "a,y1,y2", ["1,2,3"])
    with pytest.raises(
        ConfigError, match=r"names 1 column 'b' that data.test_path=.*its columns: a, y1, y2"
    ):
        prepare(file_cfg(csv_file, f"data.test_path={test}"))


def test_npz_rows_are_numbered_from_one_and_2d_arrays_are_refused(tmp_path, table):
    bad = dict(table)
    bad["y2"] = bad["y2"].copy()
    bad["y2"][4] = np.inf
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(ConfigError, match=r"1 bad row \(row numbers, from 1\): row 5: y2 is inf"):
        prepare(file_cfg(tmp_path / "bad.npz"))
    np.savez(
        tmp_path / "wide.npz",
        x=np.stack([table["a"], table["b"]], 1),
        y1=table["y1"],
        y2=table["y2"],
    )
    with pytest.raises(
        ConfigError, match=r"array 'x' has shape \(60, 2\); polymix reads one 1-D array per column"
    ):
        prepare(file_cfg(tmp_path / "wide.npz", inputs="[x]"))


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["data.test_fraction=0"], "data.test_fraction must be a number in (0.0, 1.0), got 0"),
        (
            ["data.outputs=y1"],
            "data.outputs must be a non-empty list of column names, e.g. data.outputs=[a,b], got 'y1'",
        ),
        (["data.outputs=[]"], "data.outputs must be a non-empty list"),
        (["data.inputs=[a,a]"], "data.inputs names 'a' more than once"),
        (["data.bounds=[[0,1,2]]"], "data.bounds must be a list of [low, high] pairs"),
        (
            ["data.bounds=[[1,0],[0,1]]"],
            "data.bounds must have low < high for every input, got [1, 0] for input 1",
        ),
        (["data.seed=-1"], "data.seed must be >= 0"),
        (
            ["data.output_scaling=zscore"],
            "data.output_scaling must be one of ['none', 'standardize']",
        ),
    ],
)
def test_file_data_options_are_validated(overrides, needle):
    with pytest.raises(ConfigError) as err:  # a wrong type is refused while composing
        cfg = compose_train(
            ["experiment=pce_file", "data.path=d.csv", "data.outputs=[y1]", *overrides]
        )
        validate_train_config(cfg)
    assert needle in str(err.value)


def test_options_of_the_other_kind_of_data_are_refused():
    cfg = compose_train(["experiment=pce_file", "data.path=d.csv", "data.outputs=[y]"])
    cfg["data"]["num_test"] = 5000  # e.g. polymix evaluate ... data.num_test=5000 on a file model
    with pytest.raises(ConfigError, match="data.num_test does not apply to data from a file"):
        validate_train_config(cfg)
    cfg = compose_train()
    cfg["data"]["path"] = "new.csv"  # polymix evaluate ... data.path=new.csv on a synthetic model
    with pytest.raises(ConfigError, match="data.path applies only to data from a file"):
        validate_train_config(cfg)
    with pytest.raises(ConfigError, match="data.path must be the path of a CSV file"):
        validate_train_config(compose_train(["experiment=pce_file", "data.outputs=[y]"]))


@pytest.mark.parametrize(
    "args,needle",
    [
        (
            ["data.outputs=[y1]"],
            "data.path must be the path of a CSV file (with a header row) or an NPZ file",
        ),
        (["data.path=DATA", "data.outputs=[y9]"], "data.outputs names 1 column 'y9'"),
        (
            ["data.path=DATA", "data.outputs=[y1]", "data.test_fraction=2"],
            "data.test_fraction must be a number",
        ),
    ],
)
def test_cli_file_data_errors_are_one_line_with_status_2(cli, tmp_path, csv_file, args, needle):
    args = [a.replace("DATA", str(csv_file)) for a in args]
    status, err = cli("train", "experiment=pce_file", *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("polymix: error: ") and needle in lines[0], err
    assert not (tmp_path / "run" / "checkpoints").exists()


# ----------------------------------------------------------------------------- plots


def test_one_input_file_data_keep_the_prediction_plot_named_by_its_columns(tmp_path):
    from polymix_cli.reporting.evaluation import evaluate_model
    from polymix_cli.reporting.run_plots import write_plots

    rows = [f"{t},{20 + t * t / 10}" for t in range(0, 100, 3)]
    path = write_csv(tmp_path / "d.csv", "time,temperature", rows)
    p = prepare(
        compose_train(["experiment=pce_file", f"data.path={path}", "data.outputs=[temperature]"])
    )
    ev = evaluate_model(
        p.model, p.data, replace(p.cfg.eval, num_samples=16, grid_points=20), 0, p.maps
    )
    assert ev.slices is None and ev.grid is not None
    assert (
        ev.grid[0, 0] == 0 and ev.grid[-1, 0] == 99
    )  # the grid spans the data's bounds, in user units
    written = write_plots(tmp_path / "plots", ev, p.data, [])
    assert [w.name for w in written] == ["calibration.png", "prediction.png"] and all(
        is_png(w, min_side=300) for w in written
    )


def test_large_offset_inputs_keep_their_digits(tmp_path):
    """Timestamps near 1.7e9 one second apart: float32 would merge them (its spacing there
    is 128); the data stay float64 until mapped, so the model sees distinct inputs."""
    rows = [f"{1_700_000_000 + t},{t * 0.5}" for t in range(64)]
    path = write_csv(tmp_path / "t.csv", "time,y", rows)
    p = prepare(compose_train(["experiment=pce_file", f"data.path={path}", "data.outputs=[y]"]))
    assert p.data.x_train.dtype == torch.float64 and p.x_train.dtype == torch.float32
    assert p.x_train.unique().numel() == p.x_train.shape[0]  # no two inputs merged
    assert p.x_train.min() >= -1 and p.x_train.max() <= 1
    back = p.maps.inputs.inverse(p.x_train.double())
    assert (back - p.data.x_train).abs().max() < 1.0  # the mapped values still name their second
