"""The validation set and early stopping in in-process runs: the val block of metrics.json,
runs that keep their numbers, the test set that chooses nothing, best.pt, evaluate, resume,
and configs of older checkpoints."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from helpers import TINY, TINY_FILE, QuietUI, compose_train, train_then_resume, truth, write_csv

from polymix_cli.config.migrate import migrate
from polymix_cli.config.validation import config_dict, parse_train_config
from polymix_cli.runs.checkpoint import load_checkpoint
from polymix_cli.runs.prepare import prepare
from polymix_cli.runs.train import train

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = [*TINY, "eval.num_samples=32", "data.num_test=60", "data.num_val=40"]
# early stopping that stops: every check after the first is short of a huge min_delta
STOPS = [
    "trainer.early_stopping.patience=10",
    "trainer.early_stopping.every=5",
    "trainer.early_stopping.min_delta=1e9",
    "trainer.early_stopping.num_samples=16",
]


def _yaml(cfg) -> str:
    """The config as a checkpoint stores it (polymix evaluate rebuilds the run from it)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(config_dict(parse_train_config(cfg))))


def _run(overrides, run_dir, **kwargs):
    cfg = compose_train(overrides)
    return train(cfg, run_dir, _yaml(cfg), QuietUI(), **kwargs)


def _history(run_dir):
    return (run_dir / "history.csv").read_text()


def test_metrics_have_a_val_block_and_runs_keep_their_numbers(tmp_path):
    with_val = _run(SMALL, tmp_path / "val")
    without = _run([*SMALL, "data.num_val=0"], tmp_path / "none")
    assert set(with_val["val"]) == set(with_val["test"]) == set(with_val["train"])
    assert "val" not in without
    # the validation set is drawn apart and evaluated last: nothing else moves
    for key in ("losses", "train", "test", "noise_std", "sensitivity"):
        assert with_val[key] == without[key], key
    assert _history(tmp_path / "val") == _history(tmp_path / "none")
    written = json.loads((tmp_path / "val" / "metrics.json").read_text())
    assert written["val"]["crps"] == pytest.approx(with_val["val"]["crps"])


def test_early_stopping_stops_keeps_best_pt_and_evaluates_the_best_state(tmp_path, cli):
    run = tmp_path / "run"
    metrics = _run([*SMALL, "trainer.checkpoint_every=100", *STOPS], run)
    early = metrics["early_stopping"]
    # the first check (epoch 5) is the best; patience 10 ends training at epoch 15
    assert early["best_epoch"] == 5 and early["stopped_epoch"] == 15
    assert early["epochs_trained"] == 15 and early["patience"] == 10
    assert len(_history(run).splitlines()) == 1 + 15
    last, best = (load_checkpoint(run / "checkpoints" / n) for n in ("last.pt", "best.pt"))
    assert last["epoch"] == 15 and best["epoch"] == 5
    assert len(best["history"]["epoch"]) == 5 and best["optimizer"] is None
    assert last["early_stopping"]["best_epoch"] == 5
    for key, value in best["model"].items():
        assert torch.equal(value, last["early_stopping"]["best_model"][key]), key
    # the losses reported are those of the state evaluated, epoch 5's
    epoch5 = _history(run).splitlines()[5].split(",")
    assert metrics["losses"]["total"] == pytest.approx(float(epoch5[4]), rel=1e-6)
    # evaluate best.pt gives the run's metrics, val block included
    status, err = cli(
        "evaluate", f"ckpt={run / 'checkpoints' / 'best.pt'}", f"hydra.run.dir={tmp_path / 'ev'}"
    )
    assert status == 0, err
    again = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    for key in ("train", "val", "test", "losses"):
        assert again[key] == metrics[key], key
    status, err = cli(
        "evaluate",
        f"ckpt={run / 'checkpoints' / 'best.pt'}",
        "data.num_val=0",
        f"hydra.run.dir={tmp_path / 'ev0'}",
    )
    assert status == 0 and "val" not in json.loads((tmp_path / "ev0" / "metrics.json").read_text())
    # best.pt is for evaluate and predict; training resumes from last.pt
    status, err = cli("train", f"resume={run / 'checkpoints' / 'best.pt'}")
    assert status == 2 and "resume from last.pt beside it" in err


def test_early_stopping_changes_no_training_number_before_it_stops(tmp_path):
    plain = _run(SMALL, tmp_path / "plain")
    checked = _run(
        [*SMALL, "trainer.early_stopping.patience=1000", "trainer.early_stopping.every=3"],
        tmp_path / "checked",
    )
    assert _history(tmp_path / "plain") == _history(tmp_path / "checked")
    a, b = (load_checkpoint(tmp_path / n / "checkpoints" / "last.pt") for n in ("plain", "checked"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert checked["early_stopping"]["stopped_epoch"] is None
    best = checked["early_stopping"]["best_epoch"]
    assert best in range(3, 31, 3) or best == 30
    if best == 30:  # the last state is the best: the same numbers as without the checks
        assert checked["test"] == plain["test"]


def test_resume_with_early_stopping_is_bit_exact(tmp_path):
    overrides = [
        *SMALL,
        "trainer.epochs=40",
        "trainer.checkpoint_every=12",
        "trainer.early_stopping.patience=1000",
        "trainer.early_stopping.every=5",
    ]
    cfg = compose_train(overrides)
    full, resumed = train_then_resume(cfg, tmp_path, "epoch_12.pt")
    for name in ("last.pt", "best.pt"):
        a = load_checkpoint(tmp_path / "full" / "checkpoints" / name)
        b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / name)
        assert a["epoch"] == b["epoch"], name
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), name
    assert full["early_stopping"] == resumed["early_stopping"]
    assert full["val"] == resumed["val"] and full["test"] == resumed["test"]


def test_a_run_that_stopped_early_stays_stopped_on_resume(tmp_path):
    cfg = compose_train([*SMALL, *STOPS])
    first, again = train_then_resume(cfg, tmp_path, "last.pt", ("first", "again"))
    assert again["early_stopping"] == first["early_stopping"]
    assert load_checkpoint(tmp_path / "again" / "checkpoints" / "last.pt")["epoch"] == 15
    assert again["test"] == first["test"]


# ----------------------------------------------------------------------------- the test set


def _file_run(tmp_path, test_rows, name):
    rng = np.random.default_rng(3)
    a, b = rng.uniform(0, 10, 40), rng.uniform(100, 200, 40)
    y = truth(a, b)
    data = write_csv(
        tmp_path / "data.csv",
        "a,b,y1,y2",
        [",".join(map(repr, row)) for row in np.column_stack([a, b, y]).tolist()],
    )
    test = write_csv(tmp_path / f"{name}.csv", "a,b,y1,y2", test_rows)
    overrides = [
        "experiment=pce_file",
        f"data.path={data}",
        f"data.test_path={test}",
        "data.inputs=[a,b]",
        "data.outputs=[y1,y2]",
        *TINY_FILE,
        "eval.num_samples=32",
        "trainer.early_stopping.patience=6",
        "trainer.early_stopping.every=2",
    ]
    return _run(overrides, tmp_path / name)


def test_the_test_set_changes_no_training_or_selection_outcome(tmp_path):
    """Corrupted test labels: the same training, the same early stop, the same validation
    metrics (what sweeps rank by); only the test block differs."""
    rng = np.random.default_rng(4)
    a, b = rng.uniform(0, 10, 20), rng.uniform(100, 200, 20)
    y = truth(a, b)
    clean = [",".join(map(repr, row)) for row in np.column_stack([a, b, y]).tolist()]
    bad = np.column_stack([a, b, -y[:, 0], 100 * y[:, 1]])
    corrupted = [",".join(map(repr, row)) for row in bad.tolist()]
    one, other = _file_run(tmp_path, clean, "clean"), _file_run(tmp_path, corrupted, "corrupted")
    assert _history(tmp_path / "clean") == _history(tmp_path / "corrupted")
    for key in ("losses", "train", "val", "early_stopping"):
        assert one[key] == other[key], key
    assert one["test"]["crps"] != other["test"]["crps"]
    a_ckpt, b_ckpt = (
        load_checkpoint(tmp_path / n / "checkpoints" / "last.pt") for n in ("clean", "corrupted")
    )
    assert all(torch.equal(a_ckpt["model"][k], b_ckpt["model"][k]) for k in a_ckpt["model"])


def test_the_synthetic_test_set_changes_no_training_or_selection_outcome(tmp_path):
    one = _run([*SMALL, *STOPS[:2]], tmp_path / "one")
    other = _run([*SMALL, *STOPS[:2], "data.test_seed=99", "data.num_test=80"], tmp_path / "two")
    assert _history(tmp_path / "one") == _history(tmp_path / "two")
    for key in ("losses", "train", "val", "early_stopping"):
        assert one[key] == other[key], key
    assert one["test"] != other["test"]


# ----------------------------------------------------------------------------- data files


def test_a_validation_file_is_read_and_recorded(tmp_path):
    rows = [f"{i},{100 + 3 * i},{1000 + i},{5 + i / 10}" for i in range(12)]
    data = write_csv(tmp_path / "data.csv", "a,b,y1,y2", rows)
    val = write_csv(tmp_path / "val.csv", "y2,b,a,y1", ["6.0,150,5.5,1001", "6.5,180,7.5,1002"])
    cfg = compose_train(
        [
            "experiment=pce_file",
            f"data.path={data}",
            f"data.val_path={val}",
            "data.outputs=[y1,y2]",
        ]
    )
    p = prepare(cfg)
    assert p.data.x_val.tolist() == [[5.5, 150.0], [7.5, 180.0]]
    assert p.data.y_val.tolist() == [[1001.0, 6.0], [1002.0, 6.5]]
    assert p.data.x_train.shape[0] + p.data.x_test.shape[0] == 12  # no row held out for it
    assert p.data.source["val_rows"] == 2 and p.data.source["val_path"] == str(val)
    assert p.x_val.shape == (2, 2) and p.y_val.shape == (2, 2)  # in the model's domain
    assert torch.allclose(p.maps.outputs.inverse(p.y_val.double()), p.data.y_val, atol=1e-3)


def test_too_few_rows_for_a_validation_set_name_the_option(tmp_path):
    from polymix_cli.config.validation import ConfigError

    data = write_csv(tmp_path / "d.csv", "a,y", ["1,2", "2,3", "3,5", "4,1", "5,4"])
    cfg = compose_train(["experiment=pce_file", f"data.path={data}", "data.outputs=[y]"])
    with pytest.raises(
        ConfigError,
        match=r"leaves 3 training rows after the test set: data.val_fraction=0.5 leaves 1 for "
        r"training; .*\(or set data.val_fraction=0 for no validation set\)",
    ):
        prepare({**cfg, "data": {**cfg["data"], "test_fraction": 0.4, "val_fraction": 0.5}})
    cfg["data"].update(test_fraction=0.4, val_fraction=0.0)
    assert prepare(cfg).data.x_val is None


# ----------------------------------------------------------------------------- older configs


@pytest.mark.parametrize("data", ["sign_sine", "file"])
def test_configs_of_version_2_checkpoints_have_no_validation_set(data):
    overrides = (
        ["experiment=pce_file", "data.path=d.csv", "data.outputs=[y]"] if data == "file" else []
    )
    current = config_dict(parse_train_config(compose_train(overrides)))
    stored = copy.deepcopy(current)
    for key in ("num_val", "val_seed", "val_fraction", "val_path"):
        stored["data"].pop(key, None)
    stored["trainer"].pop("early_stopping")
    stored["sweep"] = {"sort_by": "test.crps", "objective": "test.crps"}  # as version 2 wrote
    cfg = parse_train_config(migrate(stored, 2))
    assert not cfg.data.has_validation() and cfg.trainer.early_stopping.patience is None
    assert cfg.sweep.objective == "test.crps"
    assert current["data"].get("num_val", 1) > 0 and current["data"].get("val_fraction", 1) > 0
