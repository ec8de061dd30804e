"""``polymix export``: a trained model as a TorchScript module that runs where polymix is
not installed (``torch.jit.load`` needs torch only).

The module holds a fixed set of ``num_samples`` parameter draws, drawn exactly as
:func:`~polymix_cli.runs.predict.predict_file` draws them (a generator seeded with the
seed, then ``sample_parameters``), and the data maps. Called on inputs ``x`` ``(N, d)``
in the user's units (any float dtype; computed in float64 as predict computes a file's
rows), it returns ``(mean, std, quantiles)``: ``(N, O)``, ``(N, O)`` and ``(N, O, Q)`` in
the user's units. Its method ``draws(x)`` returns the draws ``(S, N, O)``.

With a learned noise (``include_noise``), each draw gets ``sigma * eps`` added, ``eps``
drawn point by point from the same generator stream as predict's: the module re-seeds a
generator at every call, replays the parameter draws' use of it, then draws the noise of
the rows in order. Calling the module on the rows of a file at once therefore gives
``polymix predict``'s numbers on that file, to rounding; as in predict, a row's noise
draws depend on its position among the rows of one call.

The surrogate's part is traced (``torch.jit.trace``) at the fixed draws; the rest (maps,
noise, summaries) is scripted. Before the file is written, the module is loaded back and
checked against polymix's own computation at points of several batch sizes; a model
whose traced graph does not generalise is refused with the reason.

``format="onnx"`` writes the same as an ONNX model instead
(:mod:`polymix_cli.runs.export_onnx`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from polymix_cli import StochasticModel
from polymix_cli.config.schema import ExportOptions
from polymix_cli.config.validation import ConfigError
from polymix_cli.reporting.evaluation import draw_function, noise_std
from polymix_cli.reporting.metrics import point_major_normal, summarize_draws
from polymix_cli.runs.checkpoint import Trained
from polymix_cli.runs.exported import ExportedSurrogate
from polymix_cli.runs.predict import check_output_file

__all__ = [
    "ExportError",
    "ExportResult",
    "ExportSettings",
    "FixedDraws",
    "Surrogate",
    "export_module",
    "export_trained",
    "fixed_draws",
]

_OPTIONS = ExportOptions()
# the batch sizes the exported module is checked at (the trace uses another)
_CHECK_SIZES = (1, 7)
_TRACE_SIZE = 3


class ExportError(ConfigError):
    """A model that cannot be exported, with the reason (exit status 2)."""


@dataclass(frozen=True)
class ExportSettings:
    """The ``export`` section and the seed, as :func:`export_trained` reads them.

    Args:
        num_samples: The number of parameter draws fixed in the module.
        quantiles: The probabilities of the quantiles the module returns.
        include_noise: With a learned noise: a new observation (draws plus noise).
        seed: The seed of the draws; ``None``: the training run's seed.
        format: ``torchscript`` or ``onnx`` (:mod:`polymix_cli.runs.export_onnx`).
    """

    num_samples: int = _OPTIONS.num_samples
    quantiles: tuple[float, ...] = tuple(_OPTIONS.quantiles)
    include_noise: bool = _OPTIONS.include_noise
    seed: int | None = None
    format: str = _OPTIONS.format

    @classmethod
    def from_config(cls, options: ExportOptions, seed: int | None) -> ExportSettings:
        """The settings of a config's ``export`` section and a seed."""
        return cls(
            options.num_samples,
            tuple(options.quantiles),
            options.include_noise,
            seed,
            options.format,
        )


@dataclass
class ExportResult:
    """What :func:`export_trained` wrote: the file, the seed and the largest difference
    from polymix's own computation at the checked points."""

    output: Path
    seed: int
    max_difference: float
    with_noise: bool
    format: str = "torchscript"


@contextlib.contextmanager
def _recording(generator: torch.Generator) -> Iterator[list[tuple[list[int], torch.dtype]]]:
    """Record the shape and dtype of every ``torch.randn`` call that uses ``generator``."""
    calls: list[tuple[list[int], torch.dtype]] = []
    original = torch.randn

    def randn(*args, **kwargs):
        out = original(*args, **kwargs)
        if kwargs.get("generator") is generator:
            calls.append((list(out.shape), out.dtype))
        return out

    torch.randn = randn
    try:
        yield calls
    finally:
        torch.randn = original


def _draw_parameters(
    model: StochasticModel, num_samples: int, seed: int
) -> tuple[Tensor, list[tuple[list[int], torch.dtype]] | None]:
    """Predict's parameter draws, and the generator calls that reproduce its state after
    them (``None`` when replaying them does not reach that state)."""
    generator = torch.Generator().manual_seed(seed)
    with _recording(generator) as calls:
        params = model.sample_parameters(num_samples, generator=generator)
    replay = torch.Generator().manual_seed(seed)
    for shape, dtype in calls:
        torch.randn(shape, dtype=dtype, generator=replay)
    same = torch.equal(replay.get_state(), generator.get_state())
    return params.detach(), (list(calls) if same else None)


def _check_points(trained: Trained, n: int, seed: int) -> Tensor:
    """``n`` points inside the training bounds (float64, user units)."""
    bounds = trained.maps.bounds.double()
    u = torch.rand(
        n, bounds.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
    )
    return bounds[:, 0] + u * (bounds[:, 1] - bounds[:, 0])


def _reference(
    trained: Trained, settings: ExportSettings, seed: int, x: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """polymix predict's mean, std and quantiles ``(N, O, Q)`` at ``x`` (float64)."""
    model = trained.model
    generator = torch.Generator().manual_seed(seed)
    params = model.sample_parameters(settings.num_samples, generator=generator)
    draws = draw_function(model, params, trained.maps)(x)
    sigma = noise_std(model, trained.maps) if settings.include_noise else None
    if sigma is not None:
        draws = torch.addcmul(draws, point_major_normal(draws, generator), sigma.to(draws.dtype))
    summary = summarize_draws(draws, settings.quantiles)
    return summary.mean, summary.std, summary.quantiles.permute(1, 2, 0)


@dataclass
class FixedDraws:
    """What every format fixes in the exported file: the model (CPU, eval mode, no
    gradients), the seed, predict's parameter draws ``(S, P)`` with the generator calls
    that replay them (``None``: not replayable), and points ``(n, d)`` to trace it at, in
    the user's units (float64) and in the model's domain (its dtype)."""

    model: StochasticModel
    seed: int
    params: Tensor
    skips: list[tuple[list[int], torch.dtype]] | None
    points: Tensor
    example: Tensor


def fixed_draws(trained: Trained, settings: ExportSettings) -> FixedDraws:
    """The model, seed, draws and tracing inputs of an export (see :class:`FixedDraws`)."""
    model = trained.model.cpu().eval().requires_grad_(False)
    seed = trained.cfg.seed if settings.seed is None else settings.seed
    params, skips = _draw_parameters(model, settings.num_samples, seed)
    points = _check_points(trained, _TRACE_SIZE, seed + 1)
    example = trained.maps.inputs.forward(points).to(params.dtype)
    return FixedDraws(model, seed, params, skips, points, example)


class Surrogate(nn.Module):
    """The model's draws at fixed parameters, in the model's domain (what is traced)."""

    def __init__(self, model: StochasticModel, params: Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("params", params)

    def forward(self, z: Tensor) -> Tensor:
        return self.model.predict(z, self.params)


@torch.no_grad()
def export_module(trained: Trained, settings: ExportSettings) -> tuple[torch.jit.ScriptModule, int]:
    """Build the TorchScript module of a trained model.

    Args:
        trained: The trained model (:func:`~polymix_cli.runs.checkpoint.load_trained`),
            on the CPU.
        settings: The draws, quantiles and noise.

    Returns:
        The scripted module and the seed of its draws.

    Raises:
        ExportError: If the model cannot be traced or its noise stream cannot be
            reproduced.
    """
    # eval mode, and no gradients: the module's outputs are plain values
    fixed = fixed_draws(trained, settings)
    model, seed, params, skips = fixed.model, fixed.seed, fixed.params, fixed.skips
    sigma = noise_std(model, trained.maps) if settings.include_noise else None
    if sigma is not None and skips is None:
        raise ExportError(
            "cannot export this model with its noise: its parameter draws use the random "
            "stream in a way the module cannot replay; set export.include_noise=false"
        )
    kind = trained.cfg.model.kind
    try:
        with warnings.catch_warnings():
            # tracer warnings (the check below decides) and TorchScript's deprecation notice
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(Surrogate(model, params), fixed.example, check_trace=False)
            module = torch.jit.script(
                ExportedSurrogate(
                    traced,
                    trained,
                    settings.quantiles,
                    settings.num_samples,
                    seed,
                    sigma.double() if sigma is not None else None,
                    skips or [],
                )
            )
    except ExportError:
        raise
    except Exception as err:  # noqa: BLE001 - torch raises many types while tracing
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ExportError(f"cannot export this model (model.kind={kind}): {first}") from None
    return module, seed


def _max_difference(
    module: Callable[[Tensor], tuple[Tensor, ...]],
    trained: Trained,
    settings: ExportSettings,
    seed: int,
) -> float:
    """The largest difference of ``module``'s outputs from polymix's own, relative to the
    outputs' size (at least 1), at points of every checked batch size (inf: a shape
    differs)."""
    worst = 0.0
    for n in _CHECK_SIZES:
        x = _check_points(trained, n, seed + 2 + n)
        got = module(x)
        want = _reference(trained, settings, seed, x)
        for a, b in zip(got, want, strict=True):
            if a.shape != b.shape:
                return float("inf")
            if a.numel():
                scale = b.abs().max().clamp_min(1.0)
                worst = max(worst, float((a - b).abs().max() / scale))
    return worst


# the largest relative difference from polymix's own computation that the check accepts:
# the same operations in the same order give equal numbers; a few float32 ulps leave room
# for a fused kernel in the scripted graph
TOLERANCE = 1e-6


@torch.no_grad()
def export_trained(trained: Trained, output: str | Path, settings: ExportSettings) -> ExportResult:
    """Write a trained model's TorchScript module (or ONNX model, ``settings.format``),
    checked, atomically.

    Args:
        trained: The trained model, on the CPU.
        output: The file to write (replaced only by a complete, checked module).
        settings: The draws, quantiles, noise and format.

    Returns:
        What was written.

    Raises:
        ConfigError: If ``output`` cannot be written, or ONNX's extra is missing.
        ExportError: If the model cannot be exported (with the reason).
    """
    path = Path(output).expanduser()
    check_output_file(path)
    onnx = settings.format == "onnx"
    if onnx:  # the extra, and what ONNX cannot hold, before anything is written
        from polymix_cli.runs import export_onnx

        export_onnx.check_onnx(trained, settings.include_noise)
    elif settings.format != "torchscript":
        raise ConfigError(f"export.format must be torchscript or onnx, got {settings.format}")
    else:
        module, seed = export_module(trained, settings)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        if onnx:
            seed = export_onnx.write_onnx(trained, settings, Path(tmp))
            run = export_onnx.runner(Path(tmp), trained)
            tolerance, what, with_noise = export_onnx.TOLERANCE, "ONNX model", False
        else:
            with warnings.catch_warnings():  # TorchScript's deprecation notice
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.jit.save(module, tmp)
                run = torch.jit.load(tmp)
            tolerance, what = TOLERANCE, "traced module"
            with_noise = bool(module.include_noise)
        worst = _max_difference(run, trained, settings, seed)
        if not worst <= tolerance:
            raise ExportError(
                f"cannot export this model (model.kind={trained.cfg.model.kind}): the {what} "
                f"differs from the model (relative difference {worst:.3g}) at another "
                f"number of points"
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return ExportResult(path, seed, worst, with_noise, settings.format)
