"""The hand-derived gradient step (polymix_cli.training.analytic_step) against autograd: the same
losses and gradients for every model it accepts, the same training trajectory, and a
fallback with its reason for every model it does not."""

from __future__ import annotations

import pytest
import torch
from helpers import compose_train

from polymix_cli.runs.prepare import prepare
from polymix_cli.training.analytic_step import AnalyticStep, unsupported_reason
from polymix_cli.training.loop import Trainer, TrainSettings, build_optimizer, build_scheduler

SUPPORTED = {
    "moe_sign": ["experiment=moe_sign"],
    "moe_nll": ["experiment=moe_sign_nll"],
    "pce": ["experiment=pce_sine"],
    "pce_3_inputs": ["experiment=ishigami_pce", "data.num_train=40", "model.degree=3"],
    "moe_3_experts_relu_depth_2": [
        "model.num_experts=3",
        "model.gate.depth=2",
        "model.gate.activation=relu",
    ],
    "moe_sigmoid_noise_prior": [
        "model.gate.activation=sigmoid",
        "trainer.loss=gaussian_nll",
        "trainer.noise.prior=half_cauchy",
    ],
    "moe_2_outputs": ["data=sincos", "trainer.loss=gaussian_nll", "trainer.noise.prior=log_normal"],
    "moe_4_experts_2_outputs": ["data=sincos", "model.num_experts=4"],
    "moe_1_expert": ["model.num_experts=1"],
    "moe_all_deterministic": ["layout.rules=[]"],
    "moe_all_random": ["layout=all_iid"],
    "moe_3_experts_all_random_depth_2": [
        "layout=all_iid",
        "model.num_experts=3",
        "model.gate.depth=2",
    ],
    "nn_last_layer": ["experiment=nn_sincos"],
    "nn_last_layer_depth_2_nll": [
        "experiment=nn_sincos",
        "model.depth=2",
        "trainer.loss=gaussian_nll",
    ],
    "nn_all_random": ["experiment=nn_sincos", "layout=all_iid"],
    "nn_all_random_depth_3_relu": [
        "experiment=nn_sincos",
        "layout=all_iid",
        "model.depth=3",
        "model.activation=relu",
        "trainer.loss=gaussian_nll",
    ],
    "nn_random_first_layer": [
        "experiment=nn_sincos",
        "data=sign_sine",
        "model.depth=2",
        "layout.rules=[{match: hidden.0.*, kind: iid_gaussian}]",
    ],
    "nn_random_middle_layer_2_inputs": [
        "experiment=nn_sincos",
        "data=ishigami",
        "data.num_train=30",
        "model.depth=3",
        "model.activation=sigmoid",
        "layout.rules=[{match: hidden.1.weight, kind: iid_gaussian}]",
    ],
    "nn_all_deterministic": ["experiment=nn_sincos", "layout.rules=[]"],
}


def _trainer(overrides: list[str], gradients: str, **settings) -> Trainer:
    cfg = compose_train(overrides)
    p = prepare(cfg)
    t = p.cfg.trainer
    opt = build_optimizer(p.cfg.optimizer, p.model.parameters())
    trainer = Trainer(
        p.model,
        p.x_train,
        p.y_train,
        TrainSettings(
            t.epochs,
            t.num_samples,
            t.weight_factor,
            t.loss,
            gradients=gradients,
            **settings,
        ),
        opt,
    )
    trainer.scheduler = build_scheduler(p.cfg.scheduler, opt, t.epochs)
    return trainer


def _losses_and_grads(trainer: Trainer, x, y, scale: float, analytic: bool):
    torch.manual_seed(7)
    trainer.optimizer.zero_grad(set_to_none=True)
    if analytic:
        losses = AnalyticStep(
            trainer.model,
            trainer.settings.loss,
            trainer.settings.num_samples,
            trainer.settings.kl_weight(),
        )(x, y, scale)
    else:
        data, dist, total = trainer._losses(x, y, scale)
        total.backward()
        losses = torch.stack([data, dist, total]).detach()
    return losses, [p.grad.clone() for p in trainer._params]


@pytest.mark.parametrize("name", list(SUPPORTED))
def test_losses_and_gradients_equal_autograd(name):
    trainer = _trainer(
        SUPPORTED[name] + ["trainer.num_samples=6", "trainer.weight_factor=0.3"], "autograd"
    )
    assert unsupported_reason(trainer.model, trainer.settings.loss) is None
    model = trainer.model.double()  # float64: agreement to rounding is then tight
    x, y = trainer.x.double(), trainer.y.double()
    with torch.no_grad():  # move away from the initial values, so every term matters
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    for xb, yb, scale in ((x, y, 1.0), (x[:7], y[:7], x.shape[0] / 7)):  # all points; a mini-batch
        want, want_grads = _losses_and_grads(trainer, xb, yb, scale, analytic=False)
        got, got_grads = _losses_and_grads(trainer, xb, yb, scale, analytic=True)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
        assert len(got_grads) == len(want_grads) == len(list(model.parameters()))
        for g, w in zip(got_grads, want_grads):
            assert g.abs().max() > 0
            torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9 * float(w.abs().max()))


@pytest.mark.parametrize("batch_size", [None, 16])
def test_training_follows_the_autograd_trajectory(batch_size):
    overrides = ["trainer.epochs=25", "trainer.num_samples=8"]
    runs = []
    for gradients in ("autograd", "auto"):
        torch.manual_seed(0)
        trainer = _trainer(overrides, gradients, batch_size=batch_size)
        trainer.fit()
        runs.append(trainer)
    autograd, analytic = runs
    assert (autograd.gradient_path, analytic.gradient_path) == ("autograd", "analytic")
    torch.testing.assert_close(
        torch.stack(analytic.history.losses),
        torch.stack(autograd.history.losses),
        rtol=1e-4,
        atol=1e-4,
    )
    for key, value in autograd.model.state_dict().items():
        torch.testing.assert_close(analytic.model.state_dict()[key], value, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (["experiment=nn_sincos", "model.activation=softplus"], "the activation 'softplus'"),
        (["model.gate.activation=gelu"], "the activation 'gelu'"),
        (
            ["model.expert.kind=nn", "layout=all_iid"],
            "experts that are not expansions with the same basis terms",
        ),
        (["layout.default.kind=gaussian"], "a layout that is not mean-field"),
    ],
)
def test_other_models_fall_back_to_autograd(overrides, reason):
    trainer = _trainer(overrides + ["trainer.epochs=2", "trainer.num_samples=4"], "auto")
    assert trainer.gradient_path == f"autograd ({reason})"
    trainer.fit()
    assert len(trainer.history.losses) == 2
    with pytest.raises(ValueError, match="AnalyticStep does not support"):
        AnalyticStep(trainer.model, "mse_sum", 4, 0.1)


def test_autograd_can_be_forced():
    trainer = _trainer(["trainer.epochs=2"], "autograd")
    assert trainer.gradient_path == "autograd" and trainer._analytic is None
    with pytest.raises(
        ValueError, match=r"trainer.gradients must be one of \['auto', 'autograd'\]"
    ):
        _trainer([], "manual")
