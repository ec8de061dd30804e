"""Report figures for trained stochastic surrogates, one module per figure family.

The functions take plain numpy arrays (anything ``np.asarray`` accepts), never tensors,
so this package imports neither torch nor Hydra. Each one draws a figure, saves it as a
PNG at ``path`` (parent folders are created), closes it and returns the path.

Shape conventions (``G`` grid points, ``N`` training points, ``K`` test points, ``O``
outputs, ``M`` experts, ``E`` logged epochs):

* inputs ``x_grid`` ``(G,)``, ``x_train`` ``(N,)``, ``x_test`` ``(K,)``; a trailing
  axis of size 1 (``(G, 1)``, as produced by a one-input model) is accepted;
* outputs ``(G, O)``, ``(N, O)``, ``(K, O)``; a single output may also be given as
  ``(G,)`` etc.;
* per-expert outputs ``(M, G, O)`` (or ``(M, G)`` for one output);
* gating probabilities ``(G, M)``.

Colour scheme, shared by all figures: the predictive mean in a strong red, expert ``m``
in ``C{m}`` (``C1``, ``C2``, ... as in the seed notebook), uncertainty bands in the same
colour but semi-transparent, training data as blue points with a black edge, held-out
test data as small grey dots (orange in the parity plot, where they matter as much as the
training data) and the noiseless truth as a dashed black line. When there are several
outputs the figure has one panel per output, side by side with a shared x axis.

Models with one input get ``plot_prediction`` (and, for mixtures, ``plot_gating`` and
``plot_experts``) over the input range; models with several inputs get ``plot_parity``
and ``plot_slices`` (``D`` inputs: slices ``(D, G)``, summaries ``(D, G, O)``).

Modules:

* :mod:`.prediction`: ``plot_prediction`` (quantile band over the input range) and
  ``plot_calibration`` (coverage of the central intervals);
* :mod:`.mixture`: ``plot_gating`` and ``plot_experts``;
* :mod:`.multi_input`: ``plot_parity`` and ``plot_slices``;
* :mod:`.loss`: ``plot_loss`` (training curves);
* :mod:`.sensitivity`: ``plot_sobol``;
* :mod:`.sweep`: ``plot_sweep``;
* :mod:`.style` (colours, sizes, panels, legend, saving) and :mod:`.arrays` (shape
  checks of the inputs), shared by all of them.

Which figures a run writes is decided in :mod:`polymix_cli.reporting.run_plots`.
Importing this package loads matplotlib but leaves its backend alone.
"""

from polymix_cli.reporting.plots.loss import plot_loss
from polymix_cli.reporting.plots.mixture import plot_experts, plot_gating
from polymix_cli.reporting.plots.multi_input import plot_parity, plot_slices
from polymix_cli.reporting.plots.prediction import plot_calibration, plot_prediction
from polymix_cli.reporting.plots.sensitivity import plot_sobol
from polymix_cli.reporting.plots.sweep import plot_sweep

__all__ = [
    "plot_calibration",
    "plot_experts",
    "plot_gating",
    "plot_loss",
    "plot_parity",
    "plot_prediction",
    "plot_slices",
    "plot_sobol",
    "plot_sweep",
]
