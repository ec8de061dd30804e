"""End-to-end: the real `polymix` command at tiny sizes (the experiments it composes are
in app/test_experiments.py)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import matplotlib.image as mpimg
import pytest
import torch
from helpers import TINY, run_cli

METRIC_KEYS = {
    "rmse",
    "mae",
    "r2",
    "crps",
    "rmse_true",
    "nll",
    "calibration_error",
    "coverage",
    "interval_width",
    "epistemic",
}
LEVELS = {"0.5", "0.8", "0.9", "0.95"}


def test_train_leaves_every_output(tiny_run):
    assert (tiny_run / ".hydra" / "config.yaml").is_file()
    log = (tiny_run / "train.log").read_text()
    assert "Epoch    30 | learning rate" in log and "data loss" in log
    assert "allocator: tuned" in log  # the CLI restarts itself once with glibc malloc tunables
    assert "gradients: analytic" in log  # the default experiment takes the hand-derived gradients
    with (tiny_run / "history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 30 and list(rows[0]) == [
        "epoch",
        "lr",
        "data_loss",
        "distribution_loss",
        "total_loss",
    ]
    assert [int(r["epoch"]) for r in rows] == list(range(1, 31))
    ckpts = sorted(p.name for p in (tiny_run / "checkpoints").iterdir())
    assert ckpts == ["epoch_10.pt", "epoch_20.pt", "epoch_30.pt", "last.pt"]
    for name in ("prediction", "gating", "experts", "loss", "calibration"):
        path = tiny_run / "plots" / f"{name}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert min(mpimg.imread(path).shape[:2]) > 200


def test_metrics_json_is_complete(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["num_params"] == 74
    assert len(metrics["groups"]) == 8 and sum(g["size"] for g in metrics["groups"]) == 74
    assert set(metrics["losses"]) == {"data", "distribution", "total"}
    last = list(csv.DictReader((tiny_run / "history.csv").open()))[-1]
    assert metrics["losses"]["total"] == pytest.approx(float(last["total_loss"]), rel=1e-6)
    assert metrics["timing"]["train_seconds"] > 0 and metrics["timing"]["epochs_per_second"] > 0
    assert metrics["timing"]["gradients"] == "analytic"
    assert metrics["noise_std"] is None  # mse_sum: no learned noise
    for split in ("train", "test"):
        assert set(metrics[split]) == METRIC_KEYS
        # without noise the predictive band is the epistemic band
        assert metrics[split]["epistemic"] == {
            key: metrics[split][key] for key in ("calibration_error", "coverage", "interval_width")
        }
        assert 0 <= metrics[split]["calibration_error"] <= 1
        assert set(metrics[split]["coverage"]) == LEVELS == set(metrics[split]["interval_width"])
        widths = [metrics[split]["interval_width"][lv] for lv in sorted(LEVELS)]
        assert widths == sorted(widths) and widths[0] > 0  # nested central intervals
        assert all(0 <= v <= 1 for v in metrics[split]["coverage"].values())
        assert metrics[split]["rmse"] > 0 and metrics[split]["crps"] > 0


def test_checkpoint_is_self_describing(tiny_run):
    state = torch.load(tiny_run / "checkpoints" / "last.pt", weights_only=True)
    assert state["format"] == "polymix-checkpoint" and state["epoch"] == 30
    assert "experiment" not in state["config"] and "name: moe_sign" in state["config"]
    assert state["polymix_version"]
    assert {"mean_field.loc", "mean_field.log_std"} <= set(state["model"])


def test_evaluate_reproduces_train_metrics(tiny_run, tmp_path):
    result = run_cli(
        "evaluate", f"ckpt={tiny_run / 'checkpoints' / 'last.pt'}", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr
    trained = json.loads((tiny_run / "metrics.json").read_text())
    evaluated = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("train", "test", "losses", "num_params", "groups"):
        assert evaluated[key] == trained[key], key
    assert evaluated["checkpoint"]["epoch"] == 30
    assert (tmp_path / "plots" / "prediction.png").is_file()


def test_evaluate_overrides_data(tiny_run, tmp_path):
    result = run_cli(
        "evaluate",
        f"ckpt={tiny_run / 'checkpoints' / 'last.pt'}",
        "data.test_seed=99",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr
    trained = json.loads((tiny_run / "metrics.json").read_text())
    evaluated = json.loads((tmp_path / "metrics.json").read_text())
    assert evaluated["train"] == trained["train"]
    assert evaluated["test"]["rmse"] != trained["test"]["rmse"]


def test_width_override_changes_num_params(tmp_path):
    result = run_cli(
        "train",
        *TINY,
        "trainer.epochs=2",
        "model.gate.width=8",
        "eval.num_samples=8",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["num_params"] == 2 * 4 + (8 + 8 + 16 + 2)


@pytest.mark.parametrize(
    "args,message",
    [
        (["model.gate.width=abc"], "width must be an integer"),
        (["model.expert.degree=-1"], "degree must be >= 0"),
        (["trainer.epochs=0"], "trainer.epochs must be >= 1"),
        (["optimizer.lr=0"], "optimizer.lr must be"),
        (["eval.band=1.5"], "eval.band must be"),
        (["data.noise_std=nan"], "data.noise_std must be"),
    ],
)
def test_bad_options_exit_2_with_one_line(args, message, tmp_path):
    result = run_cli("train", *args, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_checkpoint_exits_2(tmp_path):
    result = run_cli(
        "evaluate", f"ckpt={tmp_path / 'none.pt'}", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_help_lists_commands_without_torch():
    code = (
        "import sys; from polymix_cli.cli.main import main; main(['--help']); "
        "print('torch' in sys.modules, 'hydra' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "train" in out and "evaluate" in out
    assert out.strip().splitlines()[-1] == "False False"


def test_unknown_command_exits_2():
    result = run_cli("fly")
    assert result.returncode == 2 and "unknown command" in result.stderr
