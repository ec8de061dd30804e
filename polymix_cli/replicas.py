"""Replicas: ``K`` independent initialisations of one mean-field model, trained as one.

A run that fails by bad luck (an optimiser stuck in a poor local optimum) is cured by
training several initialisations and keeping the best; :class:`Replicas` makes that one
vectorised computation instead of ``K`` runs. The replicas are a leading batch dimension
of the packed mean-field tensors (:class:`~polymix_cli.parameter_groups.mean_field.MeanFieldParameters`):
``loc`` ``(K, P)``, ``log_std`` ``(K, Ks)`` and, with a learned noise, the noise's
``log_std`` ``(K, O)``. A step draws ``S`` parameter vectors per replica, folded into
``K * S`` draws of one surrogate evaluation, and keeps each replica's data term and
distribution loss apart: the objective is the sum of the replicas' objectives, so each
replica's gradient is that of its own objective, and an elementwise optimiser (Adam,
AdamW, SGD) updates every replica exactly as it would update a separate run.

:class:`ReplicaEnsemble` is the equal-weight mixture of the replicas' variational
posteriors, a drop-in for a :class:`~polymix_cli.StochasticModel` wherever predictive
draws are made (``sample_parameters`` then ``predict``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .stochastic_model import StochasticModel

__all__ = ["ReplicaEnsemble", "Replicas"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class Replicas(nn.Module):
    """The variational parameters of ``K`` replicas of a mean-field model.

    Args:
        models: ``K >= 1`` models with the same surrogate, layout and noise, each with a
            mean-field layout (:attr:`StochasticModel.mean_field`); their current values
            are the replicas' initial states (copied). The first is kept as the template
            whose surrogate and priors the replicas share.

    Raises:
        ValueError: If there is no model, a layout is not mean-field, or the models
            differ in their numbers of parameters or noise.
    """

    def __init__(self, models: Sequence[StochasticModel]):
        super().__init__()
        models = list(models)
        if not models:
            raise ValueError("Replicas needs at least one model")
        if any(m.mean_field is None for m in models):
            raise ValueError("replicas need a mean-field layout")
        first = models[0]
        shapes = {
            (
                m.mean_field.loc.shape,
                m.mean_field.log_std.shape,
                None if m.noise is None else m.noise.log_std.shape,
            )
            for m in models
        }
        if len(shapes) != 1:
            raise ValueError("replicas need models of the same shape")
        self._template = (first,)  # a tuple: not a submodule, its tensors are not ours
        mf = first.mean_field
        self.loc = nn.Parameter(torch.stack([m.mean_field.loc.detach() for m in models]).clone())
        log_std = torch.stack([m.mean_field.log_std.detach() for m in models]).clone()
        if isinstance(mf.log_std, nn.Parameter):
            self.log_std = nn.Parameter(log_std)
        else:  # all deterministic: nothing to learn
            self.register_buffer("log_std", log_std, persistent=False)
        if first.noise is not None:
            self.noise_log_std = nn.Parameter(
                torch.stack([m.noise.log_std.detach() for m in models]).clone()
            )
        else:
            self.noise_log_std = None

    @classmethod
    def like(cls, model: StochasticModel, num_replicas: int) -> Replicas:
        """``num_replicas`` copies of ``model``'s state (e.g. to load a stored state into).

        Args:
            model: A mean-field model.
            num_replicas: ``K >= 1``.

        Returns:
            The replicas.
        """
        return cls([model] * num_replicas)

    @property
    def model(self) -> StochasticModel:
        """The template model (surrogate, layout, priors, noise prior)."""
        return self._template[0]

    @property
    def num_replicas(self) -> int:
        """``K``."""
        return self.loc.shape[0]

    # -- the step ------------------------------------------------------------------------------
    @torch.no_grad()
    def draw_with_loss_terms(
        self, num_samples: int, noise: Tensor | None = None
    ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor]]:
        """``S`` draws per replica and each replica's distribution loss, without autograd.

        Args:
            num_samples: ``S``, the draws per replica.
            noise: Standard normal noise ``(K, S, Ks)``; default: drawn from torch's
                global generator (replica ``k`` gets ``noise[k]``).

        Returns:
            ``(theta, loss, saved)``: the draws ``(K * S, P)`` (replica-major), the
            distribution losses without the noise prior ``(K,)``, and what
            :meth:`gradients` needs.
        """
        if noise is None:
            noise = self._noise(num_samples)
        theta, loss, saved = self._draw(self.loc, self.log_std, noise)
        return theta, loss, saved

    def _noise(self, num_samples: int) -> Tensor:
        loc = self.loc
        return torch.randn(
            (self.num_replicas, num_samples, self.log_std.shape[1]),
            dtype=loc.dtype,
            device=loc.device,
        )

    def _draw(
        self, loc: Tensor, log_std: Tensor, noise: Tensor
    ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor]]:
        """The draws ``(K * S, P)``, the losses ``(K,)`` and the saved terms (differentiable
        when ``loc`` and ``log_std`` require gradients)."""
        mf = self.model.mean_field
        K, S = noise.shape[0], noise.shape[1]
        std = log_std.exp()  # (K, Ks)
        scaled = noise * std.unsqueeze(1)  # (K, S, Ks)
        theta = torch.index_add(
            loc.unsqueeze(1).expand(K, S, -1), 2, mf.stochastic_index, scaled
        ).reshape(K * S, -1)
        z = (loc - mf.prior_loc) * mf.prior_inv_scale  # (K, P)
        ratio = std * mf.stochastic_inv_scale  # (K, Ks)
        # 0.5 |z|^2 + sum(0.5 ratio^2 - log_std) + const, per replica
        loss = (
            torch.linalg.vecdot(z, z)
            .mul(0.5)
            .sub(torch.addcmul(log_std, ratio, ratio, value=-0.5).sum(1))
            .add(mf.loss_const)
        )
        return theta, loss, (scaled, z * mf.prior_inv_scale, torch.mul(ratio, ratio).sub_(1.0))

    def gradients(
        self, grad: Tensor, grad_loss: Tensor | float, saved: tuple[Tensor, Tensor, Tensor]
    ) -> tuple[Tensor, Tensor | None]:
        """The gradients of ``loc`` ``(K, P)`` and ``log_std`` ``(K, Ks)`` from those of the
        draws ``(K * S, P)`` and of each replica's distribution loss (``grad_loss``, the
        same for every replica)."""
        scaled, dz, dratio = saved
        K = self.num_replicas
        grad_loc = torch.add(grad.view(K, -1, grad.shape[-1]).sum(1), dz, alpha=grad_loss)
        grad_log_std = None
        if self.log_std.requires_grad:
            index = self.model.mean_field.stochastic_index
            picked = grad.index_select(1, index).view_as(scaled)  # (K, S, Ks)
            grad_log_std = torch.add(picked.mul_(scaled).sum(1), dratio, alpha=grad_loss)
        return grad_loc, grad_log_std

    def noise_prior(self) -> Tensor | None:
        """The noise prior's ``-log p(log sigma)`` of each replica ``(K,)``, or ``None``."""
        noise = self.model.noise
        if noise is None or noise.prior is None:
            return None
        return torch.func.vmap(noise.prior.neg_log_prob)(self.noise_log_std)

    def losses(
        self, x: Tensor, y: Tensor, scale: float, num_samples: int, loss: str, weight_factor: float
    ) -> Tensor:
        """Each replica's objective with autograd: ``(K, 3)``, data, distribution, total.

        Args:
            x: Inputs ``(B, D)`` in the model's domain.
            y: Outputs ``(B, O)``.
            scale: The factor of the data term (``N / B`` for a mini-batch).
            num_samples: ``S``, the draws per replica.
            loss: ``mse_sum`` or ``gaussian_nll``.
            weight_factor: The weight of the distribution loss in the total.

        Returns:
            The losses ``(K, 3)``, differentiable in the replicas' parameters.
        """
        K, S = self.num_replicas, num_samples
        theta, dist, _ = self._draw(self.loc, self.log_std, self._noise(S))
        y_hat = self.model.surrogate_model.evaluate(x, theta)  # (K * S, B, O)
        resid = (y_hat - y).reshape(K, S, *y_hat.shape[1:])  # (K, S, B, O)
        factor = scale / S
        if loss == "gaussian_nll":
            sq = resid.square().sum((1, 2))  # (K, O)
            log_std = self.noise_log_std
            count = S * resid.shape[2]
            data = 0.5 * (sq * torch.exp(-2 * log_std)).sum(1) + count * (
                log_std.sum(1) + log_std.shape[1] * _HALF_LOG_2PI
            )
            data = data * factor
            prior = self.noise_prior()
            if prior is not None:
                dist = dist + prior
        else:
            data = resid.square().sum((1, 2, 3)) * factor
        return torch.stack([data, dist, data + weight_factor * dist], 1)

    # -- selection -----------------------------------------------------------------------------
    @torch.no_grad()
    def copy_to(self, k: int, model: StochasticModel) -> StochasticModel:
        """Write replica ``k``'s state into ``model`` (of the template's shape).

        Args:
            k: The replica, ``0 <= k < K``.
            model: The model to overwrite.

        Returns:
            ``model``.
        """
        model.mean_field.loc.copy_(self.loc[k])
        model.mean_field.log_std.copy_(self.log_std[k])
        if self.noise_log_std is not None:
            model.noise.log_std.copy_(self.noise_log_std[k])
        return model


class ReplicaEnsemble(nn.Module):
    """The equal-weight mixture of the replicas' variational posteriors.

    ``sample_parameters(S)`` gives replica ``k`` the draws ``[k S / K, (k + 1) S / K)``
    (rounded down; the blocks differ in size by at most one), each drawn as that replica
    alone would draw it from the same standard normal noise: the ensemble's draws are
    the union of the replicas' draws. ``predict`` evaluates every block per draw (the
    deterministic values differ between replicas). Models with a learned noise are not
    supported (each replica has its own noise level).

    Args:
        replicas: The trained replicas.

    Raises:
        ValueError: If the replicas learned a noise.
    """

    def __init__(self, replicas: Replicas):
        super().__init__()
        if replicas.noise_log_std is not None:
            raise ValueError("an ensemble of replicas with a learned noise is not supported")
        self.replicas = replicas

    @property
    def surrogate_model(self):
        """The template's surrogate."""
        return self.replicas.model.surrogate_model

    @property
    def noise(self) -> None:
        """No learned noise (see the class description)."""
        return None

    @property
    def num_replicas(self) -> int:
        """``K``."""
        return self.replicas.num_replicas

    def num_params(self) -> int:
        """The length of the surrogate's parameter vector (per replica)."""
        return self.replicas.model.num_params()

    @torch.no_grad()
    def parameter_moments(self) -> tuple[Tensor, Tensor]:
        """The mixture's mean and standard deviation of each parameter, exactly: the
        mean of the replicas' means, and the root of the mean of their second moments
        less the mean squared.

        Returns:
            ``(mean, std)``, each shape ``(P,)``.
        """
        r = self.replicas
        index = r.model.mean_field.stochastic_index
        var = torch.zeros_like(r.loc).index_copy_(1, index, (2 * r.log_std).exp())  # (K, P)
        mean = r.loc.mean(0)
        second = (var + r.loc.square()).mean(0)
        return mean, (second - mean.square()).clamp_min(0).sqrt()

    def assignment(self, num_samples: int, device: torch.device | None = None) -> Tensor:
        """The replica of each of ``num_samples`` draws, ``(S,)`` long, in blocks."""
        return torch.arange(num_samples, device=device) * self.num_replicas // num_samples

    @torch.no_grad()
    def sample_parameters(
        self, num_samples: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """``S`` draws of the mixture, shape ``(S, P)``: replica ``k``'s block drawn from
        its own posterior (see the class description)."""
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        r = self.replicas
        mf = r.model.mean_field
        loc, log_std = r.loc, r.log_std
        noise = torch.randn(
            (num_samples, log_std.shape[1]), dtype=loc.dtype, device=loc.device, generator=generator
        )
        which = self.assignment(num_samples, loc.device)
        return torch.index_add(loc[which], 1, mf.stochastic_index, noise * log_std[which].exp())

    def predict(self, x: Tensor, params: Tensor) -> Tensor:
        """The surrogate at the draws, every block per draw: ``(S, B, O)``."""
        sur = self.surrogate_model
        params = sur.check_inputs(x, params)
        return sur.evaluate(x, params)

    def forward(self, x: Tensor, num_samples: int = 1) -> Tensor:
        """``predict(x, sample_parameters(num_samples))``."""
        return self.predict(x, self.sample_parameters(num_samples))
