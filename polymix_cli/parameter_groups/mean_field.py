"""Flat storage for a mean-field layout: every group deterministic or i.i.d. Gaussian
with an i.i.d. Gaussian prior.

All locations live in one ``(P,)`` parameter and all log standard deviations in one
``(K,)`` parameter, so a draw of the whole vector is one operation, the distribution
loss is one closed-form expression, and the optimiser updates two tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..priors import IIDGaussianPrior
from .base import ParameterGroup
from .groups import DeterministicGroup, IIDGaussianGroup

__all__ = ["MeanFieldParameters", "is_mean_field"]


def is_mean_field(groups: Sequence[ParameterGroup]) -> bool:
    """Whether every group can be packed into :class:`MeanFieldParameters`.

    Args:
        groups: Parameter groups.

    Returns:
        ``True`` if every group is exactly a
        :class:`~polymix_cli.parameter_groups.DeterministicGroup` or
        :class:`~polymix_cli.parameter_groups.IIDGaussianGroup` (not a subclass) whose
        prior is exactly an :class:`~polymix_cli.priors.IIDGaussianPrior`.
    """
    return all(
        type(g) in (DeterministicGroup, IIDGaussianGroup) and type(g.prior) is IIDGaussianPrior
        for g in groups
    )


class MeanFieldParameters(nn.Module):
    """The packed tensors of mean-field groups, concatenated in vector order.

    ``loc`` ``(P,)``: the deterministic values and Gaussian means; ``log_std`` ``(K,)``: the
    Gaussian log standard deviations, at positions ``stochastic_index`` ``(K,)`` of the
    vector. Packing takes the groups' current values; afterwards the groups' attributes
    (``value``, ``mean``, ``log_std``) are slices of these two parameters.

    Args:
        groups: The groups, in vector order; :func:`is_mean_field` must hold.

    Raises:
        ValueError: If the groups are not a mean-field layout.
    """

    def __init__(self, groups: Sequence[ParameterGroup]):
        super().__init__()
        if not is_mean_field(groups):
            raise ValueError(
                "MeanFieldParameters needs deterministic or i.i.d. Gaussian groups "
                "with i.i.d. Gaussian priors"
            )
        locs, log_stds, index, prior_loc, prior_scale, stochastic_scale = [], [], [], [], [], []
        const, offset = 0.0, 0
        half_log_2pi = 0.5 * math.log(2 * math.pi)
        for g in groups:
            n = g.num_params()
            loc, scale = g.prior.loc.expand(n), g.prior.scale.expand(n)
            prior_loc.append(loc)
            prior_scale.append(scale)
            if isinstance(g, IIDGaussianGroup):
                locs.append(g.mean.detach())
                log_stds.append(g.log_std.detach())
                index.append(torch.arange(offset, offset + n))
                stochastic_scale.append(scale)
                # KL(N(m, s^2) || N(l, t^2)) = log t - log s + (s^2 + (m - l)^2) / (2 t^2) - 1/2
                const += float(scale.log().sum()) - 0.5 * n
            else:
                locs.append(g.value.detach())
                # -log N(v; l, t^2) = log t + log sqrt(2 pi) + (v - l)^2 / (2 t^2)
                const += float(scale.log().sum()) + half_log_2pi * n
            offset += n
        self.loc = nn.Parameter(torch.cat(locs).clone())
        if log_stds:
            self.log_std = nn.Parameter(torch.cat(log_stds).clone())
        else:  # all deterministic: nothing to learn here
            self.register_buffer("log_std", torch.zeros(0), persistent=False)
        self.register_buffer(
            "stochastic_index",
            torch.cat(index) if index else torch.zeros(0, dtype=torch.long),
            persistent=False,
        )
        self.register_buffer("prior_loc", torch.cat(prior_loc).clone(), persistent=False)
        self.register_buffer("prior_inv_scale", 1.0 / torch.cat(prior_scale), persistent=False)
        inv = 1.0 / torch.cat(stochastic_scale) if stochastic_scale else torch.zeros(0)
        self.register_buffer("stochastic_inv_scale", inv, persistent=False)
        self.loss_const = const
        self._bind(groups)

    def _bind(self, groups: Sequence[ParameterGroup]) -> None:
        offset, k = 0, 0
        for g in groups:
            n = g.num_params()
            a, b, c, d = offset, offset + n, k, k + n
            if isinstance(g, IIDGaussianGroup):
                g.pack({"mean": (self, "loc", a, b), "log_std": (self, "log_std", c, d)})
                k += n
            else:
                g.pack({"value": (self, "loc", a, b)})
            offset += n

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw parameter vectors: ``loc`` plus scaled noise at the stochastic entries.

        Args:
            num_samples: The number of draws ``S``.
            generator: The random generator of the draws (``None``: torch's global one).

        Returns:
            The draws, shape ``(S, P)``.
        """
        loc = self.loc
        noise = torch.randn(
            (num_samples, self.log_std.shape[0]),
            dtype=loc.dtype,
            device=loc.device,
            generator=generator,
        )
        return _Draw.apply(loc, self.log_std, noise, self.stochastic_index)

    def sample_with_loss(
        self, num_samples: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """:meth:`sample` and :meth:`distribution_loss` as one autograd node.

        A training step needs both; sharing them saves operations.

        Args:
            num_samples: The number of draws ``S``.
            generator: The random generator of the draws (``None``: torch's global one).

        Returns:
            The draws, shape ``(S, P)``, and the loss, a scalar (0-dim tensor).
        """
        return _DrawWithLoss.apply(*self._draw_inputs(num_samples, generator))

    def _draw_inputs(self, num_samples: int, generator: torch.Generator | None) -> tuple:
        """The arguments of :func:`draw_with_loss`, with fresh standard normal noise."""
        loc = self.loc
        noise = torch.randn(
            (num_samples, self.log_std.shape[0]),
            dtype=loc.dtype,
            device=loc.device,
            generator=generator,
        )
        return (
            loc,
            self.log_std,
            noise,
            self.stochastic_index,
            self.prior_loc,
            self.prior_inv_scale,
            self.stochastic_inv_scale,
            self.loss_const,
        )

    @torch.no_grad()
    def draw_with_loss_terms(
        self, num_samples: int
    ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor]]:
        """:meth:`sample_with_loss` without autograd, plus what :meth:`gradients` needs.

        For a step that computes its gradients by hand; draws from torch's global
        generator.

        Args:
            num_samples: The number of draws ``S``.

        Returns:
            ``(theta, loss, saved)``: the draws ``(S, P)``, the loss (0-dim) and the
            tensors :meth:`gradients` needs (see :func:`draw_with_loss`).
        """
        return draw_with_loss(*self._draw_inputs(num_samples, None))

    def gradients(
        self, grad: Tensor, grad_loss: Tensor, saved: tuple[Tensor, Tensor, Tensor]
    ) -> tuple[Tensor, Tensor | None]:
        """The gradients of ``loc`` and ``log_std`` from those of the draw and of the loss.

        Args:
            grad: The gradient with respect to the draws, shape ``(S, P)``.
            grad_loss: The gradient with respect to the loss, a 0-dim tensor.
            saved: The ``saved`` of :meth:`draw_with_loss_terms`.

        Returns:
            ``(grad_loc, grad_log_std)``: shapes ``(P,)`` and ``(K,)``; ``grad_log_std``
            is ``None`` when ``log_std`` is not learned.
        """
        return draw_with_loss_backward(
            grad, grad_loss, self.stochastic_index, saved, self.log_std.requires_grad
        )

    def distribution_loss(self) -> Tensor:
        """The sum of the groups' losses, in closed form.

        KL to the prior for the Gaussian groups plus ``-log prior`` of the deterministic
        values.

        Returns:
            The loss, a scalar (0-dim tensor).
        """
        return _Loss.apply(
            self.loc,
            self.log_std,
            self.prior_loc,
            self.prior_inv_scale,
            self.stochastic_inv_scale,
            self.loss_const,
        )


# Both functions below are one autograd node each with a hand-written backward: the
# per-step cost of a small model is the number of tensor operations, not arithmetic.


class _Draw(torch.autograd.Function):
    """``theta = loc + scatter(index, noise * exp(log_std))``, ``(S, P)``."""

    @staticmethod
    def forward(ctx, loc: Tensor, log_std: Tensor, noise: Tensor, index: Tensor) -> Tensor:
        scaled = noise * log_std.exp()
        ctx.save_for_backward(scaled, index)
        return torch.index_add(loc.expand(noise.shape[0], -1), 1, index, scaled)

    @staticmethod
    def backward(ctx, grad: Tensor):
        scaled, index = ctx.saved_tensors
        # d theta / d log_std = noise * exp(log_std) = scaled, at the stochastic columns
        grad_log_std = (
            (grad.index_select(1, index) * scaled).sum(0) if ctx.needs_input_grad[1] else None
        )
        return grad.sum(0), grad_log_std, None, None


class _Loss(torch.autograd.Function):
    """``0.5 |z|^2 + 0.5 |exp(log_std) / t|^2 - sum(log_std) + const`` with
    ``z = (loc - prior_loc) / prior_scale``: the summed KL and negative log priors."""

    @staticmethod
    def forward(
        ctx,
        loc: Tensor,
        log_std: Tensor,
        prior_loc: Tensor,
        prior_inv_scale: Tensor,
        stochastic_inv_scale: Tensor,
        const: float,
    ) -> Tensor:
        z = (loc - prior_loc) * prior_inv_scale
        ratio = log_std.exp() * stochastic_inv_scale
        ctx.save_for_backward(z, prior_inv_scale, ratio)
        return 0.5 * (torch.dot(z, z) + torch.dot(ratio, ratio)) - log_std.sum() + const

    @staticmethod
    def backward(ctx, grad: Tensor):
        z, prior_inv_scale, ratio = ctx.saved_tensors
        grad_loc = grad * z * prior_inv_scale
        grad_log_std = grad * (ratio * ratio - 1.0) if ctx.needs_input_grad[1] else None
        return grad_loc, grad_log_std, None, None, None, None


def draw_with_loss(
    loc: Tensor,
    log_std: Tensor,
    noise: Tensor,
    index: Tensor,
    prior_loc: Tensor,
    prior_inv_scale: Tensor,
    stochastic_inv_scale: Tensor,
    const: float,
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor]]:
    """The draw and the distribution loss of packed mean-field groups, without autograd.

    Args:
        loc: The locations, shape ``(P,)``.
        log_std: The log standard deviations, shape ``(K,)``.
        noise: Standard normal noise, shape ``(S, K)``.
        index: The positions of the stochastic entries, shape ``(K,)``, long.
        prior_loc: The prior means, shape ``(P,)``.
        prior_inv_scale: The inverse prior standard deviations, shape ``(P,)``.
        stochastic_inv_scale: Those at the stochastic entries, shape ``(K,)``.
        const: The loss's constant term.

    Returns:
        ``(theta, loss, saved)``: the draws ``(S, P)``, the loss (a scalar), and what
        :func:`draw_with_loss_backward` needs: ``(scaled noise (S, K), dloss/dloc (P,),
        dloss/dlog_std (K,))``.
    """
    std = log_std.exp()
    scaled = noise * std
    theta = torch.index_add(loc.expand(noise.shape[0], -1), 1, index, scaled)
    z = (loc - prior_loc) * prior_inv_scale
    ratio = std * stochastic_inv_scale
    # 0.5 |z|^2 + sum(0.5 ratio^2 - log_std) + const
    loss = (
        torch.dot(z, z)
        .mul_(0.5)
        .sub_(torch.addcmul(log_std, ratio, ratio, value=-0.5).sum())
        .add_(const)
    )
    return theta, loss, (scaled, z * prior_inv_scale, torch.mul(ratio, ratio).sub_(1.0))


def draw_with_loss_backward(
    grad: Tensor,
    grad_loss: Tensor,
    index: Tensor,
    saved: tuple[Tensor, Tensor, Tensor],
    log_std_grad: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """The gradients of ``loc`` and ``log_std`` from those of the draw and of the loss.

    Args:
        grad: The gradient with respect to the draws, shape ``(S, P)``.
        grad_loss: The gradient with respect to the loss, a 0-dim tensor.
        index: The positions of the stochastic entries, shape ``(K,)``, long.
        saved: The ``saved`` of :func:`draw_with_loss`.
        log_std_grad: Whether to compute the gradient of ``log_std``.

    Returns:
        ``(grad_loc, grad_log_std)``: shapes ``(P,)`` and ``(K,)``; ``grad_log_std`` is
        ``None`` unless ``log_std_grad``.
    """
    scaled, dz, dratio = saved
    grad_loc = torch.addcmul(grad.sum(0), grad_loss, dz)
    grad_log_std = None
    if (
        log_std_grad
    ):  # d theta / d log_std = noise * exp(log_std) = scaled, at the stochastic columns
        grad_log_std = torch.addcmul(
            (grad.index_select(1, index) * scaled).sum(0), grad_loss, dratio
        )
    return grad_loc, grad_log_std


class _DrawWithLoss(torch.autograd.Function):
    """:class:`_Draw` and :class:`_Loss` in one node: ``(theta (S, P), loss ())``."""

    @staticmethod
    def forward(
        ctx,
        loc: Tensor,
        log_std: Tensor,
        noise: Tensor,
        index: Tensor,
        prior_loc: Tensor,
        prior_inv_scale: Tensor,
        stochastic_inv_scale: Tensor,
        const: float,
    ) -> tuple[Tensor, Tensor]:
        theta, loss, saved = draw_with_loss(
            loc, log_std, noise, index, prior_loc, prior_inv_scale, stochastic_inv_scale, const
        )
        ctx.save_for_backward(index, *saved)
        return theta, loss

    @staticmethod
    def backward(ctx, grad: Tensor, grad_loss: Tensor):
        index, *saved = ctx.saved_tensors
        grad_loc, grad_log_std = draw_with_loss_backward(
            grad, grad_loss, index, tuple(saved), ctx.needs_input_grad[1]
        )
        return grad_loc, grad_log_std, None, None, None, None, None, None
