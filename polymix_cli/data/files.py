"""Tables of numbers in files: the user's data (``data=file``) and ``polymix predict``'s input.

Two formats, chosen by the file's extension:

* ``.csv``: comma-separated text with a header row of column names. Blank lines are
  skipped; every other row must have as many fields as the header. Rows are named by
  their **line number in the file** (the header is on line 1 when the file starts with it).
* ``.npz``: numpy's archive (``np.savez``) holding **one 1-D array per column**, named by
  the column, all of the same length, e.g. ``np.savez("data.npz", x1=x[:, 0], x2=x[:, 1],
  y=y)``. Rows are named by their **row number**, counted from 1.

Only the columns asked for are read as numbers, so other columns (labels, ids) may hold
anything. A cell that is empty, not a number, NaN or infinite makes its row bad; bad rows
are collected (not raised one at a time) so that a message can list them all. NPZ files
are never unpickled (``allow_pickle=False``).

A whole CSV file (:meth:`Table.read`) is read by a fast path first: ``numpy.loadtxt`` over
every column, at about its time and memory. It takes only a clean table (every column
numeric, every row as wide as the header, no blank line before the last row, every value
finite) and gives the same float64 numbers as the checking parser; for anything else, it
steps aside and the checking parser reads the file in blocks of rows (:meth:`Table.blocks`,
memory that does not grow with the file), naming each bad row by its line number.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polymix_cli.config.schema import FILE_GENERATOR, FileDataConfig
from polymix_cli.data.dataset import Dataset

__all__ = [
    "FILE_GENERATOR",
    "FORMATS",
    "Block",
    "DataFileError",
    "Table",
    "describe_rows",
    "file_sha256",
    "load_file_dataset",
    "open_table",
    "resolve_data_paths",
]

FORMATS = (".csv", ".npz")
BLOCK_ROWS = 8192  # rows parsed at a time
MIN_TRAIN_ROWS = 2
LISTED = 8  # bad rows named in a message; the rest are counted


class DataFileError(ValueError):
    """A data file that is missing, unreadable or holds bad rows (a one-line message)."""


@dataclass
class Block:
    """Consecutive data rows of a table, for the ``k`` columns asked for.

    Args:
        values: The numbers, float64, shape ``(n, k)`` (NaN in bad rows).
        rows: Their line (CSV) or row (NPZ) numbers, shape ``(n,)``.
        bad: ``(number, reason)`` for each bad row.
        text: For each column, the number of cells that are not numbers, shape ``(k,)``
            (``None``: no such cell).
    """

    values: np.ndarray
    rows: np.ndarray
    bad: list[tuple[int, str]] = field(default_factory=list)
    text: np.ndarray | None = (
        None  # (k,) cells per column that are not numbers (None: no such cell)
    )


class Table:
    """A CSV or NPZ table; see :func:`open_table`.

    ``unit`` says how rows are numbered in messages: ``"line"`` (CSV) or ``"row"`` (NPZ).

    Args:
        path: The file.
        label: How messages name it, e.g. ``data.path=data.csv``.
        columns: The names of its columns.
    """

    unit = "line"  # how rows are numbered in messages: "line" (CSV) or "row" (NPZ)

    def __init__(self, path: Path, label: str, columns: tuple[str, ...]):
        self.path, self.label, self.columns = path, label, columns
        self.header_line = 0

    def check_columns(self, names: Sequence[str], option: str) -> None:
        """Check that the table has the columns ``names``.

        Args:
            names: Column names.
            option: The option that gave them (e.g. ``data.outputs``), for the message.

        Raises:
            DataFileError: Naming the columns the table lacks, with the columns it has
                (and a hint when a CSV file's first line holds numbers, not names).
        """
        missing = [n for n in names if n not in self.columns]
        if missing:
            hint = ""
            if self.unit == "line" and all(_is_number(c) for c in self.columns):
                hint = f" (its first line {self.header_line} holds numbers: a CSV file needs a header row of names)"
            raise DataFileError(
                f"{option} names {_plural(len(missing), 'column')} {', '.join(map(repr, missing))} "
                f"that {self.label} does not have; its columns: {', '.join(self.columns) or '(none)'}{hint}"
            )

    def blocks(self, names: Sequence[str], block_rows: int = BLOCK_ROWS) -> Iterator[Block]:
        """The data rows of the columns ``names``, ``block_rows`` at a time.

        Args:
            names: Column names the table has (see :meth:`check_columns`).
            block_rows: The most rows in one block.

        Yields:
            The blocks, in file order.

        Raises:
            DataFileError: If the file cannot be read as its format (an NPZ column that is
                not a 1-D array of real numbers, or columns of different lengths).
        """
        raise NotImplementedError

    def read(self, names: Sequence[str]) -> Block:
        """All rows of the columns ``names`` as one block.

        Args:
            names: Column names the table has.

        Returns:
            The rows of every :meth:`blocks` joined (an empty block for no rows).

        Raises:
            DataFileError: As :meth:`blocks`.
        """
        parts = list(self.blocks(names))
        if not parts:
            return Block(np.empty((0, len(names))), np.empty(0, dtype=np.int64))
        texts = [b.text for b in parts if b.text is not None]
        return Block(
            np.concatenate([b.values for b in parts]),
            np.concatenate([b.rows for b in parts]),
            [item for b in parts for item in b.bad],
            sum(texts) if texts else None,
        )

    def where(self) -> str:
        """How rows are numbered, in words, for messages."""
        return "line numbers of the file" if self.unit == "line" else "row numbers, from 1"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def describe_rows(bad: Sequence[tuple[int, str]], unit: str, total: int | None = None) -> str:
    """Bad rows in one line of text for a message.

    For example ``line 4: x2 is not a number ('abc'); line 9: ...; and 3 more``.

    Args:
        bad: ``(number, reason)`` for each bad row.
        unit: How rows are named, ``"line"`` or ``"row"``.
        total: The number of bad rows, if more than ``bad`` lists (default
            ``len(bad)``).

    Returns:
        At most :data:`LISTED` rows, then how many more there are.
    """
    total = len(bad) if total is None else total
    text = "; ".join(f"{unit} {number}: {reason}" for number, reason in bad[:LISTED])
    return text + (
        f"; and {total - min(len(bad), LISTED)} more" if total > min(len(bad), LISTED) else ""
    )


def _parse_cells(
    cells: np.ndarray, names: Sequence[str]
) -> tuple[np.ndarray, list[tuple[int, str]], np.ndarray | None]:
    """``cells`` ``(n, k)`` strings -> float64 values (NaN where bad), ``(index, reason)``
    of the bad rows (the first bad cell of each) and the count of text cells per column."""
    text = None
    try:
        values = cells.astype(np.float64)
    except ValueError:  # find the cells that are not numbers (rare: the slow path)
        values = np.full(cells.shape, np.nan)
        text = np.zeros(cells.shape[1], dtype=np.int64)
        text_bad: dict[int, str] = {}
        for i, row in enumerate(cells):
            for j, cell in enumerate(row):
                try:
                    values[i, j] = float(cell)
                except ValueError:
                    text[j] += 1
                    if i not in text_bad:
                        what = (
                            "is empty"
                            if not str(cell).strip()
                            else f"is not a number ({str(cell)[:40]!r})"
                        )
                        text_bad[i] = f"{names[j]} {what}"
    else:
        text_bad = {}
    bad_rows = np.flatnonzero(~np.isfinite(values).all(axis=1))
    bad = []
    for i in bad_rows.tolist():
        if i in text_bad:
            bad.append((i, text_bad[i]))
            continue
        j = int(np.flatnonzero(~np.isfinite(values[i]))[0])
        value = float(values[i, j])
        bad.append(
            (i, f"{names[j]} is {'NaN' if np.isnan(value) else ('inf' if value > 0 else '-inf')}")
        )
    values[bad_rows] = np.nan
    return values, bad, text


class CsvTable(Table):
    """A comma-separated text file with a header row of column names.

    Blank lines are skipped; rows are named by their line number in the file.

    Args:
        path: The file.
        label: How messages name it.

    Raises:
        DataFileError: If it cannot be read, is empty, is not UTF-8 text or not CSV, or
            its header has an empty or a repeated column name.
    """

    unit = "line"

    def __init__(self, path: Path, label: str):
        self.path, self.label = path, label
        line, names = self._header()
        super().__init__(path, label, names)
        self.header_line = line

    def _open(self):
        return self.path.open(newline="", encoding="utf-8-sig")  # utf-8-sig: drop an Excel BOM

    def _rows(self, handle) -> Iterator[tuple[int, list[str]]]:
        reader = csv.reader(handle, skipinitialspace=True)
        try:
            for row in reader:
                if row and any(cell.strip() for cell in row):
                    yield reader.line_num, row
        except csv.Error as err:
            raise DataFileError(
                f"{self.label} is not a readable CSV file (line {reader.line_num}: {err})"
            ) from None
        except UnicodeDecodeError:
            raise DataFileError(f"{self.label} is not a UTF-8 text (CSV) file") from None

    def _header(self) -> tuple[int, tuple[str, ...]]:
        label = self.label
        try:
            with self._open() as handle:
                for line, row in self._rows(handle):
                    names = tuple(cell.strip() for cell in row)
                    break
                else:
                    raise DataFileError(
                        f"{label} is empty: a CSV file needs a header row of column names"
                    )
        except OSError as err:
            raise DataFileError(f"{label} cannot be read: {err.strerror or err}") from None
        if any(not n for n in names):
            raise DataFileError(
                f"{label}: the header (line {line}) has an empty column name; "
                f"every column needs a name"
            )
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DataFileError(
                f"{label}: the header (line {line}) names "
                f"{', '.join(map(repr, dupes))} more than once"
            )
        return line, names

    def blocks(self, names: Sequence[str], block_rows: int = BLOCK_ROWS) -> Iterator[Block]:
        index = [self.columns.index(n) for n in names]
        width = len(self.columns)
        with self._open() as handle:
            rows = self._rows(handle)
            next(rows)  # the header
            while True:
                chunk = [item for _, item in zip(range(block_rows), rows)]
                if not chunk:
                    return
                yield self._block(chunk, index, names, width)

    def read(self, names: Sequence[str]) -> Block:
        """All rows of the columns ``names`` as one block: by the fast path when the file is
        a clean table, else by the checking parser (see the module's docstring)."""
        fast = self._read_fast(names)
        return fast if fast is not None else super().read(names)

    def _read_fast(self, names: Sequence[str]) -> Block | None:
        """``numpy.loadtxt`` over every column; ``None`` unless the file is a clean table.

        loadtxt refuses what the checking parser would report (a text or empty cell, a
        row of another width, quotes, ``1_0``) or reads it differently (a blank line in
        the middle shifts the line numbers; NaN and infinities are bad rows): each of
        those makes this return ``None``, and the checking parser reads the file."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # loadtxt warns about a file without rows
                values = np.loadtxt(
                    self.path,
                    dtype=np.float64,
                    delimiter=",",
                    comments=None,
                    skiprows=self.header_line,
                    ndmin=2,
                    encoding="utf-8",
                )
        except Exception:  # noqa: BLE001 - any refusal: the checking parser says why
            return None
        n = values.shape[0]
        if (
            n == 0
            or values.shape[1] != len(self.columns)
            or n != _last_line(self.path) - self.header_line
            or not np.isfinite(values).all()
        ):
            return None
        index = [self.columns.index(c) for c in names]
        if index != list(range(values.shape[1])):
            values = np.ascontiguousarray(values[:, index])
        rows = np.arange(self.header_line + 1, self.header_line + 1 + n, dtype=np.int64)
        return Block(values, rows)

    def _block(
        self, chunk: list[tuple[int, list[str]]], index: list[int], names: Sequence[str], width: int
    ) -> Block:
        numbers = np.array([line for line, _ in chunk], dtype=np.int64)
        ragged = [i for i, (_, row) in enumerate(chunk) if len(row) != width]
        bad_at: dict[int, str] = {
            i: f"{_plural(len(chunk[i][1]), 'field')}, the header has {width}" for i in ragged
        }
        cells = np.array(
            [
                [row[j] for j in index] if len(row) == width else ["0"] * len(index)
                for _, row in chunk
            ],
            dtype=str,
        ).reshape(len(chunk), len(index))
        values, bad, text = _parse_cells(cells, names)
        for i, reason in bad:
            bad_at.setdefault(i, reason)
        if ragged:
            values[ragged] = np.nan
        return Block(values, numbers, [(int(numbers[i]), bad_at[i]) for i in sorted(bad_at)], text)


def _last_line(path: Path) -> int:
    """The number of the last line of a file that holds more than line ends (0 if none),
    counted from its bytes 1 MiB at a time."""
    newlines = trailing = 0
    content = False
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            newlines += chunk.count(b"\n")
            body = chunk.rstrip(b"\r\n")
            if body:
                content, trailing = True, chunk.count(b"\n", len(body))
            else:
                trailing += chunk.count(b"\n")
    return newlines - trailing + 1 if content else 0


class NpzTable(Table):
    """A numpy archive (``np.savez``) of one 1-D array per column, never unpickled.

    Rows are named by their row number, from 1.

    Args:
        path: The file.
        label: How messages name it.

    Raises:
        DataFileError: If it cannot be read, is not an NPZ archive, or holds an object
            array (a pickle).
    """

    unit = "row"

    def __init__(self, path: Path, label: str):
        try:
            with np.load(path, allow_pickle=False) as archive:
                self._arrays = {name: archive[name] for name in archive.files}
        except OSError as err:
            raise DataFileError(f"{label} cannot be read: {err.strerror or err}") from None
        except ValueError as err:  # object arrays (pickles) are refused
            raise DataFileError(f"{label} holds an array polymix does not read ({err})") from None
        except Exception:  # noqa: BLE001 - a damaged archive raises many types
            raise DataFileError(
                f"{label} is not a readable NPZ file (numpy's np.savez format)"
            ) from None
        super().__init__(path, label, tuple(self._arrays))

    def _column(self, name: str) -> np.ndarray:
        arr = self._arrays[name]
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise DataFileError(
                f"{self.label}: array {name!r} has shape {arr.shape}; polymix reads one 1-D array per column, "
                f"e.g. np.savez(path, x1=x[:, 0], x2=x[:, 1], y=y)"
            )
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
            raise DataFileError(
                f"{self.label}: array {name!r} holds {arr.dtype} values, not real numbers"
            )
        return arr.astype(np.float64)

    def blocks(self, names: Sequence[str], block_rows: int = BLOCK_ROWS) -> Iterator[Block]:
        columns = [self._column(n) for n in names]
        lengths = {len(c) for c in columns}
        if len(lengths) > 1:
            sizes = ", ".join(f"{n}: {len(c)}" for n, c in zip(names, columns))
            raise DataFileError(f"{self.label}: the arrays have different lengths ({sizes})")
        values = np.stack(columns, axis=1) if columns else np.empty((0, 0))
        for start in range(0, values.shape[0], block_rows):
            part = values[start : start + block_rows].copy()
            part, bad, _ = _parse_cells(part, names)
            numbers = np.arange(start + 1, start + 1 + part.shape[0], dtype=np.int64)
            yield Block(part, numbers, [(int(numbers[i]), reason) for i, reason in bad])


def open_table(path: str | Path, option: str) -> Table:
    """Open the CSV or NPZ table at ``path``; the format is chosen by the extension.

    Args:
        path: The file (``~`` is expanded).
        option: The option that gave it (e.g. ``data.path``): messages name the file
            ``option=path``, or by ``path`` alone when ``option`` is empty.

    Returns:
        A :class:`CsvTable` or :class:`NpzTable` (its header or arrays read).

    Raises:
        DataFileError: If the extension is neither .csv nor .npz, or the file is
            missing, not a file, or unreadable.
    """
    p = Path(path).expanduser()
    label = f"{option}={path}" if option else str(path)
    if p.suffix.lower() not in FORMATS:
        raise DataFileError(f"{label} must be a .csv or .npz file, got the extension {p.suffix!r}")
    if not p.exists():
        raise DataFileError(f"{label} does not exist (relative paths start from {Path.cwd()})")
    if not p.is_file():
        raise DataFileError(f"{label} is not a file")
    return CsvTable(p, label) if p.suffix.lower() == ".csv" else NpzTable(p, label)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read 1 MiB at a time.

    Args:
        path: The file.

    Returns:
        The digest as 64 hex digits.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_data_paths(data: Any, base: str | Path | None = None) -> Any:
    """``data`` with ``path``, ``test_path`` and ``val_path`` (data=file) or
    ``train_inputs`` (a synthetic generator) made absolute.

    Relative paths are taken from ``base`` (the folder polymix was started in, which
    ``hydra.job.chdir=true`` is not), else from the current directory (``~`` expanded),
    so that a checkpoint's config finds its files from anywhere.

    Args:
        data: The ``data`` section.
        base: The folder relative paths start from; ``None``: the current directory.

    Returns:
        A copy; a path that is ``None`` stays ``None``.
    """

    def absolute(path: str | None) -> str | None:
        return None if path is None else absolute_path(path, base)

    if not isinstance(data, FileDataConfig):
        return dataclasses.replace(data, train_inputs=absolute(data.train_inputs))
    return dataclasses.replace(
        data,
        path=absolute(data.path),
        test_path=absolute(data.test_path),
        val_path=absolute(data.val_path),
    )


def absolute_path(path: str | Path, base: str | Path | None = None) -> str:
    """``path`` (``~`` expanded) made absolute from ``base``, else from the current directory."""
    expanded = Path(path).expanduser()
    if base is not None and not expanded.is_absolute():
        expanded = Path(base) / expanded
    return str(expanded.absolute())


def _read(table: Table, names: list[str], option: str) -> Block:
    block = table.read(names)
    rows = block.values.shape[0]
    if (
        block.text is not None and rows and (block.text == rows).any()
    ):  # a column of text, e.g. labels
        text = [names[j] for j in np.flatnonzero(block.text == rows)]
        which = (
            f"column {text[0]!r} of {table.label} holds"
            if len(text) == 1
            else f"columns {', '.join(map(repr, text))} of {table.label} hold"
        )
        raise DataFileError(f"{which} no numbers; name the numeric columns in {option}")
    if block.bad:
        raise DataFileError(
            f"{table.label} has {_plural(len(block.bad), 'bad row')} ({table.where()}): "
            f"{describe_rows(block.bad, table.unit)}"
        )
    return block


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _validation_rows(
    d: FileDataConfig, train_vals: np.ndarray, columns: list[str], source: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    """The training rows left, the validation rows (``None``: no validation set) and how
    they were chosen (``None``: no validation set); ``d.val_path``'s path, digest and rows
    are added to ``source``."""
    if d.val_path is not None:
        table = open_table(d.val_path, "data.val_path")
        table.check_columns(columns, "data.inputs/outputs")
        val = _read(table, columns, "data.inputs/outputs")
        if val.values.shape[0] < 1:
            raise DataFileError(f"{table.label} has no data rows")
        source.update(
            val_path=str(table.path.absolute()),
            val_sha256=file_sha256(table.path),
            val_rows=val.values.shape[0],
        )
        return train_vals, val.values, f"the validation set from {table.label}"
    if d.val_fraction <= 0:
        return train_vals, None, None
    n = train_vals.shape[0]
    num_val = max(1, round(float(d.val_fraction) * n))
    if n - num_val < MIN_TRAIN_ROWS:
        raise DataFileError(
            f"data.path={d.path} leaves {_plural(n, 'training row')} after the test set: "
            f"data.val_fraction={d.val_fraction} leaves {max(0, n - num_val)} for training; at "
            f"least {MIN_TRAIN_ROWS} training rows and 1 validation row are needed (or set "
            f"data.val_fraction=0 for no validation set)"
        )
    # its own stream, drawn after the test split: the test set is the same with or without it
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(d.val_seed)).numpy()
    val_idx, train_idx = np.sort(perm[:num_val]), np.sort(perm[num_val:])
    split = f"a random {num_val} of the {n} training rows (data.val_seed={d.val_seed})"
    return train_vals[train_idx], train_vals[val_idx], split


def load_file_dataset(d: FileDataConfig) -> Dataset:
    """The training, test and validation sets of ``data=file``.

    The test set is ``d.test_path`` or a seeded random ``d.test_fraction`` of the rows
    of ``d.path``; the validation set is ``d.val_path`` or a random ``d.val_fraction`` of
    the remaining (training) rows, drawn with ``d.val_seed`` after the test set, so the
    test set is the same with or without it (every set keeps the file's order). Bounds are ``d.bounds`` or the
    min and max of every row of ``d.path``. Values are read as float64 (bounds stay
    float64) and kept as float64 tensors (the maps apply in float64; training casts
    after). The inputs are ``d.inputs``, or every column that is not an output.

    Args:
        d: The validated ``data`` config.

    Returns:
        The :class:`~polymix_cli.data.dataset.Dataset` named ``"file"``, without a
        ``true_fn``; its ``source`` holds the files' absolute paths, sha256 and rows, and
        how the test and validation sets were chosen.

    Raises:
        DataFileError: If a file is missing or unreadable, lacks a column, holds bad rows
            or a column of text, a column is both an input and an output, there are too
            few rows (2 for training, 1 for testing, 1 for validation), an input is constant in the
            training rows, or ``d.bounds`` do not fit the inputs or their training values.
    """
    table = open_table(d.path, "data.path")
    outputs = list(d.outputs)
    table.check_columns(outputs, "data.outputs")
    inputs = (
        list(d.inputs) if d.inputs is not None else [c for c in table.columns if c not in outputs]
    )
    if not inputs:
        raise DataFileError(f"{table.label} has no column left for the inputs; set data.inputs")
    table.check_columns(inputs, "data.inputs")
    both = [n for n in inputs if n in outputs]
    if both:
        raise DataFileError(
            f"{', '.join(map(repr, both))} {'is' if len(both) == 1 else 'are'} both in data.inputs "
            f"and in data.outputs"
        )
    block = _read(
        table, inputs + outputs, "data.inputs" if d.inputs is None else "data.inputs/outputs"
    )
    n, k = block.values.shape[0], len(inputs)
    if n == 0:
        raise DataFileError(f"{table.label} has no data rows")
    source: dict[str, Any] = {
        "path": str(table.path.absolute()),
        "sha256": file_sha256(table.path),
        "rows": n,
    }
    if d.test_path is not None:
        test_table = open_table(d.test_path, "data.test_path")
        test_table.check_columns(inputs + outputs, "data.inputs/outputs")
        test = _read(test_table, inputs + outputs, "data.inputs/outputs")
        if test.values.shape[0] < 1:
            raise DataFileError(f"{test_table.label} has no data rows")
        train_vals, test_vals = block.values, test.values
        source.update(
            test_path=str(test_table.path.absolute()),
            test_sha256=file_sha256(test_table.path),
            test_rows=test.values.shape[0],
        )
        split = f"the test set from {test_table.label}"
    else:
        num_test = max(1, round(float(d.test_fraction) * n))
        if n - num_test < MIN_TRAIN_ROWS:
            raise DataFileError(
                f"{table.label} has {_plural(n, 'data row')}: data.test_fraction={d.test_fraction} leaves "
                f"{max(0, n - num_test)} for training; at least {MIN_TRAIN_ROWS} training rows and 1 test row are needed"
            )
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(d.seed)).numpy()
        test_idx, train_idx = np.sort(perm[:num_test]), np.sort(perm[num_test:])
        train_vals, test_vals = block.values[train_idx], block.values[test_idx]
        split = f"a random {num_test} of its {n} rows (data.seed={d.seed})"
    train_vals, val_vals, val_split = _validation_rows(d, train_vals, inputs + outputs, source)
    if train_vals.shape[0] < MIN_TRAIN_ROWS:
        raise DataFileError(
            f"{table.label} has {_plural(train_vals.shape[0], 'data row')}; at least "
            f"{MIN_TRAIN_ROWS} are needed for training"
        )
    x_train = train_vals[:, :k]
    low, high = x_train.min(0), x_train.max(0)
    constant = np.flatnonzero(low == high)
    if constant.size:
        j = int(constant[0])
        raise DataFileError(
            f"input column {inputs[j]!r} is constant ({_fmt(low[j])}) in the training rows of "
            f"{table.label}: it cannot be learned from; drop it from data.inputs"
        )
    if d.bounds is None:
        bounds = np.stack([block.values[:, :k].min(0), block.values[:, :k].max(0)], axis=1)
    else:
        bounds = np.asarray(d.bounds, dtype=np.float64).reshape(-1, 2)
        if bounds.shape[0] != k:
            raise DataFileError(
                f"data.bounds must give [low, high] for each of the {k} input(s) "
                f"({', '.join(inputs)}), got {len(bounds)}"
            )
        outside = (x_train < bounds[:, 0]) | (x_train > bounds[:, 1])
        if outside.any():
            j = int(np.flatnonzero(outside.any(0))[0])
            raise DataFileError(
                f"data.bounds [{_fmt(bounds[j, 0])}, {_fmt(bounds[j, 1])}] of input {inputs[j]!r} do not contain "
                f"its training values (min {_fmt(low[j])}, max {_fmt(high[j])}); widen them or set data.bounds=null"
            )
    source["split"] = split
    if val_split is not None:
        source["val_split"] = val_split

    def tensor(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(values))  # float64: mapped before any cast

    return Dataset(
        "file",
        tensor(train_vals[:, :k]),
        tensor(train_vals[:, k:]),
        tensor(test_vals[:, :k]),
        tensor(test_vals[:, k:]),
        torch.from_numpy(bounds),
        None,
        tuple(inputs),
        tuple(outputs),
        source=source,
        x_val=None if val_vals is None else tensor(val_vals[:, :k]),
        y_val=None if val_vals is None else tensor(val_vals[:, k:]),
    )
