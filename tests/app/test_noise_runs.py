"""Learned Gaussian noise through the configs and in-process runs: the models built, the
options, experiment=moe_sign_nll, resume, and the reported noise in user units."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY, QuietUI, compose_train, train_then_resume

from polymix_cli.config.build import build_model
from polymix_cli.config.validation import ConfigError, parse_train_config, validate_train_config
from polymix_cli.runs.checkpoint import load_checkpoint
from polymix_cli.runs.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------ config


def test_models_without_noise_are_unchanged():
    """The CLI builds noise only for gaussian_nll: other models keep their state and numbers."""
    cfg = compose_train([])
    torch.manual_seed(7)
    cfg = parse_train_config(cfg)
    plain, _ = build_model(cfg.model, cfg.layout, 1, 1)
    torch.manual_seed(7)
    built, _ = build_model(cfg.model, cfg.layout, 1, 1, cfg.trainer)
    assert built.noise is None
    assert list(built.state_dict()) == list(plain.state_dict())
    assert not any("noise" in key for key in built.state_dict())
    assert all(
        torch.equal(a, b) for a, b in zip(plain.state_dict().values(), built.state_dict().values())
    )
    assert torch.equal(built.distribution_loss(), plain.distribution_loss())
    nll_cfg = parse_train_config(compose_train(["experiment=moe_sign_nll"]))
    torch.manual_seed(7)
    noisy, _ = build_model(nll_cfg.model, nll_cfg.layout, 1, 1, nll_cfg.trainer)
    assert list(noisy.state_dict()) == list(plain.state_dict()) + ["noise.log_std"]
    # building the noise draws nothing from the RNG: the rest of the model is the same
    assert all(
        torch.equal(plain.state_dict()[k], noisy.state_dict()[k]) for k in plain.state_dict()
    )


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "trainer.noise.init_std=0",
            "trainer.noise.init_std must be a number in (0.0, inf), got 0",
        ),
        (
            "trainer.noise.prior=gamma",
            "trainer.noise.prior must be one of ['none', 'log_normal', 'half_cauchy']",
        ),
        (
            "trainer.noise.prior_scale=-1",
            "trainer.noise.prior_scale must be a number in (0.0, inf), got -1",
        ),
    ],
)
def test_noise_options_are_validated(override, message):
    cfg = compose_train(["experiment=moe_sign_nll", override])
    with pytest.raises(ConfigError) as err:
        validate_train_config(cfg)
    assert str(err.value).startswith(message)


def test_unknown_noise_option_and_old_configs():
    cfg = compose_train(["experiment=moe_sign_nll"])
    cfg["trainer"]["noise"]["scale"] = 1.0
    with pytest.raises(
        ConfigError, match="unknown option trainer.noise.scale; allowed keys in trainer.noise"
    ):
        validate_train_config(cfg)
    old = compose_train([])
    del old["trainer"]["noise"]  # a config stored before the noise options existed
    validate_train_config(old)


def test_moe_sign_nll_is_the_seed_with_a_likelihood():
    seed, nll = compose_train(["experiment=moe_sign"]), compose_train(["experiment=moe_sign_nll"])
    assert seed["trainer"]["loss"] == "mse_sum" and nll["trainer"]["loss"] == "gaussian_nll"
    changed = {"name", "trainer"}
    assert {k: v for k, v in nll.items() if k not in changed} == {
        k: v for k, v in seed.items() if k not in changed
    }
    same = {k for k in seed["trainer"] if k not in ("loss", "weight_factor", "noise")}
    assert all(nll["trainer"][k] == seed["trainer"][k] for k in same)


# ------------------------------------------------------------------------------ runs


def test_resume_with_noise_is_bit_exact(tmp_path):
    cfg = compose_train(
        [
            "experiment=moe_sign_nll",
            *TINY,
            "trainer.epochs=40",
            "trainer.checkpoint_every=15",
            "eval.num_samples=16",
            "data.num_test=50",
        ]
    )
    full, resumed = train_then_resume(cfg, tmp_path, "epoch_15.pt")
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert a["model"].keys() == b["model"].keys() and "noise.log_std" in a["model"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert full["test"] == resumed["test"] and full["noise_std"] == resumed["noise_std"]


def test_noise_is_reported_in_user_units(tmp_path):
    """Trained on standardised outputs, the noise is learned in model units and reported
    times the output map's scale; the bands are in user units as well."""
    cfg = compose_train(
        [
            "experiment=moe_sign_nll",
            *TINY,
            "trainer.epochs=60",
            "eval.num_samples=32",
            "data.num_test=50",
            "data.output_scaling=standardize",
        ]
    )
    result = train(cfg, tmp_path, "{}", QuietUI())
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    scale = state["extra"]["data_maps"]["outputs"]["scale"][0]
    sigma_model = state["model"]["noise.log_std"].exp().item()
    assert scale == pytest.approx(1.5, abs=0.3)  # sin(pi x) + sign(x) varies by about 1.5
    assert result["noise_std"][0] == pytest.approx(sigma_model * scale, rel=1e-6)
    # the predictive band is at least as wide as 2 x 1.28 noise std in user units
    assert result["test"]["interval_width"]["0.8"] > 2 * 1.28 * sigma_model * scale * 0.9
