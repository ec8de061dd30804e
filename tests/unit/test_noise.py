"""Learned Gaussian noise, the gaussian_nll loss, the predictive band and its metrics (the
library; the configs and runs are in app/test_noise_runs.py and e2e/test_noise_cli.py)."""

from __future__ import annotations

import math

import pytest
import torch

from polymix_cli import GaussianNoise, StochasticModel
from polymix_cli.config.schema import AdamConfig
from polymix_cli.likelihoods import HalfCauchyNoisePrior, LogNormalNoisePrior
from polymix_cli.parameter_groups import IIDGaussianGroup
from polymix_cli.reporting.metrics import (
    CALIBRATION_LEVELS,
    LEVELS,
    interval_probs,
    summarize_predictive,
    summary_metrics,
)
from polymix_cli.surrogate_models import PolynomialChaosExpansion
from polymix_cli.training.loop import Trainer, TrainSettings, build_optimizer

PROBS = interval_probs(LEVELS + CALIBRATION_LEVELS)

pytestmark = pytest.mark.usefixtures("one_thread")


def _poly(x: torch.Tensor) -> torch.Tensor:
    """A cubic that a degree-3 PCE represents exactly."""
    return 1.0 + 0.5 * x - 0.8 * x**2 + 0.3 * x**3


def _pce_model(noise: GaussianNoise | None, degree: int = 3) -> StochasticModel:
    surrogate = PolynomialChaosExpansion(1, 1, degree=degree)
    return StochasticModel(
        surrogate, [IIDGaussianGroup("coeffs", surrogate.num_params())], noise=noise
    )


def _polynomial_data(n: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = 2 * torch.rand(n, 1, generator=gen) - 1
    return x, _poly(x) + noise * torch.randn(n, 1, generator=gen)


# ------------------------------------------------------------------------------ the core module


def test_noise_is_a_parameter_of_the_model():
    torch.manual_seed(0)
    noise = GaussianNoise(1, init_std=0.3)
    model = _pce_model(noise)
    assert torch.allclose(model.noise.std, torch.tensor([0.3]))
    assert "noise.log_std" in model.state_dict()
    assert any(p is noise.log_std for p in model.parameters())
    assert model.double().noise.log_std.dtype == torch.float64
    assert GaussianNoise(2, init_std=[0.1, 2.0]).std.tolist() == pytest.approx([0.1, 2.0])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: GaussianNoise(1, init_std=0.0), "init_std must be a positive finite number"),
        (lambda: GaussianNoise(0), "num_outputs must be a positive integer"),
        (lambda: GaussianNoise(2, init_std=[0.1]), "init_std must be a number or 2 numbers"),
        (lambda: HalfCauchyNoisePrior(scale=-1.0), "scale must be a positive finite number"),
        (lambda: _pce_model(GaussianNoise(2)), "noise has 2 outputs, but the surrogate has 1"),
    ],
)
def test_bad_noise_arguments_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_noise_priors_match_torch_distributions():
    """The distribution loss holds -log p(log sigma) = -log p_sigma(sigma) - log sigma."""
    log_std = torch.tensor([-2.0, 0.3])
    sigma = log_std.exp()
    cauchy = HalfCauchyNoisePrior(scale=0.5)
    expected = -(torch.distributions.HalfCauchy(0.5).log_prob(sigma) + log_std).sum()
    assert cauchy.neg_log_prob(log_std).item() == pytest.approx(expected.item(), rel=1e-6)
    lognormal = LogNormalNoisePrior(median=0.1, log_std=0.7)
    expected = -(torch.distributions.LogNormal(math.log(0.1), 0.7).log_prob(sigma) + log_std).sum()
    assert lognormal.neg_log_prob(log_std).item() == pytest.approx(expected.item(), rel=1e-6)

    torch.manual_seed(1)
    without = _pce_model(GaussianNoise(1, init_std=0.2))
    torch.manual_seed(1)
    with_prior = _pce_model(GaussianNoise(1, init_std=0.2, prior=cauchy))
    extra = cauchy.neg_log_prob(with_prior.noise.log_std)
    assert with_prior.distribution_loss().item() == pytest.approx(
        (without.distribution_loss() + extra).item()
    )


# ------------------------------------------------------------------------------ the loss


def _trainer(
    model, x, y, loss="gaussian_nll", weight_factor=1.0, batch_size=None, num_samples=4, lr=0.05
):
    settings = TrainSettings(
        epochs=1,
        num_samples=num_samples,
        weight_factor=weight_factor,
        loss=loss,
        batch_size=batch_size,
    )
    optimizer = build_optimizer(AdamConfig(lr=lr), model.parameters())
    return Trainer(model, x, y, settings, optimizer)


def _hand_losses(model, x, y, params, scale, weight_factor):
    """-(N/B) mean over draws of sum log N(y | y_hat, sigma^2), the analytic KL to N(0, 1)
    plus -log p(log sigma), and their weighted sum."""
    y_hat = model.surrogate_model(x, params)
    log_lik = torch.distributions.Normal(y_hat, model.noise.std).log_prob(y)  # (S, B, O)
    data = -scale * log_lik.sum((1, 2)).mean()
    group = model.parameter_groups[0]
    s, m = group.log_std.exp(), group.mean
    kl = (-group.log_std + 0.5 * (s**2 + m**2) - 0.5).sum()
    dist = kl + model.noise.prior.neg_log_prob(model.noise.log_std)
    return data, dist, data + weight_factor * dist


def test_gaussian_nll_loss_is_the_hand_computed_elbo():
    torch.manual_seed(3)
    x, y = _polynomial_data(12, 0.2, seed=3)
    model = _pce_model(GaussianNoise(1, init_std=0.4, prior=HalfCauchyNoisePrior(0.5)))
    trainer = _trainer(model, x, y, weight_factor=0.7, num_samples=5)
    torch.manual_seed(11)
    data, dist, total = trainer.losses()
    torch.manual_seed(11)
    with torch.no_grad():
        expected = _hand_losses(model, x, y, model.sample_parameters(5), 1.0, 0.7)
    for got, want in zip((data, dist, total), expected):
        assert got.item() == pytest.approx(want.item(), rel=1e-5)
    # a mini-batch's data term is scaled by N / batch (step reports it before its update)
    torch.manual_seed(12)
    with torch.no_grad():
        expected = _hand_losses(model, x[:4], y[:4], model.sample_parameters(5), 3.0, 0.7)
    torch.manual_seed(12)
    got = trainer.step(x[:4], y[:4])
    assert got.tolist() == pytest.approx([v.item() for v in expected], rel=1e-5)


def test_gaussian_nll_needs_a_noise():
    x, y = _polynomial_data(5, 0.1, seed=0)
    with pytest.raises(ValueError, match="gaussian_nll needs a model with a learned noise"):
        _trainer(_pce_model(None), x, y)


def test_batch_of_all_points_is_full_batch_training():
    x, y = _polynomial_data(20, 0.2, seed=4)
    states = []
    for batch in (None, 20, 50):
        torch.manual_seed(5)
        model = _pce_model(GaussianNoise(1, init_std=0.5))
        trainer = _trainer(model, x, y, batch_size=batch)
        trainer.settings.epochs = 15
        trainer.fit()
        states.append((model.state_dict(), torch.stack(trainer.history.losses)))
    for state, losses in states[1:]:
        assert all(torch.equal(state[k], states[0][0][k]) for k in state)
        assert torch.equal(losses, states[0][1])


@pytest.fixture(scope="module")
def fitted():
    """A cubic PCE trained with gaussian_nll on a cubic plus noise 0.2 (a well-specified model)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before the function-scoped one_thread
    torch.manual_seed(0)
    x, y = _polynomial_data(500, 0.2, seed=1)
    model = _pce_model(GaussianNoise(1, init_std=1.0))
    trainer = _trainer(model, x, y, num_samples=16, lr=0.05)
    trainer.settings.epochs = 300
    trainer.fit()
    torch.set_num_threads(threads)
    return model


def test_learned_noise_recovers_the_true_level(fitted):
    assert fitted.noise.std.item() == pytest.approx(0.2, rel=0.15)


def _summary(model, x, y, seed=0, num_samples=400, noise=True):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        params = model.sample_parameters(num_samples, generator=gen)
        return summarize_predictive(
            lambda xs: model.predict(xs, params),
            x,
            PROBS,
            y=y,
            noise_std=model.noise.std.detach() if noise else None,
            generator=gen,
        )


def test_calibration_of_a_well_specified_model(fitted):
    x, y = _polynomial_data(2000, 0.2, seed=2)  # fresh data from the same process
    result = summary_metrics(_summary(fitted, x, y), y, levels=(0.5, 0.8), y_true=_poly(x))
    assert result["calibration_error"] < 0.03
    assert abs(result["coverage"]["0.8"] - 0.8) < 0.03
    assert result["rmse_true"] < 0.03
    # the coefficients alone explain none of the noise: their band is far too narrow
    assert result["epistemic"]["calibration_error"] > 0.3
    assert result["epistemic"]["interval_width"]["0.8"] < 0.2 * result["interval_width"]["0.8"]
    # the exact mixture nll of the well-specified model is near the true noise's entropy
    assert result["nll"] == pytest.approx(0.5 * math.log(2 * math.pi * math.e * 0.04), abs=0.05)


# ------------------------------------------------------------------------------ evaluation


def test_nll_against_a_hand_computation():
    draws = torch.tensor(
        [[[0.0, 1.0], [2.0, -1.0]], [[0.5, 3.0], [1.0, 0.0]], [[-0.5, 2.0], [2.5, 1.0]]]
    )  # (S=3, N=2, O=2)
    y = torch.tensor([[0.2, 2.5], [1.5, 0.4]])
    sigma = torch.tensor([0.5, 2.0])
    x = torch.zeros(2, 1)
    summary = summarize_predictive(
        lambda xs: draws, x, PROBS, y=y, noise_std=sigma, generator=torch.Generator()
    )

    def normal(v, mu, s):
        return math.exp(-0.5 * ((v - mu) / s) ** 2) / (s * math.sqrt(2 * math.pi))

    per_point = [
        sum(
            -math.log(
                sum(
                    normal(y[n, o].item(), draws[s, n, o].item(), sigma[o].item()) for s in range(3)
                )
                / 3
            )
            for o in range(2)
        )
        for n in range(2)
    ]
    assert summary_metrics(summary, y)["nll"] == pytest.approx(sum(per_point) / 2, rel=1e-5)

    # without noise: the Gaussian moment match of the draws (unbiased variance)
    plain = summarize_predictive(lambda xs: draws, x, PROBS, y=y)
    expected = 0.0
    for n in range(2):
        for o in range(2):
            values = draws[:, n, o].tolist()
            mean = sum(values) / 3
            var = sum((v - mean) ** 2 for v in values) / 2
            expected += -math.log(normal(y[n, o].item(), mean, math.sqrt(var)))
    assert summary_metrics(plain, y)["nll"] == pytest.approx(expected / 2, rel=1e-5)


def test_predictive_band_is_draws_plus_noise():
    """Identical draws f: the epistemic band has no width, the predictive one is f +- z sigma."""
    f = torch.tensor([[1.0, -2.0], [0.0, 5.0]])
    draws = f.expand(20000, 2, 2)
    sigma = torch.tensor([0.1, 2.0])
    summary = summarize_predictive(
        lambda xs: draws,
        torch.zeros(2, 1),
        PROBS,
        noise_std=sigma,
        generator=torch.Generator().manual_seed(0),
    )
    lower, upper = summary.interval(0.8)
    z = 1.2815515655446004  # the standard normal's 0.9 quantile
    assert torch.allclose(upper - f, z * sigma.expand(2, 2), rtol=0.03)
    assert torch.allclose(f - lower, z * sigma.expand(2, 2), rtol=0.03)
    assert torch.allclose(summary.std, sigma.expand(2, 2))
    lo, hi = summary.band("epistemic").interval(0.8)
    assert torch.equal(lo, f) and torch.equal(hi, f)
    assert summary.band("predictive") is summary
