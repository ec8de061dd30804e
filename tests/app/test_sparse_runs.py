"""Sparse Bayesian polynomial chaos through the configs and in-process runs: the defaults
of experiment=sparse_pce reach the noisy targets at a tiny size, metrics.json reports the
leave-one-out error and the active terms, the priors' options and refusals, and the same
priors on mixture experts by stochastic VI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers import QuietUI, compose_train, ishigami_errors, write_csv

from polymix_cli.config.schema import TrainerConfig
from polymix_cli.config.validation import ConfigError
from polymix_cli.runs.train import train

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["eval.num_samples=200", "eval.grid_points=25", "data.num_test=2000"]


def _run(tmp_path, overrides):
    cfg = compose_train(overrides)
    return train(cfg, tmp_path, "", QuietUI())


def test_sparse_pce_defaults_reach_the_noisy_targets(tmp_path):
    """N = 100, noise 0.5, degree 8 candidates (165 terms): the learned noise within 20 %,
    the 80 % band's coverage in [0.72, 0.88], a test error near the noise-free truth well
    below the noise, Sobol indices within 0.05, and a closed-form LOO error near the noise."""
    metrics = _run(
        tmp_path, ["experiment=sparse_pce", "data.num_train=100", "model.degree=8", *SMALL]
    )
    assert metrics["timing"]["gradients"].startswith("closed form")
    assert metrics["noise_std"][0] == pytest.approx(0.5, rel=0.2)
    assert 0.72 <= metrics["test"]["coverage"]["0.8"] <= 0.88
    assert metrics["test"]["rmse_true"] < 0.5
    first, total = ishigami_errors(metrics)
    assert max(first, total) < 0.05
    assert metrics["loo"]["rmse"][0] == pytest.approx(0.5, rel=0.3)
    assert 0.9 < metrics["loo"]["q2"][0] < 1.0
    fit = metrics["sparse_fit"]
    assert fit["converged"] and fit["candidate_terms"] == 165
    assert 3 <= fit["active_terms"][0] < 40
    terms = metrics["active_terms"]
    assert 3 <= len(terms) <= fit["active_terms"][0]
    assert all(len(t["index"]) == 3 and t["std"] < abs(t["mean"]) for t in terms)
    # sin x1 (index (1, 0, 0)) and the sin^2 x2 terms are among them
    indices = {tuple(t["index"]) for t in terms}
    assert (1, 0, 0) in indices and (0, 2, 0) in indices
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["loo"] == metrics["loo"] and saved["active_terms"] == terms


def test_noiseless_small_design_is_exact(tmp_path):
    metrics = _run(
        tmp_path,
        [
            "experiment=sparse_pce",
            "data.num_train=100",
            "data.noise_std=0",
            "model.degree=10",
            *SMALL,
        ],
    )
    assert metrics["test"]["rmse_true"] < 0.01
    assert max(ishigami_errors(metrics)) < 0.01
    assert metrics["loo"]["q2"][0] > 0.9999


def test_inference_vi_and_the_horseshoe_train_by_gradients(tmp_path):
    """trainer.inference=vi, or a horseshoe prior, trains the same layout by stochastic VI."""
    base = [
        "experiment=sparse_pce",
        "data.num_train=60",
        "model.degree=4",
        "trainer.epochs=20",
        *SMALL,
    ]
    metrics = _run(tmp_path / "vi", [*base, "trainer.inference=vi"])
    assert metrics["timing"]["gradients"].startswith("autograd")
    assert metrics["loo"]["method"] == "psis" and isinstance(metrics["active_terms"], list)
    assert math.isfinite(metrics["losses"]["distribution"])
    metrics = _run(
        tmp_path / "hs",
        [*base, "layout.rules.0.prior.kind=horseshoe", "layout.rules.0.kind=iid_gaussian"],
    )
    assert math.isfinite(metrics["losses"]["total"])


def test_ard_experts_of_a_mixture(tmp_path):
    """The ARD prior on the PCE experts of a mixture: trained by VI with the closed-form KL."""
    metrics = _run(
        tmp_path,
        [
            "experiment=moe_sign",
            "layout=pce_ard",
            "trainer.epochs=20",
            "trainer.loss=gaussian_nll",
            *SMALL,
        ],
    )
    assert math.isfinite(metrics["losses"]["distribution"])
    assert metrics["losses"]["distribution"] > 0


def test_sparsity_priors_need_a_gaussian_group(tmp_path):
    with pytest.raises(ConfigError, match="prior ard needs a Gaussian variational group"):
        _run(tmp_path, ["experiment=sparse_pce", "layout.rules.0.kind=deterministic"])


def test_weight_factor_default_follows_the_loss():
    assert TrainerConfig(loss="gaussian_nll").kl_weight() == 1.0
    assert TrainerConfig(loss="mse_sum").kl_weight() == 0.1
    assert TrainerConfig(loss="gaussian_nll", weight_factor=0.35).kl_weight() == 0.35


@pytest.mark.parametrize("kind", ["gaussian", "iid_gaussian"])
def test_the_closed_form_posterior_is_written_into_the_model(kind):
    """The group holds the fit's mean and covariance (its diagonal for iid_gaussian), the
    prior its fitted scales, the noise the learned level; draws follow that posterior."""
    import torch

    from polymix_cli.runs.prepare import prepare
    from polymix_cli.training.loop import Trainer, build_optimizer

    cfg = compose_train(
        [
            "experiment=sparse_pce",
            "data.num_train=80",
            "model.degree=6",
            f"layout.rules.0.kind={kind}",
        ]
    )
    p = prepare(cfg)
    opt = build_optimizer(p.cfg.optimizer, p.model.parameters())
    trainer = Trainer(p.model, p.x_train, p.y_train, p.cfg.trainer, opt)
    trainer.fit()
    assert trainer.epoch < p.cfg.trainer.epochs  # stopped when converged
    fit = trainer.closed_form.fits[0]
    mean, cov, active = fit.model_averaged_coefficients()
    assert torch.equal(mean, fit.coefficients()[0])
    kept = cov.diagonal() > 0  # the active terms and the pruned ones the evidence supports
    assert bool((kept & ~active).any())
    group = p.model.parameter_groups[0]
    assert torch.allclose(group.mean.double(), mean, atol=1e-5)
    if kind == "gaussian":
        tril = group.scale_tril().double()
        got = tril @ tril.T
        assert torch.allclose(got[kept][:, kept], cov[kept][:, kept], rtol=1e-3, atol=1e-9)
    else:
        std = group.log_std.exp().double()
        assert torch.allclose(std[kept], cov.diagonal()[kept].sqrt(), rtol=1e-4)
    assert torch.allclose(group.prior.scale.double(), fit.prior_std(), rtol=1e-5)
    assert float(p.model.noise.log_std.detach().exp()) == pytest.approx(fit.noise_std, rel=1e-5)
    # the losses: expected NLL + KL = -log marginal likelihood
    data, dist, total = trainer.history.losses[-1].tolist()
    assert total == pytest.approx(-fit.log_marginal_likelihood(), rel=1e-5)
    assert data + dist == pytest.approx(total, rel=1e-5)


def test_resume_continues_from_the_fitted_scales(tmp_path):
    """A converged closed-form run resumed: one more epoch, the same posterior and metrics."""
    from polymix_cli.runs.checkpoint import load_checkpoint

    cfg = compose_train(["experiment=sparse_pce", "data.num_train=60", "model.degree=5", *SMALL])
    first = train(cfg, tmp_path / "a", "", QuietUI())
    last = tmp_path / "a" / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    again = train({**cfg, "resume": str(last)}, tmp_path / "b", "", QuietUI(), resume=state)
    assert again["sparse_fit"]["converged"]
    assert (
        load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["epoch"] == state["epoch"] + 1
    )
    for key in ("rmse", "crps", "nll"):
        assert again["test"][key] == pytest.approx(first["test"][key], rel=1e-4)
    assert again["noise_std"] == pytest.approx(first["noise_std"], rel=1e-5)


def test_sparse_pce_takes_any_data(tmp_path):
    """The experiment's data (150 noisy Ishigami runs) is a data option of its own, so
    `experiment=sparse_pce data=file ...` replaces it whole (no generator keys left over)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, (40, 2))
    rows = [f"{a},{b},{1 + 2 * a - b * b}" for a, b in x]
    path = write_csv(tmp_path / "runs.csv", "a,b,y", rows)
    cfg = compose_train(
        ["experiment=sparse_pce", "data=file", f"data.path={path}", "data.outputs=[y]", *SMALL[:2]]
    )
    assert "num_train" not in cfg["data"] and cfg["model"]["degree"] == 12
    metrics = train(cfg, tmp_path / "run", "", QuietUI())
    assert metrics["timing"]["gradients"].startswith("closed form")
    assert {tuple(t["index"]) for t in metrics["active_terms"]} >= {(1, 0), (0, 2)}


def test_evaluate_writes_the_loo_error_and_the_fit(cli, tmp_path):
    """`polymix evaluate` on a closed-form sparse fit writes train's `loo` and the fit's
    active and candidate terms, and finds the stored fit converged."""
    args = ["experiment=sparse_pce", "data.num_train=60", "model.degree=5", *SMALL]
    status, err = cli("train", *args, f"hydra.run.dir={tmp_path / 'a'}")
    assert status == 0, err
    ckpt = tmp_path / "a" / "checkpoints" / "last.pt"
    status, err = cli("evaluate", f"ckpt={ckpt}", f"hydra.run.dir={tmp_path / 'b'}")
    assert status == 0, err
    trained = json.loads((tmp_path / "a" / "metrics.json").read_text())
    evaluated = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert evaluated["loo"]["rmse"] == pytest.approx(trained["loo"]["rmse"], rel=1e-4)
    assert evaluated["loo"]["q2"] == pytest.approx(trained["loo"]["q2"], rel=1e-5)
    fit = evaluated["sparse_fit"]
    assert fit == {
        "converged": True,
        "active_terms": trained["sparse_fit"]["active_terms"],
        "candidate_terms": 56,
    }
    assert evaluated["active_terms"] == trained["active_terms"]
    # a model trained by stochastic VI has no closed-form fit to report
    status, err = cli(
        "train", "experiment=pce_sine", "trainer.epochs=20", f"hydra.run.dir={tmp_path / 'c'}"
    )
    assert status == 0, err
    ckpt = tmp_path / "c" / "checkpoints" / "last.pt"
    status, err = cli("evaluate", f"ckpt={ckpt}", f"hydra.run.dir={tmp_path / 'd'}")
    assert status == 0, err
    assert "sparse_fit" not in json.loads((tmp_path / "d" / "metrics.json").read_text())


def test_horseshoe_by_vi_recovers_a_sparse_polynomial(tmp_path):
    """The regularised horseshoe, trained by stochastic VI (it has no closed form), on
    y = 2 x1 + 1.5 x1 x2 + noise among the 10 candidate terms of degree 3: the active terms
    are exactly those two, near their true values."""
    import torch

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(40, 2, generator=gen) * 2 - 1
    y = 2 * x[:, 0] + 1.5 * x[:, 0] * x[:, 1] + 0.05 * torch.randn(40, generator=gen)
    rows = ["x1,x2,y"] + [f"{a:.8f},{b:.8f},{c:.8f}" for (a, b), c in zip(x.tolist(), y.tolist())]
    (tmp_path / "runs.csv").write_text("\n".join(rows) + "\n")
    metrics = _run(
        tmp_path / "run",
        [
            "experiment=pce_file",
            f"data.path={tmp_path / 'runs.csv'}",
            "data.outputs=[y]",
            "data.bounds=[[-1,1],[-1,1]]",
            "data.test_fraction=0.1",
            "model.degree=3",
            "model.q_norm=1.0",
            "layout.rules.0.kind=iid_gaussian",
            "layout.rules.0.prior.kind=horseshoe",
            "trainer.epochs=1500",
            "eval.grid_points=10",
            "eval.num_samples=200",
        ],
    )
    assert metrics["timing"]["gradients"].startswith(("analytic", "autograd"))
    terms = {tuple(t["index"]): t["mean"] for t in metrics["active_terms"] if sum(t["index"])}
    assert set(terms) == {(1, 0), (1, 1)}
    assert terms[(1, 0)] == pytest.approx(2.0, abs=0.15)
    assert terms[(1, 1)] == pytest.approx(1.5, abs=0.15)
    assert metrics["loo"]["method"] == "psis"  # a likelihood: PSIS leave-one-out
