"""polymix: stochastic surrogate models (polynomial chaos, neural networks, mixtures of
experts) whose parameters are learned by variational inference.

The core library (``surrogate_models``, ``parameter_groups``, ``priors`` and
:class:`StochasticModel`) depends only on torch; importing it loads neither Hydra nor
matplotlib. ``StochasticModel`` is imported lazily so that ``polymix --help`` does not
load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["StochasticModel", "__version__"]

if TYPE_CHECKING:
    from .stochastic_model import StochasticModel


def __getattr__(name: str) -> Any:
    if name == "StochasticModel":
        from .stochastic_model import StochasticModel

        return StochasticModel
    raise AttributeError(f"module 'polymix_cli' has no attribute {name!r}")
