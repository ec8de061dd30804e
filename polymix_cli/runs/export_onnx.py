"""``polymix export export.format=onnx``: a trained model as an ONNX model that runs in
onnxruntime (or any ONNX runtime), without polymix and without torch.

The graph has the TorchScript module's contract (see :mod:`polymix_cli.runs.export`): one
input ``x``, float64 ``(N, d)`` with a dynamic ``N``, in the user's units; three outputs
``mean`` ``(N, O)``, ``std`` ``(N, O)`` and ``quantiles`` ``(N, O, Q)``, float64, in the
user's units, from the same fixed, seeded ``num_samples`` parameter draws as ``polymix
predict`` (the draws are constants of the graph, and so are the data maps). The model's
part computes in the model's dtype, as in polymix.

It is written with torch's TorchScript-based ONNX exporter (``torch.onnx.export`` with
``dynamo=False``, opset :data:`OPSET`), which traces the model at the fixed draws and needs
the ``onnx`` package only; the ``torch.export``-based exporter cannot export a mixture of
experts (a data-dependent branch) and needs onnxscript besides. The quantiles are read
from the sorted draws (ONNX ``TopK``) at fixed positions, as ``sample_quantiles`` reads
them.

What ONNX cannot hold is refused with the reason: a learned noise added to the draws
(``export.include_noise=true`` on a model with a learned noise) needs polymix predict's
seeded random stream, which ONNX has no operator for. Before the file is written, it is
run by onnxruntime and checked against polymix's own computation at points of several
batch sizes; the file appears only once it passes.
"""

from __future__ import annotations

import inspect
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from polymix_cli import __version__
from polymix_cli.config.validation import ConfigError
from polymix_cli.reporting.evaluation import noise_std
from polymix_cli.runs.checkpoint import Trained
from polymix_cli.runs.exported import register_maps

__all__ = [
    "INPUT",
    "OPSET",
    "OUTPUTS",
    "TOLERANCE",
    "check_onnx",
    "require_onnx",
    "runner",
    "write_onnx",
]

# the ONNX opset of the graph (onnxruntime >= 1.14 runs it)
OPSET = 17
INPUT = "x"
OUTPUTS = ("mean", "std", "quantiles")
# the largest relative difference from polymix's own computation that the check accepts:
# onnxruntime's float32 kernels (a matrix product, a reduction) sum in another order than
# torch's, a few float32 ulps (1.2e-7) accumulated over a layer's products; a wrong graph
# is off by the size of the outputs themselves
TOLERANCE = 1e-5
INSTALL = "pip install 'polymix-cli[onnx]'"


def require_onnx() -> None:
    """Raise :class:`ConfigError` (one line, naming the extra) unless the packages of the
    extra ``onnx`` (onnx, to write the model; onnxruntime, to check it) can be imported."""
    missing = []
    for name in ("onnx", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ConfigError(
            f"export.format=onnx needs the package(s) {' and '.join(missing)}, which are not "
            f"installed: {INSTALL}"
        )


class _OnnxSurrogate(nn.Module):
    """What is exported: the maps, the model at the fixed draws, and the summaries."""

    def __init__(
        self, surrogate: nn.Module, trained: Trained, quantiles: tuple[float, ...], num_samples: int
    ):
        super().__init__()
        self.surrogate = surrogate
        register_maps(self, trained.maps)
        f64 = torch.float64
        self.model_dtype = next(iter(trained.model.parameters()), torch.zeros(())).dtype
        # sample_quantiles' interpolation at S draws, fixed: positions, their neighbours
        pos = torch.tensor(quantiles, dtype=f64) * (num_samples - 1)
        self.register_buffer("q_low", pos.floor().long())
        self.register_buffer("q_high", pos.ceil().long())
        self.register_buffer("q_frac", (pos - pos.floor()).reshape(-1, 1, 1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        xs = x.to(torch.float64)
        z = ((xs - self.in_shift) / self.in_scale).to(self.model_dtype)
        out = self.surrogate(z).to(torch.float64) * self.out_scale + self.out_shift
        ordered = out.sort(dim=0).values
        low, high = ordered[self.q_low], ordered[self.q_high]
        q = low + self.q_frac * (high - low)
        return out.mean(0), out.std(0), q.permute(1, 2, 0)


def check_onnx(trained: Trained, include_noise: bool) -> None:
    """Refuse (:class:`~polymix_cli.runs.export.ExportError`) what ONNX cannot hold, and a
    missing extra (:class:`ConfigError`), before anything is written."""
    from polymix_cli.runs.export import ExportError

    require_onnx()
    if include_noise and noise_std(trained.model, trained.maps) is not None:
        raise ExportError(
            f"cannot export this model to ONNX (model.kind={trained.cfg.model.kind}) with its "
            "learned noise: ONNX has no seeded random stream to replay polymix predict's noise "
            "draws; set export.include_noise=false (the surrogate's spread only) or "
            "export.format=torchscript"
        )


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def _metadata(trained: Trained, settings: Any, seed: int) -> dict[str, str]:
    bounds = trained.maps.bounds.double().tolist()
    return {
        "input_names": json.dumps(list(trained.input_names)),
        "output_names": json.dumps(list(trained.output_names)),
        "quantiles": json.dumps([float(q) for q in settings.quantiles]),
        "num_samples": str(settings.num_samples),
        "seed": str(seed),
        "include_noise": "false",
        "bounds": json.dumps(bounds),
        "polymix_version": __version__,
    }


@torch.no_grad()
def write_onnx(trained: Trained, settings: Any, file: Path) -> int:
    """Write the ONNX model of ``trained`` to ``file``; returns the seed of its draws.

    Args:
        trained: The trained model, on the CPU.
        settings: The :class:`~polymix_cli.runs.export.ExportSettings`.
        file: Where to write.

    Raises:
        ExportError: If an operation has no ONNX form (with the exporter's reason).
    """
    import onnx

    from polymix_cli.runs import export

    fixed = export.fixed_draws(trained, settings)
    wrapper = _OnnxSurrogate(
        export.Surrogate(fixed.model, fixed.params),
        trained,
        settings.quantiles,
        settings.num_samples,
    )

    dynamic = {name: {0: "N"} for name in (INPUT, *OUTPUTS)}
    # the TorchScript-based exporter (torch >= 2.5 defaults to the torch.export-based one)
    legacy = (
        {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    )
    try:
        with warnings.catch_warnings():
            # the exporter's deprecation notice and tracer warnings (the check decides)
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (fixed.points,),
                str(file),
                input_names=[INPUT],
                output_names=list(OUTPUTS),
                dynamic_axes=dynamic,
                opset_version=OPSET,
                **legacy,
            )
    except Exception as err:  # noqa: BLE001 - the exporter raises many types
        raise export.ExportError(
            f"cannot export this model to ONNX (model.kind={trained.cfg.model.kind}): "
            f"{_first_line(err)}"
        ) from None
    proto = onnx.load(str(file))
    proto.doc_string = (
        "polymix surrogate: x (N, d) float64 in the user's units -> mean (N, O), std (N, O), "
        "quantiles (N, O, Q) in the user's units; the metadata names the columns"
    )
    onnx.helper.set_model_props(proto, _metadata(trained, settings, fixed.seed))
    onnx.save(proto, str(file))
    return fixed.seed


def runner(file: Path, trained: Trained) -> Callable[[Tensor], tuple[Tensor, ...]]:
    """The ONNX model at ``file``, run by onnxruntime on the CPU, as a function of ``x``
    ``(N, d)`` returning ``(mean, std, quantiles)``; what onnxruntime refuses raises
    :class:`~polymix_cli.runs.export.ExportError` with its reason."""
    import onnxruntime

    from polymix_cli.runs.export import ExportError

    def refused(err: Exception) -> ExportError:
        return ExportError(
            f"cannot export this model to ONNX (model.kind={trained.cfg.model.kind}): "
            f"onnxruntime cannot run it: {_first_line(err)}"
        )

    try:
        session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types
        raise refused(err) from None

    def run(x: Tensor) -> tuple[Tensor, ...]:
        try:
            outputs = session.run(list(OUTPUTS), {INPUT: x.double().numpy()})
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types
            raise refused(err) from None
        return tuple(torch.from_numpy(o) for o in outputs)

    return run
