"""A surrogate whose parameter vector is drawn from parameter groups."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .parameter_groups import ParameterGroup
from .surrogate_models import SurrogateModel

__all__ = ["StochasticModel"]


class StochasticModel(nn.Module):
    """Fuses a surrogate with parameter groups whose sizes add up to its ``num_params()``.

    The groups are concatenated in the order given: group ``k`` covers entries
    ``[sum of earlier sizes, + its size)`` of the surrogate's parameter vector.
    """

    def __init__(self, surrogate_model: SurrogateModel, parameter_groups: Sequence[ParameterGroup]):
        super().__init__()
        if not isinstance(surrogate_model, SurrogateModel):
            raise TypeError(
                f"surrogate_model must be a SurrogateModel, got {type(surrogate_model).__name__}"
            )
        groups = list(parameter_groups)
        for k, group in enumerate(groups):
            if not isinstance(group, ParameterGroup):
                raise TypeError(f"parameter_groups[{k}] must be a ParameterGroup, got {type(group).__name__}")
        total = sum(g.num_params() for g in groups)
        if total != surrogate_model.num_params():
            raise ValueError(
                f"parameter group sizes add up to {total}, but the surrogate has "
                f"{surrogate_model.num_params()} parameters"
            )
        self.surrogate_model = surrogate_model
        self.parameter_groups = nn.ModuleList(groups)

    def num_params(self) -> int:
        return self.surrogate_model.num_params()

    def sample_parameters(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``(num_samples, num_params)`` parameter vectors, one block per group."""
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        draws = [g.sample(num_samples, generator=generator) for g in self.parameter_groups]
        return draws[0] if len(draws) == 1 else torch.cat(draws, dim=1)

    def distribution_loss(self) -> Tensor:
        """Sum of the groups' distribution losses (a scalar)."""
        return torch.stack([g.distribution_loss() for g in self.parameter_groups]).sum()

    def forward(self, x: Tensor, num_samples: int = 1) -> Tensor:
        """Draw ``num_samples`` parameter vectors and evaluate: ``(num_samples, batch, num_outputs)``."""
        return self.surrogate_model(x, self.sample_parameters(num_samples))
