"""Surrogate models: deterministic functions of a parameter vector, evaluated for many
draws at once. See :class:`SurrogateModel` for the calling convention."""

from .base import NO_SHARED, ParamBlock, Shared, SurrogateModel
from .moe import MixtureOfExperts
from .neural import ACTIVATIONS, GatingNetwork, NeuralNetwork
from .pce import PolynomialChaosExpansion

__all__ = [
    "ACTIVATIONS",
    "NO_SHARED",
    "GatingNetwork",
    "MixtureOfExperts",
    "NeuralNetwork",
    "ParamBlock",
    "PolynomialChaosExpansion",
    "Shared",
    "SurrogateModel",
]
