"""Surrogate models: shapes, parameter layout, hand computations, caching, bad inputs."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from polymix_cli.surrogate_models import (
    GatingNetwork,
    MixtureOfExperts,
    NeuralNetwork,
    PolynomialChaosExpansion,
    SurrogateModel,
)
from polymix_cli.surrogate_models.basis import multivariate_basis, univariate_table


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)


def seed_mixture() -> MixtureOfExperts:
    return MixtureOfExperts(
        experts=[
            PolynomialChaosExpansion(num_inputs=1, num_outputs=1, degree=3),
            PolynomialChaosExpansion(num_inputs=1, num_outputs=1, degree=3),
        ],
        gating_network=GatingNetwork(
            num_inputs=1, num_experts=2, width=16, depth=1, activation=torch.nn.functional.tanh
        ),
    )


def heterogeneous_mixture(num_inputs: int = 2, num_outputs: int = 3) -> MixtureOfExperts:
    return MixtureOfExperts(
        experts=[
            PolynomialChaosExpansion(num_inputs, num_outputs, degree=2),
            NeuralNetwork(num_inputs, num_outputs, width=5, depth=2, activation="relu"),
        ],
        gating_network=GatingNetwork(num_inputs, num_experts=2, width=4, depth=1),
    )


def manual_mlp(x: torch.Tensor, p: torch.Tensor, sizes: list[int], act) -> torch.Tensor:
    """One parameter vector p (P,): per layer weight (in, out) row-major, then bias."""
    h, offset = x, 0
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        weight = p[offset : offset + fan_in * fan_out].reshape(fan_in, fan_out)
        offset += fan_in * fan_out
        bias = p[offset : offset + fan_out]
        offset += fan_out
        h = F.linear(h, weight.T, bias)
        if layer < len(sizes) - 2:
            h = act(h)
    assert offset == p.numel()
    return h


# ---------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------


SURROGATES = {
    "pce_legendre": lambda: PolynomialChaosExpansion(3, 2, degree=3),
    "pce_hermite": lambda: PolynomialChaosExpansion(2, 1, degree=4, basis="hermite"),
    "pce_hyperbolic": lambda: PolynomialChaosExpansion(3, 2, degree=4, q_norm=0.6),
    "pce_degree0": lambda: PolynomialChaosExpansion(2, 2, degree=0),
    "nn": lambda: NeuralNetwork(3, 2, width=8, depth=3),
    "nn_depth1": lambda: NeuralNetwork(1, 1, width=4, depth=1, activation="gelu"),
    "gate": lambda: GatingNetwork(3, num_experts=4, width=6, depth=2),
    "moe_seed": seed_mixture,
    "moe_heterogeneous": heterogeneous_mixture,
}


@pytest.mark.parametrize("name", sorted(SURROGATES))
@pytest.mark.parametrize(("num_samples", "batch"), [(1, 1), (5, 7)])
def test_surrogate_output_shape(name, num_samples, batch):
    model = SURROGATES[name]()
    x = torch.rand(batch, model.num_inputs) * 2 - 1
    params = torch.randn(num_samples, model.num_params())
    y = model(x, params)
    assert y.shape == (num_samples, batch, model.num_outputs)
    assert y.dtype == x.dtype
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_param_blocks_cover_vector_contiguously(name):
    model = SURROGATES[name]()
    blocks = model.param_blocks()
    assert blocks[0].start == 0
    for before, after in itertools.pairwise(blocks):
        assert after.start == before.stop
    assert blocks[-1].stop == model.num_params()
    assert len({b.name for b in blocks}) == len(blocks)


def test_gating_network_rows_sum_to_one_and_match_softmax_of_logits():
    gate = GatingNetwork(2, num_experts=3, width=5, depth=2)
    x = torch.randn(11, 2)
    params = torch.randn(4, gate.num_params()) * 3
    weights = gate(x, params)
    assert weights.shape == (4, 11, 3)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, 11))
    torch.testing.assert_close(weights, torch.softmax(gate.logits(x, params), dim=-1))
    assert gate.num_experts == 3


@pytest.mark.parametrize("factory", [seed_mixture, heterogeneous_mixture])
def test_mixture_expert_outputs_and_gating_weights(factory):
    moe = factory()
    num_samples, batch = 6, 9
    x = torch.rand(batch, moe.num_inputs) * 2 - 1
    params = torch.randn(num_samples, moe.num_params())
    experts = moe.get_expert_outputs(x, params)
    weights = moe.get_gating_weights(x, params)
    assert experts.shape == (num_samples, moe.num_experts, batch, moe.num_outputs)
    assert weights.shape == (num_samples, batch, moe.num_experts)
    torch.testing.assert_close(weights.sum(-1), torch.ones(num_samples, batch))
    # Each expert evaluated on its own slice, the gate on the tail of the vector.
    offset = 0
    for m, expert in enumerate(moe.experts):
        n = expert.num_params()
        torch.testing.assert_close(experts[:, m], expert(x, params[:, offset : offset + n]))
        offset += n
    torch.testing.assert_close(weights, moe.gating_network(x, params[:, offset:]))
    assert offset + moe.gating_network.num_params() == moe.num_params()
    # The mixture is the gate-weighted sum of the experts.
    expected = (weights.permute(0, 2, 1).unsqueeze(-1) * experts).sum(1)
    torch.testing.assert_close(moe(x, params), expected)


def test_shared_and_separate_pce_paths_agree():
    """Two identical PCE experts use the shared basis path; the same experts wrapped so
    that they are not recognised must give the same output."""
    shared = MixtureOfExperts(
        [PolynomialChaosExpansion(2, 2, degree=3), PolynomialChaosExpansion(2, 2, degree=3)],
        GatingNetwork(2, 2, width=3),
    )

    class Wrapped(SurrogateModel):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.num_inputs, self.num_outputs = inner.num_inputs, inner.num_outputs

        def param_shapes(self):
            return self.inner.param_shapes()

        def evaluate(self, x, params):
            return self.inner.evaluate(x, params)

    separate = MixtureOfExperts([Wrapped(e) for e in shared.experts], GatingNetwork(2, 2, width=3))
    assert shared.num_params() == separate.num_params()
    x = torch.rand(13, 2) * 2 - 1
    params = torch.randn(5, shared.num_params())
    torch.testing.assert_close(shared(x, params), separate(x, params))
    torch.testing.assert_close(
        shared.get_expert_outputs(x, params), separate.get_expert_outputs(x, params)
    )


def test_mixture_of_pces_with_different_degrees():
    moe = MixtureOfExperts(
        [PolynomialChaosExpansion(1, 1, degree=2), PolynomialChaosExpansion(1, 1, degree=5)],
        GatingNetwork(1, 2, width=4),
    )
    assert moe.num_params() == 3 + 6 + (4 + 4 + 8 + 2)
    x = torch.rand(8, 1)
    params = torch.randn(3, moe.num_params())
    experts = moe.get_expert_outputs(x, params)
    torch.testing.assert_close(experts[:, 1], moe.experts[1](x, params[:, 3:9]))


# ---------------------------------------------------------------------------
# The seed mixture and parameter layout
# ---------------------------------------------------------------------------


def test_seed_mixture_parameter_count_and_blocks():
    moe = seed_mixture()
    assert moe.num_params() == 74
    assert [e.num_params() for e in moe.experts] == [4, 4]
    assert moe.gating_network.num_params() == 66
    blocks = moe.param_blocks()
    assert [b.name for b in blocks] == [
        "experts.0.coeffs",
        "experts.1.coeffs",
        "gate.hidden.0.weight",
        "gate.hidden.0.bias",
        "gate.output.weight",
        "gate.output.bias",
    ]
    assert [b.shape for b in blocks] == [(4, 1), (4, 1), (1, 16), (16,), (16, 2), (2,)]
    assert [(b.start, b.stop) for b in blocks] == [
        (0, 4),
        (4, 8),
        (8, 24),
        (24, 40),
        (40, 72),
        (72, 74),
    ]


def test_seed_mixture_gating_weights_sum_to_one():
    moe = seed_mixture()
    x = torch.linspace(-1, 1, 50).unsqueeze(1)
    params = torch.randn(20, 74) * 2
    weights = moe.get_gating_weights(x, params)
    assert weights.shape == (20, 50, 2)
    assert (weights > 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(20, 50))


def test_network_parameter_count_from_reference():
    # width 16, depth 1, 1 input, 2 outputs -> 16 + 16 + 32 + 2 = 66
    assert NeuralNetwork(1, 2, width=16, depth=1).num_params() == 66
    assert NeuralNetwork(3, 2, width=4, depth=2).num_params() == (3 * 4 + 4) + (4 * 4 + 4) + (
        4 * 2 + 2
    )


@pytest.mark.parametrize(
    ("activation", "act"), [("tanh", torch.tanh), ("relu", F.relu), ("silu", F.silu)]
)
def test_neural_network_matches_manual_linear_layers(activation, act):
    net = NeuralNetwork(3, 2, width=4, depth=2, activation=activation)
    assert [name for name, _ in net.param_shapes()] == [
        "hidden.0.weight",
        "hidden.0.bias",
        "hidden.1.weight",
        "hidden.1.bias",
        "output.weight",
        "output.bias",
    ]
    x = torch.randn(10, 3, dtype=torch.float64)
    params = torch.randn(3, net.num_params(), dtype=torch.float64)
    y = net(x, params)
    for s in range(3):
        expected = manual_mlp(x, params[s], [3, 4, 4, 2], act)
        torch.testing.assert_close(y[s], expected)


def test_neural_network_custom_callable_activation():
    net = NeuralNetwork(2, 1, width=3, depth=1, activation=lambda t: t**2)
    x = torch.randn(4, 2, dtype=torch.float64)
    params = torch.randn(2, net.num_params(), dtype=torch.float64)
    y = net(x, params)
    for s in range(2):
        torch.testing.assert_close(y[s], manual_mlp(x, params[s], [2, 3, 1], lambda t: t**2))


def test_neural_network_single_sample_hand_values():
    # 1 input, width 1, depth 1, 1 output: y = w2 * tanh(w1 x + b1) + b2
    net = NeuralNetwork(1, 1, width=1, depth=1)
    params = torch.tensor([[2.0, 0.5, -3.0, 0.25]], dtype=torch.float64)
    x = torch.tensor([[0.1], [-0.7]], dtype=torch.float64)
    expected = -3.0 * torch.tanh(2.0 * x + 0.5) + 0.25
    torch.testing.assert_close(net(x, params)[0], expected)


# ---------------------------------------------------------------------------
# Polynomial chaos expansion
# ---------------------------------------------------------------------------


def test_pce_matches_hand_computation():
    pce = PolynomialChaosExpansion(2, 2, degree=2)
    assert pce.num_terms == 6
    assert pce.multi_indices.tolist() == [[0, 0], [1, 0], [0, 1], [2, 0], [1, 1], [0, 2]]
    x = torch.rand(7, 2, dtype=torch.float64) * 2 - 1
    params = torch.randn(3, 12, dtype=torch.float64)
    y = pce(x, params)
    x1, x2 = x[:, 0], x[:, 1]
    phi = torch.stack(
        [torch.ones_like(x1), x1, x2, (3 * x1**2 - 1) / 2, x1 * x2, (3 * x2**2 - 1) / 2], dim=1
    )
    coeffs = params.reshape(3, 6, 2)  # row-major (num_terms, num_outputs)
    for s in range(3):
        for o in range(2):
            expected = (phi * coeffs[s, :, o]).sum(1)
            torch.testing.assert_close(y[s, :, o], expected)
    # Explicit element check of the row-major layout: coefficient of term t, output o.
    torch.testing.assert_close(y[0, :, 1], sum(params[0, 2 * t + 1] * phi[:, t] for t in range(6)))


def test_pce_hermite_hand_computation():
    pce = PolynomialChaosExpansion(1, 1, degree=3, basis="hermite")
    x = torch.randn(9, 1, dtype=torch.float64)
    params = torch.tensor([[0.5, -1.0, 2.0, 0.3]], dtype=torch.float64)
    t = x[:, 0]
    expected = 0.5 - 1.0 * t + 2.0 * (t**2 - 1) + 0.3 * (t**3 - 3 * t)
    torch.testing.assert_close(pce(x, params)[0, :, 0], expected)


def test_pce_cached_basis_matrix_equals_fresh_and_is_reused():
    pce = PolynomialChaosExpansion(2, 1, degree=3)
    x = torch.rand(10, 2) * 2 - 1
    first = pce.basis_matrix(x)
    fresh = multivariate_basis(x, pce.multi_indices, "legendre")
    torch.testing.assert_close(first, fresh)
    assert pce.basis_matrix(x) is first  # cached for the same unmodified tensor
    # A different tensor with equal values is evaluated afresh and gives equal values.
    torch.testing.assert_close(pce.basis_matrix(x.clone()), fresh)


def test_pce_cache_recomputed_after_in_place_modification():
    pce = PolynomialChaosExpansion(1, 1, degree=3)
    x = torch.rand(6, 1) * 2 - 1
    params = torch.randn(2, 4)
    before = pce(x, params).clone()
    old_phi = pce.basis_matrix(x).clone()
    x.mul_(0.5)
    new_phi = pce.basis_matrix(x)
    torch.testing.assert_close(new_phi, multivariate_basis(x, pce.multi_indices, "legendre"))
    assert not torch.allclose(new_phi, old_phi)
    after = pce(x, params)
    torch.testing.assert_close(after, torch.matmul(new_phi, params.reshape(2, 4, 1)))
    assert not torch.allclose(after, before)


def test_pce_cache_recomputed_after_base_of_view_is_modified():
    pce = PolynomialChaosExpansion(1, 1, degree=2)
    base = torch.rand(5, 3)
    x = base[:, :1]
    phi = pce.basis_matrix(x).clone()
    base.add_(1.0)
    torch.testing.assert_close(
        pce.basis_matrix(x), multivariate_basis(x, pce.multi_indices, "legendre")
    )
    assert not torch.allclose(pce.basis_matrix(x), phi)


def test_pce_gradient_wrt_inputs_when_x_requires_grad():
    pce = PolynomialChaosExpansion(1, 1, degree=2)
    x = torch.rand(4, 1, dtype=torch.float64, requires_grad=True)
    params = torch.tensor([[0.0, 1.0, 1.0]], dtype=torch.float64)  # y = x + (3x^2 - 1) / 2
    pce(x, params).sum().backward()
    torch.testing.assert_close(x.grad, 1.0 + 3.0 * x.detach())


def test_pce_gradient_wrt_inputs_after_no_grad_evaluation():
    pce = PolynomialChaosExpansion(1, 1, degree=2)
    x = torch.rand(4, 1, dtype=torch.float64, requires_grad=True)
    params = torch.tensor([[0.0, 1.0, 1.0]], dtype=torch.float64)
    with torch.no_grad():
        pce(x, params)
    y = pce(x, params)
    assert y.requires_grad
    y.sum().backward()
    torch.testing.assert_close(x.grad, 1.0 + 3.0 * x.detach())


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_float64_inputs_give_float64_outputs(name):
    model = SURROGATES[name]()
    x = torch.rand(5, model.num_inputs, dtype=torch.float64)
    params32 = torch.randn(2, model.num_params())
    y = model(x, params32)
    assert y.dtype == torch.float64
    # Same numbers as evaluating with float64 parameters.
    torch.testing.assert_close(y, model(x, params32.double()))


def test_pce_float64_precision():
    pce = PolynomialChaosExpansion(1, 1, degree=8)
    x = torch.linspace(-1, 1, 17, dtype=torch.float64).unsqueeze(1)
    params = torch.zeros(1, 9, dtype=torch.float64)
    params[0, 8] = 1.0
    y = pce(x, params)
    assert y.dtype == torch.float64
    torch.testing.assert_close(
        y[0, :, 0], univariate_table(x[:, 0], 8, "legendre")[:, 8], rtol=0, atol=1e-14
    )


def test_surrogates_own_no_trainable_parameters():
    for name, factory in SURROGATES.items():
        assert list(factory().parameters()) == [], name


# ---------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_wrong_x_rank_raises(name):
    model = SURROGATES[name]()
    params = torch.randn(2, model.num_params())
    with pytest.raises(ValueError, match=r"\bx must have shape"):
        model(torch.rand(4), params)
    with pytest.raises(ValueError, match=r"\bx must have shape"):
        model(torch.rand(2, 4, model.num_inputs), params)


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_wrong_x_width_raises(name):
    model = SURROGATES[name]()
    params = torch.randn(2, model.num_params())
    with pytest.raises(ValueError, match=r"\bx must have shape"):
        model(torch.rand(4, model.num_inputs + 1), params)


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_wrong_params_width_raises(name):
    model = SURROGATES[name]()
    x = torch.rand(4, model.num_inputs)
    with pytest.raises(ValueError, match="params must have shape"):
        model(x, torch.randn(2, model.num_params() + 1))
    with pytest.raises(ValueError, match="params must have shape"):
        model(x, torch.randn(model.num_params()))


def test_mixture_helpers_check_inputs():
    moe = seed_mixture()
    with pytest.raises(ValueError, match="params must have shape"):
        moe.get_expert_outputs(torch.rand(3, 1), torch.randn(2, 73))
    with pytest.raises(ValueError, match=r"\bx must have shape"):
        moe.get_gating_weights(torch.rand(3, 2), torch.randn(2, 74))


def test_non_tensor_and_integer_inputs_raise_type_error():
    pce = PolynomialChaosExpansion(1, 1, degree=2)
    with pytest.raises(TypeError, match="x and params must be tensors"):
        pce([[0.1]], torch.randn(1, 3))
    with pytest.raises(TypeError, match="x must be a floating point"):
        pce(torch.ones(2, 1, dtype=torch.long), torch.randn(1, 3))


def test_negative_degree_raises():
    with pytest.raises(ValueError, match="degree"):
        PolynomialChaosExpansion(1, 1, degree=-1)


def test_non_integer_degree_raises():
    with pytest.raises(TypeError, match="degree"):
        PolynomialChaosExpansion(1, 1, degree=2.5)


def test_unknown_basis_raises():
    with pytest.raises(ValueError, match="basis"):
        PolynomialChaosExpansion(1, 1, degree=2, basis="chebyshev")


@pytest.mark.parametrize("q_norm", [0.0, -0.5, 1.5])
def test_bad_q_norm_raises(q_norm):
    with pytest.raises(ValueError, match="q_norm"):
        PolynomialChaosExpansion(2, 1, degree=2, q_norm=q_norm)


@pytest.mark.parametrize("arg", ["num_inputs", "num_outputs"])
def test_pce_sizes_below_one_raise(arg):
    kwargs = {"num_inputs": 1, "num_outputs": 1, "degree": 2, arg: 0}
    with pytest.raises(ValueError, match=arg):
        PolynomialChaosExpansion(**kwargs)


@pytest.mark.parametrize("cls", [NeuralNetwork, GatingNetwork])
@pytest.mark.parametrize("arg", ["width", "depth"])
def test_width_or_depth_below_one_raises(cls, arg):
    kwargs = {"width": 4, "depth": 1, arg: 0}
    with pytest.raises(ValueError, match=arg):
        cls(2, 2, **kwargs)


def test_network_sizes_below_one_raise():
    with pytest.raises(ValueError, match="num_inputs"):
        NeuralNetwork(0, 1)
    with pytest.raises(ValueError, match="num_outputs"):
        NeuralNetwork(1, 0)


def test_unknown_activation_raises():
    with pytest.raises(ValueError, match="activation"):
        NeuralNetwork(1, 1, activation="swishy")
    with pytest.raises(ValueError, match="activation"):
        GatingNetwork(1, 2, activation="nope")
    with pytest.raises(TypeError, match="activation"):
        NeuralNetwork(1, 1, activation=3)


def test_experts_with_different_inputs_raise():
    with pytest.raises(ValueError, match="experts"):
        MixtureOfExperts(
            [PolynomialChaosExpansion(1, 1, 2), PolynomialChaosExpansion(2, 1, 2)],
            GatingNetwork(1, 2),
        )


def test_experts_with_different_outputs_raise():
    with pytest.raises(ValueError, match="experts"):
        MixtureOfExperts(
            [PolynomialChaosExpansion(1, 1, 2), NeuralNetwork(1, 2, width=3)],
            GatingNetwork(1, 2),
        )


def test_gate_mismatches_raise():
    experts = [PolynomialChaosExpansion(1, 1, 2), PolynomialChaosExpansion(1, 1, 2)]
    with pytest.raises(ValueError, match="gating_network"):
        MixtureOfExperts(experts, GatingNetwork(2, 2))
    with pytest.raises(ValueError, match="gating_network"):
        MixtureOfExperts(experts, GatingNetwork(1, 3))
    with pytest.raises(TypeError, match="gating_network"):
        MixtureOfExperts(experts, NeuralNetwork(1, 2))
    with pytest.raises(TypeError, match=r"experts\[1\]"):
        MixtureOfExperts([experts[0], torch.nn.Linear(1, 1)], GatingNetwork(1, 2))
    with pytest.raises(ValueError, match="experts"):
        MixtureOfExperts([], GatingNetwork(1, 2))
