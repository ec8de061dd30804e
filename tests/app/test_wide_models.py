"""Models of many inputs (issue 17): the polynomial terms are counted and refused before
anything is built, and evaluation draws the slices and Sobol bars of the most important
inputs only. Each case runs the real entry point in this process (the ``cli`` fixture)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from helpers import assert_one_line, write_csv

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = [
    "data=file",
    "data.outputs=[y]",
    "trainer.epochs=3",
    "trainer.num_samples=4",
    "eval.num_samples=8",
    "eval.grid_points=5",
    "trainer.progress=log",
]


def _wide_csv(path: Path, num_inputs: int, rows: int = 40) -> Path:
    rng = random.Random(0)
    names = [f"x{i + 1}" for i in range(num_inputs)]
    lines = []
    for _ in range(rows):
        x = [rng.uniform(-1, 1) for _ in names]
        lines.append(",".join(f"{v:.5f}" for v in x) + f",{x[0] + 0.5 * x[1] ** 2:.5f}")
    return write_csv(path, ",".join(names + ["y"]), lines)


@pytest.mark.parametrize(
    ("options", "needles"),
    [
        (  # issue 17's case: 3.5 million terms
            ["model=pce", "layout=pce_iid", "model.degree=5"],
            [
                "model.degree=5 with 50 inputs (model.q_norm=1) gives 3478761 polynomial terms",
                "more than model.max_terms=100000",
                "model.degree=3 (23426 terms) or model.q_norm=0.8 (27201 terms) would fit",
            ],
        ),
        (  # a mixture's experts count together
            ["model.expert.degree=5"],
            [
                "model.expert.degree=5 with 50 inputs (model.expert.q_norm=1) and 2 PCE experts",
                "gives 6957522 polynomial terms",
                "model.expert.degree=3 (46852 terms)",
            ],
        ),
        (  # a heterogeneous mixture: each expert's own degree
            ["model.experts=[{degree: 5}, {degree: 4}, {kind: nn}]"],
            ["model.experts (degrees 5, 4) with 50 inputs gives 3795012 polynomial terms"],
        ),
        (  # the hyperbolic set is counted as it is truncated
            [
                "model=pce",
                "layout=pce_iid",
                "model.degree=5",
                "model.q_norm=0.5",
                "model.max_terms=1000",
            ],
            ["model.degree=5 with 50 inputs (model.q_norm=0.5) gives 1476 polynomial terms"],
        ),
        (  # nothing fits but a raised limit: two experts have two constants
            ["model.expert.degree=1", "model.max_terms=1"],
            ["gives 102 polynomial terms, more than model.max_terms=1; raise model.max_terms"],
        ),
    ],
)
def test_too_many_terms_are_refused_before_anything_is_built(cli, tmp_path, options, needles):
    data = _wide_csv(tmp_path / "wide.csv", 50, rows=12)
    run_dir = tmp_path / "run"
    status, err = cli("train", *TINY, f"data.path={data}", *options, f"hydra.run.dir={run_dir}")
    assert status == 2, err
    assert_one_line(err, *needles)
    assert not run_dir.exists() or not any(run_dir.iterdir()), list(run_dir.iterdir())


def test_a_raised_term_limit_is_kept_in_the_checkpoint(cli, tmp_path):
    data = _wide_csv(tmp_path / "six.csv", 6)
    pce = ["model=pce", "layout=pce_iid", "model.degree=3"]  # 84 terms
    status, err = cli("train", *TINY, f"data.path={data}", *pce, "model.max_terms=50")
    assert status == 2 and "gives 84 polynomial terms" in err and "model.degree=2 (28" in err
    run_dir = tmp_path / "run"
    args = [*TINY, f"data.path={data}", *pce, "model.max_terms=84", f"hydra.run.dir={run_dir}"]
    status, err = cli("train", *args)
    assert status == 0, err
    ckpt = run_dir / "checkpoints" / "last.pt"
    status, err = cli("evaluate", f"ckpt={ckpt}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert status == 0, err


def test_slices_and_sobol_bars_of_many_inputs_show_the_most_important(cli, tmp_path, caplog):
    data = _wide_csv(tmp_path / "wide.csv", 24)
    run_dir = tmp_path / "run"
    args = [*TINY, f"data.path={data}", "model=pce", "layout=pce_iid", "model.degree=2"]
    status, err = cli("train", *args, f"hydra.run.dir={run_dir}")
    assert status == 0, err
    log = (run_dir / "train.log").read_text()
    assert "slices.png: the 12 of 24 inputs of largest total Sobol index" in log
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(metrics["sensitivity"]["total"]["y"]) == 24  # every input, whatever the plots show
    assert (run_dir / "plots" / "slices.png").exists() and (
        run_dir / "plots" / "sobol.png"
    ).exists()


def test_a_full_covariance_over_too_many_terms_is_refused(cli, tmp_path):
    """experiment=pce_file (a full-covariance ARD layout) on 30 inputs: 6386 candidate terms
    would need 6386 x 6386 matrices (the default on 50 inputs took 24 GB): one line naming
    the rule and what fits; a smaller degree trains."""
    data = _wide_csv(tmp_path / "wide.csv", 30, rows=12)
    base = ["experiment=pce_file", f"data.path={data}", "data.outputs=[y]", "trainer.epochs=3"]
    status, err = cli("train", *base, f"hydra.run.dir={tmp_path / 'run'}")
    assert status == 2, err
    assert_one_line(
        err,
        "layout.rules[0]: kind gaussian over 6386 parameters (group coeffs)",
        "more than the 5000 parameters a full covariance may have",
        "use kind iid_gaussian or lowrank_gaussian",
    )
    status, err = cli("train", *base, "model.degree=3", f"hydra.run.dir={tmp_path / 'ok'}")
    assert status == 0, err


def test_the_closed_form_fit_leaves_too_many_candidates_to_variational_inference(monkeypatch):
    """Its Gram and posterior matrices are terms x terms: above the limit, the fit is not
    chosen (training falls back to gradients, saying why)."""
    from helpers import compose_train

    from polymix_cli.runs.prepare import prepare
    from polymix_cli.training import closed_form

    p = prepare(compose_train(["experiment=sparse_pce", "model.degree=3"]))  # 20 terms
    settings = p.cfg.trainer
    assert closed_form.closed_form_reason(p.model, settings, 150) is None
    monkeypatch.setattr(closed_form, "MAX_FULL_COVARIANCE", 19)
    assert closed_form.closed_form_reason(p.model, settings, 150) == (
        "20 candidate terms, more than 19"
    )
