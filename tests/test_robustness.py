"""Robustness and safety: the training loop's guards (signals, numerical faults)."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from conftest import compose_train

from polymix_cli.interrupts import stop_on_signals
from polymix_cli.run import prepare
from polymix_cli.training import (
    History,
    NonFiniteLoss,
    Trainer,
    TrainSettings,
    build_optimizer,
    build_scheduler,
)

# ----------------------------------------------------------------------------- interrupt and resume

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


# ----------------------------------------------------------------------------- numerical faults

def test_non_finite_loss_leaves_the_state_untouched():
    cfg = compose_train(["trainer.num_samples=4"])
    p = prepare(cfg)
    optimizer = build_optimizer(cfg["optimizer"], p.model.parameters())
    scheduler = build_scheduler(cfg["scheduler"], optimizer, 10)
    trainer = Trainer(p.model, p.data.x_train, p.data.y_train, TrainSettings(10, 4), optimizer, scheduler)
    trainer.fit([lambda tr: setattr(tr, "stop_requested", tr.epoch == 3)])
    model = {k: v.clone() for k, v in p.model.state_dict().items()}
    adam = {k: v.clone() for k, v in optimizer.state_dict()["state"][0].items()}
    lr, rng = trainer.current_lr(), torch.get_rng_state()
    real = trainer.losses
    trainer.losses = lambda: tuple(t * float("nan") for t in real())
    trainer.stop_requested = False
    with pytest.raises(NonFiniteLoss, match="non-finite loss at epoch 4"):
        trainer.fit()
    assert all(torch.equal(model[k], v) for k, v in p.model.state_dict().items())
    assert all(torch.equal(adam[k], v) for k, v in optimizer.state_dict()["state"][0].items())
    assert trainer.current_lr() == lr and torch.equal(torch.get_rng_state(), rng)
    assert trainer.epoch == 3 and len(trainer.history.losses) == 3


def test_history_round_trips_through_a_checkpoint_state():
    history = History([1, 2], [0.1, 0.2], [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 5.0, 6.0])])
    again = History.from_state(history.state())
    assert again.rows() == history.rows() and again.last() == history.last()
    assert History().last()["total"] != History().last()["total"]  # NaN before the first epoch
    with pytest.raises(ValueError, match="equally long"):
        History.from_state({"epoch": [1], "lr": [], "losses": torch.zeros(1, 3)})


