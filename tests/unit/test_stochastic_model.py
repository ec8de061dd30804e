"""StochasticModel: shapes, group layout, gradients, bad inputs, import hygiene."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import polymix_cli
from polymix_cli import StochasticModel
from polymix_cli.parameter_groups import (
    DeterministicGroup,
    GaussianGroup,
    IIDGaussianGroup,
    LangevinGroup,
    LowRankGaussianGroup,
    ScoreNetwork,
)
from polymix_cli.priors import IIDGaussianPrior, LaplacePrior
from polymix_cli.surrogate_models import (
    GatingNetwork,
    MixtureOfExperts,
    NeuralNetwork,
    PolynomialChaosExpansion,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(99)


def seed_mixture() -> MixtureOfExperts:
    return MixtureOfExperts(
        [PolynomialChaosExpansion(1, 1, degree=3), PolynomialChaosExpansion(1, 1, degree=3)],
        GatingNetwork(1, num_experts=2, width=16, depth=1, activation="tanh"),
    )


def make_group(kind: str, n: int, **langevin):
    """One group of ``kind`` over ``n`` parameters; ``langevin`` overrides the Langevin
    dynamics settings (default: 3 steps of size 0.01 from N(0, 1))."""
    langevin = {"num_diffusion_steps": 3, **langevin}
    if kind == "deterministic":
        return DeterministicGroup("g", n)
    if kind == "deterministic_laplace":
        return DeterministicGroup("g", n, prior=LaplacePrior(0.0, 1.0))
    if kind == "iid_gaussian":
        return IIDGaussianGroup("g", n, prior=IIDGaussianPrior(0.5, 2.0))
    if kind == "iid_gaussian_laplace":
        return IIDGaussianGroup("g", n, prior=LaplacePrior(0.0, 1.0))
    if kind == "gaussian":
        return GaussianGroup("g", n)
    if kind == "low_rank":
        return LowRankGaussianGroup("g", n, rank=2)
    if kind == "langevin_score":
        return LangevinGroup("g", n, score_model=ScoreNetwork(n, n, width=8, depth=2), **langevin)
    if kind == "langevin_energy":
        return LangevinGroup("g", n, energy_model=ScoreNetwork(n, 1, width=8, depth=2), **langevin)
    raise AssertionError(kind)


GROUP_KINDS = [
    "deterministic",
    "deterministic_laplace",
    "iid_gaussian",
    "iid_gaussian_laplace",
    "gaussian",
    "low_rank",
    "langevin_score",
    "langevin_energy",
]


def energy_output_biases(model: torch.nn.Module) -> set[int]:
    """Ids of energy models' output biases: a constant shift of the energy does not change
    its gradient, so these parameters cannot receive a gradient through the drift."""
    ids = set()
    for module in model.modules():
        if isinstance(module, LangevinGroup) and module.energy_model is not None:
            ids.add(id(module.energy_model.output.bias))
    return ids


def assert_all_grads(model: torch.nn.Module) -> None:
    exempt = energy_output_biases(model)
    names = []
    for name, param in model.named_parameters():
        names.append(name)
        if id(param) in exempt:
            assert param.grad is None or torch.all(param.grad == 0), name
            continue
        assert param.grad is not None, f"{name} received no gradient"
        assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{name} has an all-zero gradient"
    assert names, "model has no parameters"


# ---------------------------------------------------------------------------
# Shapes and layout
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", GROUP_KINDS)
@pytest.mark.parametrize(("num_samples", "batch"), [(1, 1), (4, 9)])
def test_forward_shape(kind, num_samples, batch):
    surrogate = PolynomialChaosExpansion(2, 3, degree=2)
    model = StochasticModel(surrogate, [make_group(kind, surrogate.num_params())])
    x = torch.rand(batch, 2) * 2 - 1
    y = model(x, num_samples=num_samples)
    assert y.shape == (num_samples, batch, 3)
    assert model.sample_parameters(num_samples).shape == (num_samples, 18)
    assert model.num_params() == 18
    assert model.distribution_loss().shape == ()


def test_forward_default_draws_one_sample():
    model = StochasticModel(NeuralNetwork(2, 1, width=3), [IIDGaussianGroup("g", 13)])
    assert model(torch.rand(5, 2)).shape == (1, 5, 1)


def test_forward_equals_surrogate_on_sampled_parameters():
    surrogate = seed_mixture()
    model = StochasticModel(surrogate, [IIDGaussianGroup("a", 8), GaussianGroup("b", 66)])
    x = torch.linspace(-1, 1, 11).unsqueeze(1)
    torch.manual_seed(5)
    y = model(x, num_samples=7)
    torch.manual_seed(5)
    params = model.sample_parameters(7)
    torch.testing.assert_close(y, surrogate(x, params))


def test_groups_are_concatenated_in_order():
    surrogate = PolynomialChaosExpansion(1, 1, degree=5)  # 6 parameters
    a, b, c = DeterministicGroup("a", 1), DeterministicGroup("b", 3), DeterministicGroup("c", 2)
    with torch.no_grad():
        a.value.copy_(torch.tensor([1.0]))
        b.value.copy_(torch.tensor([2.0, 3.0, 4.0]))
        c.value.copy_(torch.tensor([5.0, 6.0]))
    model = StochasticModel(surrogate, [a, b, c])
    params = model.sample_parameters(3)
    expected = torch.arange(1.0, 7.0).expand(3, 6)
    torch.testing.assert_close(params, expected)
    x = torch.rand(4, 1)
    torch.testing.assert_close(model(x, num_samples=3), surrogate(x, expected))


def test_distribution_loss_is_sum_of_groups():
    groups = [DeterministicGroup("a", 8), IIDGaussianGroup("b", 16), DeterministicGroup("c", 50)]
    model = StochasticModel(seed_mixture(), groups)
    expected = sum(g.distribution_loss() for g in groups)
    torch.testing.assert_close(model.distribution_loss(), expected)


def test_model_registers_group_parameters():
    groups = [IIDGaussianGroup("a", 8), LowRankGaussianGroup("b", 66, rank=3)]
    model = StochasticModel(seed_mixture(), groups)
    names = {name for name, _ in model.named_parameters()}
    assert names == {
        "parameter_groups.0.mean",
        "parameter_groups.0.log_std",
        "parameter_groups.1.mean",
        "parameter_groups.1.cov_factor",
        "parameter_groups.1.raw_cov_diag",
    }


def test_eval_under_no_grad_gives_detached_outputs():
    model = StochasticModel(seed_mixture(), [make_group("langevin_energy", 74)])
    model.eval()
    with torch.no_grad():
        y = model(torch.rand(3, 1), num_samples=5)
    assert y.shape == (5, 3, 1)
    assert not y.requires_grad


def test_double_precision_model():
    model = StochasticModel(
        PolynomialChaosExpansion(1, 2, degree=3), [GaussianGroup("g", 8)]
    ).double()
    x = torch.rand(6, 1, dtype=torch.float64)
    y = model(x, num_samples=2)
    assert y.dtype == torch.float64
    assert model.distribution_loss().dtype == torch.float64


# ---------------------------------------------------------------------------
# Gradients reach every variational parameter
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", GROUP_KINDS)
@pytest.mark.parametrize("surrogate_kind", ["pce", "nn"])
def test_gradients_reach_every_parameter(kind, surrogate_kind):
    if surrogate_kind == "pce":
        surrogate = PolynomialChaosExpansion(2, 2, degree=2)
    else:
        surrogate = NeuralNetwork(2, 2, width=3, depth=1)
    model = StochasticModel(surrogate, [make_group(kind, surrogate.num_params())])
    x = torch.rand(16, 2) * 2 - 1
    target = torch.sin(3 * x).sum(1, keepdim=True).expand(16, 2)
    y = model(x, num_samples=8)
    loss = ((y - target) ** 2).mean() + 0.1 * model.distribution_loss()
    assert torch.isfinite(loss)
    loss.backward()
    assert_all_grads(model)


def test_gradients_reach_every_parameter_of_mixed_groups_on_a_mixture():
    surrogate = seed_mixture()
    groups = [
        DeterministicGroup("experts_a", 8),
        IIDGaussianGroup("gate_w0", 16),
        GaussianGroup("gate_b0", 16),
        LowRankGaussianGroup("gate_w1", 16, rank=2),
        LangevinGroup("gate_w1b", 16, score_model=ScoreNetwork(16, 16, width=8, depth=1)),
        LangevinGroup("gate_b1", 2, energy_model=ScoreNetwork(2, 1, width=8, depth=2)),
    ]
    model = StochasticModel(surrogate, groups)
    assert model.num_params() == 74
    x = torch.linspace(-1, 1, 20).unsqueeze(1)
    y_true = torch.sin(torch.pi * x) + torch.sign(x)
    y = model(x, num_samples=10)
    loss = ((y - y_true) ** 2).sum() / 10 + 0.1 * model.distribution_loss()
    loss.backward()
    assert_all_grads(model)


def test_energy_output_bias_really_has_no_effect_on_samples():
    """Justifies the exemption in assert_all_grads."""
    group = make_group("langevin_energy", 3)
    first = group.sample(4, generator=torch.Generator().manual_seed(0)).detach()
    with torch.no_grad():
        group.energy_model.output.bias.add_(10.0)
    second = group.sample(4, generator=torch.Generator().manual_seed(0)).detach()
    torch.testing.assert_close(first, second)


@pytest.mark.parametrize("kind", GROUP_KINDS)
def test_training_steps_reduce_loss_for_every_group_kind(kind, one_thread):
    surrogate = PolynomialChaosExpansion(1, 1, degree=3)
    # Langevin particles need enough drift (steps x step size) for the learned score to
    # matter against the initial spread.
    langevin = {"num_diffusion_steps": 5, "step_size": 0.05, "init_std": 0.5}
    model = StochasticModel(surrogate, [make_group(kind, 4, **langevin)])
    x = torch.linspace(-1, 1, 30).unsqueeze(1)
    y_true = 1.0 + 2.0 * x - x**3
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = ((model(x, num_samples=16) - y_true) ** 2).mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:10]) / 10


# ---------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------


def test_group_sizes_that_do_not_add_up_name_both_numbers():
    with pytest.raises(ValueError, match=r"\b73\b.*\b74\b"):
        StochasticModel(seed_mixture(), [DeterministicGroup("a", 8), DeterministicGroup("b", 65)])
    with pytest.raises(ValueError, match=r"\b75\b.*\b74\b"):
        StochasticModel(seed_mixture(), [IIDGaussianGroup("a", 75)])


def test_non_surrogate_or_non_group_raises_type_error():
    with pytest.raises(TypeError, match="surrogate_model"):
        StochasticModel(torch.nn.Linear(1, 1), [DeterministicGroup("a", 2)])
    with pytest.raises(TypeError, match=r"parameter_groups\[1\]"):
        StochasticModel(
            PolynomialChaosExpansion(1, 1, degree=3),
            [DeterministicGroup("a", 2), torch.nn.Linear(2, 2)],
        )


@pytest.mark.parametrize("num_samples", [0, -3, 2.5, True])
def test_bad_num_samples(num_samples):
    model = StochasticModel(PolynomialChaosExpansion(1, 1, degree=1), [DeterministicGroup("a", 2)])
    with pytest.raises(ValueError, match="num_samples"):
        model.sample_parameters(num_samples)


def test_forward_checks_x():
    model = StochasticModel(PolynomialChaosExpansion(2, 1, degree=1), [IIDGaussianGroup("a", 3)])
    with pytest.raises(ValueError, match=r"\bx must have shape"):
        model(torch.rand(4, 3))
    with pytest.raises(ValueError, match=r"\bx must have shape"):
        model(torch.rand(4))


# ---------------------------------------------------------------------------
# Import hygiene
# ---------------------------------------------------------------------------


def test_version_and_exports():
    assert isinstance(polymix_cli.__version__, str)
    assert polymix_cli.StochasticModel is StochasticModel


def test_importing_core_library_does_not_import_hydra_or_matplotlib():
    code = (
        "import sys\n"
        "import polymix_cli\n"
        "import polymix_cli.surrogate_models, polymix_cli.parameter_groups, polymix_cli.priors\n"
        "import polymix_cli.stochastic_model, polymix_cli.surrogate_models.basis, polymix_cli.sensitivity\n"
        "bad = sorted(m for m in sys.modules\n"
        "             if m.split('.')[0] in ('hydra', 'matplotlib', 'omegaconf'))\n"
        "print('LOADED:' + ','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "LOADED:" in result.stdout
    loaded = result.stdout.strip().split("LOADED:")[-1]
    assert loaded == "", f"core import pulled in: {loaded}"
