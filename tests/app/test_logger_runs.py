"""`polymix train logger=...` in process: what each tracker holds, read back with the
tool's own API (TensorBoard's event reader, mlflow.search_runs), a tracker that fails,
and the logger options on resume. TensorBoard and MLflow come with the extra `tracking`;
without it, their tests skip."""

from __future__ import annotations

import csv
import json

import pytest
from helpers import TINY

pytestmark = pytest.mark.usefixtures("one_thread")

# 30 epochs, losses every 10: steps 10, 20, 30
RUN = [*TINY, "experiment=pce_sine", "trainer.progress=log"]


def _event_reader(folder):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    reader = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    reader.Reload()
    return reader


def _hparams(reader) -> dict:
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = reader.PluginTagToContent("hparams")
    for data in content.values():
        parsed = plugin_data_pb2.HParamsPluginData.FromString(data)
        if parsed.HasField("session_start_info"):
            return {k: v for k, v in parsed.session_start_info.hparams.items()}
    return {}


def test_all_three_loggers_hold_the_config_losses_and_final_metrics(cli, tmp_path):
    pytest.importorskip("tensorboard")
    mlflow = pytest.importorskip("mlflow")
    run = tmp_path / "run"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    status, err = cli(
        "train",
        *RUN,
        "logger=[csv,tensorboard,mlflow]",
        f"logger.mlflow.tracking_uri={uri}",
        f"hydra.run.dir={run}",
    )
    assert status == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    history = list(csv.DictReader((run / "history.csv").open()))
    at = {int(r["epoch"]): r for r in history}

    # csv
    params = dict(csv.reader((run / "csv" / "params.csv").open()))
    assert params["model.degree"] == "5" and params["trainer.epochs"] == "30"
    rows = list(csv.DictReader((run / "csv" / "metrics.csv").open()))
    losses = [(int(r["step"]), float(r["value"])) for r in rows if r["name"] == "loss/total"]
    assert losses == [
        (e, pytest.approx(float(at[e]["total_loss"]), rel=1e-6)) for e in (10, 20, 30)
    ]
    final = {r["name"]: float(r["value"]) for r in rows if r["name"].startswith("test/")}
    assert final["test/crps"] == metrics["test"]["crps"]

    # tensorboard
    reader = _event_reader(run / "tensorboard")
    scalars = reader.Tags()["scalars"]
    assert {"loss/data", "loss/distribution", "loss/total", "lr", "test/crps"} <= set(scalars)
    lr = [(e.step, e.value) for e in reader.Scalars("lr")]
    assert [s for s, _ in lr] == [10, 20, 30]
    assert lr[-1][1] == pytest.approx(float(at[30]["lr"]), rel=1e-6)
    assert reader.Scalars("test/crps")[-1].value == pytest.approx(metrics["test"]["crps"])
    assert any(k.startswith("sensitivity/") for k in scalars)
    hparams = _hparams(reader)
    assert hparams["model.degree"].number_value == 5
    assert hparams["optimizer.name"].string_value == params["optimizer.name"]

    # mlflow
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["pce_sine"], output_format="list")
    assert len(runs) == 1
    found = runs[0]
    assert found.info.status == "FINISHED" and found.info.run_name == "run"
    assert found.data.params["model.degree"] == "5"
    assert found.data.params["logger.mlflow.tracking_uri"] == uri
    assert found.data.metrics["test/crps"] == pytest.approx(metrics["test"]["crps"])
    assert found.data.metrics["train/crps"] == pytest.approx(metrics["train"]["crps"])
    if "val" in metrics:  # the validation set's metrics too
        assert found.data.metrics["val/crps"] == pytest.approx(metrics["val"]["crps"])
    assert found.data.tags["polymix.run_dir"] == str(run)
    client = mlflow.tracking.MlflowClient(uri)
    total = client.get_metric_history(found.info.run_id, "loss/total")
    assert [(m.step, m.value) for m in total] == [
        (e, pytest.approx(float(at[e]["total_loss"]), rel=1e-6)) for e in (10, 20, 30)
    ]


def test_a_failing_logger_warns_once_and_the_run_completes(cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    run = tmp_path / "run"
    status, err = cli(
        "train",
        *RUN,
        "logger=csv",
        f"logger.csv.log_dir={blocker / 'logs'}",
        f"hydra.run.dir={run}",
    )
    assert status == 0, err
    assert (run / "metrics.json").is_file() and (run / "checkpoints" / "last.pt").is_file()
    log = (run / "train.log").read_text()
    assert log.count("logger csv failed") == 1 and "it logs nothing more" in log
    assert json.loads((run / "status.json").read_text())["status"] == "ok"


def test_a_tracking_server_that_is_down_loses_nothing(cli, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    run = tmp_path / "run"
    status, err = cli(
        "train",
        *RUN,
        "logger=mlflow",
        "logger.mlflow.tracking_uri=http://127.0.0.1:9",  # the discard port: nothing listens
        f"hydra.run.dir={run}",
    )
    assert status == 0, err
    assert (run / "metrics.json").is_file()
    assert (run / "train.log").read_text().count("logger mlflow failed") == 1


def test_loggers_may_be_turned_on_when_resuming(cli, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    status, err = cli("train", *RUN, f"hydra.run.dir={first}")
    assert status == 0, err
    status, err = cli(
        "train",
        f"resume={first / 'checkpoints' / 'last.pt'}",
        "logger=csv",
        f"logger.csv.log_dir={tmp_path / 'logs'}",
        f"hydra.run.dir={second}",
    )
    assert status == 0, err
    rows = list(csv.DictReader((tmp_path / "logs" / "pce_sine" / "second" / "metrics.csv").open()))
    assert any(r["name"] == "test/crps" for r in rows)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["logger.mlflow.tracking_uri=http://host:5000"],
            (
                "polymix: error: logger.mlflow.tracking_uri=http://host:5000 sets an option of logger "
                "mlflow, which is off; turn it on with logger=mlflow (or a list, e.g. "
                "logger=[csv,mlflow])"
            ),
        ),
        (
            ["logger=nope"],
            (
                "polymix: error: logger=nope is not an option of config group 'logger'; allowed: "
                "csv, mlflow, none, tensorboard"
            ),
        ),
        (
            ["logger=csv", "logger.csv.folder=x"],
            "polymix: error: unknown option logger.csv.folder; allowed keys in logger.csv: log_dir",
        ),
    ],
)
def test_bad_logger_options_exit_2_with_one_line(cli, tmp_path, args, message):
    status, err = cli("train", *RUN, *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert status == 2 and err.strip() == message
    assert not (tmp_path / "run").exists()
