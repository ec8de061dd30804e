"""The posterior summary of a model (polymix_cli.posterior): closed forms of each group
kind against their distributions, sampled groups against their draws, parameter names and
PCE multi-indices, priors, the active flag and the JSON record (no Hydra, no runs)."""

from __future__ import annotations

import math

import pytest
import torch

from polymix_cli import StochasticModel
from polymix_cli.likelihoods import GaussianNoise, HalfCauchyNoisePrior
from polymix_cli.parameter_groups import (
    DeterministicGroup,
    GaussianGroup,
    IIDGaussianGroup,
    LangevinGroup,
    LowRankGaussianGroup,
    ScoreNetwork,
)
from polymix_cli.posterior import (
    active,
    parameter_names,
    pce_terms,
    prior_label,
    summarize_posterior,
)
from polymix_cli.priors import GaussianPrior, IIDGaussianPrior, LaplacePrior
from polymix_cli.surrogate_models import GatingNetwork, MixtureOfExperts, PolynomialChaosExpansion

Z90 = 1.6448536269514722  # the standard normal's 0.95 quantile


def _pce_model(groups, noise=None):
    torch.manual_seed(0)
    pce = PolynomialChaosExpansion(2, 1, degree=2)  # 6 terms
    return StochasticModel(pce, groups, noise=noise)


def test_iid_gaussian_and_deterministic_groups_in_closed_form():
    iid = IIDGaussianGroup("a", 4, prior=IIDGaussianPrior(0.5, 2.0))
    point = DeterministicGroup("b", 2)
    model = _pce_model([iid, point])
    s = summarize_posterior(model, level=0.9)
    g_iid, g_point = s.groups
    torch.testing.assert_close(g_iid.mean, iid.mean.detach().double())
    torch.testing.assert_close(g_iid.std, iid.log_std.detach().exp().double())
    torch.testing.assert_close(g_iid.high - g_iid.mean, Z90 * g_iid.std)
    torch.testing.assert_close(g_iid.mean - g_iid.low, Z90 * g_iid.std)
    assert g_iid.kind == "iid_gaussian" and g_iid.prior == "normal(0.5, 2)"
    assert g_iid.prior_mean.tolist() == [0.5] * 4 and g_iid.prior_std.tolist() == [2.0] * 4
    # a point estimate: no spread, its interval the point
    assert g_point.kind == "deterministic" and g_point.std.abs().max() == 0
    torch.testing.assert_close(g_point.low, point.value.detach().double())
    assert (g_point.start, g_iid.start) == (4, 0)


def test_full_and_low_rank_groups_give_their_marginal_stds():
    full = GaussianGroup("a", 3)
    with torch.no_grad():
        full.raw_scale_tril.copy_(torch.tensor([[0.3, 0, 0], [0.5, -1.0, 0], [0.2, 0.4, 0.1]]))
    low = LowRankGaussianGroup("b", 3, rank=2)
    model = _pce_model([full, low])
    s = summarize_posterior(model)
    cov_full = full.scale_tril() @ full.scale_tril().T
    torch.testing.assert_close(s.groups[0].std, cov_full.diagonal().sqrt().detach().double())
    cov_low = low.cov_factor @ low.cov_factor.T + torch.diag(low.cov_diag())
    torch.testing.assert_close(s.groups[1].std, cov_low.diagonal().sqrt().detach().double())


def test_a_group_without_closed_form_is_summarised_from_seeded_draws():
    torch.manual_seed(1)
    langevin = LangevinGroup("a", 6, score_model=ScoreNetwork(6, 6, width=4, depth=1))
    model = _pce_model([langevin])
    first = summarize_posterior(model, 0.8, 4000, torch.Generator().manual_seed(3))
    again = summarize_posterior(model, 0.8, 4000, torch.Generator().manual_seed(3))
    assert torch.equal(first.groups[0].mean, again.groups[0].mean)  # seeded
    draws = langevin.sample(4000, generator=torch.Generator().manual_seed(3)).detach().double()
    g = first.groups[0]
    torch.testing.assert_close(g.mean, draws.mean(0))
    torch.testing.assert_close(g.std, draws.std(0))
    torch.testing.assert_close(g.low, torch.quantile(draws, 0.1, dim=0))
    assert g.kind == "langevin"


def test_names_and_multi_indices_of_pce_coefficients():
    model = _pce_model([IIDGaussianGroup("c", 6)])
    assert parameter_names(model)[:3] == ["coeffs[0,0]", "coeffs[1,0]", "coeffs[2,0]"]
    terms = pce_terms(model)
    indices = [tuple(r) for r in model.surrogate_model.multi_indices.tolist()]
    assert [terms[i] for i in range(6)] == indices
    assert set(map(sum, indices)) == {0, 1, 2}


def test_multi_indices_of_pce_experts_in_a_mixture_and_none_for_the_gate():
    experts = [PolynomialChaosExpansion(1, 2, degree=2), PolynomialChaosExpansion(1, 2, degree=1)]
    gate = GatingNetwork(num_inputs=1, num_experts=2, width=3, depth=1)
    moe = MixtureOfExperts(experts=experts, gating_network=gate)
    model = StochasticModel(moe, [IIDGaussianGroup("all", moe.num_params())])
    terms = pce_terms(model)
    names = parameter_names(model)
    # expert 0: 3 terms x 2 outputs, row-major (term, output); expert 1: 2 terms x 2
    assert [terms[i] for i in range(6)] == [(0,), (0,), (1,), (1,), (2,), (2,)]
    assert names[5] == "experts.0.coeffs[2,1]" and terms[9] == (1,)
    assert len(terms) == 10 and all(i not in terms for i in range(10, moe.num_params()))


def test_priors_are_described_with_their_marginals():
    assert prior_label(LaplacePrior(0.0, 0.5)) == "laplace(0, 0.5)"
    assert prior_label(IIDGaussianPrior(torch.zeros(3), torch.ones(3))) == "normal(per entry)"
    full = GaussianPrior(
        torch.tensor([1.0, 2.0]), covariance_matrix=torch.diag(torch.tensor([4.0, 9.0]))
    )
    assert prior_label(full) == "mvnormal(2)"
    model = _pce_model(
        [
            IIDGaussianGroup("a", 2, prior=LaplacePrior(0.0, 0.5)),
            GaussianGroup("b", 2, prior=full),
            DeterministicGroup("c", 2),
        ]
    )
    s = summarize_posterior(model)
    assert s.groups[0].prior_std.tolist() == pytest.approx([0.5 * math.sqrt(2)] * 2)
    assert s.groups[1].prior_mean.tolist() == [1.0, 2.0]
    assert s.groups[1].prior_std.tolist() == pytest.approx([2.0, 3.0])


def test_active_means_the_interval_excludes_zero():
    low = torch.tensor([-1.0, 0.1, -2.0, 0.0])
    high = torch.tensor([1.0, 0.5, -0.1, 0.0])
    assert active(low, high).tolist() == [False, True, True, False]


def test_group_figures_and_the_json_record():
    iid = IIDGaussianGroup("a", 6)
    with torch.no_grad():
        iid.mean.copy_(torch.tensor([3.0, -3.0, 0.0, 0.1, 5.0, 1.0]))
        iid.log_std.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, math.log(3.0), 0.0]))
    noise = GaussianNoise(1, init_std=0.25, prior=HalfCauchyNoisePrior(1.0))
    model = _pce_model([iid], noise)
    s = summarize_posterior(model)
    fig = s.groups[0].figures()
    assert fig["mean"] == pytest.approx(6.1 / 6)
    assert fig["std"] == pytest.approx(math.sqrt((5 + 9) / 6))  # root mean square
    assert fig["low"] == pytest.approx(-3 - Z90) and fig["high"] == pytest.approx(5 + 3 * Z90)
    assert fig["active"] == 3  # 3, -3 and 5 (+- 3 Z90 excludes 0); 0, 0.1 and 1 do not
    record = s.to_json(max_params=6)
    assert record["noise_std"] == pytest.approx([0.25]) and "HalfCauchy" in record["noise_prior"]
    params = record["parameters"]
    terms = pce_terms(model)
    assert [p["term"] for p in params] == [list(terms[i]) for i in range(6)]
    assert [p["name"] for p in params][:2] == ["coeffs[0,0]", "coeffs[1,0]"]
    assert params[4]["std"] == pytest.approx(3.0) and params[4]["active"] is True
    assert "parameters" not in s.to_json(max_params=5)
    assert "parameters" not in s.to_json(max_params=0)


@pytest.mark.parametrize("level", [0.0, 1.0, 1.5])
def test_a_level_outside_the_unit_interval_is_refused(level):
    with pytest.raises(ValueError, match="level must be in"):
        summarize_posterior(_pce_model([IIDGaussianGroup("a", 6)]), level=level)


def test_an_ensemble_of_replicas_is_summarised_from_its_mixture_draws():
    from polymix_cli.replicas import ReplicaEnsemble, Replicas

    models = []
    for shift in (-2.0, 2.0):
        model = _pce_model([IIDGaussianGroup("c", 6)])
        with torch.no_grad():
            model.mean_field.loc.fill_(shift)
            model.mean_field.log_std.fill_(math.log(0.1))
        models.append(model)
    ensemble = ReplicaEnsemble(Replicas(models))
    s = summarize_posterior(ensemble, 0.9, 2000, torch.Generator().manual_seed(0))
    g = s.groups[0]
    assert g.kind == "iid_gaussian (ensemble)" and s.noise_std is None
    # an equal mixture of N(-2, 0.1^2) and N(2, 0.1^2): mean 0, std about 2
    assert g.mean.abs().max() < 0.05 and ((g.std - 2.0).abs() < 0.05).all()
    assert (g.low < -1.8).all() and (g.high > 1.8).all() and s.terms[1] == pce_terms(models[0])[1]
