"""data=file without Hydra: the CSV reader, the report of bad rows, and the points and plots
of models with several inputs (see app/test_datafile_runs.py for data=file in runs)."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from helpers import is_png, write_csv

from polymix_cli.data.files import describe_rows, open_table
from polymix_cli.reporting import plots
from polymix_cli.reporting.evaluation import (
    MAX_SLICES,
    SensitivityReport,
    slice_inputs,
    slice_points,
)
from polymix_cli.sensitivity import SobolIndices

# ----------------------------------------------------------------------------- reading


def test_csv_reader_streams_blocks_with_file_line_numbers(tmp_path):
    path = write_csv(tmp_path / "d.csv", "x, y", ["", "1,2", "", "3, 4", '"5",6', "7,8"])
    table = open_table(path, "data.path")
    assert table.columns == ("x", "y")
    blocks = list(table.blocks(["y", "x"], block_rows=3))
    assert [b.rows.tolist() for b in blocks] == [[3, 5, 6], [7]]
    assert np.concatenate([b.values for b in blocks]).tolist() == [[2, 1], [4, 3], [6, 5], [8, 7]]


def test_describe_rows_lists_a_few_and_counts_the_rest():
    bad = [(i, "x is NaN") for i in range(2, 30)]
    text = describe_rows(bad, "line")
    assert text.startswith("line 2: x is NaN; line 3: x is NaN") and text.endswith("and 20 more")


# ----------------------------------------------------------------------------- several inputs: plots


def test_slice_points_vary_one_input_through_the_centre():
    bounds = torch.tensor([[0.0, 10.0], [100.0, 200.0], [-1.0, 1.0]], dtype=torch.float64)
    pts = slice_points(bounds, 5)
    assert pts.shape == (3, 5, 3)
    assert pts[1, :, 1].tolist() == [100.0, 125.0, 150.0, 175.0, 200.0]
    assert torch.all(pts[1, :, 0] == 5.0) and torch.all(pts[1, :, 2] == 0.0)
    assert pts[0, :, 0].tolist() == [0.0, 2.5, 5.0, 7.5, 10.0] and torch.all(pts[0, :, 1] == 150.0)

    along = slice_points(bounds, 5, inputs=[2, 0])  # a subset, in the order given
    assert along.shape == (2, 5, 3)
    assert torch.equal(along[0], pts[2]) and torch.equal(along[1], pts[0])


def test_slices_of_many_inputs_show_the_most_important():
    d = MAX_SLICES + 3
    assert slice_inputs(MAX_SLICES, None) == (list(range(MAX_SLICES)), None)
    chosen, note = slice_inputs(d, None)
    assert chosen == list(range(MAX_SLICES)) and "eval.sensitivity=off" in note
    total = torch.rand(4, d, 2, dtype=torch.float64)  # (S, D, O)
    total[:, 5, 1] = 2.0  # the most important input, through its second output
    zeros = torch.zeros(4, 2, dtype=torch.float64)
    report = SensitivityReport(
        "monte_carlo", SobolIndices(zeros, zeros, total, total), (), (), 0.8, 8, {}
    )
    chosen, note = slice_inputs(d, report)
    expected = total.mean(0).amax(-1).argsort(descending=True)[:MAX_SLICES].tolist()
    assert chosen == expected and chosen[0] == 5
    assert note == f"the {MAX_SLICES} of {d} inputs of largest total Sobol index"


def test_parity_and_slice_plots(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.normal(size=(40, 2)) * [1, 10] + [1000, 0]
    mean = y + rng.normal(size=y.shape) * 0.1
    yt = y[:15] + 0.3
    path = plots.plot_parity(
        tmp_path / "parity.png",
        y,
        mean,
        mean - 0.2,
        mean + 0.2,
        yt,
        yt,
        yt - 1,
        yt + 1,
        output_names=["t", "p"],
    )
    assert is_png(path, min_side=300)
    grids = np.stack(
        [
            np.linspace(0, 10, 20),
            np.linspace(100, 200, 20),
            np.linspace(-1, 1, 20),
            np.linspace(0, 1, 20),
            np.linspace(5, 6, 20),
        ]
    )
    mean = np.sin(grids)[:, :, None]
    path = plots.plot_slices(
        tmp_path / "slices.png",
        grids,
        mean,
        mean - 0.1,
        mean + 0.1,
        grids.mean(1),
        input_names=list("abcde"),
        output_names=["t"],
        true_y=mean + 0.05,
    )
    assert is_png(path, min_side=300)
    height, width = mpimg.imread(path).shape[:2]
    assert height > 0.6 * width  # five inputs wrap onto two balanced rows (3 + 2 panels)


def test_plot_shapes_are_checked(tmp_path):
    y = np.zeros((5, 2))
    with pytest.raises(ValueError, match="must be given together"):
        plots.plot_parity(tmp_path / "p.png", y, y, y, y, y_test=y)
    with pytest.raises(ValueError, match=r"mean_train must have shape \(N, O\) = \(5, 2\)"):
        plots.plot_parity(tmp_path / "p.png", y, np.zeros((4, 2)), y, y)
    grids = np.zeros((2, 10))
    with pytest.raises(ValueError, match=r"lower must have shape \(D, G, O\) = \(2, 10, 1\)"):
        plots.plot_slices(
            tmp_path / "s.png",
            grids,
            np.zeros((2, 10)),
            np.zeros((2, 9)),
            np.zeros((2, 10)),
            np.zeros(2),
        )
    with pytest.raises(ValueError, match="input_names must have one name per input"):
        plots.plot_slices(
            tmp_path / "s.png",
            grids,
            np.zeros((2, 10)),
            np.zeros((2, 10)),
            np.zeros((2, 10)),
            np.zeros(2),
            input_names=["a"],
        )
