"""Checkpoints of format version 1 (tests/fixtures/checkpoints, written before the typed
schema) still evaluate, predict and resume, with the numbers they gave then."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import REPO

from polymix_cli.cli.apps import parse_config
from polymix_cli.config.migrate import CURRENT_VERSION
from polymix_cli.runs.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    load_trained,
    save_checkpoint,
)

FIXTURES = REPO / "tests" / "fixtures" / "checkpoints"
EXPECTED = json.loads((FIXTURES / "v1_expected.json").read_text())
HEAT = REPO / "examples" / "heat.csv"
# the fixtures' inputs of `polymix predict` (see the README there)
INPUTS = {
    "pce_sine": "x1\n-0.5\n0.25\n",
    "moe_sign": "x1\n-0.5\n0.25\n",
    "pce_file": "power,flow\n6.0,120\n8.5,150\n",
}


def _here(name: str, tmp_path: Path) -> Path:
    """The fixture, its data file named where it lies in this checkout (still version 1)."""
    state = load_checkpoint(FIXTURES / f"v1_{name}.pt")
    assert state["format_version"] == 1
    if name != "pce_file":
        return FIXTURES / f"v1_{name}.pt"
    config = yaml.safe_load(state["config"])
    config["data"]["path"] = str(HEAT)
    state["config"] = yaml.safe_dump(config, sort_keys=False)
    return save_checkpoint(
        tmp_path / "v1_pce_file.pt", {k: v for k, v in state.items() if k != "format"}
    )


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.parametrize("name", ["pce_sine", "moe_sign", "pce_file"])
def test_evaluate_reads_version_1(cli, tmp_path, name):
    ckpt = _here(name, tmp_path)
    status, err = cli("evaluate", f"ckpt={ckpt}", f"hydra.run.dir={tmp_path / 'ev'}")
    assert status == 0, err
    metrics = _metrics(tmp_path / "ev")
    for key, value in EXPECTED[name]["evaluate"].items():
        assert metrics[key] == value, key


@pytest.mark.parametrize("name", ["pce_sine", "moe_sign", "pce_file"])
def test_predict_reads_version_1(cli, tmp_path, name):
    source = tmp_path / "in.csv"
    source.write_text(INPUTS[name])
    out = tmp_path / "out.csv"
    status, err = cli(
        "predict",
        f"ckpt={FIXTURES / f'v1_{name}.pt'}",  # predict reads no data: the stored path is unused
        f"input={source}",
        f"output={out}",
        "predict.num_samples=50",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert status == 0, err
    assert out.read_text() == EXPECTED[name]["predict"]


def test_resume_continues_a_version_1_run_to_the_same_numbers(cli, tmp_path):
    """v1_moe_sign.pt stopped at epoch 3 of 6; resumed, it ends where the run did."""
    status, err = cli(
        "train", f"resume={FIXTURES / 'v1_moe_sign.pt'}", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert status == 0, err
    metrics = _metrics(tmp_path / "run")
    for key, value in EXPECTED["moe_sign"]["resume"].items():
        assert metrics[key] == value, key
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["epoch"] == 6 and state["format_version"] == FORMAT_VERSION == CURRENT_VERSION
    # the new checkpoint stores the migrated config, every option present
    stored = yaml.safe_load(state["config"])
    assert stored["trainer"]["gradients"] == "auto" and "sensitivity" in stored["eval"]


@pytest.mark.parametrize("name", ["pce_sine", "pce_file"])
def test_resume_of_a_finished_version_1_run(cli, tmp_path, name):
    status, err = cli(
        "train", f"resume={_here(name, tmp_path)}", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert status == 0, err
    metrics = _metrics(tmp_path / "run")
    for key in ("losses", "test"):
        assert metrics[key] == EXPECTED[name]["evaluate"][key], key


def test_version_1_configs_of_the_first_release_are_migrated(cli, tmp_path):
    """A stored config without the options added after the first release evaluates to
    the same numbers: migrate gives them the values they had then."""
    state = load_checkpoint(FIXTURES / "v1_pce_sine.pt")
    config = yaml.safe_load(state["config"])
    for section, keys in {
        "data": ("input_scaling", "output_scaling"),
        "trainer": ("batch_size", "num_threads", "compile", "gradients", "noise"),
        "eval": ("sensitivity", "sensitivity_samples", "sensitivity_base_samples"),
    }.items():
        for key in keys:
            del config[section][key]
    del config["resume"], config["sweep"]
    state["config"] = yaml.safe_dump(config, sort_keys=False)
    old = save_checkpoint(tmp_path / "old.pt", {k: v for k, v in state.items() if k != "format"})
    assert load_checkpoint(old)["format_version"] == 1
    status, err = cli("evaluate", f"ckpt={old}", f"hydra.run.dir={tmp_path / 'ev'}")
    assert status == 0, err
    metrics = _metrics(tmp_path / "ev")
    for key, value in EXPECTED["pce_sine"]["evaluate"].items():
        assert metrics[key] == value, key
    trained = load_trained(old, parse_config)
    assert trained.cfg.trainer.gradients == "auto" and trained.cfg.data.output_scaling == "none"


def test_unknown_format_versions_are_refused(tmp_path):
    state = load_checkpoint(FIXTURES / "v1_pce_sine.pt")
    state["format_version"] = CURRENT_VERSION + 1
    newer = save_checkpoint(
        tmp_path / "newer.pt", {k: v for k, v in state.items() if k != "format"}
    )
    with pytest.raises(
        CheckpointError,
        match=rf"format version {CURRENT_VERSION + 1}; this polymix .* reads versions 1 to "
        rf"{CURRENT_VERSION}",
    ):
        load_checkpoint(newer)
