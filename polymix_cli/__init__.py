"""polymix: stochastic surrogate models (polynomial chaos, neural networks, mixtures of
experts) whose parameters are learned by variational inference.

The core library (``surrogate_models``, ``parameter_groups``, ``priors`` and
:class:`StochasticModel`) depends only on torch; importing it loads neither Hydra nor
matplotlib.
"""

from .stochastic_model import StochasticModel

__version__ = "0.1.0"

__all__ = ["StochasticModel", "__version__"]
