"""The fast paths give the same results as the plain ones."""

from __future__ import annotations

import copy

import pytest
import torch

from polymix_cli import StochasticModel
from polymix_cli.config.schema import AdamWConfig
from polymix_cli.parameter_groups import DeterministicGroup, GaussianGroup, IIDGaussianGroup
from polymix_cli.priors import IIDGaussianPrior
from polymix_cli.reporting.metrics import interval_probs, summarize_predictive
from polymix_cli.surrogate_models import (
    GatingNetwork,
    MixtureOfExperts,
    NeuralNetwork,
    PolynomialChaosExpansion,
)
from polymix_cli.training.loop import Trainer, TrainSettings, build_optimizer


def seed_groups(width: int = 16, prior=None):
    kw = {} if prior is None else {"prior": prior}
    return [
        IIDGaussianGroup("e1_c0", 2, **kw),
        DeterministicGroup("e1_c", 2, **kw),
        IIDGaussianGroup("e2_c0", 2, **kw),
        DeterministicGroup("e2_c", 2, **kw),
        DeterministicGroup("g_w", width, **kw),
        DeterministicGroup("g_b", width, **kw),
        IIDGaussianGroup("g_ow", 2 * width, **kw),
        IIDGaussianGroup("g_ob", 2, **kw),
    ]


def seed_mixture(num_experts: int = 2, width: int = 16):
    return MixtureOfExperts(
        [PolynomialChaosExpansion(1, 1, degree=3) for _ in range(num_experts)],
        GatingNetwork(1, num_experts, width=width, depth=1),
    )


def test_packed_mean_field_matches_the_groups():
    torch.manual_seed(0)
    prior = IIDGaussianPrior(0.3, 2.0)
    groups = seed_groups(prior=prior)
    for g in groups:  # perturb so that every term of the loss matters
        for p in g.parameters():
            p.data.add_(0.1 * torch.randn_like(p))
    expected = sum(g.distribution_loss() for g in groups)
    model = StochasticModel(seed_mixture(), groups)
    assert model.mean_field is not None
    assert [n for n, _ in model.named_parameters()] == ["mean_field.loc", "mean_field.log_std"]
    torch.testing.assert_close(model.distribution_loss(), expected)
    torch.testing.assert_close(
        sum(g.distribution_loss() for g in groups), expected
    )  # groups still work
    draws = model.sample_parameters(20000)
    assert draws.shape == (20000, 74)
    # deterministic entries are exact; stochastic ones have the group's mean and std
    torch.testing.assert_close(draws[:, 2:4], groups[1].value.expand(20000, 2))
    torch.testing.assert_close(draws[:, 0:2].mean(0), groups[0].mean, atol=0.03, rtol=0)
    torch.testing.assert_close(draws[:, 0:2].std(0), groups[0].log_std.exp(), atol=0.03, rtol=0)


def test_packed_gradients_equal_unpacked():
    torch.manual_seed(1)
    groups = seed_groups()
    reference = copy.deepcopy(groups)
    x = torch.rand(30, 1) * 2 - 1
    packed = StochasticModel(seed_mixture(), groups)
    noise = torch.Generator().manual_seed(5)
    params = packed.sample_parameters(7, generator=noise)
    loss = packed.predict(x, params).square().sum() + packed.distribution_loss()
    loss.backward()
    # the same draws through the plain path, built from unpacked copies of the groups
    flat = torch.cat(
        [
            g.value.expand(7, -1)
            if isinstance(g, DeterministicGroup)
            else g.mean + g.log_std.exp() * ((params[:, sl] - g.mean) / g.log_std.exp()).detach()
            for g, sl in zip(reference, _slices(reference))
        ],
        dim=1,
    )
    ref_loss = seed_mixture()(x, flat).square().sum() + sum(
        g.distribution_loss() for g in reference
    )
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss)
    ref_grad = torch.cat(
        [g.value.grad if isinstance(g, DeterministicGroup) else g.mean.grad for g in reference]
    )
    torch.testing.assert_close(packed.mean_field.loc.grad, ref_grad)


def _slices(groups):
    start = 0
    for g in groups:
        yield slice(start, start + g.num_params())
        start += g.num_params()


@pytest.mark.parametrize("num_experts", [2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_predict_with_shared_blocks_equals_plain_evaluation(num_experts, dtype):
    torch.manual_seed(2)
    width = 8
    groups = [
        DeterministicGroup("experts", 4 * num_experts),
        DeterministicGroup("hidden_w", width),
        DeterministicGroup("hidden_b", width),
        IIDGaussianGroup("out", width * num_experts + num_experts),
    ]
    model = StochasticModel(seed_mixture(num_experts, width), groups).to(dtype)
    assert model.constant_blocks >= {
        "gate.hidden.0.weight",
        "gate.hidden.0.bias",
        "experts.0.coeffs",
    }
    x = (torch.rand(25, 1) * 2 - 1).to(dtype)
    params = model.sample_parameters(6)
    fast = model.predict(x, params)
    assert fast.dtype == dtype
    torch.testing.assert_close(fast, model.surrogate_model(x, params))


def test_network_shared_layers_and_general_groups():
    torch.manual_seed(3)
    net = NeuralNetwork(3, 2, width=5, depth=2)
    sizes = [b.size for b in net.param_blocks()]
    groups = [DeterministicGroup(f"d{i}", n) for i, n in enumerate(sizes[:4])] + [
        GaussianGroup("rest", sum(sizes[4:]))
    ]
    model = StochasticModel(net, groups)
    assert model.mean_field is None and "hidden.1.weight" in model.constant_blocks
    x = torch.randn(10, 3)
    params = model.sample_parameters(4)
    torch.testing.assert_close(model.predict(x, params), net(x, params))


def test_chunked_summary_equals_unchunked(monkeypatch):
    torch.manual_seed(4)
    model = StochasticModel(seed_mixture(), seed_groups())
    x = torch.rand(300, 1) * 2 - 1
    y = torch.randn(300, 1)
    params = model.sample_parameters(64)
    probs = interval_probs((0.5, 0.8))
    whole = summarize_predictive(lambda xs: model.predict(xs, params), x, probs, y=y)
    # chunks of 7 points
    monkeypatch.setattr("polymix_cli.reporting.metrics._CHUNK_ELEMENTS", 64 * 7)
    chunked = summarize_predictive(
        lambda xs: model.predict(xs, params), x, probs, y=y, per_point=64
    )
    for name in ("mean", "std", "quantiles", "crps"):
        torch.testing.assert_close(getattr(chunked, name), getattr(whole, name))


def _train(batch_size, epochs=15):
    torch.manual_seed(6)
    model = StochasticModel(seed_mixture(), seed_groups())
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(40, 1, generator=gen) * 2 - 1
    y = torch.sin(3 * x)
    opt = build_optimizer(AdamWConfig(lr=0.01, weight_decay=1e-4), model.parameters())
    trainer = Trainer(model, x, y, TrainSettings(epochs, 8, 0.1, batch_size=batch_size), opt)
    trainer.fit()
    return model, trainer


def test_minibatch_of_all_points_equals_full_batch():
    full, t_full = _train(None)
    batched, t_batched = _train(40)
    assert t_batched.steps_per_epoch == 1
    for (n, a), (_, b) in zip(full.state_dict().items(), batched.state_dict().items()):
        assert torch.equal(a, b), n
    assert torch.equal(torch.stack(t_full.history.losses), torch.stack(t_batched.history.losses))


def test_minibatches_scale_the_data_term():
    _, trainer = _train(10, epochs=1)
    assert trainer.steps_per_epoch == 4
    # the scaled data term of a batch is an unbiased estimate: its mean over a partition is the full term
    params = trainer.model.sample_parameters(8)
    x, y = trainer.x, trainer.y
    full = (trainer.model.predict(x, params) - y).square().sum() / 8
    parts = [
        (trainer.model.predict(x[i : i + 10], params) - y[i : i + 10]).square().sum() / 8 * 4
        for i in range(0, 40, 10)
    ]
    torch.testing.assert_close(torch.stack(parts).mean(), full)


def test_compiled_objective_matches_eager(monkeypatch):
    """trainer.compile: the torch.compile'd objective gives the eager losses. Inductor
    draws its own random numbers; with fallback_random it uses eager's, so the draws match."""
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config, "fallback_random", True)
    torch.manual_seed(7)
    model = StochasticModel(seed_mixture(), seed_groups())
    x = torch.rand(30, 1) * 2 - 1
    y = torch.sin(3 * x)
    opt = build_optimizer(AdamWConfig(lr=0.01, weight_decay=0.0), model.parameters())
    eager = Trainer(model, x, y, TrainSettings(1, 16, 0.1), opt)
    compiled = Trainer(model, x, y, TrainSettings(1, 16, 0.1, compile=True), opt)
    torch.manual_seed(8)
    expected = eager.losses()
    torch.manual_seed(8)
    got = compiled.losses()
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_and_prediction_follow_the_device():
    torch.manual_seed(9)
    model = StochasticModel(seed_mixture(), seed_groups()).cuda()
    x = (torch.rand(40, 1) * 2 - 1).cuda()
    y = torch.sin(3 * x)
    opt = build_optimizer(AdamWConfig(lr=0.01, weight_decay=0.0), model.parameters())
    trainer = Trainer(model, x, y, TrainSettings(20, 8, 0.1), opt)
    trainer.fit()
    assert torch.isfinite(torch.stack(trainer.history.losses)).all()
    out = model(x, 5)
    assert out.device.type == "cuda" and out.shape == (5, 40, 1)
    cpu = copy.deepcopy(model).cpu()
    params = model.sample_parameters(4)
    torch.testing.assert_close(
        model.predict(x, params).cpu(), cpu.predict(x.cpu(), params.cpu()), rtol=1e-4, atol=1e-5
    )


def test_deepcopy_of_a_packed_model_is_independent():
    model = StochasticModel(seed_mixture(), seed_groups())
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.mean_field.loc.add_(1.0)
    assert torch.equal(twin.parameter_groups[0].mean, twin.mean_field.loc[:2])
    assert torch.equal(model.parameter_groups[0].mean + 1.0, twin.parameter_groups[0].mean)


def test_packed_draw_and_loss_gradients_are_exact():
    """The hand-written backward passes of the packed draw and loss, by finite differences."""
    from polymix_cli.parameter_groups.mean_field import _Draw, _Loss

    torch.manual_seed(10)
    loc = torch.randn(6, dtype=torch.float64, requires_grad=True)
    log_std = torch.randn(3, dtype=torch.float64, requires_grad=True)
    noise, index = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 2, 5])
    assert torch.autograd.gradcheck(lambda a, b: _Draw.apply(a, b, noise, index), (loc, log_std))
    prior_loc = torch.randn(6, dtype=torch.float64)
    inv_scale, stochastic_inv = (
        torch.rand(6, dtype=torch.float64) + 0.5,
        torch.rand(3, dtype=torch.float64) + 0.5,
    )
    assert torch.autograd.gradcheck(
        lambda a, b: _Loss.apply(a, b, prior_loc, inv_scale, stochastic_inv, 1.3), (loc, log_std)
    )
    from polymix_cli.parameter_groups.mean_field import _DrawWithLoss

    assert torch.autograd.gradcheck(
        lambda a, b: _DrawWithLoss.apply(
            a, b, noise, index, prior_loc, inv_scale, stochastic_inv, 1.3
        ),
        (loc, log_std),
    )
    theta, loss = _DrawWithLoss.apply(
        loc, log_std, noise, index, prior_loc, inv_scale, stochastic_inv, 1.3
    )
    torch.testing.assert_close(theta, _Draw.apply(loc, log_std, noise, index))
    torch.testing.assert_close(
        loss, _Loss.apply(loc, log_std, prior_loc, inv_scale, stochastic_inv, 1.3)
    )


def test_sample_with_loss_equals_separate_calls():
    torch.manual_seed(3)
    model = StochasticModel(seed_mixture(), seed_groups(prior=IIDGaussianPrior(0.2, 1.5)))
    params, loss = model.sample_with_loss(5, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(
        params, model.sample_parameters(5, generator=torch.Generator().manual_seed(9))
    )
    torch.testing.assert_close(loss, model.distribution_loss())


def test_chunked_predictive_summary_equals_unchunked(monkeypatch):
    """With a noise, the noise is drawn point by point: chunks give the same numbers."""
    torch.manual_seed(6)
    model = StochasticModel(seed_mixture(), seed_groups())
    x, y = torch.rand(300, 1) * 2 - 1, torch.randn(300, 1)
    params, sigma = model.sample_parameters(64), torch.tensor([0.3])
    probs = interval_probs((0.5, 0.8))

    def run(**kw):
        return summarize_predictive(
            lambda xs: model.predict(xs, params),
            x,
            probs,
            y=y,
            noise_std=sigma,
            generator=torch.Generator().manual_seed(2),
            **kw,
        )

    whole = run()
    # chunks of 7 points
    monkeypatch.setattr("polymix_cli.reporting.metrics._CHUNK_ELEMENTS", 64 * 7)
    chunked = run(per_point=64)
    for name in ("mean", "std", "quantiles", "crps", "nll"):
        torch.testing.assert_close(getattr(chunked, name), getattr(whole, name))
