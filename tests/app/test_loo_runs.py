"""metrics.json's `loo` for models trained by stochastic VI: PSIS leave-one-out from the
posterior draws when the model has a likelihood (gaussian_nll), with its Pareto k
diagnostic and a warning when it is unreliable; `polymix evaluate` reproduces it."""

from __future__ import annotations

import json
import math

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = [
    "experiment=pce_sine",
    "trainer.loss=gaussian_nll",
    "data.num_train=30",
    "data.num_test=200",
    "eval.num_samples=300",
    "eval.grid_points=20",
]


def test_psis_loo_in_train_and_evaluate(cli, tmp_path):
    status, err = cli("train", *BASE, "trainer.epochs=30", f"hydra.run.dir={tmp_path / 'a'}")
    assert status == 0, err
    trained = json.loads((tmp_path / "a" / "metrics.json").read_text())
    loo = trained["loo"]
    assert loo["method"] == "psis"
    assert set(loo) == {
        "method",
        "rmse",
        "q2",
        "elpd",
        "pareto_k_max",
        "unreliable_points",
        "k_threshold",
    }
    assert len(loo["rmse"]) == len(loo["q2"]) == 1 and loo["rmse"][0] > 0
    assert math.isfinite(loo["elpd"]) and loo["q2"][0] <= 1
    assert loo["k_threshold"] == pytest.approx(1 - 1 / math.log10(300))
    # 30 epochs: the posterior is still wide, leaving a point out moves it a lot
    assert loo["unreliable_points"] > 0 and loo["pareto_k_max"] > loo["k_threshold"]
    log = (tmp_path / "a" / "train.log").read_text()
    assert "PSIS leave-one-out estimate is unreliable" in log
    ckpt = tmp_path / "a" / "checkpoints" / "last.pt"
    status, err = cli("evaluate", f"ckpt={ckpt}", f"hydra.run.dir={tmp_path / 'b'}")
    assert status == 0, err
    evaluated = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert evaluated["loo"] == loo  # the same draws (seeded by `seed`), the same figures


def test_no_loo_without_a_likelihood(cli, tmp_path):
    """mse_sum has no likelihood to weight the draws by: no `loo`."""
    status, err = cli(
        "train", *BASE, "trainer.loss=mse_sum", "trainer.epochs=10", f"hydra.run.dir={tmp_path}"
    )
    assert status == 0, err
    assert "loo" not in json.loads((tmp_path / "metrics.json").read_text())
