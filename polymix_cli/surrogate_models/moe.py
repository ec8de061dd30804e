"""Mixture of experts: ``f(x) = sum_m pi_m(x) f_m(x)`` with a softmax gate."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .base import SurrogateModel
from .neural import GatingNetwork
from .pce import PolynomialChaosExpansion

__all__ = ["MixtureOfExperts"]


class MixtureOfExperts(SurrogateModel):
    """Experts blended by a gating network.

    Parameter vector: expert 0's parameters, expert 1's, ..., then the gate's; block
    names are prefixed ``experts.{m}.`` and ``gate.``. Experts may differ in kind as
    long as their input and output sizes agree. When every expert is a polynomial
    chaos expansion with the same terms, all experts are evaluated in one matrix
    product against a shared basis matrix.
    """

    def __init__(self, experts: Sequence[SurrogateModel], gating_network: GatingNetwork):
        super().__init__()
        experts = list(experts)
        if not experts:
            raise ValueError("experts must contain at least one surrogate")
        for m, expert in enumerate(experts):
            if not isinstance(expert, SurrogateModel):
                raise TypeError(f"experts[{m}] must be a SurrogateModel, got {type(expert).__name__}")
        if not isinstance(gating_network, GatingNetwork):
            raise TypeError(
                f"gating_network must be a GatingNetwork, got {type(gating_network).__name__}"
            )
        first = experts[0]
        for m, expert in enumerate(experts[1:], start=1):
            if (expert.num_inputs, expert.num_outputs) != (first.num_inputs, first.num_outputs):
                raise ValueError(
                    f"experts must agree in inputs and outputs: experts[0] has "
                    f"({first.num_inputs}, {first.num_outputs}), experts[{m}] has "
                    f"({expert.num_inputs}, {expert.num_outputs})"
                )
        if gating_network.num_inputs != first.num_inputs:
            raise ValueError(
                f"gating_network has {gating_network.num_inputs} inputs, experts have {first.num_inputs}"
            )
        if gating_network.num_experts != len(experts):
            raise ValueError(
                f"gating_network has {gating_network.num_experts} outputs for {len(experts)} experts"
            )
        self.experts = nn.ModuleList(experts)
        self.gating_network = gating_network
        self.num_inputs = first.num_inputs
        self.num_outputs = first.num_outputs
        self._shared_pce = isinstance(first, PolynomialChaosExpansion) and all(
            first.same_basis(e) for e in experts[1:]
        )
        sizes = [e.num_params() for e in experts]
        self._expert_offsets = [sum(sizes[:m]) for m in range(len(sizes) + 1)]

    @property
    def num_experts(self) -> int:
        return len(self.experts)

    def param_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        shapes = [
            (f"experts.{m}.{name}", shape)
            for m, expert in enumerate(self.experts)
            for name, shape in expert.param_shapes()
        ]
        return shapes + [(f"gate.{name}", shape) for name, shape in self.gating_network.param_shapes()]

    def gate_params(self, params: Tensor) -> Tensor:
        """The gate's slice of ``params`` ``(S, num_params)``."""
        return params[:, self._expert_offsets[-1] :]

    def get_expert_outputs(self, x: Tensor, params: Tensor) -> Tensor:
        """Each expert's output: ``(num_samples, num_experts, batch, num_outputs)``."""
        return self._expert_outputs(x, self.check_inputs(x, params))

    def get_gating_weights(self, x: Tensor, params: Tensor) -> Tensor:
        """Gate probabilities ``(num_samples, batch, num_experts)``, rows summing to one."""
        params = self.check_inputs(x, params)
        return self.gating_network.evaluate(x, self.gate_params(params))

    def _expert_outputs(self, x: Tensor, params: Tensor) -> Tensor:
        num_samples = params.shape[0]
        if self._shared_pce:
            first: PolynomialChaosExpansion = self.experts[0]  # type: ignore[assignment]
            coeffs = params[:, : self._expert_offsets[-1]].reshape(
                num_samples, self.num_experts, first.num_terms, self.num_outputs
            )
            return torch.matmul(first.basis_matrix(x), coeffs)
        offsets = self._expert_offsets
        return torch.stack(
            [
                expert.evaluate(x, params[:, offsets[m] : offsets[m + 1]])
                for m, expert in enumerate(self.experts)
            ],
            dim=1,
        )

    def evaluate(self, x: Tensor, params: Tensor) -> Tensor:
        experts = self._expert_outputs(x, params)  # (S, M, B, O)
        weights = self.gating_network.evaluate(x, self.gate_params(params))  # (S, B, M)
        return torch.einsum("sbm,smbo->sbo", weights, experts)
