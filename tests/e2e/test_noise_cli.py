"""Learned Gaussian noise end to end: a tiny moe_sign_nll run of the real command, and
`polymix evaluate` on its checkpoint."""

from __future__ import annotations

import json
import math

import matplotlib.image as mpimg
import pytest
from helpers import TINY, run_cli

from polymix_cli.runs.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def nll_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("nll") / "run"
    result = run_cli("train", "experiment=moe_sign_nll", *TINY, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr + result.stdout
    return run_dir


def test_moe_sign_nll_end_to_end(nll_run):
    metrics_json = json.loads((nll_run / "metrics.json").read_text())
    noise = metrics_json["noise_std"]
    assert isinstance(noise, list) and len(noise) == 1 and 0 < noise[0] < 1
    state = load_checkpoint(nll_run / "checkpoints" / "last.pt")
    assert state["model"]["noise.log_std"].exp().tolist() == pytest.approx(noise)
    for split in ("train", "test"):
        m = metrics_json[split]
        assert math.isfinite(m["nll"]) and 0 <= m["calibration_error"] <= 1
        # the predictive band is wider than the epistemic one
        for level, width in m["interval_width"].items():
            assert width > m["epistemic"]["interval_width"][level]
    for name in ("calibration", "prediction"):
        image = mpimg.imread(nll_run / "plots" / f"{name}.png")
        assert min(image.shape[:2]) > 300


def test_evaluate_reproduces_the_metrics_with_noise(nll_run, tmp_path):
    result = run_cli(
        "evaluate", f"ckpt={nll_run / 'checkpoints' / 'last.pt'}", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr
    trained = json.loads((nll_run / "metrics.json").read_text())
    evaluated = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("train", "test", "losses", "noise_std"):
        assert evaluated[key] == trained[key], key
    assert (tmp_path / "plots" / "calibration.png").is_file()
