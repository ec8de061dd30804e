"""A training step with hand-derived gradients for the most common models.

The cost of a training step of a small model is the number of tensor operations, not
arithmetic: autograd records a graph node per operation and replays it backwards, and
the general path (any surrogate, any parameter group) needs views, checks and hints
around each one. For the models most runs use, this module computes the objective and
its gradient directly, with fewer operations and no autograd graph:

- the layout is mean-field (:class:`~polymix_cli.parameter_groups.mean_field.MeanFieldParameters`:
  every group deterministic or i.i.d. Gaussian with an i.i.d. Gaussian prior);
- the surrogate is
  - a :class:`PolynomialChaosExpansion`,
  - a :class:`NeuralNetwork` whose hidden layers are deterministic (a Bayesian last layer), or
  - a :class:`MixtureOfExperts` of expansions with the same basis terms whose gate has
    deterministic hidden layers (the gate's output layer may be stochastic);
  with hidden activations ``tanh``, ``sigmoid`` or ``relu``;
- the data term is ``mse_sum`` or ``gaussian_nll``.

It draws the same random numbers as the general path, so a step gives the same losses and
gradients up to floating-point rounding (tested against autograd). Anything else falls
back to autograd; :func:`unsupported_reason` says why.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .stochastic_model import StochasticModel
from .surrogate_models import MixtureOfExperts, NeuralNetwork, PolynomialChaosExpansion
from .surrogate_models.pce import expand_in_basis

__all__ = ["AnalyticStep", "unsupported_reason"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)

# activation -> its backward from the activation's output: (grad_out, out) -> grad_in
_ACTIVATION_BACKWARD: dict[Callable, Callable[[Tensor, Tensor], Tensor]] = {
    torch.tanh: torch.ops.aten.tanh_backward,
    torch.sigmoid: torch.ops.aten.sigmoid_backward,
    F.relu: lambda grad, out: torch.ops.aten.threshold_backward(grad, out, 0),
}


def _sum_dim(t: Tensor, dim: int) -> Tensor:
    """``t.sum(dim)``; a view when that dimension has size one (a reduction over a single
    element still writes and reads a whole new tensor)."""
    return t.squeeze(dim) if t.shape[dim] == 1 else t.sum(dim)


def _network_reason(model: StochasticModel, net: NeuralNetwork, prefix: str) -> str | None:
    if net.activation not in _ACTIVATION_BACKWARD:
        return f"the activation {getattr(net.activation, '__name__', net.activation)!r}"
    hidden = [prefix + b.name for b in net._blocks[:-2]]
    if not all(name in model.constant_blocks for name in hidden):
        return "stochastic hidden layers"
    return None


def unsupported_reason(model: StochasticModel, loss: str) -> str | None:
    """``None`` if :class:`AnalyticStep` can train ``model`` with data term ``loss``, else
    why not (a short phrase)."""
    if loss not in ("mse_sum", "gaussian_nll"):
        return f"the data term {loss!r}"
    if model.mean_field is None:
        return "a layout that is not mean-field"
    sur = model.surrogate_model
    if type(sur) is PolynomialChaosExpansion:
        return None
    if type(sur) is NeuralNetwork:
        return _network_reason(model, sur, "")
    if type(sur) is not MixtureOfExperts:
        return f"a {type(sur).__name__} surrogate"
    if not sur._shared_pce or type(sur.experts[0]) is not PolynomialChaosExpansion:
        return "experts that are not expansions with the same basis terms"
    return _network_reason(model, sur.gating_network, "gate.")


class _Network:
    """A network's deterministic hidden layers and its per-draw output layer, with their
    backward passes, at column ``offset`` of the parameter vector."""

    def __init__(self, net: NeuralNetwork, offset: int):
        blocks = net._blocks
        # hidden layers: (weight columns, bias columns, fan_in, fan_out)
        self.hidden = [(slice(offset + w.start, offset + w.stop), slice(offset + b.start, offset + b.stop), *w.shape)
                       for w, b in zip(blocks[:-2:2], blocks[1:-2:2])]
        self.hidden_columns = blocks[-2].start  # how many, from offset
        self.rows = slice(offset + blocks[-2].start, offset + blocks[-1].stop)  # output weight, then bias
        self.width, self.outputs = blocks[-2].shape
        self.activation, self.activation_backward = net.activation, _ACTIVATION_BACKWARD[net.activation]

    def features(self, x: Tensor, loc: Tensor) -> list[Tensor]:
        """``[x, h_1, ..., h_depth]``, each ``(B, .)``: the same in every draw."""
        hs = [x]
        for w, b, fan_in, fan_out in self.hidden:
            hs.append(self.activation(torch.addmm(loc[b], hs[-1], loc[w].view(fan_in, fan_out))))
        return hs

    def output(self, h: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        """The output layer for every draw's ``rows`` ``(S, width * K + K)``: ``(S, K, B)``,
        and the weights as ``(S * K, width)`` for :meth:`output_backward`."""
        S, H, K = rows.shape[0], self.width, self.outputs
        weight_t = rows[:, : H * K].view(S, H, K).transpose(1, 2).reshape(S * K, H)
        return torch.mm(weight_t, h.T).view(S, K, -1).add_(rows[:, H * K :].unsqueeze(-1)), weight_t

    def output_backward(self, grad: Tensor, h: Tensor, weight_t: Tensor) -> tuple[Tensor, Tensor]:
        """From the gradient ``(S, K, B)`` of :meth:`output`: that of the rows ``(S, width * K + K)``
        and of ``h`` ``(B, width)``."""
        S, H, K = grad.shape[0], self.width, self.outputs
        flat = grad.reshape(S * K, -1)
        grad_w = torch.mm(flat, h).view(S, K, H).transpose(1, 2).reshape(S, H * K)
        return torch.cat([grad_w, grad.sum(2)], 1), torch.mm(flat.T, weight_t)

    def hidden_backward(self, hs: list[Tensor], grad_h: Tensor, loc: Tensor, grad_loc: Tensor) -> None:
        """Back-propagate ``grad_h`` ``(B, width)`` through the hidden layers, adding the
        weight and bias gradients to ``grad_loc`` in place."""
        for layer in range(len(self.hidden) - 1, -1, -1):
            w, b, fan_in, fan_out = self.hidden[layer]
            grad_pre = self.activation_backward(grad_h, hs[layer + 1])  # (B, fan_out)
            grad_loc[w].add_(torch.mm(hs[layer].T, grad_pre).view(-1))
            grad_loc[b].add_(grad_pre.sum(0))
            if layer:
                grad_h = torch.mm(grad_pre, loc[w].view(fan_in, fan_out).T)


class AnalyticStep:
    """The objective ``data + weight_factor * distribution`` of one step, evaluated with
    its gradient written to the parameters' ``.grad`` (no autograd graph).

    ``__call__(x, y, scale)``: ``x`` ``(B, num_inputs)``, ``y`` ``(B, num_outputs)`` in the
    model's dtype and device, ``scale`` the factor of the data term (``N / B`` for a
    mini-batch). Returns the detached losses ``(3,)``: data, distribution, total.
    """

    def __init__(self, model: StochasticModel, loss: str, num_samples: int, weight_factor: float):
        reason = unsupported_reason(model, loss)
        if reason is not None:
            raise ValueError(f"AnalyticStep does not support {reason}")
        self.model, self.mf, self.nll = model, model.mean_field, loss == "gaussian_nll"
        self.num_samples, self.weight_factor = num_samples, float(weight_factor)
        sur = model.surrogate_model
        self.pce: PolynomialChaosExpansion | None = None
        self.net: _Network | None = None
        self.num_experts, self.expert_columns = 1, 0
        if isinstance(sur, MixtureOfExperts):
            self.pce, self.num_experts = sur.experts[0], sur.num_experts
            self.expert_columns = self.num_experts * self.pce.num_terms * self.pce.num_outputs
            self.net = _Network(sur.gating_network, self.expert_columns)
            self.gate = sur.gating_network
        elif isinstance(sur, NeuralNetwork):
            self.net = _Network(sur, 0)
        else:
            self.pce = sur
            self.expert_columns = sur.num_params()
        self._zeros: Tensor | None = None  # (S, hidden columns) of zeros, reused

    def _draw(self, num_samples: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(theta (S, P), scaled noise (S, K), std (K,))``; the same random numbers as
        :meth:`MeanFieldParameters.sample_with_loss`."""
        mf = self.mf
        loc, log_std = mf.loc, mf.log_std
        noise = torch.randn((num_samples, log_std.shape[0]), dtype=loc.dtype, device=loc.device)
        std = log_std.exp()
        scaled = noise * std
        return torch.index_add(loc.expand(num_samples, -1), 1, mf.stochastic_index, scaled), scaled, std

    def _hidden_zeros(self, like: Tensor) -> Tensor:
        """Zeros ``(S, hidden columns)``: the draws' gradient at the deterministic hidden layers."""
        zeros, n = self._zeros, self.net.hidden_columns
        if zeros is None or zeros.shape != (like.shape[0], n) or zeros.dtype != like.dtype \
                or zeros.device != like.device:
            zeros = self._zeros = like.new_zeros(like.shape[0], n)
        return zeros

    @torch.no_grad()
    def __call__(self, x: Tensor, y: Tensor, scale: float) -> Tensor:
        S, M, mf, net = self.num_samples, self.num_experts, self.mf, self.net
        theta, scaled, std = self._draw(S)

        # forward to the output (S, O, B)
        if self.pce is not None:
            T, O = self.pce.num_terms, self.pce.num_outputs
            phi = self.pce.basis_matrix(x)  # (B, T), cached for the full data
            experts = expand_in_basis(phi, theta[:, : self.expert_columns], M, T, O)  # (S, M, O, B)
        if net is not None:
            hs = net.features(x, mf.loc)
            rows = theta[:, net.rows]
        if net is None:  # an expansion
            out = experts[:, 0]
        elif self.pce is None:  # a network
            out, weight_t = net.output(hs[-1], rows)
        elif M == 2:  # softmax over two = sigmoid of the logit difference
            diff_map, diff_const = self.gate._difference_map(x)
            g = torch.addmm(diff_const, hs[-1], diff_map)  # (B, 2 width + 2)
            p1 = torch.sigmoid(torch.mm(rows, g.T))  # (S, B)
            f0, f1 = experts.unbind(1)
            diff = f1 - f0
            out = torch.addcmul(f0, p1.unsqueeze(1), diff)
        else:
            logits, weight_t = net.output(hs[-1], rows)
            probs = torch.softmax(logits, dim=1)  # (S, M, B)
            out = (probs.unsqueeze(2) * experts).sum(1)
        resid = out - y.T  # (S, O, B)

        # the data term and its gradient with respect to the output
        factor = scale / S
        if self.nll:
            log_sigma = self.model.noise.log_std
            inv_var = torch.exp(-2 * log_sigma)  # (O,)
            sq = resid.square().sum((0, 2))  # (O,)
            count = S * resid.shape[2]
            data = (0.5 * torch.dot(sq, inv_var) + count * (log_sigma.sum() + log_sigma.shape[0] * _HALF_LOG_2PI)) \
                * factor
            grad_out = resid * (inv_var * factor).unsqueeze(-1)
            noise_grad = (count - sq * inv_var) * factor
        else:
            flat = resid.reshape(-1)
            data = torch.dot(flat, flat) * factor
            grad_out = resid * (2 * factor)

        # backward to the gradient of every entry of theta (S, P) and of the hidden features
        pieces = []
        if net is None:
            grad_experts = grad_out.unsqueeze(1)
        elif self.pce is None:
            grad_rows, grad_h = net.output_backward(grad_out, hs[-1], weight_t)
        elif M == 2:
            grad_f1 = grad_out * p1.unsqueeze(1)
            grad_experts = torch.stack([grad_out - grad_f1, grad_f1], 1)  # (S, 2, O, B)
            grad_p1 = _sum_dim(grad_out * diff, 1)  # (S, B)
            grad_z = torch.ops.aten.sigmoid_backward(grad_p1, p1)
            grad_rows = torch.mm(grad_z, g)  # (S, 2 width + 2)
            grad_h = torch.mm(torch.mm(grad_z.T, rows), diff_map.T)  # (B, width)
        else:
            grad_experts = probs.unsqueeze(2) * grad_out.unsqueeze(1)  # (S, M, O, B)
            grad_probs = _sum_dim(grad_out.unsqueeze(1) * experts, 2)  # (S, M, B)
            grad_logits = torch._softmax_backward_data(grad_probs, probs, 1, probs.dtype)
            grad_rows, grad_h = net.output_backward(grad_logits, hs[-1], weight_t)
        if self.pce is not None:  # (S, M, O, B) -> coefficients (S, M * T * O), row-major (T, O)
            grad_coeffs = torch.mm(grad_experts.reshape(S * M * O, -1), phi)
            pieces.append(grad_coeffs.view(S, M, O, T).transpose(2, 3).reshape(S, M * T * O))
        if net is not None:
            pieces += [self._hidden_zeros(theta), grad_rows]
        grad_theta = pieces[0] if len(pieces) == 1 else torch.cat(pieces, 1)

        # the distribution loss (closed form, as MeanFieldParameters) and the total gradients
        wf = self.weight_factor
        z = (mf.loc - mf.prior_loc) * mf.prior_inv_scale
        ratio = std * mf.stochastic_inv_scale
        dist = torch.dot(z, z).mul_(0.5).sub_(torch.addcmul(mf.log_std, ratio, ratio, value=-0.5).sum()) \
            .add_(mf.loss_const)
        grad_loc = torch.add(grad_theta.sum(0), z * mf.prior_inv_scale, alpha=wf)
        if net is not None:
            net.hidden_backward(hs, grad_h, mf.loc, grad_loc)
        mf.loc.grad = grad_loc
        if mf.log_std.requires_grad:
            grad_log_std = (grad_theta.index_select(1, mf.stochastic_index) * scaled).sum(0)
            mf.log_std.grad = torch.add(grad_log_std, ratio.square().sub_(1.0), alpha=wf)
        if self.nll:
            noise = self.model.noise
            if noise.prior is not None:  # a few elementwise operations on (O,): autograd is fine
                with torch.enable_grad():
                    prior = noise.distribution_loss()
                    (prior_grad,) = torch.autograd.grad(prior, noise.log_std)
                dist = dist + prior.detach()
                noise_grad = torch.add(noise_grad, prior_grad, alpha=wf)
            noise.log_std.grad = noise_grad
        return torch.stack([data, dist, torch.add(data, dist, alpha=wf)])
