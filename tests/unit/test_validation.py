"""The validation set and early stopping, without runs: the synthetic validation draws, the
validation NLL (batched, and as metrics.json computes it), the early-stopping rule and its
state, the options and what a sweep needs."""

from __future__ import annotations

import math

import pytest
import torch

from polymix_cli.config.schema import (
    EarlyStoppingConfig,
    FileDataConfig,
    SweepConfig,
    SyntheticDataConfig,
    validation_needed,
)
from polymix_cli.config.validation import ConfigError, parse_train_config
from polymix_cli.data.synthetic import make_dataset
from polymix_cli.reporting.metrics import (
    CALIBRATION_LEVELS,
    LEVELS,
    interval_probs,
    predictive_nll,
    summarize_predictive,
    summary_metrics,
)
from polymix_cli.reporting.sweep import METRICS, TARGETS, default_sort_by
from polymix_cli.training.early_stopping import EarlyStopping, ValidationObjective

# ----------------------------------------------------------------------------- synthetic data


def test_validation_draws_leave_training_and_test_sets_as_they_were():
    args = ("sign_sine", 50, 300, 0.05, [[-1.0, 1.0]], 1234, 4321)
    without = make_dataset(*args)
    with_val = make_dataset(*args, num_val=200, val_seed=5678)
    assert without.x_val is None and not without.has_validation
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(without, key), getattr(with_val, key)), key
    assert with_val.x_val.shape == (200, 1) and with_val.y_val.shape == (200, 1)
    # fresh points: none of them is a training or a test point
    val = set(with_val.x_val[:, 0].tolist())
    assert not val & set(with_val.x_train[:, 0].tolist())
    assert not val & set(with_val.x_test[:, 0].tolist())
    again = make_dataset(*args, num_val=200, val_seed=5678)
    other = make_dataset(*args, num_val=200, val_seed=99)
    assert torch.equal(again.x_val, with_val.x_val) and not torch.equal(other.x_val, again.x_val)
    moved = with_val.to("cpu", torch.float64)
    assert moved.x_val.dtype == torch.float64 and torch.equal(moved.x_val.float(), with_val.x_val)


# ----------------------------------------------------------------------------- the NLL


def test_predictive_nll_is_the_nll_of_summary_metrics_and_keeps_leading_dims():
    g = torch.Generator().manual_seed(0)
    draws = torch.randn(4, 64, 30, 2, generator=g, dtype=torch.float64)  # (K, S, N, O)
    y = torch.randn(30, 2, generator=g, dtype=torch.float64)
    x = torch.zeros(30, 1, dtype=torch.float64)
    sigma = torch.tensor([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]], dtype=torch.float64)
    probs = interval_probs(LEVELS + CALIBRATION_LEVELS)
    plain, noisy = predictive_nll(draws, y), predictive_nll(draws, y, sigma)
    assert plain.shape == noisy.shape == (4,)
    for k in range(4):  # each replica's value is metrics.json's nll of its draws
        for noise, value in ((None, plain[k]), (sigma[k], noisy[k])):
            summary = summarize_predictive(
                lambda xs, k=k: draws[k], x, probs, y=y, noise_std=noise, generator=g
            )
            expected = summary_metrics(summary, y)["nll"]
            assert value.item() == pytest.approx(expected, rel=1e-12)
            assert predictive_nll(draws[k], y, noise).item() == pytest.approx(expected, rel=1e-12)
        # with noise: the exact mixture over the draws
        density = torch.distributions.Normal(draws[k], sigma[k]).log_prob(y).exp().mean(0)
        assert noisy[k].item() == pytest.approx(-density.log().sum(1).mean().item(), rel=1e-10)


class _Constant(torch.nn.Module):
    """A stand-in model: draws ``loc + scale * eps`` at every input (no noise)."""

    noise = None

    def __init__(self, loc: float, scale: float):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.tensor([loc]))
        self.scale = scale

    def sample_parameters(self, num_samples, generator=None):
        eps = torch.randn(num_samples, 1, generator=generator)
        return self.loc + self.scale * eps

    def predict(self, x, params):
        return params[:, None, :].expand(-1, x.shape[0], 1)


def test_validation_objective_is_repeatable_in_user_units_and_leaves_the_rng_alone():
    x, y = torch.zeros(20, 1), torch.full((20, 1), 0.5)
    objective = ValidationObjective(x, y, num_samples=500, seed=3)
    model = _Constant(0.5, 1.0)
    torch.manual_seed(11)
    state = torch.get_rng_state()
    first = objective(model)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is not touched
    assert objective(model) == first  # the same draws at every call
    assert first == pytest.approx(0.5 * math.log(2 * math.pi), abs=0.1)  # about N(0.5, 1)
    assert objective(_Constant(3.0, 1.0)) > first
    # outputs mapped with scale 10: the NLL in the user's units is log 10 more
    scaled = ValidationObjective(x, y, num_samples=500, seed=3, output_scale=torch.tensor([10.0]))
    assert scaled(model) == pytest.approx(first + math.log(10.0), rel=1e-6)


# ----------------------------------------------------------------------------- early stopping


class _Script:
    """An objective that returns the next of ``values`` at each call."""

    def __init__(self, values):
        self.values = list(values)

    def __call__(self, model):
        return self.values.pop(0)


class _Trainer:
    def __init__(self, epochs: int):
        self.model = _Constant(0.0, 1.0)
        self.settings = type("S", (), {"epochs": epochs})()
        self.epoch = 0
        self.stop_requested = False

    def run(self, hook) -> None:
        while self.epoch < self.settings.epochs and not self.stop_requested:
            self.epoch += 1
            self.model.loc.data += 1  # the state of epoch e has loc e
            hook(self)


def test_early_stopping_keeps_the_best_state_and_stops_after_patience_epochs():
    values = [5.0, 4.0, 3.0, 3.05, 2.95, 3.2, 3.1, 3.0, 2.99, 1.0]
    settings = EarlyStoppingConfig(patience=4, min_delta=0.1, every=2)
    early = EarlyStopping(_Script(values), settings)
    trainer = _Trainer(epochs=100)
    trainer.run(early)
    # checks at epochs 2, 4, ...: 5, 4, 3 improve; 3.05 and 2.95 (less than min_delta) do
    # not; at epoch 10, 4 epochs after the best (epoch 6), it stops
    assert early.best_epoch == 6 and early.best_value == 3.0
    assert early.stopped_epoch == 10 and trainer.epoch == 10 and trainer.stop_requested
    assert early.best_state["loc"].item() == 6.0  # a copy of the state of epoch 6
    assert trainer.model.loc.item() == 10.0
    summary = early.summary(trainer.epoch)
    assert summary["best_epoch"] == 6 and summary["stopped_epoch"] == 10
    assert summary["best_val_nll"] == 3.0 and summary["epochs_trained"] == 10


def test_early_stopping_checks_the_last_epoch_and_survives_its_state():
    settings = EarlyStoppingConfig(patience=50, every=4)
    early = EarlyStopping(_Script([3.0, 2.0, 1.0]), settings)
    trainer = _Trainer(epochs=10)
    trainer.run(early)  # checks at 4, 8 and the last epoch, 10
    assert early.best_epoch == 10 and early.stopped_epoch is None and early.last_epoch == 10
    again = EarlyStopping(_Script([]), settings)
    again.load_state(early.state())
    assert again.state()["best_epoch"] == 10 and again.best_value == 1.0
    assert torch.equal(again.best_state["loc"], early.best_state["loc"])
    with pytest.raises(TypeError, match="no early-stopping state"):
        again.load_state(None)
    with pytest.raises(ValueError, match="malformed"):
        again.load_state({**early.state(), "best_model": None})


def test_non_finite_values_never_improve():
    early = EarlyStopping(_Script([math.nan, math.inf, math.nan]), EarlyStoppingConfig(patience=3))
    trainer = _Trainer(epochs=30)
    early.settings.every = 1
    trainer.run(early)
    assert early.best_epoch is None and early.best_state is None and early.stopped_epoch == 3
    assert early.state()["best_value"] is None and early.summary(3)["best_val_nll"] is None


# ----------------------------------------------------------------------------- options


def _config(**data):
    kind = data.pop("generator", "sign_sine")
    cfg = {
        "data": {"generator": kind, **data},
        "model": {"kind": "pce", "degree": 2},
        "layout": {"rules": []},
        "optimizer": {"name": "adam"},
        "scheduler": {"name": "none"},
    }
    if kind == "file":
        cfg["data"].update(path="d.csv", outputs=["y"])
    return cfg


def test_options_say_whether_there_is_a_validation_set():
    assert SyntheticDataConfig().has_validation() and FileDataConfig().has_validation()
    assert not SyntheticDataConfig(num_val=0).has_validation()
    assert not FileDataConfig(val_fraction=0.0).has_validation()
    assert FileDataConfig(val_fraction=0.0, val_path="v.csv").has_validation()


def test_sweeps_rank_by_a_validation_metric_by_default():
    assert SweepConfig().sort_by == SweepConfig().objective == default_sort_by() == "val.crps"
    assert {"val.crps", "val.nll", "val.coverage.0.8"} <= set(METRICS)
    assert TARGETS["val.coverage.0.8"] == 0.8
    cfg = parse_train_config(_config(num_val=0))
    why = validation_needed(cfg)
    assert why.startswith("sweep.objective=val.crps needs a validation set: set data.num_val > 0")
    cfg.sweep.objective = "losses.total"
    assert validation_needed(cfg).startswith("sweep.sort_by=val.crps needs")
    cfg.sweep.sort_by = "test.crps"
    assert validation_needed(cfg) is None
    assert validation_needed(parse_train_config(_config())) is None
    file_cfg = parse_train_config(_config(generator="file", val_fraction=0))
    assert "set data.val_fraction > 0 or data.val_path" in validation_needed(file_cfg)


def test_early_stopping_needs_a_validation_set():
    cfg = _config(num_val=0)
    cfg["trainer"] = {"early_stopping": {"patience": 100}}
    with pytest.raises(
        ConfigError, match=r"trainer.early_stopping.patience=100 needs a validation"
    ):
        parse_train_config(cfg)
    cfg["data"]["num_val"] = 10
    assert parse_train_config(cfg).trainer.early_stopping.patience == 100
    for key, value, needle in (
        ("patience", 0, "trainer.early_stopping.patience must be"),
        ("every", 0, "trainer.early_stopping.every must be"),
        ("min_delta", -1.0, "trainer.early_stopping.min_delta must be"),
        ("num_samples", 1, "trainer.early_stopping.num_samples must be"),
    ):
        bad = {**cfg, "trainer": {"early_stopping": {"patience": 100, key: value}}}
        with pytest.raises(ConfigError, match=needle):
            parse_train_config(bad)
