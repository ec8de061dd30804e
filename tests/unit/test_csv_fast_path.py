"""The fast path of CSV reading (numpy.loadtxt): the same numbers and line numbers as the
checking parser on clean files, and out of the way of every file the checking parser
must report (see data/files.py)."""

from __future__ import annotations

import numpy as np
import pytest

from polymix_cli.data.files import Table, open_table

CLEAN = {
    "plain": "x,y\n1,2\n3,4\n",
    "blank lines before the header and at the end": "\n\nx,y\n1,2\n3,4\n\n\n",
    "no final line end": "x,y\n1,2\n3,4",
    "CRLF line ends": "x,y\r\n1,2\r\n3,4\r\n",
    "an Excel BOM": "\ufeffx,y\n1,2\n3,4\n",
    "spaces around the numbers": "x,y\n1, 2\n 3 ,4 \n",
    "exponents and signs": "x,y\n1e308,-1e308\n+.5,-2.\n1E-300,4.9e-324\n",
    "long digits": "x,y\n0.1000000000000000055511151231257827,2\n3.141592653589793238,4\n",
}


def _both(path, names=None):
    table = open_table(path, "data.path")
    names = list(table.columns) if names is None else names
    return table, table._read_fast(names), Table.read(table, names)


@pytest.mark.parametrize("text", CLEAN.values(), ids=CLEAN.keys())
def test_clean_files_take_the_fast_path_with_the_checking_parsers_numbers(tmp_path, text):
    path = tmp_path / "d.csv"
    path.write_text(text, newline="")
    table, fast, slow = _both(path)
    assert fast is not None, "a clean file must take the fast path"
    assert not slow.bad
    assert fast.values.dtype == np.float64 and fast.values.flags.c_contiguous
    assert np.array_equal(fast.values, slow.values)
    assert fast.rows.tolist() == slow.rows.tolist()
    assert table.read(["x", "y"]).values.tolist() == slow.values.tolist()


def test_random_numbers_in_many_formats_read_the_same(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.standard_normal((300, 3)) * 10.0 ** rng.integers(-20, 20, (300, 3))
    formats = ["{!r}", "{:.6g}", "{:.3e}"]
    lines = [
        ",".join(formats[(i + j) % 3].format(float(v)) for j, v in enumerate(row))
        for i, row in enumerate(values)
    ]
    path = tmp_path / "d.csv"
    path.write_text("a,b,c\n" + "\n".join(lines) + "\n")
    _, fast, slow = _both(path, ["c", "a"])  # a subset, reordered
    assert fast is not None and np.array_equal(fast.values, slow.values)
    assert fast.values.shape == (300, 2)


REFUSED = {
    "an underscore in a number": ("x,y\n1,2\n1_0,4\n", None),
    "a blank line between rows": ("x,y\n1,2\n\n3,4\n", None),
    "a row of another width": ("x,y\n1,2\n3,4,5\n", (3, "3 fields, the header has 2")),
    "a short row": ("x,y\n1,2\n3\n", (3, "1 field, the header has 2")),
    "an empty cell": ("x,y\n1,2\n3,\n", (3, "y is empty")),
    "text": ("x,y\n1,2\nabc,4\n", (3, "x is not a number ('abc')")),
    "NaN": ("x,y\n1,2\n3,nan\n", (3, "y is NaN")),
    "an overflow": ("x,y\n1,2\n1e309,4\n", (3, "x is inf")),
    "quotes": ('x,y\n1,2\n"3",4\n', None),
    "a comment sign": ("x,y\n1,2#3\n3,4\n", (2, "y is not a number ('2#3')")),
    "a label column": ("x,y,label\n1,2,a\n3,4,b\n", None),
    "no rows": ("x,y\n", None),
}


@pytest.mark.parametrize("text, first_bad", REFUSED.values(), ids=REFUSED.keys())
def test_the_fast_path_steps_aside_for_what_the_checking_parser_reports(tmp_path, text, first_bad):
    path = tmp_path / "d.csv"
    path.write_text(text)
    table, fast, slow = _both(path, ["x", "y"])
    assert fast is None
    block = table.read(["x", "y"])  # the checking parser's result, bad rows by line number
    assert block.rows.tolist() == slow.rows.tolist()
    if first_bad is not None:
        assert block.bad[0] == first_bad


def test_a_blank_line_keeps_the_line_numbers_of_the_file(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("x,y\n1,2\n\n3,4\n5,nan\n")
    block = open_table(path, "data.path").read(["x", "y"])
    assert block.rows.tolist() == [2, 4, 5] and block.bad == [(5, "y is NaN")]
