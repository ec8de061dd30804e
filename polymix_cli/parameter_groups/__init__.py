"""Parameter groups: variational distributions over contiguous parts of a surrogate's
parameter vector. Each draws ``(num_samples, num_params)`` and has a distribution loss."""

from .base import ParameterGroup
from .groups import DeterministicGroup, GaussianGroup, IIDGaussianGroup, LowRankGaussianGroup
from .langevin import LangevinGroup, ScoreNetwork

__all__ = [
    "DeterministicGroup",
    "GaussianGroup",
    "IIDGaussianGroup",
    "LangevinGroup",
    "LowRankGaussianGroup",
    "ParameterGroup",
    "ScoreNetwork",
]
