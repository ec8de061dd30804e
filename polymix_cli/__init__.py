"""polymix: stochastic surrogate models (polynomial chaos, neural networks, mixtures of
experts) whose parameters are learned by variational inference.

The core library (``surrogate_models``, ``parameter_groups``, ``priors``,
``likelihoods`` and :class:`StochasticModel`) depends only on torch; importing it loads
neither Hydra nor matplotlib. ``StochasticModel`` and ``GaussianNoise`` are imported
lazily so that ``polymix --help`` does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["GaussianNoise", "StochasticModel", "__version__"]

if TYPE_CHECKING:
    from .likelihoods import GaussianNoise
    from .stochastic_model import StochasticModel


def __getattr__(name: str) -> Any:
    if name == "StochasticModel":
        from .stochastic_model import StochasticModel

        return StochasticModel
    if name == "GaussianNoise":
        from .likelihoods import GaussianNoise

        return GaussianNoise
    raise AttributeError(f"module 'polymix_cli' has no attribute {name!r}")
