"""The loggers without a run: the flattened config and final values, the background thread
that keeps a failing or slow tracker away from the run, the hook's epochs, and the check
for a tracker's package."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from polymix_cli.config import schema
from polymix_cli.config.schema import LoggerConfig, MlflowLoggerConfig, TrainConfig
from polymix_cli.reporting.loggers import (
    Loggers,
    RunInfo,
    flatten_config,
    metric_values,
    tracking_uri,
)


def test_flatten_config_gives_dotted_keys_and_plain_values():
    flat = flatten_config(
        {"model": {"gate": {"width": 8}, "experts": None}, "eval": {"levels": [0.5, 0.9]}, "x": {}}
    )
    assert flat == {
        "model.gate.width": 8,
        "model.experts": "null",
        "eval.levels": "[0.5, 0.9]",
        "x": "{}",
    }


def test_metric_values_take_the_numbers_of_the_final_sections():
    metrics = {
        "polymix_version": "0.1.0",
        "num_params": 6,
        "losses": {"total": 1.0},  # logged during training, not again
        "train": {"crps": 0.1, "coverage": {"0.8": 0.75}},
        "val": {"crps": 0.15},
        "test": {"crps": 0.2, "nll": None, "flag": True},
        "sensitivity": {"method": "pce", "first_order": {"y": {"x1": {"mean": 0.9}}}, "low": [1]},
    }
    assert metric_values(metrics) == {
        "num_params": 6.0,
        "train/crps": 0.1,
        "train/coverage/0.8": 0.75,
        "val/crps": 0.15,
        "test/crps": 0.2,
        "sensitivity/first_order/y/x1/mean": 0.9,
    }


def test_relative_tracking_stores_start_from_the_launch_dir(tmp_path):
    info = RunInfo(tmp_path / "run", "study", launch_dir=tmp_path)
    assert tracking_uri("sqlite:///outputs/mlflow.db", info) == (
        f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}"
    )
    assert tracking_uri("sqlite:////abs/m.db", info) == "sqlite:////abs/m.db"
    assert tracking_uri("http://host:5000", info) == "http://host:5000"
    assert tracking_uri("mlruns", info) == str(tmp_path / "mlruns")
    assert tracking_uri(MlflowLoggerConfig().tracking_uri, info).endswith("outputs/mlflow.db")


def test_run_names_group_the_jobs_of_a_sweep(tmp_path):
    job = RunInfo(tmp_path / "s" / "1", "study", tmp_path, sweep_dir=tmp_path / "s", job=1)
    assert job.run_name == "s/1"
    assert job.folder(None, "tensorboard") == tmp_path / "s" / "1" / "tensorboard"
    assert job.folder("tb", "tensorboard") == tmp_path / "tb" / "study" / "s" / "1"


class Recorder:
    def __init__(self, name="rec", fail_on=None, block=None):
        self.name, self.fail_on, self.block = name, fail_on, block
        self.calls: list[tuple] = []

    def _call(self, method, *args):
        if self.block is not None and method == "finish":
            self.block.wait()
        if method == self.fail_on:
            raise OSError(28, "No space left on device")
        self.calls.append((method, *args))

    def start(self, params, config_yaml):
        self._call("start", params)

    def log(self, step, values):
        self._call("log", step, values)

    def finish(self, step, values, status):
        self._call("finish", step, values, status)


def test_a_failing_logger_warns_once_and_the_others_go_on(caplog):
    good, bad = Recorder("good"), Recorder("bad", fail_on="log")
    loggers = Loggers([good, bad])
    with caplog.at_level(logging.WARNING, logger="polymix"):
        loggers.start({"a": 1}, "a: 1\n")
        for step in (10, 20, 30):
            loggers.log(step, {"loss/total": float(step)})
        loggers.finish({"test/crps": 0.5, "test/nll": float("nan")}, "ok")
    assert [c[0] for c in good.calls] == ["start", "log", "log", "log", "finish"]
    assert good.calls[-1] == ("finish", 30, {"test/crps": 0.5}, "ok")  # NaN left out
    assert [c[0] for c in bad.calls] == ["start"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "logger bad failed (OSError: [Errno 28] No space left on device)" in warnings[0]


def test_a_stuck_logger_does_not_hold_the_run(caplog):
    release = threading.Event()
    stuck = Recorder("stuck", block=release)
    loggers = Loggers([stuck])
    loggers.start({}, "")
    with caplog.at_level(logging.WARNING, logger="polymix"):
        loggers.finish({}, "ok", timeout=0.2)
    assert "logger(s) stuck did not finish within 0 s" in caplog.text
    release.set()


def test_no_logger_means_no_thread():
    loggers = Loggers.build(LoggerConfig(), RunInfo(Path("run"), "x"))
    assert not loggers
    before = threading.active_count()
    loggers.start({"a": 1}, "")
    loggers.log(1, {"lr": 0.1})
    loggers.finish({}, "ok")
    assert threading.active_count() == before


def test_the_hook_logs_only_every_log_every_epochs_and_at_the_end():
    rec = Recorder()
    loggers = Loggers([rec])
    hook = loggers.hook(every=10, last_epoch=25)
    trainer = SimpleNamespace(
        epoch=0,
        history=SimpleNamespace(last=lambda: {"data": 1.0, "distribution": 2.0, "total": 3.0}),
        current_lr=lambda: 0.01,
    )
    loggers.start({}, "")
    for epoch in range(1, 26):
        trainer.epoch = epoch
        hook(trainer)
    loggers.finish({}, "ok")
    steps = [c[1] for c in rec.calls if c[0] == "log"]
    assert steps == [10, 20, 25]
    assert rec.calls[1][2] == {
        "loss/data": 1.0,
        "loss/distribution": 2.0,
        "loss/total": 3.0,
        "lr": 0.01,
    }


@pytest.mark.parametrize("name", ["tensorboard", "mlflow"])
def test_a_logger_without_its_package_is_a_config_error(name, monkeypatch):
    real = schema.importlib.util.find_spec
    monkeypatch.setattr(
        schema.importlib.util, "find_spec", lambda n, *a: None if n == name else real(n, *a)
    )
    cfg = TrainConfig.__new__(TrainConfig)
    cfg.eval, cfg.trainer = schema.EvalConfig(), schema.TrainerConfig()
    cfg.data = schema.SyntheticDataConfig()
    cfg.logger = LoggerConfig(
        **{name: getattr(schema, schema.SCHEMAS[f"logger/{name}"].__name__)()}
    )
    message = f"logger={name} needs the {name} package, which is not installed: "
    assert cfg.problems() == [message + "pip install 'polymix-cli[tracking]'"]
