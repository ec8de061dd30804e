"""Mixture of experts: ``f(x) = sum_m pi_m(x) f_m(x)`` with a softmax gate."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .base import NO_SHARED, Shared, SurrogateModel
from .neural import GatingNetwork
from .pce import PolynomialChaosExpansion, expand_in_basis

__all__ = ["MixtureOfExperts"]


class MixtureOfExperts(SurrogateModel):
    """Experts blended by a gating network: ``f(x) = sum_m pi_m(x) f_m(x)``.

    Parameter vector: expert 0's parameters, expert 1's, ..., then the gate's; block
    names are prefixed ``experts.{m}.`` and ``gate.``. Experts may differ in kind as
    long as their input and output sizes agree. When every expert is a polynomial
    chaos expansion with the same terms, all experts are evaluated in one matrix
    product against a shared basis matrix. With two experts the softmax is computed as
    the sigmoid of the logit difference.

    Args:
        experts: The experts (at least one), all with the same ``num_inputs`` and
            ``num_outputs``.
        gating_network: The gate, with the experts' ``num_inputs`` and one output per
            expert.

    Raises:
        ValueError: If there are no experts, they disagree in inputs or outputs, or the
            gate does not match them.
        TypeError: If an expert is not a :class:`SurrogateModel` or the gate not a
            :class:`GatingNetwork`.

    Example:
        ```python
        from polymix_cli.surrogate_models import (
            GatingNetwork, MixtureOfExperts, PolynomialChaosExpansion
        )

        moe = MixtureOfExperts(
            experts=[PolynomialChaosExpansion(1, 1, degree=3) for _ in range(2)],
            gating_network=GatingNetwork(num_inputs=1, num_experts=2, width=16),
        )
        [b.name for b in moe.param_blocks()]
        # ['experts.0.coeffs', 'experts.1.coeffs', 'gate.hidden.0.weight',
        #  'gate.hidden.0.bias', 'gate.output.weight', 'gate.output.bias']
        ```
    """

    def __init__(self, experts: Sequence[SurrogateModel], gating_network: GatingNetwork):
        super().__init__()
        experts = list(experts)
        if not experts:
            raise ValueError("experts must contain at least one surrogate")
        for m, expert in enumerate(experts):
            if not isinstance(expert, SurrogateModel):
                raise TypeError(
                    f"experts[{m}] must be a SurrogateModel, got {type(expert).__name__}"
                )
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
        self._experts_share_basis = isinstance(first, PolynomialChaosExpansion) and all(
            first.same_basis(e) for e in experts[1:]
        )
        sizes = [e.num_params() for e in experts]
        self._expert_offsets = [sum(sizes[:m]) for m in range(len(sizes) + 1)]
        self._shared_cache: tuple[Shared, list[Shared], Shared] | None = None

    @property
    def num_experts(self) -> int:
        """The number of experts."""
        return len(self.experts)

    @property
    def experts_share_basis(self) -> bool:
        """Whether every expert is a :class:`PolynomialChaosExpansion` with the same basis
        terms as expert 0.

        Then all experts are evaluated in one matrix product against one basis matrix
        ``(batch, num_terms)``, and their coefficients fill columns
        ``[0, num_experts * num_terms * num_outputs)`` of the parameter vector, expert by
        expert, each ``(num_terms, num_outputs)`` row-major.
        """
        return self._experts_share_basis

    @property
    def gate_offset(self) -> int:
        """The first column of the gate's parameters in the parameter vector
        ``(num_params,)``; the experts' parameters fill the columns before it."""
        return self._expert_offsets[-1]

    def param_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        shapes = [
            (f"experts.{m}.{name}", shape)
            for m, expert in enumerate(self.experts)
            for name, shape in expert.param_shapes()
        ]
        return shapes + [
            (f"gate.{name}", shape) for name, shape in self.gating_network.param_shapes()
        ]

    def work_width(self) -> int:
        widths = [e.work_width() for e in self.experts] + [self.gating_network.work_width()]
        return self.num_experts * self.num_outputs + max(widths)

    def shared_width(self) -> int:
        experts = self.experts[:1] if self._experts_share_basis else self.experts
        return sum(e.shared_width() for e in experts) + self.gating_network.shared_width()

    def gate_params(self, params: Tensor) -> Tensor:
        """The gate's slice of the parameter draws.

        Args:
            params: Parameter draws, shape ``(S, num_params)``.

        Returns:
            The view ``params[:, gate_offset:]``, shape ``(S, gating_network.num_params())``.
        """
        return params[:, self.gate_offset :]

    def _split_shared(self, shared: Shared) -> tuple[list[Shared], Shared]:
        """The hint for each expert and for the gate (cached for the latest hint)."""
        cached = self._shared_cache
        if cached is not None and cached[0] is shared:
            return cached[1], cached[2]
        offsets = self._expert_offsets
        experts = [shared.child(f"experts.{m}.", offsets[m]) for m in range(self.num_experts)]
        gate = shared.child("gate.", offsets[-1])
        self._shared_cache = (shared, experts, gate)
        return experts, gate

    def get_expert_outputs(self, x: Tensor, params: Tensor) -> Tensor:
        """Each expert's output, before the gate blends them.

        Args:
            x: Inputs, shape ``(batch, num_inputs)``.
            params: Parameter draws of the whole mixture, shape ``(num_samples, num_params)``.

        Returns:
            The outputs, shape ``(num_samples, num_experts, batch, num_outputs)``.

        Raises:
            TypeError: If ``x`` or ``params`` is not a tensor, or ``x`` is not floating
                point.
            ValueError: If ``x`` or ``params`` has the wrong shape.
        """
        params = self.check_inputs(x, params)
        return self._expert_outputs(x, params, self._split_shared(NO_SHARED)[0]).transpose(2, 3)

    def get_gating_weights(self, x: Tensor, params: Tensor) -> Tensor:
        """The gate's probabilities ``pi_m(x)``.

        Args:
            x: Inputs, shape ``(batch, num_inputs)``.
            params: Parameter draws of the whole mixture, shape ``(num_samples, num_params)``.

        Returns:
            The weights, shape ``(num_samples, batch, num_experts)``, rows summing to one.

        Raises:
            TypeError: If ``x`` or ``params`` is not a tensor, or ``x`` is not floating
                point.
            ValueError: If ``x`` or ``params`` has the wrong shape.
        """
        params = self.check_inputs(x, params)
        return self.gating_network.evaluate(x, self.gate_params(params))

    def _expert_outputs(self, x: Tensor, params: Tensor, shared: list[Shared]) -> Tensor:
        """All experts laid out ``(S, M, O, B)``."""
        offsets = self._expert_offsets
        if self._experts_share_basis:
            first: PolynomialChaosExpansion = self.experts[0]  # type: ignore[assignment]
            return expand_in_basis(
                first.basis_matrix(x),
                params[:, : offsets[-1]],
                self.num_experts,
                first.num_terms,
                self.num_outputs,
            )
        outputs = [
            expert.evaluate_shared(x, params[:, offsets[m] : offsets[m + 1]], shared[m])
            for m, expert in enumerate(self.experts)
        ]
        return torch.stack(outputs, dim=1).transpose(2, 3)

    def evaluate(self, x: Tensor, params: Tensor, shared: Shared = NO_SHARED) -> Tensor:
        expert_shared, gate_shared = self._split_shared(shared)
        experts = self._expert_outputs(x, params, expert_shared)  # (S, M, O, B)
        gate_params = self.gate_params(params)
        if self.num_experts == 2:
            # softmax over two = sigmoid of the logit difference: f0 + p1 (f1 - f0)
            p1 = torch.sigmoid(
                self.gating_network.logit_difference(x, gate_params, gate_shared)
            )  # (S', B)
            f0, f1 = experts.unbind(1)
            return torch.addcmul(f0, p1.unsqueeze(1), f1 - f0).transpose(1, 2)
        weights = torch.softmax(
            self.gating_network.logits_by_expert(x, gate_params, gate_shared), dim=1
        )
        # a weighted sum over the few experts: elementwise, no batched GEMM and no copies
        return (weights.unsqueeze(2) * experts).sum(1).transpose(1, 2)  # (S, B, O)
