"""A surrogate whose parameter vector is drawn from parameter groups."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .likelihoods import GaussianNoise
from .parameter_groups import DeterministicGroup, ParameterGroup
from .parameter_groups.mean_field import MeanFieldParameters, is_mean_field
from .surrogate_models import Shared, SurrogateModel

__all__ = ["StochasticModel"]


class StochasticModel(nn.Module):
    """A surrogate whose parameter vector is drawn from parameter groups.

    Fuses a surrogate with parameter groups whose sizes add up to its ``num_params()``.
    The groups are concatenated in the order given: group ``k`` covers entries
    ``[sum of earlier sizes, + its size)`` of the surrogate's parameter vector.

    Fast paths (same results, fewer tensor operations per step):

    - when every group is a ``DeterministicGroup`` or ``IIDGaussianGroup`` with an
      ``IIDGaussianPrior`` (a mean-field layout), their tensors are packed into flat
      storage (:attr:`mean_field`; the groups' attributes become slices of it): a draw of
      the whole vector is one operation, the distribution loss one closed-form
      expression, and the optimiser sees two tensors;
    - surrogate blocks covered entirely by deterministic groups are evaluated once rather
      than once per draw (:meth:`forward` and :meth:`predict`).

    The optional ``noise`` (:class:`~polymix_cli.likelihoods.GaussianNoise`, one standard
    deviation per output) is a learned observation noise for a Gaussian likelihood. It is a
    submodule, so its ``log_std`` is in the ``state_dict`` (``noise.log_std``) and
    ``parameters()``, and its prior (if any) adds to :meth:`distribution_loss`. Without
    noise (``None``, the default) the model's state and numbers are exactly those of a
    model built before noise existed. :meth:`forward` and :meth:`predict` always return
    the noiseless surrogate draws.

    Args:
        surrogate_model: The surrogate, a deterministic function of a parameter vector
            (:class:`~polymix_cli.surrogate_models.SurrogateModel`).
        parameter_groups: Groups whose sizes add up to ``surrogate_model.num_params()``,
            in vector order.
        noise: A learned observation noise with one standard deviation per output of the
            surrogate, or ``None``.

    Raises:
        TypeError: If the surrogate, a group or the noise is of another type.
        ValueError: If the group sizes do not add up to the surrogate's number of
            parameters, or the noise has another number of outputs than the surrogate.

    Example:
        ```python
        import torch
        from polymix_cli import StochasticModel
        from polymix_cli.parameter_groups import IIDGaussianGroup
        from polymix_cli.surrogate_models import PolynomialChaosExpansion

        surrogate = PolynomialChaosExpansion(2, 1, degree=2)  # 6 coefficients
        model = StochasticModel(surrogate, [IIDGaussianGroup("coeffs", 6)])
        y = model(torch.rand(10, 2) * 2 - 1, num_samples=4)  # (4, 10, 1)
        ```
    """

    def __init__(
        self,
        surrogate_model: SurrogateModel,
        parameter_groups: Sequence[ParameterGroup],
        noise: GaussianNoise | None = None,
    ):
        super().__init__()
        if not isinstance(surrogate_model, SurrogateModel):
            raise TypeError(
                f"surrogate_model must be a SurrogateModel, got {type(surrogate_model).__name__}"
            )
        groups = list(parameter_groups)
        for k, group in enumerate(groups):
            if not isinstance(group, ParameterGroup):
                raise TypeError(
                    f"parameter_groups[{k}] must be a ParameterGroup, got {type(group).__name__}"
                )
        total = sum(g.num_params() for g in groups)
        if total != surrogate_model.num_params():
            raise ValueError(
                f"parameter group sizes add up to {total}, but the surrogate has "
                f"{surrogate_model.num_params()} parameters"
            )
        if noise is not None:
            if not isinstance(noise, GaussianNoise):
                raise TypeError(
                    f"noise must be a GaussianNoise or None, got {type(noise).__name__}"
                )
            if noise.num_outputs != surrogate_model.num_outputs:
                raise ValueError(
                    f"noise has {noise.num_outputs} outputs, but the surrogate has "
                    f"{surrogate_model.num_outputs}"
                )
        self.surrogate_model = surrogate_model
        self.parameter_groups = nn.ModuleList(groups)
        self.constant_blocks = self._constant_blocks()
        self.mean_field = MeanFieldParameters(groups) if is_mean_field(groups) else None
        # deterministic values come straight from the flat locations when packed
        row = self.mean_field.loc if self.mean_field is not None else None
        self._shared = Shared(self.constant_blocks, row)
        # registered last, and only when given: models without noise keep their state_dict
        self.noise = noise

    # -- structure -------------------------------------------------------------------------
    def _constant_blocks(self) -> frozenset[str]:
        """Names of surrogate blocks covered entirely by deterministic groups."""
        constant = torch.zeros(self.num_params(), dtype=torch.bool)
        start = 0
        for g in self.parameter_groups:
            constant[start : start + g.num_params()] = isinstance(g, DeterministicGroup)
            start += g.num_params()
        return frozenset(
            b.name
            for b in self.surrogate_model.param_blocks()
            if bool(constant[b.start : b.stop].all())
        )

    # -- the public API ------------------------------------------------------------------------
    def num_params(self) -> int:
        """The length of the surrogate's parameter vector.

        Returns:
            ``P``, the number of parameters of the surrogate (and the sum of the groups'
            sizes).
        """
        return self.surrogate_model.num_params()

    def sample_parameters(
        self, num_samples: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw parameter vectors, one block per group.

        Draws are reparameterised: differentiable in the groups' tensors.

        Args:
            num_samples: The number of draws ``S`` (>= 1).
            generator: The random generator of the draws (``None``: torch's global one).

        Returns:
            The draws, shape ``(S, num_params)``.

        Raises:
            ValueError: If ``num_samples`` is not a positive integer.
        """
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        if self.mean_field is not None:
            return self.mean_field.sample(num_samples, generator)
        draws = [g.sample(num_samples, generator=generator) for g in self.parameter_groups]
        return draws[0] if len(draws) == 1 else torch.cat(draws, dim=1)

    def sample_with_loss(
        self, num_samples: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw parameter vectors and compute the distribution loss together.

        Equal to ``(sample_parameters(num_samples), distribution_loss())``, computed
        together (one autograd node for a mean-field layout): what a training step needs.

        Args:
            num_samples: The number of draws ``S`` (>= 1).
            generator: The random generator of the draws (``None``: torch's global one).

        Returns:
            A pair ``(params, loss)``: the draws, shape ``(S, num_params)``, and the
            distribution loss, a scalar (0-dim tensor).

        Raises:
            ValueError: If ``num_samples`` is not a positive integer.
        """
        if self.mean_field is None:
            return self.sample_parameters(num_samples, generator), self.distribution_loss()
        params, loss = self.mean_field.sample_with_loss(num_samples, generator)
        return params, self._with_noise_prior(loss)

    def distribution_loss(self) -> Tensor:
        """The regulariser of the variational objective: the sum of the groups' losses.

        Each group contributes KL(q || prior) for a variational group, or ``-log prior`` of
        its value for a deterministic one; ``-log prior`` of the noise level is added when
        the noise has a prior.

        Returns:
            The loss, a scalar (0-dim tensor), differentiable in the groups' tensors.
        """
        if self.mean_field is not None:
            loss = self.mean_field.distribution_loss()
        else:
            loss = torch.stack([g.distribution_loss() for g in self.parameter_groups]).sum()
        return self._with_noise_prior(loss)

    def _with_noise_prior(self, loss: Tensor) -> Tensor:
        """``loss`` plus ``-log prior`` of the noise level, when the noise has a prior."""
        if self.noise is not None and self.noise.prior is not None:
            return loss + self.noise.distribution_loss()
        return loss

    def predict(self, x: Tensor, params: Tensor) -> Tensor:
        """Evaluate the surrogate at given parameter draws.

        Blocks that are the same in every draw (covered by deterministic groups) are
        computed only once.

        Args:
            x: Inputs, shape ``(batch, num_inputs)``, in the model's domain.
            params: Parameter draws, shape ``(S, num_params)``, e.g. from
                :meth:`sample_parameters`; converted to ``x``'s dtype and device.

        Returns:
            The noiseless outputs, shape ``(S, batch, num_outputs)`` (may be a view).

        Raises:
            TypeError: If ``x`` or ``params`` is not a tensor, or ``x`` is not floating
                point.
            ValueError: If ``x`` or ``params`` has the wrong shape.
        """
        params = self.surrogate_model.check_inputs(x, params)
        return self.surrogate_model.evaluate_shared(x, params, self._shared)

    def forward(self, x: Tensor, num_samples: int = 1) -> Tensor:
        """Draw ``num_samples`` parameter vectors and evaluate the surrogate at ``x``.

        Args:
            x: Inputs, shape ``(batch, num_inputs)``, in the model's domain.
            num_samples: The number of draws ``S`` (>= 1).

        Returns:
            The noiseless outputs, shape ``(S, batch, num_outputs)``.

        Raises:
            TypeError: If ``x`` is not a floating-point tensor.
            ValueError: If ``num_samples`` is not a positive integer or ``x`` has the wrong
                shape.
        """
        return self.predict(x, self.sample_parameters(num_samples))
