"""Robustness without Hydra: the output-dir check, atomic checkpoints, the signal handlers
and the training history's checkpoint state."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from polymix_cli.config.validation import ConfigError
from polymix_cli.runs.checkpoint import save_checkpoint
from polymix_cli.runs.prepare import check_output_dir
from polymix_cli.training.interrupts import stop_on_signals
from polymix_cli.training.loop import History


def test_check_output_dir(tmp_path):
    check_output_dir(tmp_path / "new", ("checkpoints", "plots"), ("metrics.json",))
    assert (tmp_path / "new" / "checkpoints").is_dir() and not list(
        (tmp_path / "new" / "plots").iterdir()
    )
    (tmp_path / "new" / "metrics.json").mkdir()
    with pytest.raises(ConfigError, match="metrics.json: is a folder"):
        check_output_dir(tmp_path / "new", (), ("metrics.json",))


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    path = save_checkpoint(
        tmp_path / "last.pt", {"epoch": 1, "config": "", "model": {}, "history": {}}
    )
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # e.g. killed while writing

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"epoch": 2, "config": "", "model": {}, "history": {}})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_second_signal_stops_at_once():
    calls = []
    with pytest.raises(SystemExit) as exc, stop_on_signals(calls.append) as received:
        os.kill(os.getpid(), signal.SIGTERM)
        assert received == [signal.SIGTERM] and calls == [signal.SIGTERM]
        os.kill(os.getpid(), signal.SIGTERM)
    assert exc.value.code == 143 and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with pytest.raises(KeyboardInterrupt), stop_on_signals(calls.append):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
    assert calls == [signal.SIGTERM, signal.SIGINT]


def test_history_round_trips_through_a_checkpoint_state():
    history = History(
        [1, 2], [0.1, 0.2], [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 5.0, 6.0])]
    )
    again = History.from_state(history.state())
    assert again.rows() == history.rows() and again.last() == history.last()
    assert History().last()["total"] != History().last()["total"]  # NaN before the first epoch
    with pytest.raises(ValueError, match="equally long"):
        History.from_state({"epoch": [1], "lr": [], "losses": torch.zeros(1, 3)})
