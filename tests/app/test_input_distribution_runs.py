"""eval.input_distributions in runs: the issue's check (f = x1 + 2 x2 with a log-normal x1)
through polymix train, the echo in metrics.json, the closed form kept for the basis's own
distribution, and the errors that need the data (count, eval.sensitivity=pce)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers import TINY_FILE, assert_one_line

pytestmark = pytest.mark.usefixtures("one_thread")

LOGNORMAL_UNIFORM = (
    "eval.input_distributions=[{kind:lognormal,log_mean:0,log_std:0.25},"
    "{kind:uniform,low:0,high:1}]"
)


@pytest.fixture(scope="module")
def linear_csv(tmp_path_factory):
    """f = x1 + 2 x2 on x1 in [0.3, 3], x2 in [0, 1], noiseless."""
    path = tmp_path_factory.mktemp("linear") / "lin.csv"
    rng = np.random.default_rng(0)
    x1, x2 = rng.uniform(0.3, 3.0, 120), rng.uniform(0.0, 1.0, 120)
    x1[:2], x2[:2] = (0.3, 3.0), (0.0, 1.0)  # the bounds are the data's min and max
    np.savetxt(path, np.c_[x1, x2, x1 + 2 * x2], delimiter=",", header="x1,x2,y", comments="")
    return path


def _train(cli, csv, run_dir, *extra):
    return cli(
        "train",
        "data=file",
        f"data.path={csv}",
        "data.outputs=[y]",
        "model=pce",
        "model.degree=1",
        "layout=pce_iid",
        *TINY_FILE,
        "trainer.epochs=300",
        "eval.num_samples=50",
        f"hydra.run.dir={run_dir}",
        *extra,
    )


def _first(metrics):
    first = metrics["sensitivity"]["first_order"]["y"]
    return first["x1"]["mean"], first["x2"]["mean"]


def test_lognormal_input_gives_the_closed_form_indices(cli, linear_csv, tmp_path):
    status, err = _train(cli, linear_csv, tmp_path / "custom", LOGNORMAL_UNIFORM)
    assert status == 0, err
    metrics = json.loads((tmp_path / "custom" / "metrics.json").read_text())
    sens = metrics["sensitivity"]
    assert sens["method"] == "monte_carlo"
    assert sens["input_distribution"] == {"kind": "input_distributions"}
    assert [d["kind"] for d in sens["input_distributions"]] == ["lognormal", "uniform"]
    assert sens["input_distributions"][0]["log_std"] == 0.25
    assert sens["input_distributions"][0]["input"] == "x1"
    assert _first(metrics) == pytest.approx((0.1708, 0.8292), abs=0.02)
    # the output's mean under the marginals: E[x1] + 2 E[x2]
    assert sens["mean"]["y"]["mean"] == pytest.approx(math.exp(0.25**2 / 2) + 1, abs=0.05)

    status, err = _train(cli, linear_csv, tmp_path / "default")
    assert status == 0, err
    metrics = json.loads((tmp_path / "default" / "metrics.json").read_text())
    assert metrics["sensitivity"]["method"] == "pce"
    assert metrics["sensitivity"]["input_distributions"] is None
    v1 = 2.7**2 / 12  # uniform over the bounds [0.3, 3]
    assert _first(metrics) == pytest.approx((v1 / (v1 + 1 / 3), (1 / 3) / (v1 + 1 / 3)), abs=0.02)


def test_the_basis_distribution_keeps_the_closed_form(cli, linear_csv, tmp_path):
    status, err = _train(
        cli,
        linear_csv,
        tmp_path,
        "eval.input_distributions=[{kind:uniform,low:0.3,high:3},{kind:uniform,low:0,high:1}]",
    )
    assert status == 0, err
    sens = json.loads((tmp_path / "metrics.json").read_text())["sensitivity"]
    assert sens["method"] == "pce" and sens["input_distribution"]["kind"] == "uniform"


def test_mass_outside_the_bounds_is_named_in_a_warning(cli, linear_csv, tmp_path):
    status, err = _train(
        cli,
        linear_csv,
        tmp_path,
        "eval.input_distributions=[{kind:normal,mean:1,std:1},{kind:uniform,low:0,high:1}]",
    )
    assert status == 0, err
    log = (tmp_path / "train.log").read_text()
    assert "of the distribution of x1 lies outside its training bounds [0.3, 3]" in log
    assert "x2 lies" not in log


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        (
            "eval.input_distributions=[{kind:uniform,low:0,high:1}]",
            "eval.input_distributions must have one entry per input (2: x1, x2), got 1",
        ),
        (
            "eval.input_distributions=[{kind:uniform,low:0,high:1},{kind:normal,mean:0,std:0}]",
            "eval.input_distributions[1].std must be a number in (0.0, inf), got 0",
        ),
        (
            "eval.input_distributions=[{kind:uniform,low:0,high:1},{kind:weibull,a:1}]",
            "eval.input_distributions[1].kind must be one of",
        ),
        (
            "eval.input_distributions=[{kind:uniform,low:0,high:1},{kind:normal,mean:0,sd:1}]",
            "unknown option eval.input_distributions[1].sd",
        ),
    ],
)
def test_bad_distributions_are_one_line_and_exit_2(cli, linear_csv, tmp_path, override, needle):
    status, err = _train(cli, linear_csv, tmp_path / "run", override)
    assert status == 2
    assert_one_line(err, needle)
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_pce_closed_form_refuses_other_distributions(cli, linear_csv, tmp_path):
    status, err = _train(
        cli, linear_csv, tmp_path / "run", "eval.sensitivity=pce", LOGNORMAL_UNIFORM
    )
    assert status == 2
    assert_one_line(err, "eval.sensitivity=pce (the closed form) holds only for")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_evaluate_takes_other_distributions(cli, linear_csv, tmp_path):
    status, err = _train(cli, linear_csv, tmp_path / "run")
    assert status == 0, err
    status, err = cli(
        "evaluate",
        f"ckpt={tmp_path / 'run' / 'checkpoints' / 'last.pt'}",
        LOGNORMAL_UNIFORM,
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    assert status == 0, err
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert _first(metrics) == pytest.approx((0.1708, 0.8292), abs=0.02)
