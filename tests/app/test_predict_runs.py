"""`polymix predict` in process: the README's data=file example, trained and predicted as
written (with fewer epochs), from the repository root."""

from __future__ import annotations

import torch
from helpers import REPO, read_csv_array

from polymix_cli.data.files import CsvTable


def test_readme_example_runs_as_written(cli, tmp_path, monkeypatch):
    """The README's data=file example (with fewer epochs), from the repository root;
    predict reads its input file once (by the fast path: the example file is clean)."""
    monkeypatch.chdir(REPO)
    run = tmp_path / "heat"
    status, err = cli(
        "train",
        "experiment=pce_file",
        "data.path=examples/heat.csv",
        "data.inputs=[power,flow]",
        "data.outputs=[temperature,pressure]",
        "trainer.epochs=50",
        "eval.num_samples=32",
        "trainer.progress=log",
        f"hydra.run.dir={run}",
    )
    assert status == 0, err
    reads: list[str] = []
    for name in ("_read_fast", "blocks"):  # each opens and reads the whole file
        method = getattr(CsvTable, name)
        monkeypatch.setattr(
            CsvTable,
            name,
            lambda self, *a, _m=method, _n=name, **k: reads.append(_n) or _m(self, *a, **k),
        )
    status, err = cli(
        "predict",
        f"ckpt={run / 'checkpoints' / 'last.pt'}",
        "input=examples/heat_new.csv",
        f"output={tmp_path / 'pred.csv'}",
        f"hydra.run.dir={tmp_path / 'p'}",
    )
    assert status == 0, err
    assert reads == ["_read_fast"]
    header, values = read_csv_array(tmp_path / "pred.csv")
    assert header[:3] == ["power", "flow", "temperature_mean"] and values.shape == (5, 12)
    assert (
        torch.load(run / "checkpoints" / "last.pt", weights_only=True)["extra"]["data_file"]["rows"]
        == 120
    )
