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
  - a :class:`NeuralNetwork` (any of its layers random or deterministic), or
  - a :class:`MixtureOfExperts` of expansions with the same basis terms (any gate layer
    random or deterministic);
  with hidden activations ``tanh``, ``sigmoid`` or ``relu``;
- the data term is ``mse_sum`` or ``gaussian_nll``.

It draws the same random numbers as the general path, so a step gives the same losses and
gradients up to floating-point rounding (tested against autograd). Anything else falls
back to autograd; :func:`unsupported_reason` says why.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from polymix_cli.replicas import Replicas
from polymix_cli.stochastic_model import StochasticModel
from polymix_cli.surrogate_models import MixtureOfExperts, NeuralNetwork, PolynomialChaosExpansion
from polymix_cli.surrogate_models.pce import expand_in_basis

__all__ = ["AnalyticStep", "ReplicaStep", "unsupported_reason"]

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


def _activation_reason(net: NeuralNetwork) -> str | None:
    if net.activation not in _ACTIVATION_BACKWARD:
        return f"the activation {getattr(net.activation, '__name__', net.activation)!r}"
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
        return _activation_reason(sur)
    if type(sur) is not MixtureOfExperts:
        return f"a {type(sur).__name__} surrogate"
    if not sur.experts_share_basis or type(sur.experts[0]) is not PolynomialChaosExpansion:
        return "experts that are not expansions with the same basis terms"
    return _activation_reason(sur.gating_network)


@dataclass(frozen=True)
class _Layer:
    """A dense layer ``h @ W + b``: the columns of ``W`` ``(fan_in, fan_out)`` and ``b`` in
    the parameter vector, and whether its values differ between draws."""

    w: slice
    b: slice
    fan_in: int
    fan_out: int
    per_draw: bool


class _Network:
    """A network's layers at column ``offset`` of the parameter vector, forward and back.

    Activations the same in every draw are laid out ``(B, features)``; from the first layer
    with random parameters on they are ``(S, features, B)``, so the output layer gives
    ``(S, outputs, B)`` directly. ``per_draw_output`` takes the output layer's values from
    the draws even where they are deterministic (the gate's, whose logits are per draw)."""

    def __init__(
        self,
        net: NeuralNetwork,
        offset: int,
        constant: frozenset[str],
        prefix: str,
        per_draw_output: bool = False,
    ):
        self.layers = [
            _Layer(
                slice(offset + w.start, offset + w.stop),
                slice(offset + b.start, offset + b.stop),
                *w.shape,
                per_draw=not {prefix + w.name, prefix + b.name} <= constant,
            )
            for w, b in net.layer_blocks()
        ]
        if per_draw_output:
            self.layers[-1] = replace(self.layers[-1], per_draw=True)
        self.activation, self.activation_backward = (
            net.activation,
            _ACTIVATION_BACKWARD[net.activation],
        )
        self._zeros = _Zeros()

    @property
    def output_columns(self) -> slice:
        """The output layer's weight and bias columns (one contiguous range)."""
        return slice(self.layers[-1].w.start, self.layers[-1].b.stop)

    def forward(
        self, x: Tensor, theta: Tensor, loc: Tensor, layers: int | None = None
    ) -> list[Tensor]:
        """``[x, a_1, ..., a_L]`` through the first ``layers`` layers (default: all; hidden
        layers activated, the output layer not). Keeps what :meth:`backward` needs."""
        acts, self.weights = [x], []
        for k, layer in enumerate(self.layers[:layers]):
            out, weight = self._affine(layer, acts[-1], theta, loc)
            self.weights.append(weight)
            acts.append(self.activation(out) if k < len(self.layers) - 1 else out)
        return acts

    @staticmethod
    def _affine(layer: _Layer, h: Tensor, theta: Tensor, loc: Tensor) -> tuple[Tensor, Tensor]:
        """The layer's output and the weights :meth:`_affine_backward` uses."""
        fan_in, fan_out = layer.fan_in, layer.fan_out
        if not layer.per_draw:
            weight = loc[layer.w].view(fan_in, fan_out)
            if h.dim() == 2:  # the same in every draw: (B, fan_out)
                return torch.addmm(loc[layer.b], h, weight), weight
            return torch.matmul(weight.T, h).add_(
                loc[layer.b].unsqueeze(-1)
            ), weight  # (S, fan_out, B)
        S = theta.shape[0]
        weight_t = (
            theta[:, layer.w].view(S, fan_in, fan_out).transpose(1, 2)
        )  # (S, fan_out, fan_in)
        bias = theta[:, layer.b].unsqueeze(-1)
        if (
            h.dim() == 2
        ):  # fold the draws into the rows of one product: (S * fan_out, fan_in) @ (fan_in, B)
            weight_t = weight_t.reshape(S * fan_out, fan_in)
            return torch.mm(weight_t, h.T).view(S, fan_out, -1).add_(bias), weight_t
        return torch.baddbmm(bias, weight_t, h), weight_t

    def backward(
        self,
        acts: list[Tensor],
        grad: Tensor,
        loc: Tensor,
        num_samples: int,
        layers: int | None = None,
    ) -> tuple[list[Tensor], Tensor]:
        """From the gradient of the last of ``acts`` (laid out as it), back through the
        first ``layers`` layers (default: all): the draws' gradient at those layers' columns
        ``[(S, n), ...]`` in column order, and the locations' gradient ``(P,)`` from the
        deterministic ones."""
        count = len(self.layers) if layers is None else layers
        grad_loc, pieces = torch.zeros_like(loc), []
        for k in range(count - 1, -1, -1):
            layer, h, out = self.layers[k], acts[k], acts[k + 1]
            if k < len(self.layers) - 1:
                grad = self.activation_backward(grad, out)
            pieces.append(
                self._affine_backward(layer, h, grad, self.weights[k], grad_loc, num_samples)
            )
            if k:
                grad = self._input_grad(layer, h, grad, self.weights[k])
        return pieces[::-1], grad_loc

    def _affine_backward(
        self,
        layer: _Layer,
        h: Tensor,
        grad: Tensor,
        weight: Tensor,
        grad_loc: Tensor,
        num_samples: int,
    ) -> Tensor:
        """The parameters' gradient: into ``grad_loc`` for a deterministic layer (its draws'
        gradient is then zero), else returned as ``(S, fan_in * fan_out + fan_out)``."""
        fan_in, fan_out = layer.fan_in, layer.fan_out
        if not layer.per_draw:
            if h.dim() == 2:  # h (B, fan_in), grad (B, fan_out)
                torch.mm(h.T, grad, out=grad_loc[layer.w].view(fan_in, fan_out))
                torch.sum(grad, 0, out=grad_loc[layer.b])
            else:  # h (S, fan_in, B), grad (S, fan_out, B)
                torch.mm(
                    h.transpose(0, 1).reshape(fan_in, -1),
                    grad.transpose(0, 1).reshape(fan_out, -1).T,
                    out=grad_loc[layer.w].view(fan_in, fan_out),
                )
                torch.sum(grad, (0, 2), out=grad_loc[layer.b])
            return self._zeros(num_samples, fan_in * fan_out + fan_out, grad)
        S = grad.shape[0]
        if h.dim() == 2:  # grad (S, fan_out, B) against h (B, fan_in)
            grad_w_t = torch.mm(grad.reshape(S * fan_out, -1), h).view(S, fan_out, fan_in)
        else:
            grad_w_t = torch.bmm(grad, h.transpose(1, 2))
        return torch.cat([grad_w_t.transpose(1, 2).reshape(S, fan_in * fan_out), grad.sum(2)], 1)

    @staticmethod
    def _input_grad(layer: _Layer, h: Tensor, grad: Tensor, weight: Tensor) -> Tensor:
        """The gradient of the layer's input, laid out as ``h``."""
        if not layer.per_draw:
            return torch.mm(grad, weight.T) if h.dim() == 2 else torch.matmul(weight, grad)
        if h.dim() == 2:  # summed over the draws: (B, fan_in)
            return torch.mm(grad.reshape(-1, grad.shape[-1]).T, weight)
        return torch.bmm(weight.transpose(1, 2), grad)


class _ReplicaNetwork(_Network):
    """:class:`_Network` for ``K`` replicas of ``S`` draws each (``theta`` ``(K * S, P)``,
    replica-major; ``loc`` ``(K, P)``).

    Deterministic layers before the first random one are computed once per replica,
    laid out ``(K, features, B)``, as the parent computes per-draw layers with the
    replicas' locations as the draws; their gradient goes to the locations ``(K, P)``.
    From the first random layer on (and at the output layer) everything is per draw,
    ``(K * S, features, B)``: a deterministic layer there takes its values from the draws,
    where they equal its replica's locations, so its gradient reaches the locations
    through the draws. The first per-draw layer after per-replica ones is one batched
    product per replica: ``(K, S * fan_out, fan_in) @ (K, fan_in, B)``.
    """

    def __init__(self, net, offset, constant, prefix, per_draw_output=False):
        super().__init__(net, offset, constant, prefix, per_draw_output=True)
        seen, previous = False, False
        # per layer (by id): "replica", "draw" or "draw_after_replica"; and for a per-replica
        # layer, the same layer marked per draw (the parent's per-draw code computes it)
        self._mode: dict[int, str] = {}
        self._as_draws: dict[int, _Layer] = {}
        for i, layer in enumerate(self.layers):
            seen = seen or layer.per_draw
            if seen and not layer.per_draw:
                layer = self.layers[i] = replace(layer, per_draw=True)
            if not layer.per_draw:
                self._mode[id(layer)] = "replica"
                self._as_draws[id(layer)] = replace(layer, per_draw=True)
            else:
                self._mode[id(layer)] = "draw_after_replica" if previous else "draw"
            previous = not layer.per_draw

    def _affine(self, layer, h, theta, loc):
        mode = self._mode[id(layer)]
        if mode == "replica":  # the locations are the "draws"
            return _Network._affine(self._as_draws[id(layer)], h, loc, loc)  # noqa: SLF001
        if mode == "draw":
            return _Network._affine(layer, h, theta, loc)  # noqa: SLF001
        K, fan_in, fan_out = loc.shape[0], layer.fan_in, layer.fan_out
        draws = theta.shape[0]
        weight_t = (
            theta[:, layer.w].view(draws, fan_in, fan_out).transpose(1, 2).reshape(K, -1, fan_in)
        )  # (K, S * fan_out, fan_in)
        bias = theta[:, layer.b].reshape(K, -1, 1)
        out = torch.baddbmm(bias, weight_t, h)  # (K, S * fan_out, B)
        return out.view(draws, fan_out, -1), weight_t

    def _affine_backward(self, layer, h, grad, weight, grad_loc, num_samples):
        fan_in, fan_out = layer.fan_in, layer.fan_out
        mode = self._mode[id(layer)]
        if mode == "replica":  # into the locations (K, P): grad (K, fan_out, B)
            K = grad.shape[0]
            if h.dim() == 2:  # h (B, fan_in)
                grad_w_t = torch.mm(grad.reshape(K * fan_out, -1), h).view(K, fan_out, fan_in)
            else:  # h (K, fan_in, B)
                grad_w_t = torch.bmm(grad, h.transpose(1, 2))
            grad_loc[:, layer.w].view(K, fan_in, fan_out).copy_(grad_w_t.transpose(1, 2))
            torch.sum(grad, 2, out=grad_loc[:, layer.b])
            return self._zeros(num_samples, fan_in * fan_out + fan_out, grad)
        if mode == "draw":
            return super()._affine_backward(layer, h, grad, weight, grad_loc, num_samples)
        K, draws = h.shape[0], grad.shape[0]
        grad_w_t = torch.bmm(grad.reshape(K, -1, grad.shape[-1]), h.transpose(1, 2))
        grad_w = grad_w_t.view(draws, fan_out, fan_in).transpose(1, 2).reshape(draws, -1)
        return torch.cat([grad_w, grad.sum(2)], 1)

    def _input_grad(self, layer, h, grad, weight):
        mode = self._mode[id(layer)]
        if mode == "replica":
            return _Network._input_grad(self._as_draws[id(layer)], h, grad, weight)  # noqa: SLF001
        if mode == "draw":
            return _Network._input_grad(layer, h, grad, weight)  # noqa: SLF001
        K = h.shape[0]  # weight (K, S * fan_out, fan_in) -> (K, fan_in, B)
        return torch.bmm(weight.transpose(1, 2), grad.reshape(K, -1, grad.shape[-1]))


class _Expansions:
    """``M`` expansions with the same basis terms in columns ``[0, M * T * O)``: forward to
    ``(S, M, O, B)`` and back to the coefficients."""

    def __init__(self, pce: PolynomialChaosExpansion, num: int):
        self.pce, self.num, self.terms, self.outputs = pce, num, pce.num_terms, pce.num_outputs
        self.columns = num * self.terms * self.outputs

    def forward(self, x: Tensor, theta: Tensor) -> Tensor:
        self.phi = self.pce.basis_matrix(x)  # (B, T), cached for the full data
        return expand_in_basis(
            self.phi, theta[:, : self.columns], self.num, self.terms, self.outputs
        )

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
    """A network; any of its layers may be random."""

    def __init__(self, net: NeuralNetwork, constant: frozenset[str], network=None):
        self.net = (network or _Network)(net, 0, constant, "")

    def forward(self, x, theta, loc):
        self.acts = self.net.forward(x, theta, loc)
        out = self.acts[-1]
        return out.T.expand(theta.shape[0], -1, -1) if out.dim() == 2 else out  # (S, O, B)

    def backward(self, grad_out, loc):
        grad = grad_out.sum(0).T if self.acts[-1].dim() == 2 else grad_out
        pieces, grad_loc = self.net.backward(self.acts, grad, loc, grad_out.shape[0])
        return (pieces[0] if len(pieces) == 1 else torch.cat(pieces, 1)), grad_loc


class _MixtureHead(_Head):
    """Same-basis expansions blended by a gate: for two experts whose gate has
    deterministic hidden layers, a sigmoid of the logit difference (one product of the
    output layer's raw parameters with the shared features); a softmax otherwise."""

    def __init__(self, moe: MixtureOfExperts, constant: frozenset[str], network=None):
        network = network or _Network
        self.experts = _Expansions(moe.experts[0], moe.num_experts)
        self.gate = moe.gating_network
        self.net = network(self.gate, moe.gate_offset, constant, "gate.", per_draw_output=True)
        self.hidden = len(self.net.layers) - 1
        self.sigmoid = moe.num_experts == 2 and not any(
            layer.per_draw for layer in self.net.layers[:-1]
        )

    def forward(self, x, theta, loc):
        experts = self.experts.forward(x, theta)  # (S, M, O, B)
        if self.sigmoid:  # softmax over two = sigmoid of the logit difference
            self.acts = self.net.forward(x, theta, loc, layers=self.hidden)
            self.rows = rows = theta[:, self.net.output_columns]  # (S, 2 width + 2)
            self.diff_map, diff_const = self.gate.difference_map(x)
            h = self.acts[-1]
            if h.dim() == 3:  # replicas: h (K, width, B), g transposed (K, 2 width + 2, B)
                K = h.shape[0]
                self.g = torch.baddbmm(  # one batched product, the map shared by replicas
                    diff_const.view(1, -1, 1), self.diff_map.T.expand(K, -1, -1), h
                )
                z = torch.bmm(rows.view(K, -1, rows.shape[1]), self.g)  # (K, S, B)
                self.p1 = torch.sigmoid(z.view(rows.shape[0], -1))  # (K * S, B)
            else:
                self.g = torch.addmm(diff_const, h, self.diff_map)  # (B, 2 width + 2)
                self.p1 = torch.sigmoid(torch.mm(rows, self.g.T))  # (S, B)
            f0, f1 = experts.unbind(1)
            self.diff = f1 - f0
            return torch.addcmul(f0, self.p1.unsqueeze(1), self.diff)
        self.acts = self.net.forward(x, theta, loc)
        self.probs = torch.softmax(self.acts[-1], dim=1)  # (S, M, B)
        self.expert_out = experts
        return (self.probs.unsqueeze(2) * experts).sum(1)

    def backward(self, grad_out, loc):
        S = grad_out.shape[0]
        if self.sigmoid:
            grad_f1 = grad_out * self.p1.unsqueeze(1)
            grad_experts = torch.stack([grad_out - grad_f1, grad_f1], 1)  # (S, 2, O, B)
            grad_z = torch.ops.aten.sigmoid_backward(
                _sum_dim(grad_out * self.diff, 1), self.p1
            )  # (S, B)
            if self.g.dim() == 3:  # replicas
                K = self.g.shape[0]
                grad_z_k = grad_z.view(K, -1, grad_z.shape[1])  # (K, S, B)
                rows = self.rows.view(K, -1, self.rows.shape[1])
                grad_g = torch.bmm(rows.transpose(1, 2), grad_z_k)  # (K, 2 width + 2, B)
                grad_h = torch.bmm(self.diff_map.expand(K, -1, -1), grad_g)  # (K, width, B)
                grad_rows = torch.bmm(grad_z_k, self.g.transpose(1, 2)).view(S, -1)
            else:
                grad_h = torch.mm(torch.mm(grad_z.T, self.rows), self.diff_map.T)  # (B, width)
                grad_rows = torch.mm(grad_z, self.g)  # the output layer's rows (S, 2 width + 2)
            pieces, grad_loc = self.net.backward(self.acts, grad_h, loc, S, layers=self.hidden)
            pieces.append(grad_rows)
        else:
            probs = self.probs
            grad_experts = probs.unsqueeze(2) * grad_out.unsqueeze(1)  # (S, M, O, B)
            grad_probs = _sum_dim(grad_out.unsqueeze(1) * self.expert_out, 2)  # (S, M, B)
            grad_logits = torch._softmax_backward_data(  # noqa: SLF001 - torch's softmax backward
                grad_probs, probs, 1, probs.dtype
            )
            pieces, grad_loc = self.net.backward(self.acts, grad_logits, loc, S)
        return torch.cat([self.experts.backward(grad_experts), *pieces], 1), grad_loc


class _Zeros:
    """Reused tensors of zeros ``(S, n)``: the draws' gradient at deterministic layers."""

    def __init__(self):
        self.cache: dict[tuple, Tensor] = {}

    def __call__(self, num_samples: int, n: int, like: Tensor) -> Tensor:
        key = (num_samples, n, like.dtype, like.device)
        z = self.cache.get(key)
        if z is None:
            z = self.cache[key] = like.new_zeros(num_samples, n)
        return z


class AnalyticStep:
    """The objective ``data + weight_factor * distribution`` of one step, evaluated with
    its gradient written to the parameters' ``.grad`` (no autograd graph).

    ``__call__(x, y, scale)``: ``x`` ``(B, num_inputs)``, ``y`` ``(B, num_outputs)`` in the
    model's dtype and device, ``scale`` the factor of the data term (``N / B`` for a
    mini-batch). Returns the detached losses ``(3,)``: data, distribution, total.
    """

    def __init__(
        self,
        model: StochasticModel,
        loss: str,
        num_samples: int,
        weight_factor: float,
        network: type[_Network] | None = None,
    ):
        reason = unsupported_reason(model, loss)
        if reason is not None:
            raise ValueError(f"AnalyticStep does not support {reason}")
        self.model, self.mf, self.nll = model, model.mean_field, loss == "gaussian_nll"
        self.num_samples, self.weight_factor = num_samples, float(weight_factor)
        sur = model.surrogate_model
        constant = model.constant_blocks
        network = network or _Network  # _ReplicaNetwork for replicas
        self.head: _Head = (
            _MixtureHead(sur, constant, network)
            if isinstance(sur, MixtureOfExperts)
            else _NetworkHead(sur, constant, network)
            if isinstance(sur, NeuralNetwork)
            else _ExpansionHead(sur)
        )
        self._weight_tensor: Tensor | None = None

    def _weight(self, like: Tensor) -> Tensor:
        """``weight_factor`` as a 0-dim tensor: the gradient of the total with respect to the
        distribution loss."""
        w = self._weight_tensor
        if w is None or w.dtype != like.dtype or w.device != like.device:
            w = self._weight_tensor = torch.tensor(
                self.weight_factor, dtype=like.dtype, device=like.device
            )
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
        theta, dist, saved = mf.draw_with_loss_terms(
            self.num_samples
        )  # the same random numbers as autograd's
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


class ReplicaStep(AnalyticStep):
    """:class:`AnalyticStep` for ``K`` replicas trained together
    (:class:`~polymix_cli.replicas.Replicas`): the ``S`` draws of each replica are folded
    into ``K * S`` draws of one forward and backward pass (deterministic leading layers
    once per replica, see :class:`_ReplicaNetwork`), and each replica keeps its own data
    term, distribution loss and noise. The gradients go to the replicas' ``.grad``;
    ``__call__`` returns the detached losses ``(K, 3)``, one row per replica.

    Args:
        replicas: The replicas (their template model must be supported, see
            :func:`unsupported_reason`).
        loss: ``mse_sum`` or ``gaussian_nll``.
        num_samples: ``S``, the draws per replica.
        weight_factor: The weight of the distribution loss.
    """

    def __init__(self, replicas: Replicas, loss: str, num_samples: int, weight_factor: float):
        super().__init__(replicas.model, loss, num_samples, weight_factor, _ReplicaNetwork)
        self.replicas = replicas

    def _replica_data_term(
        self, resid: Tensor, factor: float
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """From the residuals ``(K * S, O, B)``: each replica's data term ``(K,)``, the
        gradient with respect to the output and (``gaussian_nll``) to the noises'
        ``log_std`` ``(K, O)``."""
        r = self.replicas
        K = r.num_replicas
        if not self.nll:
            flat = resid.view(K, 1, -1)
            squares = torch.bmm(flat, flat.transpose(1, 2)).view(K)  # one kernel
            return squares.mul_(factor), resid * (2 * factor), None
        grouped = resid.view(K, -1, *resid.shape[1:])  # (K, S, O, B)
        sq = grouped.square().sum((1, 3))  # (K, O)
        count = grouped.shape[1] * grouped.shape[3]
        log_std = r.noise_log_std
        inv_var = torch.exp(-2 * log_std)  # (K, O)
        data = 0.5 * (sq * inv_var).sum(1) + count * (
            log_std.sum(1) + log_std.shape[1] * _HALF_LOG_2PI
        )
        grad_out = grouped * (inv_var * factor)[:, None, :, None]
        return data * factor, grad_out.view_as(resid), (count - sq * inv_var) * factor

    @torch.no_grad()
    def __call__(self, x: Tensor, y: Tensor, scale: float, noise: Tensor | None = None) -> Tensor:
        r, wf = self.replicas, self.weight_factor
        theta, dist, saved = r.draw_with_loss_terms(self.num_samples, noise)
        loc = r.loc  # (K, P); no graph under no_grad
        resid = self.head.forward(x, theta, loc) - y.T  # (K * S, O, B)
        data, grad_out, noise_grad = self._replica_data_term(resid, scale / self.num_samples)
        grad_theta, grad_hidden = self.head.backward(grad_out, loc)
        grad_loc, grad_log_std = r.gradients(grad_theta, wf, saved)
        r.loc.grad = grad_loc if grad_hidden is None else grad_loc.add_(grad_hidden)
        if grad_log_std is not None:
            r.log_std.grad = grad_log_std
        if self.nll:
            if self.model.noise.prior is not None:  # elementwise on (K, O): autograd is fine
                with torch.enable_grad():
                    prior = r.noise_prior()
                    (prior_grad,) = torch.autograd.grad(prior.sum(), r.noise_log_std)
                dist = dist + prior.detach()
                noise_grad = torch.add(noise_grad, prior_grad, alpha=wf)
            r.noise_log_std.grad = noise_grad
        return torch.stack([data, dist, torch.add(data, dist, alpha=wf)], 1)
