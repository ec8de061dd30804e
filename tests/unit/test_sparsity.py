"""Sparsity priors (ARD, regularised horseshoe) and the closed-form sparse Bayesian fit:
densities and KL terms against closed forms and Monte Carlo, the marginal likelihood and the
leave-one-out error against brute force, the recovery of a known sparse polynomial."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from polymix_cli.parameter_groups import GaussianGroup, IIDGaussianGroup
from polymix_cli.priors import ARDPrior, HorseshoePrior
from polymix_cli.sensitivity import basis_norms
from polymix_cli.sparsity import FastSparseBayes, active_terms, leave_one_out
from polymix_cli.surrogate_models.basis import multi_indices, multivariate_basis

pytestmark = pytest.mark.usefixtures("one_thread")


def _kl_diag(mean, var, v):
    """KL(N(mean, diag var) || N(0, diag v)), summed."""
    return 0.5 * (v.log() - var.log() + (mean**2 + var) / v - 1).sum()


# ----------------------------------------------------------------------------- priors


def test_ard_kl_is_the_minimum_over_prior_variances():
    torch.manual_seed(0)
    mean, var = torch.randn(5, dtype=torch.float64), torch.rand(5, dtype=torch.float64) + 0.1
    prior = ARDPrior(5).double()
    kl = prior.kl_from_gaussian(mean, var, var.log().sum())
    assert torch.allclose(kl, 0.5 * torch.log((mean**2 + var) / var).sum())
    assert torch.allclose(kl, _kl_diag(mean, var, mean**2 + var))
    for _ in range(20):  # any other prior variance gives a larger KL
        other = (mean**2 + var) * torch.exp(0.5 * torch.randn(5, dtype=torch.float64))
        assert _kl_diag(mean, var, other) >= kl
    assert torch.allclose(prior.scale, (mean**2 + var).sqrt())  # the fitted scales are kept
    theta = torch.randn(3, 5, dtype=torch.float64)
    expected = Normal(0.0, prior.scale).log_prob(theta).sum(-1)
    assert torch.allclose(prior.log_prob(theta), expected)


def test_horseshoe_kl_is_the_minimum_over_local_scales():
    """Unregularised (a huge slab): the closed-form optimum against a dense grid over v."""
    mean = torch.tensor([0.0, 0.05, 0.3, 2.0], dtype=torch.float64)
    var = torch.tensor([0.01, 0.02, 0.01, 0.1], dtype=torch.float64)
    prior = HorseshoePrior(4, global_scale=0.2, slab_scale=1e4).double()
    kl = prior.kl_from_gaussian(mean, var, var.log().sum())
    grid = torch.logspace(-12, 3, 200001, dtype=torch.float64)
    tau2 = 0.2**2
    best = 0.0
    for m, s2 in zip(mean, var):
        objective = 0.5 * (grid.log() - s2.log() + (m**2 + s2) / grid - 1)
        objective = objective + torch.log1p(grid / tau2) + math.log(math.pi / 2)
        best += float(objective.min())
    assert float(kl) == pytest.approx(best, abs=1e-6)


def test_horseshoe_slab_caps_the_variance():
    prior = HorseshoePrior(2, global_scale=1.0, slab_scale=0.5).double()
    v = prior.optimal_variance(torch.tensor([1e-8, 1e6], dtype=torch.float64))
    assert v[0] < 1e-7 and 0.24 < v[1] < 0.25  # tiny stays tiny; huge is capped at c^2


def test_horseshoe_density_against_monte_carlo():
    """The marginal density of theta (lambda integrated out by quadrature) against the mean
    of N(theta; 0, v(lambda)) over half-Cauchy draws of lambda."""
    prior = HorseshoePrior(1, global_scale=0.5, slab_scale=3.0).double()
    gen = torch.Generator().manual_seed(1)
    lam = torch.tan(0.5 * math.pi * torch.rand(2_000_000, generator=gen, dtype=torch.float64))
    u = 0.25 * lam**2
    v = 9.0 * u / (9.0 + u)
    for theta in (0.05, 0.5, 2.0):
        mc = Normal(0.0, v.sqrt()).log_prob(torch.tensor(theta, dtype=torch.float64)).exp().mean()
        got = prior.log_prob(torch.tensor([[theta]], dtype=torch.float64)).exp()
        assert float(got) == pytest.approx(float(mc), rel=0.02)


def test_groups_use_the_closed_form_kl():
    torch.manual_seed(3)
    iid = IIDGaussianGroup("c", 4, ARDPrior(4))
    mean, var = iid.mean.detach(), torch.exp(2 * iid.log_std.detach())
    assert torch.allclose(iid.distribution_loss(), 0.5 * torch.log((mean**2 + var) / var).sum())
    full = GaussianGroup("c", 4, ARDPrior(4), init_scale=0.3)
    with torch.no_grad():
        full.mean.copy_(torch.randn(4))
        full.raw_scale_tril.add_(0.1 * torch.randn(4, 4))
    q = MultivariateNormal(full.mean, scale_tril=full.scale_tril())
    diag = q.covariance_matrix.diagonal()
    expected = 0.5 * (torch.log(full.mean**2 + diag).sum() - torch.logdet(q.covariance_matrix))
    loss = full.distribution_loss()
    assert torch.allclose(loss, expected, atol=1e-5)
    loss.backward()  # differentiable
    assert full.mean.grad is not None and torch.isfinite(full.raw_scale_tril.grad).all()


def test_priors_refuse_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        ARDPrior(0)
    with pytest.raises(ValueError, match="penalty"):
        ARDPrior(3, penalty=-1.0)
    with pytest.raises(ValueError, match="global_scale"):
        HorseshoePrior(3, global_scale=0.0)


# ----------------------------------------------------------------------- the closed form


def _sparse_problem(n=120, noise=0.1, seed=0):
    indices = multi_indices(2, 6)  # 28 candidates
    truth = torch.zeros(indices.shape[0], dtype=torch.float64)
    on = [0, 1, 5, 9, 17]
    truth[on] = torch.tensor([1.0, -2.0, 1.5, 0.8, -1.2], dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 2 - 1
    phi = multivariate_basis(x, indices, "legendre")
    y = phi @ truth + noise * torch.randn(n, generator=gen, dtype=torch.float64)
    return phi, y, truth, on, indices


def test_known_sparse_polynomial_is_recovered():
    """5 of 28 candidate terms, noise 0.1, N = 120, five designs: the true terms are always
    kept, the active set is exactly the true one in at least four, and the noise is learned."""
    exact = 0
    for seed in range(5):
        phi, y, truth, on, indices = _sparse_problem(seed=seed)
        fit = FastSparseBayes(phi, y).fit()
        assert fit.converged
        mean, cov, active = fit.coefficients()
        kept = active.nonzero().squeeze(1).tolist()
        assert set(on) <= set(kept) and len(kept) <= len(on) + 1
        exact += kept == on
        assert torch.allclose(mean, truth, atol=0.15)
        assert fit.noise_std == pytest.approx(0.1, rel=0.2)
        if kept == on:
            std = cov.diagonal().sqrt()
            norms = basis_norms(indices, "legendre")
            rows = active_terms(mean[:, None], std[:, None], indices, norms)
            assert sorted(r["index"] for r in rows) == sorted(indices[on].tolist())
            assert sum(r["variance_share"] for r in rows) == pytest.approx(1.0)
    assert exact >= 4


def test_marginal_likelihood_and_elbo_against_the_direct_formulas():
    phi, y, *_ = _sparse_problem(n=40, noise=0.3)
    fit = FastSparseBayes(phi, y).fit()
    mean, cov, active = fit.coefficients()
    idx = active.nonzero().squeeze(1)
    prior_var = fit.prior_std()[idx] ** 2
    sigma2 = fit.noise_std**2
    c = sigma2 * torch.eye(40, dtype=torch.float64) + (phi[:, idx] * prior_var) @ phi[:, idx].T
    direct = MultivariateNormal(torch.zeros(40, dtype=torch.float64), c).log_prob(y)
    assert fit.log_marginal_likelihood() == pytest.approx(float(direct), rel=1e-8)
    # the posterior is exact: expected NLL + KL(posterior || prior) = -log marginal likelihood
    q = MultivariateNormal(mean[idx], cov[idx][:, idx])
    p = MultivariateNormal(torch.zeros(len(idx), dtype=torch.float64), torch.diag(prior_var))
    kl = torch.distributions.kl_divergence(q, p)
    assert fit.expected_nll() + float(kl) == pytest.approx(-fit.log_marginal_likelihood(), rel=1e-8)


def test_leave_one_out_equals_brute_force_refitting():
    phi, y, *_ = _sparse_problem(n=25, noise=0.2, seed=4)
    phi = phi[:, :10]
    alpha = torch.linspace(0.5, 5.0, 10, dtype=torch.float64)
    sigma = 0.3

    def posterior(p, t):
        cov = torch.linalg.inv(p.T @ p / sigma**2 + torch.diag(alpha))
        return cov @ p.T @ t / sigma**2, cov

    _, cov = posterior(phi, y)
    loo = leave_one_out(phi, y, cov, sigma)
    brute = []
    for i in range(25):
        keep = torch.arange(25) != i
        mean_i, _ = posterior(phi[keep], y[keep])
        brute.append(float(y[i] - phi[i] @ mean_i))
    assert torch.allclose(loo.residuals, torch.tensor(brute, dtype=torch.float64), atol=1e-10)
    mse = sum(r * r for r in brute) / 25
    assert loo.q2 == pytest.approx(1 - mse / float(y.var(unbiased=False)))


def test_the_penalty_keeps_noise_out_of_the_model():
    """Pure noise: the BIC penalty keeps (almost) nothing; plain type-II keeps more."""
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(60, 2, generator=gen, dtype=torch.float64) * 2 - 1
    phi = multivariate_basis(x, multi_indices(2, 8), "legendre")  # 45 candidates
    y = torch.randn(60, generator=gen, dtype=torch.float64)
    penalised = FastSparseBayes(phi, y).fit()
    plain = FastSparseBayes(phi, y, penalty=0.0).fit()
    assert len(penalised.active) <= 2
    assert len(plain.active) >= len(penalised.active)
    assert penalised.noise_std == pytest.approx(1.0, rel=0.25)


def test_fit_refuses_bad_shapes():
    with pytest.raises(ValueError, match="phi must be"):
        FastSparseBayes(torch.zeros(3, 2), torch.zeros(4))


def test_degenerate_data_converge():
    """A constant target and duplicated columns: the fit converges to finite numbers."""
    gen = torch.Generator().manual_seed(5)
    phi = torch.rand(20, 4, generator=gen, dtype=torch.float64)
    phi = torch.cat([phi, phi[:, :1]], 1)  # a duplicated column
    zero = FastSparseBayes(phi, torch.zeros(20, dtype=torch.float64)).fit(100)
    assert zero.converged and torch.isfinite(zero.coefficients()[0]).all()
    exact = FastSparseBayes(phi, phi[:, 0] * 3.0).fit(200)  # noiseless, on the duplicated term
    mean, cov, _ = exact.coefficients()
    assert torch.isfinite(mean).all() and torch.isfinite(cov).all()
    assert float(mean[0] + mean[4]) == pytest.approx(3.0, rel=1e-4)


def _decaying_problem(seed, n=60, noise=0.1):
    """Many small terms (coefficients ~ 0.5^degree, 66 candidates of degree 10 in 2 inputs),
    fresh noisy test points: a truth no sparse selection captures exactly."""
    indices = multi_indices(2, 10)
    gen = torch.Generator().manual_seed(seed)
    truth = 0.5 ** indices.sum(1).double() * torch.randn(
        indices.shape[0], generator=gen, dtype=torch.float64
    )
    x = torch.rand(n + 4000, 2, generator=gen, dtype=torch.float64) * 2 - 1
    phi = multivariate_basis(x, indices, "legendre")
    y = phi @ truth + noise * torch.randn(n + 4000, generator=gen, dtype=torch.float64)
    return phi[:n], y[:n], phi[n:], y[n:]


def test_model_averaged_band_includes_the_pruned_terms():
    """The band of the selected model leaves out the pruned terms the evidence cannot rule
    out; adding their posterior (weighted by their probability of being in the model) keeps
    the mean, widens every band, and brings the coverage of the 80 % band closer to 0.8."""
    z = Normal(0.0, 1.0).icdf(torch.tensor(0.9)).item()
    plain, averaged = [], []
    for seed in range(8):
        phi, y, phi_test, y_test = _decaying_problem(seed)
        fit = FastSparseBayes(phi, y).fit()
        mean, cov, active = fit.coefficients()
        mean_avg, cov_avg, active_avg = fit.model_averaged_coefficients()
        assert torch.equal(mean, mean_avg) and torch.equal(active, active_avg)
        assert torch.allclose(cov_avg, cov_avg.T)
        assert float(torch.linalg.eigvalsh(cov_avg).min()) > -1e-12
        extra = (cov_avg.diagonal() > 0) & ~active
        assert bool(extra.any()) and not bool(extra[active].any())
        var = ((phi_test @ cov) * phi_test).sum(1)
        var_avg = ((phi_test @ cov_avg) * phi_test).sum(1)
        assert bool((var_avg >= var - 1e-12).all())
        for out, v in ((plain, var), (averaged, var_avg)):
            band = z * (v + fit.noise_std**2).sqrt()
            out.append(float(((y_test - phi_test @ mean).abs() <= band).double().mean()))
    # seeds 0 to 7: 0.751 on average (0.686 to 0.837) without, 0.781 (0.714 to 0.864) with
    assert all(a > p for a, p in zip(averaged, plain))
    assert sum(averaged) / 8 - sum(plain) / 8 > 0.02
    assert abs(sum(averaged) / 8 - 0.8) < abs(sum(plain) / 8 - 0.8)
    # plain type-II maximum likelihood keeps every term the evidence supports: nothing to add
    phi, y, *_ = _decaying_problem(0)
    fit = FastSparseBayes(phi, y, penalty=0.0).fit()
    _, cov, _ = fit.coefficients()
    assert torch.allclose(fit.model_averaged_coefficients()[1], cov, atol=1e-10)


@pytest.mark.parametrize("penalty", [None, 0.0])
def test_the_supported_block_is_the_covariance_without_its_zero_rows(penalty):
    """The fit's covariance over its support (active terms and the pruned terms some model
    supports) holds every nonzero entry of the T x T covariance, in increasing term order,
    with the same bits; the closed-form training writes from it (memory K^2, not T^2)."""
    phi, y, *_ = _decaying_problem(1)
    fit = FastSparseBayes(phi, y, penalty=penalty).fit()
    mean, cov, active = fit.model_averaged_coefficients()
    mean_k, support, block, active_k = fit.supported_coefficients()
    assert torch.equal(mean_k, mean) and torch.equal(active_k, active)
    assert torch.equal(support, support.sort().values) and bool(
        active[support].sum() == active.sum()
    )
    assert len(support) < fit.num_terms and torch.equal(block, cov[support.unsqueeze(1), support])
    rest = torch.ones(fit.num_terms, dtype=torch.bool)
    rest[support] = False
    assert not bool(cov[rest].any()) and not bool(cov[:, rest].any())
    assert torch.equal(mean_k, fit.coefficients()[0])
