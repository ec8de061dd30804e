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

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .stochastic_model import StochasticModel
from .surrogate_models import MixtureOfExperts, NeuralNetwork, PolynomialChaosExpansion
from .surrogate_models.pce import expand_in_basis

__all__ = ["AnalyticStep", "unsupported_reason"]

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

    def hidden_backward(self, hs: list[Tensor], grad_h: Tensor, loc: Tensor) -> Tensor:
        """Back-propagate ``grad_h`` ``(B, width)`` through the hidden layers: the gradient
        of the locations ``(P,)``, zero outside the hidden layers' weights and biases."""
        grad_loc = torch.zeros_like(loc)
        for layer in range(len(self.hidden) - 1, -1, -1):
            w, b, fan_in, fan_out = self.hidden[layer]
            grad_pre = self.activation_backward(grad_h, hs[layer + 1])  # (B, fan_out)
            torch.mm(hs[layer].T, grad_pre, out=grad_loc[w].view(fan_in, fan_out))
            torch.sum(grad_pre, 0, out=grad_loc[b])
            if layer:
                grad_h = torch.mm(grad_pre, loc[w].view(fan_in, fan_out).T)
        return grad_loc


class _Expansions:
    """``M`` expansions with the same basis terms in columns ``[0, M * T * O)``: forward to
    ``(S, M, O, B)`` and back to the coefficients."""

    def __init__(self, pce: PolynomialChaosExpansion, num: int):
        self.pce, self.num, self.terms, self.outputs = pce, num, pce.num_terms, pce.num_outputs
        self.columns = num * self.terms * self.outputs

    def forward(self, x: Tensor, theta: Tensor) -> Tensor:
        self.phi = self.pce.basis_matrix(x)  # (B, T), cached for the full data
        return expand_in_basis(self.phi, theta[:, : self.columns], self.num, self.terms, self.outputs)

    def backward(self, grad: Tensor) -> Tensor:
        """``(S, M, O, B)`` -> the coefficients' gradient ``(S, M * T * O)``, each ``(T, O)`` row-major."""
        S, M, T, O = grad.shape[0], self.num, self.terms, self.outputs
        grad_coeffs = torch.mm(grad.reshape(S * M * O, -1), self.phi)
        return grad_coeffs.view(S, M, O, T).transpose(2, 3).reshape(S, M * T * O)


class _Head:
    """The surrogate from the draws to its output ``(S, O, B)`` and back to the draws'
    gradient ``(S, P)``, the gradient of deterministic hidden layers going straight to the
    locations. ``forward`` keeps what ``backward`` needs (one step at a time)."""

    def forward(self, x: Tensor, theta: Tensor, loc: Tensor) -> Tensor:
        raise NotImplementedError

    def backward(self, grad_out: Tensor, loc: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(grad_theta (S, P), grad_loc of the hidden layers (P,) or None)``."""
        raise NotImplementedError


class _ExpansionHead(_Head):
    def __init__(self, pce: PolynomialChaosExpansion):
        self.expansions = _Expansions(pce, 1)

    def forward(self, x, theta, loc):
        return self.expansions.forward(x, theta)[:, 0]

    def backward(self, grad_out, loc):
        return self.expansions.backward(grad_out.unsqueeze(1)), None


class _NetworkHead(_Head):
    """A network with deterministic hidden layers (a Bayesian last layer)."""

    def __init__(self, net: NeuralNetwork):
        self.net = _Network(net, 0)
        self._zeros = _Zeros()

    def forward(self, x, theta, loc):
        self.hs = self.net.features(x, loc)
        self.rows = theta[:, self.net.rows]
        out, self.weight_t = self.net.output(self.hs[-1], self.rows)
        return out

    def backward(self, grad_out, loc):
        grad_rows, grad_h = self.net.output_backward(grad_out, self.hs[-1], self.weight_t)
        grad_theta = torch.cat([self._zeros(grad_rows, self.net.hidden_columns), grad_rows], 1)
        return grad_theta, self.net.hidden_backward(self.hs, grad_h, loc)


class _MixtureHead(_Head):
    """Same-basis expansions blended by a gate with deterministic hidden layers: a sigmoid
    of the logit difference for two experts, a softmax otherwise."""

    def __init__(self, moe: MixtureOfExperts):
        self.experts = _Expansions(moe.experts[0], moe.num_experts)
        self.gate = moe.gating_network
        self.net = _Network(self.gate, self.experts.columns)
        self._zeros = _Zeros()

    def forward(self, x, theta, loc):
        experts = self.experts.forward(x, theta)  # (S, M, O, B)
        self.hs = self.net.features(x, loc)
        self.rows = rows = theta[:, self.net.rows]
        if self.experts.num == 2:  # softmax over two = sigmoid of the logit difference
            self.diff_map, diff_const = self.gate._difference_map(x)
            self.g = torch.addmm(diff_const, self.hs[-1], self.diff_map)  # (B, 2 width + 2)
            self.p1 = torch.sigmoid(torch.mm(rows, self.g.T))  # (S, B)
            f0, f1 = experts.unbind(1)
            self.diff = f1 - f0
            return torch.addcmul(f0, self.p1.unsqueeze(1), self.diff)
        logits, self.weight_t = self.net.output(self.hs[-1], rows)
        self.probs = torch.softmax(logits, dim=1)  # (S, M, B)
        self.expert_out = experts
        return (self.probs.unsqueeze(2) * experts).sum(1)

    def backward(self, grad_out, loc):
        if self.experts.num == 2:
            grad_f1 = grad_out * self.p1.unsqueeze(1)
            grad_experts = torch.stack([grad_out - grad_f1, grad_f1], 1)  # (S, 2, O, B)
            grad_z = torch.ops.aten.sigmoid_backward(_sum_dim(grad_out * self.diff, 1), self.p1)  # (S, B)
            grad_rows = torch.mm(grad_z, self.g)  # (S, 2 width + 2)
            grad_h = torch.mm(torch.mm(grad_z.T, self.rows), self.diff_map.T)  # (B, width)
        else:
            probs = self.probs
            grad_experts = probs.unsqueeze(2) * grad_out.unsqueeze(1)  # (S, M, O, B)
            grad_probs = _sum_dim(grad_out.unsqueeze(1) * self.expert_out, 2)  # (S, M, B)
            grad_logits = torch._softmax_backward_data(grad_probs, probs, 1, probs.dtype)
            grad_rows, grad_h = self.net.output_backward(grad_logits, self.hs[-1], self.weight_t)
        pieces = [self.experts.backward(grad_experts), self._zeros(grad_rows, self.net.hidden_columns), grad_rows]
        return torch.cat(pieces, 1), self.net.hidden_backward(self.hs, grad_h, loc)


class _Zeros:
    """A reused ``(S, n)`` tensor of zeros: the draws' gradient at deterministic hidden layers."""

    def __init__(self):
        self.zeros: Tensor | None = None

    def __call__(self, like: Tensor, n: int) -> Tensor:
        z = self.zeros
        if z is None or z.shape != (like.shape[0], n) or z.dtype != like.dtype or z.device != like.device:
            z = self.zeros = like.new_zeros(like.shape[0], n)
        return z


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
        self.head: _Head = (_MixtureHead(sur) if isinstance(sur, MixtureOfExperts)
                            else _NetworkHead(sur) if isinstance(sur, NeuralNetwork) else _ExpansionHead(sur))
        self._weight_tensor: Tensor | None = None

    def _weight(self, like: Tensor) -> Tensor:
        """``weight_factor`` as a 0-dim tensor: the gradient of the total with respect to the
        distribution loss."""
        w = self._weight_tensor
        if w is None or w.dtype != like.dtype or w.device != like.device:
            w = self._weight_tensor = torch.tensor(self.weight_factor, dtype=like.dtype, device=like.device)
        return w

    def _data_term(self, resid: Tensor, factor: float) -> tuple[Tensor, Tensor, Tensor | None]:
        """From the residuals ``(S, O, B)``: the data term, its gradient with respect to the
        output and (``gaussian_nll``) to the noise's ``log_std`` ``(O,)``."""
        if not self.nll:
            flat = resid.reshape(-1)
            return torch.dot(flat, flat) * factor, resid * (2 * factor), None
        noise = self.model.noise
        sq = resid.square().sum((0, 2))  # (O,)
        count = resid.shape[0] * resid.shape[2]
        data = noise.nll_from_squared_errors(sq, count) * factor
        inv_var = torch.exp(-2 * noise.log_std)  # (O,)
        return data, resid * (inv_var * factor).unsqueeze(-1), (count - sq * inv_var) * factor

    @torch.no_grad()
    def __call__(self, x: Tensor, y: Tensor, scale: float) -> Tensor:
        mf, wf = self.mf, self.weight_factor
        theta, dist, saved = mf.draw_with_loss_terms(self.num_samples)  # the same random numbers as autograd's
        resid = self.head.forward(x, theta, mf.loc) - y.T  # (S, O, B)
        data, grad_out, noise_grad = self._data_term(resid, scale / self.num_samples)
        grad_theta, grad_hidden = self.head.backward(grad_out, mf.loc)
        grad_loc, grad_log_std = mf.gradients(grad_theta, self._weight(grad_theta), saved)
        mf.loc.grad = grad_loc if grad_hidden is None else grad_loc.add_(grad_hidden)
        if grad_log_std is not None:
            mf.log_std.grad = grad_log_std
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
