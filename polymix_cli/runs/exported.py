"""The module that ``polymix export`` scripts (see :mod:`polymix_cli.runs.export`).

This file does not postpone its annotations (no ``from __future__ import annotations``):
TorchScript reads them, with typing's names, to compile the module. What it compiles is
stored in the exported file, so loading that file needs torch only.
"""

from collections.abc import Sequence
from typing import Any, List, Optional, Tuple  # noqa: UP035

import torch
from torch import Tensor, nn

from polymix_cli import __version__

__all__ = ["ExportedSurrogate", "register_maps"]

_DTYPE_CODES = {torch.float32: 6, torch.float64: 7, torch.float16: 5, torch.bfloat16: 15}


def register_maps(module: nn.Module, maps: Any) -> None:
    """The data maps as float64 buffers of ``module`` (``in_shift``, ``in_scale``,
    ``out_shift``, ``out_scale``): what an exported surrogate carries of the run's maps,
    whatever its format."""
    for name, value in (
        ("in_shift", maps.inputs.shift),
        ("in_scale", maps.inputs.scale),
        ("out_shift", maps.outputs.shift),
        ("out_scale", maps.outputs.scale),
    ):
        module.register_buffer(name, value.to(torch.float64).clone())


class ExportedSurrogate(nn.Module):
    """The exported module (scripted); see the module's description."""

    # typing's names: TorchScript reads these annotations (not postponed ones)
    input_names: List[str]  # noqa: UP006
    output_names: List[str]  # noqa: UP006
    quantiles: List[float]  # noqa: UP006
    num_samples: int
    seed: int
    include_noise: bool
    polymix_version: str
    skip_shapes: List[List[int]]  # noqa: UP006
    skip_dtypes: List[int]  # noqa: UP006

    def __init__(
        self,
        surrogate: nn.Module,
        trained: Any,
        quantiles: Sequence[float],
        num_samples: int,
        seed: int,
        sigma: Optional[Tensor],  # noqa: UP045
        skips: Sequence[Tuple[List[int], torch.dtype]],  # noqa: UP006
    ):
        super().__init__()
        self.surrogate = surrogate
        f64 = torch.float64
        register_maps(self, trained.maps)
        self.register_buffer("bounds", trained.maps.bounds.to(f64).clone())
        self.model_dtype = next(iter(trained.model.parameters()), torch.zeros(())).dtype
        self.input_names = list(trained.input_names)
        self.output_names = list(trained.output_names)
        self.quantiles = [float(q) for q in quantiles]
        self.num_samples = num_samples
        self.seed = seed
        self.include_noise = sigma is not None
        self.polymix_version = __version__
        # sample_quantiles' interpolation at S draws, fixed: positions, their neighbours
        pos = torch.tensor(self.quantiles, dtype=f64) * (num_samples - 1)
        self.register_buffer("q_low", pos.floor().long())
        self.register_buffer("q_high", pos.ceil().long())
        self.register_buffer("q_frac", (pos - pos.floor()).reshape(-1, 1, 1))
        noise = sigma if sigma is not None else torch.zeros(len(self.output_names))
        self.register_buffer("sigma", noise.to(f64).clone())
        self.skip_shapes = [list(shape) for shape, _ in skips]
        self.skip_dtypes = [_DTYPE_CODES[dtype] for _, dtype in skips]

    @torch.jit.export
    def draws(self, x: Tensor) -> Tensor:
        """The predictive draws ``(S, N, O)`` at inputs ``x`` ``(N, d)``, in user units."""
        if x.dim() != 2 or x.shape[1] != len(self.input_names):
            raise ValueError(
                "inputs must have shape (N, "
                + str(len(self.input_names))
                + "), one column per input: "
                + ", ".join(self.input_names)
            )
        xs = x.to(torch.float64)
        z = ((xs - self.in_shift) / self.in_scale).to(self.model_dtype)
        out = self.surrogate(z).to(torch.float64) * self.out_scale + self.out_shift
        if self.include_noise:
            generator = torch.Generator()
            generator.manual_seed(self.seed)
            used = torch.zeros((), dtype=torch.float64)
            for i in range(len(self.skip_shapes)):  # the parameter draws' use of the stream
                skipped = torch.randn(
                    self.skip_shapes[i], dtype=self.skip_dtypes[i], generator=generator
                )
                used = used + skipped.sum().to(torch.float64)
            s, n, o = out.shape[0], out.shape[1], out.shape[2]
            eps = torch.randn([n, s, o], dtype=torch.float64, generator=generator)
            # `used * 0` keeps the replayed draws from being optimised away
            eps = eps.permute(1, 0, 2) + used * 0.0
            out = torch.addcmul(out, eps, self.sigma)
        return out

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:  # noqa: UP006
        """``(mean, std, quantiles)`` at inputs ``x`` ``(N, d)`` in user units:
        ``(N, O)``, ``(N, O)``, ``(N, O, Q)``."""
        out = self.draws(x)
        ordered = out.sort(dim=0).values
        low, high = ordered[self.q_low], ordered[self.q_high]
        q = low + self.q_frac.to(out.dtype) * (high - low)
        return out.mean(0), out.std(0), q.permute(1, 2, 0)
