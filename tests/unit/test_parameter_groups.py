"""Parameter groups and priors: shapes, sampling, distribution losses, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import (
    Independent,
    Laplace,
    LowRankMultivariateNormal,
    MultivariateNormal,
    Normal,
    kl_divergence,
)

from polymix_cli.parameter_groups import (
    DeterministicGroup,
    GaussianGroup,
    IIDGaussianGroup,
    LangevinGroup,
    LowRankGaussianGroup,
    ParameterGroup,
    ScoreNetwork,
)
from polymix_cli.priors import GaussianPrior, IIDGaussianPrior, LaplacePrior

MC_SAMPLES = 100_000


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(2024)


GROUPS = {
    "deterministic": lambda n: DeterministicGroup("g", n),
    "iid_gaussian": lambda n: IIDGaussianGroup("g", n),
    "gaussian": lambda n: GaussianGroup("g", n),
    "low_rank_1": lambda n: LowRankGaussianGroup("g", n, rank=1),
    "low_rank_full": lambda n: LowRankGaussianGroup("g", n, rank=n),
    "langevin_score": lambda n: LangevinGroup(
        "g", n, score_model=ScoreNetwork(n, n, width=8, depth=1), num_diffusion_steps=3
    ),
    "langevin_energy": lambda n: LangevinGroup(
        "g", n, energy_model=ScoreNetwork(n, 1, width=8, depth=2), num_diffusion_steps=3
    ),
}


def random_spd(n: int) -> torch.Tensor:
    a = torch.randn(n, n)
    return a @ a.T / n + 0.5 * torch.eye(n)


def assert_close_to_mc(analytic: float, draws: torch.Tensor, sigmas: float = 5.0) -> None:
    """``draws`` are per-sample log-ratio values whose mean estimates ``analytic``."""
    estimate = draws.mean().item()
    standard_error = draws.std().item() / math.sqrt(draws.numel())
    assert abs(estimate - analytic) < sigmas * standard_error + 1e-4, (
        f"analytic {analytic:.5f} vs Monte Carlo {estimate:.5f} +- {standard_error:.5f}"
    )


# ---------------------------------------------------------------------------
# Shapes and sampling
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(GROUPS))
@pytest.mark.parametrize(("num_samples", "num_params"), [(1, 1), (7, 5)])
def test_sample_shape(kind, num_samples, num_params):
    group = GROUPS[kind](num_params)
    assert group.num_params() == num_params
    draws = group.sample(num_samples)
    assert draws.shape == (num_samples, num_params)
    assert torch.isfinite(draws).all()
    loss = group.distribution_loss()
    assert loss.shape == ()
    assert torch.isfinite(loss)


@pytest.mark.parametrize("kind", sorted(set(GROUPS) - {"deterministic"}))
def test_stochastic_groups_draw_distinct_samples(kind):
    draws = GROUPS[kind](4).sample(6)
    assert not torch.allclose(draws[0], draws[1])


def test_deterministic_group_every_draw_is_the_value():
    group = DeterministicGroup("g", 5)
    draws = group.sample(4)
    for row in draws:
        torch.testing.assert_close(row, group.value.detach())


@pytest.mark.parametrize("kind", sorted(GROUPS))
def test_sampling_with_generator_is_reproducible(kind):
    group = GROUPS[kind](3)
    first = group.sample(5, generator=torch.Generator().manual_seed(7)).detach()
    second = group.sample(5, generator=torch.Generator().manual_seed(7)).detach()
    torch.testing.assert_close(first, second)


def test_initial_values_follow_reference():
    iid = IIDGaussianGroup("g", 6)
    assert torch.equal(iid.log_std.detach(), torch.full((6,), -0.5))
    full = GaussianGroup("g", 4)
    assert torch.equal(full.mean.detach(), torch.zeros(4))
    torch.testing.assert_close(full.scale_tril().detach(), 0.1 * torch.eye(4))
    low = LowRankGaussianGroup("g", 5, rank=2)
    assert torch.equal(low.mean.detach(), torch.zeros(5))
    assert low.cov_factor.shape == (5, 2)
    torch.testing.assert_close(low.cov_diag().detach(), torch.full((5,), 0.01))
    # Default prior: i.i.d. standard normal.
    assert isinstance(iid.prior, IIDGaussianPrior)
    assert iid.prior.mean.item() == 0.0 and iid.prior.std.item() == 1.0


def test_iid_gaussian_sample_moments():
    group = IIDGaussianGroup("g", 3)
    with torch.no_grad():
        group.mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
        group.log_std.copy_(torch.tensor([0.3, 1.2, 0.05]).log())
        draws = group.sample(MC_SAMPLES)
    torch.testing.assert_close(draws.mean(0), group.mean.detach(), atol=0.02, rtol=0)
    torch.testing.assert_close(draws.std(0), torch.tensor([0.3, 1.2, 0.05]), rtol=0.02, atol=0)


def test_gaussian_group_sample_covariance():
    group = GaussianGroup("g", 3)
    with torch.no_grad():
        group.mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        group.raw_scale_tril.copy_(torch.randn(3, 3))
        draws = group.sample(MC_SAMPLES)
        scale = group.scale_tril()
    assert torch.equal(scale, scale.tril())
    assert (scale.diagonal() > 0).all()
    torch.testing.assert_close(draws.mean(0), group.mean.detach(), atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(draws.T), scale @ scale.T, atol=0.05, rtol=0.03)


def test_low_rank_group_sample_covariance():
    group = LowRankGaussianGroup("g", 4, rank=2)
    with torch.no_grad():
        group.mean.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
        group.cov_factor.copy_(torch.randn(4, 2))
        group.raw_cov_diag.copy_(torch.tensor([0.1, -0.5, 0.3, 1.0]))
        draws = group.sample(MC_SAMPLES)
        cov = group.cov_factor @ group.cov_factor.T + torch.diag(group.cov_diag())
    torch.testing.assert_close(draws.mean(0), group.mean.detach(), atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(draws.T), cov, atol=0.06, rtol=0.03)


# ---------------------------------------------------------------------------
# KL divergences: analytic vs Monte Carlo
# ---------------------------------------------------------------------------


def test_iid_gaussian_kl_matches_monte_carlo():
    n = 4
    prior = IIDGaussianPrior(
        mean=torch.tensor([0.5, -1.0, 2.0, 0.0]), std=torch.tensor([1.5, 0.7, 2.0, 1.0])
    )
    group = IIDGaussianGroup("g", n, prior=prior)
    with torch.no_grad():
        group.mean.copy_(torch.tensor([1.0, -0.5, 1.0, 0.3]))
        group.log_std.copy_(torch.tensor([0.8, 0.5, 1.2, 0.4]).log())
    analytic = group.distribution_loss().item()
    q = Independent(Normal(group.mean.detach(), group.log_std.detach().exp()), 1)
    p = Independent(Normal(prior.mean, prior.std), 1)
    assert analytic == pytest.approx(kl_divergence(q, p).item(), rel=1e-5)
    with torch.no_grad():
        theta = group.sample(MC_SAMPLES)
        assert_close_to_mc(analytic, q.log_prob(theta) - prior.log_prob(theta))


def test_iid_gaussian_kl_with_scalar_prior_matches_closed_form():
    prior = IIDGaussianPrior(mean=0.3, std=2.0)
    group = IIDGaussianGroup("g", 5, prior=prior)
    m, s = group.mean.detach(), group.log_std.detach().exp()
    expected = (torch.log(2.0 / s) + (s**2 + (m - 0.3) ** 2) / (2 * 4.0) - 0.5).sum()
    assert group.distribution_loss().item() == pytest.approx(expected.item(), rel=1e-5)


def test_iid_gaussian_kl_is_zero_at_prior():
    prior = IIDGaussianPrior(mean=torch.tensor([1.0, 2.0]), std=torch.tensor([0.5, 3.0]))
    group = IIDGaussianGroup("g", 2, prior=prior)
    with torch.no_grad():
        group.mean.copy_(prior.mean)
        group.log_std.copy_(prior.std.log())
    assert group.distribution_loss().item() == pytest.approx(0.0, abs=1e-6)


def test_iid_gaussian_group_with_full_gaussian_prior():
    prior = GaussianPrior(torch.tensor([0.2, -0.3, 0.1]), covariance_matrix=random_spd(3))
    group = IIDGaussianGroup("g", 3, prior=prior)
    q = MultivariateNormal(group.mean.detach(), scale_tril=torch.diag(group.log_std.detach().exp()))
    expected = kl_divergence(q, prior.distribution(3)).item()
    assert group.distribution_loss().item() == pytest.approx(expected, rel=1e-5)


def test_gaussian_group_kl_matches_monte_carlo():
    n = 4
    prior = GaussianPrior(torch.tensor([0.5, -1.0, 0.0, 1.0]), covariance_matrix=random_spd(n))
    group = GaussianGroup("g", n, prior=prior)
    with torch.no_grad():
        group.mean.copy_(torch.tensor([0.0, -0.5, 0.5, 1.5]))
        group.raw_scale_tril.copy_(0.4 * torch.randn(n, n))
    analytic = group.distribution_loss().item()
    q = MultivariateNormal(group.mean.detach(), scale_tril=group.scale_tril().detach())
    assert analytic == pytest.approx(kl_divergence(q, prior.distribution(n)).item(), rel=1e-5)
    assert analytic > 0.1
    with torch.no_grad():
        theta = group.sample(MC_SAMPLES)
        assert_close_to_mc(analytic, q.log_prob(theta) - prior.log_prob(theta))


def test_gaussian_group_kl_with_iid_prior_matches_monte_carlo():
    prior = IIDGaussianPrior(mean=0.5, std=1.5)
    group = GaussianGroup("g", 3, prior=prior)
    with torch.no_grad():
        group.mean.copy_(torch.tensor([1.0, 0.0, -1.0]))
        group.raw_scale_tril.copy_(torch.randn(3, 3))
    analytic = group.distribution_loss().item()
    q = group.variational()
    with torch.no_grad():
        theta = group.sample(MC_SAMPLES)
        assert_close_to_mc(analytic, q.log_prob(theta) - prior.log_prob(theta))


@pytest.mark.parametrize("prior_kind", ["iid", "full"])
def test_low_rank_group_kl_matches_monte_carlo(prior_kind):
    n = 5
    if prior_kind == "iid":
        prior = IIDGaussianPrior(mean=torch.linspace(-1, 1, n), std=torch.linspace(0.5, 2.0, n))
    else:
        prior = GaussianPrior(torch.linspace(-1, 1, n), covariance_matrix=random_spd(n))
    group = LowRankGaussianGroup("g", n, rank=2, prior=prior)
    with torch.no_grad():
        group.mean.copy_(torch.randn(n))
        group.cov_factor.copy_(0.5 * torch.randn(n, 2))
        group.raw_cov_diag.copy_(torch.randn(n) * 0.3)
    analytic = group.distribution_loss().item()
    q = LowRankMultivariateNormal(
        group.mean.detach(), group.cov_factor.detach(), group.cov_diag().detach()
    )
    assert analytic > 0.1
    with torch.no_grad():
        theta = group.sample(MC_SAMPLES)
        assert_close_to_mc(analytic, q.log_prob(theta) - prior.log_prob(theta))


@pytest.mark.parametrize("kind", ["iid_gaussian", "gaussian", "low_rank_1"])
def test_non_gaussian_prior_uses_monte_carlo_over_latest_draws(kind):
    prior = LaplacePrior(loc=0.2, scale=0.8)
    factories = {
        "iid_gaussian": lambda: IIDGaussianGroup("g", 3, prior=prior),
        "gaussian": lambda: GaussianGroup("g", 3, prior=prior),
        "low_rank_1": lambda: LowRankGaussianGroup("g", 3, rank=1, prior=prior),
    }
    group = factories[kind]()
    theta = group.sample(50).detach()
    loss = group.distribution_loss()
    q = group.variational()
    expected = (q.log_prob(theta) - prior.log_prob(theta)).mean()
    torch.testing.assert_close(loss.detach(), expected.detach(), rtol=1e-5, atol=1e-5)
    # Differentiable with respect to the variational parameters.
    loss.backward()
    assert group.mean.grad is not None and torch.isfinite(group.mean.grad).all()


# ---------------------------------------------------------------------------
# Deterministic group: negative log prior
# ---------------------------------------------------------------------------


def test_deterministic_loss_under_default_prior():
    group = DeterministicGroup("g", 6)
    theta = group.value.detach()
    expected = 0.5 * (theta**2).sum() + 6 * 0.5 * math.log(2 * math.pi)
    assert group.distribution_loss().item() == pytest.approx(expected.item(), rel=1e-6)


def test_deterministic_loss_under_iid_gaussian_prior():
    mean = torch.tensor([0.5, -1.0, 2.0, 0.0])
    std = torch.tensor([1.5, 0.7, 2.0, 0.1])
    group = DeterministicGroup("g", 4, prior=IIDGaussianPrior(mean=mean, std=std))
    theta = group.value.detach()
    expected = (
        0.5 * ((theta - mean) / std) ** 2 + torch.log(std) + 0.5 * math.log(2 * math.pi)
    ).sum()
    assert group.distribution_loss().item() == pytest.approx(expected.item(), rel=1e-6)
    torch_reference = -Independent(Normal(mean, std), 1).log_prob(theta)
    assert group.distribution_loss().item() == pytest.approx(torch_reference.item(), rel=1e-6)


def test_deterministic_loss_under_laplace_prior():
    loc = torch.tensor([0.5, -1.0, 2.0])
    scale = torch.tensor([0.3, 1.0, 2.5])
    group = DeterministicGroup("g", 3, prior=LaplacePrior(loc=loc, scale=scale))
    theta = group.value.detach()
    expected = ((theta - loc).abs() / scale + torch.log(2 * scale)).sum()
    assert group.distribution_loss().item() == pytest.approx(expected.item(), rel=1e-6)


def test_deterministic_loss_under_scalar_laplace_prior():
    group = DeterministicGroup("g", 5, prior=LaplacePrior(loc=1.0, scale=0.5))
    theta = group.value.detach()
    expected = ((theta - 1.0).abs() / 0.5 + math.log(1.0)).sum()
    assert group.distribution_loss().item() == pytest.approx(expected.item(), rel=1e-6)


def test_deterministic_loss_under_full_gaussian_prior():
    cov = random_spd(3)
    mean = torch.tensor([1.0, 0.0, -1.0])
    group = DeterministicGroup("g", 3, prior=GaussianPrior(mean, covariance_matrix=cov))
    expected = -MultivariateNormal(mean, covariance_matrix=cov).log_prob(group.value.detach())
    assert group.distribution_loss().item() == pytest.approx(expected.item(), rel=1e-5)


def test_deterministic_loss_gradient_is_score_of_prior():
    mean, std = torch.tensor([0.5, -1.0]), torch.tensor([2.0, 0.5])
    group = DeterministicGroup("g", 2, prior=IIDGaussianPrior(mean=mean, std=std))
    group.distribution_loss().backward()
    torch.testing.assert_close(group.value.grad, (group.value.detach() - mean) / std**2)


# ---------------------------------------------------------------------------
# Priors
# ---------------------------------------------------------------------------


def test_iid_gaussian_prior_log_prob_matches_torch():
    prior = IIDGaussianPrior(mean=torch.tensor([0.0, 1.0, -2.0]), std=torch.tensor([1.0, 0.5, 3.0]))
    theta = torch.randn(10, 3)
    expected = Independent(Normal(prior.mean, prior.std), 1).log_prob(theta)
    torch.testing.assert_close(prior.log_prob(theta), expected)
    assert prior.log_prob(theta).shape == (10,)


def test_scalar_prior_broadcasts_to_any_size():
    prior = IIDGaussianPrior(0.0, 2.0)
    assert prior.size is None
    for n in (1, 4, 9):
        assert prior.log_prob(torch.zeros(2, n)).shape == (2,)
        prior.check_size(n)


def test_laplace_prior_log_prob_matches_torch():
    prior = LaplacePrior(loc=torch.tensor([0.0, 1.0]), scale=torch.tensor([0.5, 2.0]))
    theta = torch.randn(8, 2)
    torch.testing.assert_close(
        prior.log_prob(theta), Independent(Laplace(prior.loc, prior.scale), 1).log_prob(theta)
    )


def test_gaussian_prior_covariance_and_scale_tril_agree():
    cov = random_spd(3)
    mean = torch.tensor([0.1, 0.2, 0.3])
    a = GaussianPrior(mean, covariance_matrix=cov)
    b = GaussianPrior(mean, scale_tril=torch.linalg.cholesky(cov))
    theta = torch.randn(6, 3)
    torch.testing.assert_close(a.log_prob(theta), b.log_prob(theta))
    torch.testing.assert_close(a.log_prob(theta), MultivariateNormal(mean, cov).log_prob(theta))
    assert a.size == 3


def test_priors_are_buffers_that_move_with_the_model():
    prior = IIDGaussianPrior(mean=torch.zeros(3), std=torch.ones(3))
    group = IIDGaussianGroup("g", 3, prior=prior)
    assert [name for name, _ in group.named_parameters()] == ["mean", "log_std"]
    group.double()
    assert group.prior.loc.dtype == torch.float64
    assert group.sample(2).dtype == torch.float64
    assert group.distribution_loss().dtype == torch.float64


# ---------------------------------------------------------------------------
# Langevin group
# ---------------------------------------------------------------------------


class QuadraticEnergy(nn.Module):
    """E(theta) = 0.5 * a * |theta|^2, so -grad E = -a * theta."""

    def __init__(self, a: float):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))

    def forward(self, theta):
        return 0.5 * self.a * (theta**2).sum(-1, keepdim=True)


class LinearScore(nn.Module):
    def __init__(self, matrix: torch.Tensor):
        super().__init__()
        self.matrix = nn.Parameter(matrix.clone())
        self.num_inputs = self.num_outputs = matrix.shape[0]

    def forward(self, theta):
        return theta @ self.matrix.T


def _reference_langevin(drift, num_params, num_samples, steps, h, init_std, seed):
    gen = torch.Generator().manual_seed(seed)
    theta = init_std * torch.randn(num_samples, num_params, generator=gen)
    for _ in range(steps):
        noise = torch.randn(num_samples, num_params, generator=gen)
        theta = theta + h * drift(theta) + math.sqrt(2 * h) * noise
    return theta


def test_langevin_energy_dynamics_match_hand_update():
    group = LangevinGroup(
        "g",
        3,
        energy_model=QuadraticEnergy(2.0),
        num_diffusion_steps=4,
        step_size=0.05,
        init_std=1.5,
    )
    draws = group.sample(6, generator=torch.Generator().manual_seed(11))
    expected = _reference_langevin(lambda t: -2.0 * t, 3, 6, 4, 0.05, 1.5, 11)
    torch.testing.assert_close(draws.detach(), expected)


def test_langevin_score_dynamics_match_hand_update():
    matrix = torch.tensor([[-1.0, 0.2], [0.1, -0.5]])
    group = LangevinGroup(
        "g", 2, score_model=LinearScore(matrix), num_diffusion_steps=3, step_size=0.1, init_std=0.7
    )
    draws = group.sample(5, generator=torch.Generator().manual_seed(3))
    expected = _reference_langevin(lambda t: t @ matrix.T, 2, 5, 3, 0.1, 0.7, 3)
    torch.testing.assert_close(draws.detach(), expected)


def test_langevin_energy_score_is_negative_gradient():
    group = LangevinGroup("g", 3, energy_model=QuadraticEnergy(1.7))
    theta = torch.randn(4, 3)
    torch.testing.assert_close(group.score(theta), -1.7 * theta)
    with torch.no_grad():
        torch.testing.assert_close(group.score(theta), -1.7 * theta)


@pytest.mark.parametrize("kind", ["langevin_score", "langevin_energy"])
def test_langevin_loss_is_negative_mean_log_prior_of_latest_particles(kind):
    prior = IIDGaussianPrior(mean=torch.tensor([0.5, -0.5, 1.0]), std=torch.tensor([1.0, 2.0, 0.5]))
    model = (
        {"score_model": ScoreNetwork(3, 3, width=4, depth=1)}
        if kind == "langevin_score"
        else {"energy_model": ScoreNetwork(3, 1, width=4, depth=1)}
    )
    group = LangevinGroup("g", 3, prior=prior, num_diffusion_steps=2, **model)
    theta = group.sample(40)
    expected = -prior.log_prob(theta).mean()
    torch.testing.assert_close(group.distribution_loss(), expected)


def test_langevin_loss_before_any_sample_is_finite():
    group = LangevinGroup("g", 2, score_model=ScoreNetwork(2, 2, width=4, depth=1))
    loss = group.distribution_loss()
    assert loss.shape == () and torch.isfinite(loss)


def test_langevin_sample_under_no_grad_is_detached():
    group = GROUPS["langevin_energy"](3)
    with torch.no_grad():
        draws = group.sample(4)
    assert not draws.requires_grad
    assert group.sample(4).requires_grad


# ---------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------


def test_langevin_needs_exactly_one_model():
    with pytest.raises(ValueError, match="score_model or energy_model"):
        LangevinGroup("g", 3)
    with pytest.raises(ValueError, match="score_model or energy_model"):
        LangevinGroup("g", 3, score_model=ScoreNetwork(3, 3), energy_model=ScoreNetwork(3, 1))


def test_langevin_model_size_mismatch():
    with pytest.raises(ValueError, match="score_model"):
        LangevinGroup("g", 4, score_model=ScoreNetwork(3, 3))
    with pytest.raises(ValueError, match="score_model"):
        LangevinGroup("g", 4, score_model=ScoreNetwork(4, 1))
    with pytest.raises(ValueError, match="energy_model"):
        LangevinGroup("g", 4, energy_model=ScoreNetwork(4, 4))


def test_langevin_bad_numbers():
    with pytest.raises(ValueError, match="num_diffusion_steps"):
        LangevinGroup("g", 2, score_model=ScoreNetwork(2, 2), num_diffusion_steps=0)
    with pytest.raises(ValueError, match="step_size"):
        LangevinGroup("g", 2, score_model=ScoreNetwork(2, 2), step_size=0.0)
    with pytest.raises(ValueError, match="init_std"):
        LangevinGroup("g", 2, score_model=ScoreNetwork(2, 2), init_std=-1.0)


@pytest.mark.parametrize(("width", "depth"), [(0, 1), (4, 0)])
def test_score_network_width_depth(width, depth):
    with pytest.raises(ValueError, match="width and depth"):
        ScoreNetwork(2, 2, width=width, depth=depth)


def test_score_network_unknown_activation():
    with pytest.raises(ValueError, match="activation"):
        ScoreNetwork(2, 2, activation="bogus")


@pytest.mark.parametrize("rank", [0, 5, -1])
def test_low_rank_rank_outside_range(rank):
    with pytest.raises(ValueError, match=r"rank.*\[1, 4\]"):
        LowRankGaussianGroup("g", 4, rank=rank)


def test_low_rank_rank_not_integer():
    with pytest.raises(ValueError, match="rank"):
        LowRankGaussianGroup("g", 4, rank=1.5)


def test_gaussian_group_init_scale_below_jitter():
    with pytest.raises(ValueError, match="init_scale"):
        GaussianGroup("g", 3, init_scale=1e-7)


@pytest.mark.parametrize("kind", ["deterministic", "iid_gaussian", "gaussian", "low_rank_1"])
def test_group_num_params_below_one(kind):
    with pytest.raises(ValueError, match="num_params"):
        GROUPS[kind](0)


def test_group_bad_name_and_num_params_type():
    with pytest.raises(TypeError, match="name"):
        DeterministicGroup("", 3)
    with pytest.raises(TypeError, match="num_params"):
        IIDGaussianGroup("g", 2.0)
    with pytest.raises(TypeError, match="prior"):
        IIDGaussianGroup("g", 2, prior=Normal(0.0, 1.0))


def test_gaussian_prior_mean_and_covariance_mismatch():
    with pytest.raises(ValueError, match=r"covariance_matrix.*\(4, 4\).*\(3, 3\)"):
        GaussianPrior(torch.zeros(3), covariance_matrix=torch.eye(4))
    with pytest.raises(ValueError, match="scale_tril"):
        GaussianPrior(torch.zeros(3), scale_tril=torch.eye(2))


def test_gaussian_prior_needs_exactly_one_matrix():
    with pytest.raises(ValueError, match="covariance_matrix or scale_tril"):
        GaussianPrior(torch.zeros(2))
    with pytest.raises(ValueError, match="covariance_matrix or scale_tril"):
        GaussianPrior(torch.zeros(2), covariance_matrix=torch.eye(2), scale_tril=torch.eye(2))


def test_gaussian_prior_not_positive_definite():
    with pytest.raises(ValueError, match="covariance_matrix"):
        GaussianPrior(torch.zeros(2), covariance_matrix=torch.tensor([[1.0, 2.0], [2.0, 1.0]]))


def test_iid_gaussian_prior_mean_std_size_mismatch():
    with pytest.raises(ValueError, match=r"mean and std.*3 and 2"):
        IIDGaussianPrior(mean=torch.zeros(3), std=torch.ones(2))


def test_laplace_prior_loc_scale_size_mismatch():
    with pytest.raises(ValueError, match="loc and scale"):
        LaplacePrior(loc=torch.zeros(2), scale=torch.ones(3))


def test_nonpositive_scales_rejected():
    with pytest.raises(ValueError, match="std"):
        IIDGaussianPrior(0.0, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="scale"):
        LaplacePrior(0.0, -1.0)


def test_prior_must_be_scalar_or_vector():
    with pytest.raises(ValueError, match="mean"):
        IIDGaussianPrior(mean=torch.zeros(2, 2))


@pytest.mark.parametrize(
    "prior",
    [
        IIDGaussianPrior(mean=torch.zeros(3), std=1.0),
        GaussianPrior(torch.zeros(3), covariance_matrix=torch.eye(3)),
        LaplacePrior(loc=torch.zeros(3)),
    ],
    ids=["iid", "gaussian", "laplace"],
)
@pytest.mark.parametrize(
    "kind", ["deterministic", "iid_gaussian", "gaussian", "low_rank", "langevin"]
)
def test_prior_of_wrong_size_for_group(prior, kind):
    factories = {
        "deterministic": lambda: DeterministicGroup("g", 4, prior=prior),
        "iid_gaussian": lambda: IIDGaussianGroup("g", 4, prior=prior),
        "gaussian": lambda: GaussianGroup("g", 4, prior=prior),
        "low_rank": lambda: LowRankGaussianGroup("g", 4, rank=2, prior=prior),
        "langevin": lambda: LangevinGroup("g", 4, score_model=ScoreNetwork(4, 4), prior=prior),
    }
    with pytest.raises(ValueError, match=r"size 3.*4 parameters"):
        factories[kind]()


def test_parameter_group_base_is_abstract():
    group = ParameterGroup("g", 2)
    with pytest.raises(NotImplementedError):
        group.sample(1)
    with pytest.raises(NotImplementedError):
        group.distribution_loss()
