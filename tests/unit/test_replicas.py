"""Replicas (trainer.replicas): each replica of a batch trains exactly as a separate run
would, with either gradient path; the ensemble's draws are the union of the replicas'."""

from __future__ import annotations

import copy
import dataclasses
import itertools

import pytest
import torch
from helpers import compose_train

from polymix_cli.replicas import ReplicaEnsemble, Replicas
from polymix_cli.runs.prepare import prepare
from polymix_cli.runs.replicas import build_replicas
from polymix_cli.training.loop import History, Trainer, build_optimizer, build_scheduler

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["data.num_train=12", "trainer.num_samples=3", "trainer.epochs=6"]
CASES = {
    "moe_sign (deterministic gate hidden layer)": ["experiment=moe_sign", "model.gate.width=4"],
    "moe, 3 experts, all random": [
        "experiment=moe_sign",
        "model.num_experts=3",
        "model.gate.width=4",
        "layout=all_iid",
    ],
    "moe, gaussian_nll with a noise prior": [
        "experiment=moe_sign_nll",
        "model.gate.width=4",
        "trainer.noise.prior=half_cauchy",
    ],
    "nn_sincos (random output layer)": ["experiment=nn_sincos", "model.width=4"],
    "nn, depth 2, sgd": ["experiment=nn_sincos", "model.width=4", "model.depth=2", "optimizer=sgd"],
    "pce": ["experiment=pce_sine"],
    "moe_sign, mini-batches": ["experiment=moe_sign", "model.gate.width=4", "trainer.batch_size=5"],
}


@pytest.fixture
def float64():
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(dtype)


def _prepared(overrides):
    return prepare(compose_train([*overrides, *SMALL]))


def _trainer(p, model_or_replicas, replicas=None, gradients="auto"):
    t = p.cfg.trainer
    settings = dataclasses.replace(t, gradients=gradients)
    opt = build_optimizer(p.cfg.optimizer, model_or_replicas.parameters())
    trainer = Trainer(p.model, p.x_train, p.y_train, settings, opt, replicas=replicas)
    trainer.scheduler = build_scheduler(p.cfg.scheduler, opt, t.epochs)
    return trainer


def _feed(mf, noises):
    """Make a packed model draw the given standard normal noise, one ``(S, Ks)`` per step."""

    def fed(num_samples, generator):  # as MeanFieldParameters._draw_inputs, drawing nothing
        return (
            mf.loc,
            mf.log_std,
            next(noises),
            mf.stochastic_index,
            mf.prior_loc,
            mf.prior_inv_scale,
            mf.stochastic_inv_scale,
            mf.loss_const,
        )

    mf._draw_inputs = fed


@pytest.mark.parametrize("gradients", ["auto", "autograd"])
@pytest.mark.parametrize("case", list(CASES))
def test_each_replica_trains_as_a_separate_run(case, gradients, float64):
    k, p = 3, _prepared([*CASES[case], "trainer.replicas=3"])
    replicas = build_replicas(p)
    singles = [copy.deepcopy(replicas.copy_to(i, copy.deepcopy(p.model))) for i in range(k)]
    t = p.cfg.trainer
    gen = torch.Generator().manual_seed(3)
    steps = t.epochs * 3  # enough for the mini-batches of 12 points by 5
    noises = torch.randn(steps, k, t.num_samples, replicas.log_std.shape[1], generator=gen)
    batch_noise = iter(noises)
    replicas._noise = lambda num_samples: next(batch_noise)
    batch = _trainer(p, replicas, replicas, gradients)
    assert batch.gradient_path == ("analytic" if gradients == "auto" else "autograd")
    torch.manual_seed(0)  # the mini-batches' permutations (the draws are fed)
    batch.fit()
    for i, model in enumerate(singles):
        _feed(model.mean_field, iter(noises[:, i]))
        q = copy.copy(p)
        q.model = model
        single = _trainer(q, model, None, gradients)
        torch.manual_seed(0)
        single.fit()
        torch.testing.assert_close(replicas.loc[i], model.mean_field.loc, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(
            replicas.log_std[i], model.mean_field.log_std, rtol=1e-9, atol=1e-11
        )
        if model.noise is not None:
            torch.testing.assert_close(replicas.noise_log_std[i], model.noise.log_std)
        torch.testing.assert_close(
            torch.stack(batch.history.losses)[:, i], torch.stack(single.history.losses)
        )


def test_replicas_start_from_different_draws_and_one_is_the_plain_model():
    p = _prepared(["experiment=moe_sign", "trainer.replicas=4"])
    plain = p.model.mean_field.loc.detach().clone()
    replicas = build_replicas(p)
    assert torch.equal(replicas.loc[0], plain)
    assert all(not torch.equal(replicas.loc[0], replicas.loc[i]) for i in range(1, 4))
    assert build_replicas(_prepared(["experiment=moe_sign"])) is None


def test_history_with_replicas_rows_and_state():
    losses = [
        torch.tensor([[1.0, 2.0, 3.0], [0.5, 1.0, 0.6]]),
        torch.tensor([[1, 2, 4.0], [1, 1, 2.0]]),
    ]
    h = History([1, 2], [0.1, 0.2], losses)
    assert h.num_replicas == 2
    assert h.columns()[-2:] == ("total_loss_0", "total_loss_1")
    assert h.rows(1)[1] == (2, 0.2, 1.0, 1.0, 2.0, 4.0, 2.0)
    assert h.last() == {"data": 1.0, "distribution": 1.0, "total": 2.0, "replica": 1}
    assert h.last(0) == {"data": 1.0, "distribution": 2.0, "total": 4.0}
    again = History.from_state(h.state())
    assert again.rows(0) == h.rows(0)


def test_ensemble_draws_are_the_union_of_the_replicas_draws():
    p = _prepared(["experiment=moe_sign", "trainer.replicas=3"])
    replicas = build_replicas(p)
    with torch.no_grad():
        replicas.log_std.add_(torch.randn_like(replicas.log_std) * 0.1)
    ensemble = ReplicaEnsemble(replicas)
    num = 10
    draws = ensemble.sample_parameters(num, torch.Generator().manual_seed(5))
    noise = torch.randn(num, replicas.log_std.shape[1], generator=torch.Generator().manual_seed(5))
    which = ensemble.assignment(num)
    assert which.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    for k in range(3):
        single = replicas.copy_to(k, copy.deepcopy(p.model))
        rows = noise[which == k]
        _feed(single.mean_field, itertools.repeat(rows))
        mf = single.mean_field
        own = torch.index_add(
            mf.loc.expand(rows.shape[0], -1), 1, mf.stochastic_index, rows * mf.log_std.exp()
        )
        torch.testing.assert_close(draws[which == k], own.detach())
        x = p.x_train[:5]
        torch.testing.assert_close(
            ensemble.predict(x, draws[which == k]), single.predict(x, own.detach())
        )


def test_ensemble_refuses_a_learned_noise():
    p = _prepared(["experiment=moe_sign_nll", "trainer.replicas=2"])
    with pytest.raises(ValueError, match="noise"):
        ReplicaEnsemble(build_replicas(p))


def test_replicas_need_the_same_shapes():
    a = _prepared(["experiment=moe_sign"]).model
    b = _prepared(["experiment=moe_sign", "model.gate.width=4"]).model
    with pytest.raises(ValueError, match="same shape"):
        Replicas([a, b])


def test_the_ensembles_parameter_moments_are_those_of_its_draws():
    p = _prepared(["experiment=pce_sine", "trainer.replicas=3"])
    replicas = build_replicas(p)
    with torch.no_grad():
        replicas.loc.add_(torch.randn_like(replicas.loc))  # replicas far apart
    ensemble = ReplicaEnsemble(replicas)
    mean, std = ensemble.parameter_moments()
    draws = ensemble.sample_parameters(300_000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(mean, draws.mean(0), atol=0.01, rtol=0)
    torch.testing.assert_close(std, draws.std(0), atol=0.01, rtol=0.01)
    single = ReplicaEnsemble(Replicas([p.model])).parameter_moments()
    torch.testing.assert_close(single[0], p.model.mean_field.loc.detach())
