"""Lean optimisers and learning-rate schedules for the training loop.

They implement the same update rules as ``torch.optim.AdamW``, ``Adam`` and ``SGD`` and
the same schedules as ``OneCycleLR`` (cosine annealing, with Adam's beta1 cycled against
the learning rate) and ``CosineAnnealingLR``, with two differences that matter for
small models trained for many steps:

- Constructing any ``torch.optim`` optimiser imports ``torch._dynamo`` (about 3 s here),
  longer than a whole short training run; these classes import nothing beyond torch.
- With a packed model there are two parameter tensors; a step is a handful of
  ``torch._foreach_*`` calls with no per-step bookkeeping.

State dicts hold tensors and plain numbers only, so checkpoints stay loadable with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

__all__ = ["SGD", "Adam", "Constant", "Cosine", "OneCycle"]


class _Optimizer:
    """Shared plumbing: one parameter group with hyper-parameters in ``param_groups[0]``
    (so schedules and logs read ``param_groups[0]["lr"]`` as with torch)."""

    def __init__(self, params: Iterable[Tensor], **defaults: Any):
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("the optimizer got no trainable parameters")
        self.param_groups = [{"params": self.params, **defaults}]
        self.step_count = 0

    @property
    def hp(self) -> dict[str, Any]:
        return self.param_groups[0]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def _grads(self) -> tuple[list[Tensor], list[Tensor]]:
        pairs = [(p, p.grad) for p in self.params if p.grad is not None]
        return [p for p, _ in pairs], [g for _, g in pairs]

    def _buffers(self) -> dict[str, list[Tensor]]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        hp = {k: v for k, v in self.hp.items() if k != "params"}
        return {
            "step": self.step_count,
            "hyper": hp,
            "buffers": {k: [t.clone() for t in v] for k, v in self._buffers().items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step"])
        self.hp.update(state["hyper"])
        for name, tensors in state["buffers"].items():
            for mine, saved in zip(self._buffers()[name], tensors, strict=True):
                mine.copy_(saved)


class Adam(_Optimizer):
    """Adam; with ``decoupled=True`` AdamW (``p <- p (1 - lr wd)`` before the update),
    else L2 regularisation (``g <- g + wd p``). Defaults as torch: betas (0.9, 0.999),
    eps 1e-8."""

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        decoupled: bool = True,
    ):
        super().__init__(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas), eps=eps)
        self.decoupled = decoupled
        self._fused = None  # resolved on the first step
        self._steps: list[Tensor] | None = None  # step counts as tensors, for the fused kernel
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def _buffers(self) -> dict[str, list[Tensor]]:
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def _fused_kernel(self, params: list[Tensor]):
        """torch's single-kernel Adam(W) update for these tensors, where this torch has one
        (a private op: any failure falls back to the ``_foreach`` path for good)."""
        if self._fused is None:
            name = "_fused_adamw_" if self.decoupled else "_fused_adam_"
            kernel = getattr(torch, name, None)
            same = len({(p.device, p.dtype) for p in params}) == 1
            ok = kernel is not None and same and params[0].device.type in ("cpu", "cuda")
            self._fused = kernel if ok and params[0].is_floating_point() else False
        return self._fused or None

    @torch.no_grad()
    def step(self) -> None:
        hp = self.hp
        lr, wd, (beta1, beta2), eps = hp["lr"], hp["weight_decay"], hp["betas"], hp["eps"]
        self.step_count += 1
        index = [i for i, p in enumerate(self.params) if p.grad is not None]
        params = [self.params[i] for i in index]
        grads = [self.params[i].grad for i in index]
        m = [self.exp_avg[i] for i in index]
        v = [self.exp_avg_sq[i] for i in index]
        kernel = self._fused_kernel(params) if params else None
        if kernel is not None and len(index) == len(self.params):
            if self._steps is None:
                self._steps = [torch.zeros((), dtype=p.dtype, device=p.device) for p in params]
            for step in self._steps:
                step.fill_(float(self.step_count))
            steps = self._steps
            try:
                kernel(
                    params,
                    grads,
                    m,
                    v,
                    [],
                    steps,
                    lr=lr,
                    beta1=beta1,
                    beta2=beta2,
                    weight_decay=wd,
                    eps=eps,
                    amsgrad=False,
                    maximize=False,
                )
                return
            except (RuntimeError, TypeError):
                self._fused = False
        if wd:
            if self.decoupled:
                torch._foreach_mul_(params, 1 - lr * wd)
            else:
                grads = torch._foreach_add(grads, params, alpha=wd)  # noqa: SLF001 - foreach
        torch._foreach_lerp_(m, grads, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, grads, grads, 1 - beta2)
        bias1 = 1 - beta1**self.step_count
        bias2 = 1 - beta2**self.step_count
        denom = torch._foreach_sqrt(v)  # noqa: SLF001 - torch's foreach kernels
        torch._foreach_div_(denom, math.sqrt(bias2))
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, m, denom, -lr / bias1)


class SGD(_Optimizer):
    """SGD with (heavy-ball) momentum and L2 weight decay, as ``torch.optim.SGD``."""

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.momentum_buffer = [torch.zeros_like(p) for p in self.params]

    def _buffers(self) -> dict[str, list[Tensor]]:
        return {"momentum_buffer": self.momentum_buffer}

    @torch.no_grad()
    def step(self) -> None:
        hp = self.hp
        self.step_count += 1
        index = [i for i, p in enumerate(self.params) if p.grad is not None]
        params = [self.params[i] for i in index]
        grads = [self.params[i].grad for i in index]
        if hp["weight_decay"]:
            grads = torch._foreach_add(  # noqa: SLF001 - torch's foreach kernels
                grads, params, alpha=hp["weight_decay"]
            )
        if hp["momentum"]:
            bufs = [self.momentum_buffer[i] for i in index]
            if self.step_count == 1:
                torch._foreach_copy_(bufs, grads)
            else:
                torch._foreach_mul_(bufs, hp["momentum"])
                torch._foreach_add_(bufs, grads)
            grads = bufs
        torch._foreach_add_(params, grads, alpha=-hp["lr"])


class _Schedule:
    """Sets ``optimizer.param_groups[0]["lr"]`` (and Adam's beta1 where cycled) from the
    number of steps taken; ``step()`` after every optimiser step."""

    def __init__(self, optimizer: _Optimizer, total_steps: int):
        self.optimizer, self.total_steps = optimizer, int(total_steps)
        self.base_lr = optimizer.hp["lr"]
        self.last_step = 0
        self._apply()

    def _apply(self) -> None:
        raise NotImplementedError

    def step(self) -> None:
        self.last_step += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [self.optimizer.hp["lr"]]

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step, "base_lr": self.base_lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_step, self.base_lr = int(state["last_step"]), float(state["base_lr"])
        self._apply()


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


class OneCycle(_Schedule):
    """The one-cycle policy of ``torch.optim.lr_scheduler.OneCycleLR`` (two phases, cosine
    annealing): from ``max_lr / div_factor`` up to ``max_lr`` over ``pct_start`` of the
    steps, then down to ``max_lr / (div_factor * final_div_factor)``; Adam's beta1 (or
    SGD's momentum) moves the other way between ``max_momentum`` and ``base_momentum``."""

    def __init__(
        self,
        optimizer: _Optimizer,
        max_lr: float,
        total_steps: int,
        pct_start: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
    ):
        self.max_lr, self.pct_start = float(max_lr), float(pct_start)
        self.initial_lr = self.max_lr / div_factor
        self.min_lr = self.initial_lr / final_div_factor
        self.momenta = (max_momentum, base_momentum)
        super().__init__(optimizer, total_steps)

    def _apply(self) -> None:
        step = self.last_step
        warm_end = self.pct_start * self.total_steps - 1
        if step <= warm_end:
            pct = step / warm_end
            lr = _cos(self.initial_lr, self.max_lr, pct)
            momentum = _cos(self.momenta[0], self.momenta[1], pct)
        else:
            pct = (step - warm_end) / (self.total_steps - 1 - warm_end)
            lr = _cos(self.max_lr, self.min_lr, pct)
            momentum = _cos(self.momenta[1], self.momenta[0], pct)
        hp = self.optimizer.hp
        hp["lr"] = lr
        if "betas" in hp:
            hp["betas"] = (momentum, hp["betas"][1])
        elif "momentum" in hp:
            hp["momentum"] = momentum


class Cosine(_Schedule):
    """Cosine annealing from the base learning rate to ``min_lr`` over ``total_steps``
    (``torch.optim.lr_scheduler.CosineAnnealingLR`` with ``T_max = total_steps``)."""

    def __init__(self, optimizer: _Optimizer, total_steps: int, min_lr: float = 0.0):
        self.min_lr = float(min_lr)
        super().__init__(optimizer, total_steps)

    def _apply(self) -> None:
        pct = min(self.last_step, self.total_steps) / self.total_steps
        self.optimizer.hp["lr"] = _cos(self.base_lr, self.min_lr, pct)


class Constant(_Schedule):
    """The base learning rate throughout."""

    def _apply(self) -> None:
        self.optimizer.hp["lr"] = self.base_lr
