"""``polymix predict``: a trained model's predictive distribution at new inputs, in the
user's units (Hydra-free; the CLI resolves the config and calls :func:`predict_file`).

The input is a CSV or NPZ table (see :mod:`polymix_cli.data.files`) with a column for each
of the model's inputs, in any order; other columns are ignored. It is read once (a clean
CSV file by ``numpy.loadtxt``, see :mod:`polymix_cli.data.files`), and every row is checked
(fields, numbers, training bounds) with all bad rows reported in one message before
anything is computed; then the rows are predicted and written block by block. The inputs
are held in memory (rows x inputs float64); parameters are drawn once and points are
evaluated in chunks (as in evaluation), so the work memory does not grow with the number
of rows. The output is written to a temporary file
beside it and renamed into place at the end: a failed run never leaves a partial output,
and an existing file is replaced only by a complete one.

Output (for each input row, in the input's order): the input columns, then for each
output ``o``: ``o_mean``, ``o_std`` and ``o_q<p>`` for each quantile ``p`` (e.g.
``y_q0.05``), as CSV columns or as 1-D NPZ arrays of those names; NPZ output may add the
raw draws, ``o_draws`` ``(rows, num_samples)``.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from polymix_cli.config.schema import PredictOptions
from polymix_cli.config.validation import ConfigError
from polymix_cli.data.files import (
    BLOCK_ROWS,
    LISTED,
    Block,
    DataFileError,
    describe_rows,
    open_table,
)
from polymix_cli.reporting.evaluation import draw_function, noise_std
from polymix_cli.reporting.metrics import (
    chunk_points,
    point_elements,
    point_major_normal,
    summarize_draws,
)
from polymix_cli.runs.checkpoint import Trained

__all__ = [
    "PredictInterrupted",
    "PredictResult",
    "PredictSettings",
    "check_output_file",
    "output_columns",
    "predict_file",
    "terminate_cleanly",
]

log = logging.getLogger("polymix")


_OPTIONS = PredictOptions()  # the defaults of the ``predict`` section


class PredictInterrupted(Exception):
    """SIGTERM stopped a prediction; its temporary files are removed, nothing was written.

    Args:
        signum: The signal's number; the process should exit with ``128 + signum``.
    """

    def __init__(self, signum: int):
        name = signal.Signals(signum).name
        super().__init__(f"terminated ({name}); nothing was written")
        self.signum, self.exit_status = signum, 128 + signum


@contextmanager
def terminate_cleanly() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`PredictInterrupted` (as SIGINT raises
    ``KeyboardInterrupt``), so that the writers remove their temporary files. Outside the
    main thread it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise PredictInterrupted(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done (where the platform can hold them).

    Around the creation of a temporary file or folder: a signal handled inside
    ``tempfile`` (after the file exists, before its name is returned) would leave it
    behind; held, it is raised when the block ends, inside the caller's ``try``, with
    the name known, so the caller removes it."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@dataclass(frozen=True)
class PredictSettings:
    """The ``predict`` section and the seed, as :func:`predict_file` reads them.

    The defaults are those of :class:`~polymix_cli.config.schema.PredictOptions`.

    Args:
        num_samples: The number of parameter draws.
        quantiles: The quantiles to write, each in (0, 1).
        allow_extrapolation: Whether rows outside the training bounds are predicted.
        save_draws: NPZ output: also the raw draws of each output.
        seed: The seed of the parameter draws; ``None``: the training run's seed.
        include_noise: With a learned noise: predict a new observation (draws plus noise).
    """

    num_samples: int = _OPTIONS.num_samples  # parameter draws
    quantiles: tuple[float, ...] = tuple(_OPTIONS.quantiles)
    allow_extrapolation: bool = _OPTIONS.allow_extrapolation  # rows outside the training bounds
    save_draws: bool = _OPTIONS.save_draws  # NPZ output: also the raw draws of each output
    seed: int | None = None  # seed of the parameter draws; None: the training run's seed
    include_noise: bool = _OPTIONS.include_noise  # with a learned noise: a new observation

    @classmethod
    def from_config(cls, options: PredictOptions, seed: int | None) -> PredictSettings:
        """The settings of a config's ``predict`` section and a seed."""
        return cls(
            options.num_samples,
            tuple(options.quantiles),
            options.allow_extrapolation,
            options.save_draws,
            seed,
            options.include_noise,
        )


@dataclass
class PredictResult:
    """What :func:`predict_file` wrote.

    Args:
        output: The file written.
        rows: The number of rows predicted.
        columns: The columns written (see :func:`output_columns`).
        extrapolated: The rows outside the training bounds (predicted with
            ``allow_extrapolation``).
        seed: The seed of the parameter draws.
    """

    output: Path
    rows: int
    columns: list[str]
    extrapolated: int  # rows outside the training bounds (predicted with allow_extrapolation)
    seed: int


def _q(p: float) -> str:
    return f"q{p:g}"


def output_columns(
    inputs: Sequence[str], outputs: Sequence[str], quantiles: Sequence[float]
) -> list[str]:
    """The columns of a prediction file.

    Args:
        inputs: The names of the inputs.
        outputs: The names of the outputs.
        quantiles: The quantiles written.

    Returns:
        ``inputs``, then ``o_mean``, ``o_std``, ``o_q<p>`` for each output ``o``.

    Example:
        ```python
        output_columns(["x"], ["y"], [0.05, 0.95])
        # ['x', 'y_mean', 'y_std', 'y_q0.05', 'y_q0.95']
        ```
    """
    return list(inputs) + [
        f"{o}_{s}" for o in outputs for s in ("mean", "std", *map(_q, quantiles))
    ]


class _Findings:
    """Bad rows of a scan: the first :data:`LISTED` of each kind and their counts."""

    def __init__(self) -> None:
        self.bad: list[tuple[int, str]] = []
        self.outside: list[tuple[int, str]] = []
        self.num_bad = self.num_outside = self.rows = 0

    def add(self, kind: str, items: list[tuple[int, str]], count: int) -> None:
        listed = getattr(self, kind)
        listed.extend(items[: max(0, LISTED - len(listed))])
        setattr(self, f"num_{kind}", getattr(self, f"num_{kind}") + count)


def _outside(
    values: np.ndarray, rows: np.ndarray, bounds: np.ndarray, names: Sequence[str]
) -> tuple[list[tuple[int, str]], int]:
    """The first :data:`LISTED` rows with an input outside ``bounds`` ``(D, 2)`` as
    ``(number, reason)``, and how many there are (bad rows, NaN, are not counted)."""
    low, high = bounds[:, 0], bounds[:, 1]
    mask = ((values < low) | (values > high)).any(1)
    listed = []
    for i in np.flatnonzero(mask)[:LISTED].tolist():
        j = int(np.flatnonzero((values[i] < low) | (values[i] > high))[0])
        listed.append(
            (
                int(rows[i]),
                f"{names[j]}={values[i, j]:.6g} is outside [{low[j]:.6g}, {high[j]:.6g}]",
            )
        )
    return listed, int(mask.sum())


def _scan(block: Block, names: Sequence[str], bounds: np.ndarray) -> _Findings:
    found = _Findings()
    found.rows = block.values.shape[0]
    found.add("bad", block.bad, len(block.bad))
    found.add("outside", *_outside(block.values, block.rows, bounds, names))
    return found


class _CsvWriter:
    def __init__(self, path: Path, columns: list[str]):
        self.path, self.tmp = path, None
        try:  # a signal while starting (before the caller holds the writer) removes it too
            with _signals_held():
                handle, tmp = tempfile.mkstemp(
                    prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
                )
                self.tmp = Path(tmp)
            self.handle = os.fdopen(handle, "w", newline="")
            self.handle.write(",".join(columns) + "\n")
        except BaseException:
            if self.tmp is not None:
                self.tmp.unlink(missing_ok=True)
            raise

    def write(self, x: np.ndarray, stats: np.ndarray, draws: np.ndarray | None) -> None:
        # shortest text that reads back as the same float64
        text = np.concatenate([x, stats], axis=1).astype(str)
        self.handle.write("".join(",".join(row) + "\n" for row in text))

    def commit(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.handle.close()
        self.tmp.unlink(missing_ok=True)


class _NpzWriter:
    """1-D arrays per column (and ``o_draws`` ``(rows, S)``), filled block by block in
    memory-mapped ``.npy`` files and zipped at the end (numpy streams them in chunks)."""

    def __init__(
        self, path: Path, columns: list[str], rows: int, draw_names: list[str], num_samples: int
    ):
        self.path, self.rows = path, rows
        self.dir = None
        try:  # the maps take a while: a signal then (no writer to discard yet) removes them
            with _signals_held():
                self.dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
            self.columns = [
                np.lib.format.open_memmap(
                    self.dir / f"{i}.npy", mode="w+", dtype=np.float64, shape=(rows,)
                )
                for i in range(len(columns))
            ]
            self.draws = [
                np.lib.format.open_memmap(
                    self.dir / f"d{i}.npy", mode="w+", dtype=np.float64, shape=(rows, num_samples)
                )
                for i in range(len(draw_names))
            ]
        except BaseException:
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self.names = columns
        self.draw_names = draw_names
        self.at = 0

    def write(self, x: np.ndarray, stats: np.ndarray, draws: np.ndarray | None) -> None:
        n = x.shape[0]
        block = np.concatenate([x, stats], axis=1)
        for j, column in enumerate(self.columns):
            column[self.at : self.at + n] = block[:, j]
        if draws is not None:
            for j, array in enumerate(self.draws):
                array[self.at : self.at + n] = draws[:, :, j].T
        self.at += n

    def commit(self) -> None:
        arrays = dict(zip(self.names, self.columns)) | dict(zip(self.draw_names, self.draws))
        tmp = None
        try:
            with _signals_held():
                handle, tmp = tempfile.mkstemp(
                    prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
                )
            with os.fdopen(handle, "wb") as out:
                np.savez(out, **arrays)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            raise
        finally:
            self.discard()

    def discard(self) -> None:
        self.columns, self.draws = [], []
        shutil.rmtree(self.dir, ignore_errors=True)


def check_output_file(output: Path, input_path: Path | None = None) -> None:
    """Check that ``output`` can be written (and is not ``input_path``), before any work.

    Raises:
        ConfigError: If it is a folder, its folder is missing or not writable, or it is
            the input file.
    """
    if output.exists() and output.is_dir():
        raise ConfigError(f"output={output} is a folder; name the file to write")
    if not output.parent.is_dir():
        raise ConfigError(f"output={output}: the folder {output.parent} does not exist")
    if not os.access(output.parent, os.W_OK):
        raise ConfigError(f"output={output}: the folder {output.parent} is not writable")
    if (
        input_path is not None
        and output.exists()
        and input_path.exists()
        and output.resolve() == input_path.resolve()
    ):
        raise ConfigError(f"output={output} is the input file; choose another output")


def _unwritable(output: Path, err: OSError) -> str:
    return (
        f"output={output} cannot be written: {err.strerror or err}; choose another file "
        f"(nothing was written)"
    )


def _memory_bytes() -> int | None:
    """The machine's physical memory in bytes (``None`` where unknown)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _check_memory(settings: PredictSettings, num_params: int, num_outputs: int, rows: int) -> None:
    """Refuse a ``predict.num_samples`` whose draws cannot fit in memory, saying what fits:
    the parameter draws ``(S, P)`` and one chunk of predictions ``(S, n, O)`` are held at
    once (float32 draws, float64 predictions)."""
    memory = _memory_bytes()
    if memory is None:
        return
    per_draw = 4 * num_params + 8 * num_outputs * min(rows, 64) * 4
    need = settings.num_samples * per_draw
    if need > memory // 2:
        fits = max(2, memory // 2 // per_draw)
        raise ConfigError(
            f"predict.num_samples={settings.num_samples} needs about {need / 2**30:.3g} GiB for "
            f"its draws ({num_params} parameters each); this machine has {memory / 2**30:.3g} GiB: "
            f"at most about {fits} draws fit"
        )


def _refuse_non_finite(draws: Tensor, rows: np.ndarray, unit: str) -> None:
    """Refuse predictions that are not finite (e.g. extrapolated far outside the training
    bounds), naming the first rows."""
    bad = ~torch.isfinite(draws).all(dim=0).all(dim=-1)  # (n,)
    if not bool(bad.any()):
        return
    where = [int(r) for r in rows[bad.cpu().numpy()][:LISTED]]
    count = int(bad.sum())
    listed = ", ".join(map(str, where)) + (
        f" and {count - len(where)} more" if count > len(where) else ""
    )
    raise ConfigError(
        f"the model's predictions are not finite (they overflow) at {unit}(s) {listed}; "
        f"these inputs lie too far outside the training bounds to extrapolate to; nothing was "
        f"written"
    )


@torch.no_grad()
def predict_file(
    trained: Trained,
    input_path: str | Path,
    output_path: str | Path,
    settings: PredictSettings,
    block_rows: int = BLOCK_ROWS,
) -> PredictResult:
    """Predict every row of an input file and write the predictions.

    Args:
        trained: The trained model (:func:`~polymix_cli.runs.checkpoint.load_trained`).
        input_path: A CSV or NPZ file of inputs, in the user's units.
        output_path: The file to write, CSV or NPZ by its extension.
        settings: The number of draws, quantiles and other options.
        block_rows: The rows predicted at once.

    Returns:
        What was written.

    Raises:
        ConfigError: For bad input (with the row numbers) or an output that cannot be
            written; nothing is written then.
    """
    output = Path(output_path).expanduser()
    try:
        check_output_file(output, Path(input_path).expanduser())
    except OSError as err:  # e.g. a name too long for the file system
        raise ConfigError(_unwritable(output, err)) from None
    try:
        table = open_table(input_path, "input")
    except DataFileError as err:
        raise ConfigError(str(err)) from None
    names = list(trained.input_names)
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise ConfigError(
            f"{table.label} lacks the model's input column(s) {', '.join(map(repr, missing))}; "
            f"the model's inputs: {', '.join(names)}; the file's columns: {', '.join(table.columns)}"
        )
    bounds = trained.maps.bounds.double().numpy()
    try:
        block = table.read(names)  # the one read of the file
    except DataFileError as err:
        raise ConfigError(str(err)) from None
    found = _scan(block, names, bounds)
    if found.rows == 0:
        raise ConfigError(f"{table.label} has no data rows")
    where = table.where()
    refuse_outside = found.num_outside and not settings.allow_extrapolation
    if found.num_bad or refuse_outside:
        parts = []
        if found.num_bad:
            parts.append(
                f"{found.num_bad} bad row(s): {describe_rows(found.bad, table.unit, found.num_bad)}"
            )
        if refuse_outside:
            parts.append(
                f"{found.num_outside} row(s) outside the training bounds: "
                f"{describe_rows(found.outside, table.unit, found.num_outside)} (set "
                f"predict.allow_extrapolation=true to predict them anyway)"
            )
        raise ConfigError(f"{table.label} ({where}): " + "; ".join(parts) + "; nothing was written")
    if found.num_outside:
        log.warning(
            "polymix: warning: %s (%s): %d row(s) outside the training bounds are extrapolated: %s",
            table.label,
            where,
            found.num_outside,
            describe_rows(found.outside, table.unit, found.num_outside),
        )

    model, device = trained.model, trained.device
    model.eval()
    _check_memory(settings, model.num_params(), len(trained.output_names), found.rows)
    seed = trained.cfg.seed if settings.seed is None else settings.seed
    generator = torch.Generator(device=device).manual_seed(seed)
    params = model.sample_parameters(settings.num_samples, generator=generator)
    draw = draw_function(model, params, trained.maps)
    sigma = noise_std(model, trained.maps) if settings.include_noise else None
    probs = tuple(float(q) for q in settings.quantiles)
    outputs = list(trained.output_names)
    columns = output_columns(names, outputs, probs)
    surrogate = model.surrogate_model
    chunk = chunk_points(point_elements(surrogate, 2 * settings.num_samples), found.rows)
    writer: _CsvWriter | _NpzWriter | None = None
    try:
        if output.suffix.lower() == ".npz":
            draw_names = [f"{o}_draws" for o in outputs] if settings.save_draws else []
            writer = _NpzWriter(output, columns, found.rows, draw_names, settings.num_samples)
        else:
            writer = _CsvWriter(output, columns)
        for first in range(0, found.rows, block_rows):
            values = block.values[first : first + block_rows]
            x = torch.from_numpy(values).to(device)
            for start in range(0, x.shape[0], chunk):
                draws = draw(x[start : start + chunk])  # (S, n, O) float64, user units
                if (
                    sigma is not None
                ):  # a new observation: the surrogate's draw plus the learned noise
                    draws = torch.addcmul(
                        draws, point_major_normal(draws, generator), sigma.to(draws.dtype)
                    )
                _refuse_non_finite(draws, block.rows[start : start + chunk], table.unit)
                summary = summarize_draws(draws, probs)
                stats = torch.cat(
                    [
                        summary.mean[:, :, None],
                        summary.std[:, :, None],
                        summary.quantiles.permute(1, 2, 0),
                    ],
                    dim=2,
                )  # (n, O, 2 + Q)
                writer.write(
                    values[start : start + chunk],
                    stats.reshape(stats.shape[0], -1).cpu().numpy(),
                    draws.cpu().numpy() if settings.save_draws else None,
                )
        writer.commit()
    except OSError as err:
        if writer is not None:
            writer.discard()
        raise ConfigError(_unwritable(output, err)) from None
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    return PredictResult(output, found.rows, columns, found.num_outside, seed)
