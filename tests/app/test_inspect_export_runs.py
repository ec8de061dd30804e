"""`polymix inspect` and `polymix export` in process, on the session's tiny moe_sign run
(tiny_run): the tables, the JSON and metrics.json's posterior agree; inspect writes
nothing; bad input (a missing or foreign checkpoint, bad options, an output that cannot be
written, a model that cannot be traced, export.format=onnx without its extra or with an
operator ONNX lacks) is one line, status 2, nothing written. The ONNX model (run by
onnxruntime; those tests skip without the extra `onnx`) agrees with the TorchScript
module and describes itself in its metadata."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import numpy as np
import pytest
import torch

from polymix_cli.cli.apps import parse_config
from polymix_cli.config.validation import ConfigError
from polymix_cli.runs import export as export_module
from polymix_cli.runs import export_onnx
from polymix_cli.runs.checkpoint import load_trained
from polymix_cli.runs.export import ExportSettings, export_trained

needs_onnx = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("onnx", "onnxruntime")),
    reason="needs the extra onnx (onnx, onnxruntime): .venv/bin/pip install -e '.[onnx]'",
)


@pytest.fixture
def ckpt(tiny_run):
    return tiny_run / "checkpoints" / "last.pt"


def test_metrics_json_has_the_posterior_of_every_group_and_parameter(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    post = metrics["posterior"]
    assert post["level"] == 0.9 and post["num_params"] == metrics["num_params"] == 74
    assert [g["name"] for g in post["groups"]] == [g["name"] for g in metrics["groups"]]
    assert [g["size"] for g in post["groups"]] == [g["size"] for g in metrics["groups"]]
    params = post["parameters"]  # 74 <= eval.posterior_params (100)
    assert [p["index"] for p in params] == list(range(74))
    # the experts' PCE coefficients carry their multi-index; the gate's do not
    assert params[0]["name"] == "experts.0.coeffs[0,0]" and params[0]["term"] == [0]
    assert all("term" not in p for p in params if p["name"].startswith("gate."))
    for p in params:
        assert p["low"] <= p["mean"] <= p["high"] and p["std"] >= 0
        assert p["active"] == (p["low"] > 0 or p["high"] < 0)
    # a deterministic gate weight: no spread
    gate = next(g for g in post["groups"] if g["name"] == "gate.hidden.0.weight")
    assert gate["kind"] == "deterministic" and gate["std"] == 0
    assert post["noise_std"] is None and post["outputs"] == ["y1"]


def test_inspect_prints_tables_and_json_with_the_figures_of_metrics_json(
    cli_output, ckpt, tiny_run, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    status, out, err = cli_output("inspect", f"ckpt={ckpt}")
    assert status == 0, err
    assert "Posterior per parameter group (74 parameters)" in out
    assert "Posterior per PCE term (8 coefficients)" in out and "90% interval" in out
    assert "experts.0.coeffs[0:2]" in out and "no learned noise" in out
    status, out, err = cli_output("inspect", f"ckpt={ckpt}", "inspect.format=json")
    assert status == 0, err
    record = json.loads(out)
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert record["groups"] == metrics["posterior"]["groups"]
    assert record["parameters"] == metrics["posterior"]["parameters"]
    assert record["inputs"] == ["x1"] and record["epoch"] == 30
    status, out, _ = cli_output(
        "inspect", f"ckpt={ckpt}", "inspect.format=json", "inspect.level=0.5"
    )
    narrower = json.loads(out)["groups"][0]
    assert (
        narrower["high"] - narrower["low"]
        < record["groups"][0]["high"] - record["groups"][0]["low"]
    )
    assert os.listdir(tmp_path) == []  # inspect writes nothing: no run dir, no log


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ckpt=missing.pt"], "polymix: error: checkpoint missing.pt does not exist"),
        (["ckpt=foreign.pt"], "polymix: error: checkpoint foreign.pt is truncated or corrupt"),
        (
            ["ckpt=X", "inspect.level=1.5"],
            "polymix: error: inspect.level must be a number in (0.0, 1.0)",
        ),
        (["ckpt=X", "inspect.format=xml"], "polymix: error: inspect.format must be one of"),
        (["ckpt=X", "inspect.num_samples=1"], "polymix: error: inspect.num_samples must be >= 2"),
        ([], "polymix: error: ckpt= is required: ckpt must be the path of a polymix checkpoint"),
    ],
)
def test_inspect_refuses_bad_input_in_one_line(cli, ckpt, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "foreign.pt").write_text("not a checkpoint")
    status, err = cli("inspect", *(a.replace("=X", f"={ckpt}") for a in args))
    assert status == 2
    assert err.startswith(message) and err.count("\n") == 1, err
    assert os.listdir(tmp_path) == ["foreign.pt"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["ckpt=missing.pt", "output=m.pt"],
            "polymix: error: checkpoint missing.pt does not exist",
        ),
        (["ckpt=foreign.pt", "output=m.pt"], "polymix: error: checkpoint foreign.pt is truncated"),
        (
            ["ckpt=X", "output=nodir/m.pt"],
            "polymix: error: output=nodir/m.pt: the folder nodir does not exist",
        ),
        (["ckpt=X", "output=."], "polymix: error: output=. is a folder"),
        (
            ["ckpt=X", "output=m.pt", "export.num_samples=1"],
            "polymix: error: export.num_samples must be >= 2",
        ),
        (
            ["ckpt=X", "output=m.pt", "export.quantiles=[0.5,2]"],
            "polymix: error: export.quantiles.1 must be a number in (0.0, 1.0)",
        ),
        (
            ["ckpt=X"],
            "polymix: error: output= is required: output must be the path of the file to write",
        ),
        (
            ["ckpt=X", "output=m.pt", "export.format=tflite"],
            "polymix: error: export.format must be one of ['torchscript', 'onnx'], got 'tflite'",
        ),
    ],
)
def test_export_refuses_bad_input_in_one_line(cli, ckpt, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "foreign.pt").write_text("not a checkpoint")
    run_dir = tmp_path / "run"
    status, err = cli(
        "export", *(a.replace("=X", f"={ckpt}") for a in args), f"hydra.run.dir={run_dir}"
    )
    assert status == 2
    assert err.startswith(message) and err.count("\n") == 1, err
    assert not (tmp_path / "m.pt").exists()
    written = {p.name for p in tmp_path.rglob("*") if p.is_file()} - {"foreign.pt"}
    assert not [n for n in written if n.endswith((".pt", ".tmp"))]


def test_a_model_that_cannot_be_traced_is_refused_with_the_reason(cli, ckpt, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("Tracer cannot infer type of output\nmore detail")

    monkeypatch.setattr(torch.jit, "trace", refuse)
    status, err = cli(
        "export", f"ckpt={ckpt}", f"output={tmp_path / 'm.pt'}", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert status == 2
    assert err == (
        "polymix: error: cannot export this model (model.kind=moe): Tracer cannot infer type of "
        "output\n"
    )
    assert not (tmp_path / "m.pt").exists() and not list(tmp_path.glob(".m.pt.*"))


def test_a_module_that_differs_from_the_model_is_refused_and_not_written(
    ckpt, tmp_path, monkeypatch
):
    trained = load_trained(ckpt, parse_config)
    monkeypatch.setattr(export_module, "_max_difference", lambda *a: 0.5)
    with pytest.raises(export_module.ExportError, match="differs from the model"):
        export_trained(trained, tmp_path / "m.pt", ExportSettings(num_samples=20))
    assert list(tmp_path.iterdir()) == []


def test_the_exported_module_matches_polymix_and_describes_itself(ckpt, tmp_path):
    trained = load_trained(ckpt, parse_config)
    settings = ExportSettings(num_samples=40, quantiles=(0.1, 0.9), seed=7)
    result = export_trained(trained, tmp_path / "m.pt", settings)
    assert result.seed == 7 and result.max_difference <= export_module.TOLERANCE
    module = torch.jit.load(tmp_path / "m.pt")
    assert module.input_names == ["x1"] and module.output_names == ["y1"]
    assert module.quantiles == [0.1, 0.9] and module.num_samples == 40 and module.seed == 7
    assert module.bounds.tolist() == [[-1.0, 1.0]] and not module.include_noise
    x = torch.linspace(-1, 1, 9, dtype=torch.float64)[:, None]
    mean, std, q = module(x)
    assert not (mean.requires_grad or std.requires_grad or q.requires_grad)
    assert mean.shape == std.shape == (9, 1) and q.shape == (9, 1, 2)
    draws = module.draws(x.float())  # any float dtype: computed in float64
    assert draws.shape == (40, 9, 1) and draws.dtype == torch.float64
    torch.testing.assert_close(draws.mean(0), mean)
    with pytest.raises(Exception, match=r"inputs must have shape \(N, 1\)"):
        module(torch.zeros(3, 2))


MISSING_EXTRA = (
    "polymix: error: export.format=onnx needs the package(s) onnx and onnxruntime, which are "
    "not installed: pip install 'polymix-cli[onnx]'"
)


def test_onnx_without_its_extra_is_one_line_and_writes_nothing(cli, ckpt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("onnx", "onnxruntime"):  # as if not installed: importing them fails
        monkeypatch.setitem(sys.modules, name, None)
    status, err = cli(
        "export", f"ckpt={ckpt}", "output=m.onnx", "export.format=onnx", "hydra.run.dir=run"
    )
    assert status == 2
    assert err == MISSING_EXTRA + "\n"
    assert list(tmp_path.iterdir()) == []  # not even the run dir
    # the function that sweeps' jobs call says the same
    trained = load_trained(ckpt, parse_config)
    with pytest.raises(ConfigError) as caught:
        export_trained(trained, tmp_path / "m.onnx", ExportSettings(format="onnx"))
    assert f"polymix: error: {caught.value}" == MISSING_EXTRA
    assert list(tmp_path.iterdir()) == []


@needs_onnx
def test_an_operation_without_an_onnx_form_is_refused_with_the_reason(
    cli, ckpt, tmp_path, monkeypatch
):
    def refuse(*args, **kwargs):
        raise RuntimeError(
            "Exporting the operator 'aten::frobnicate' to ONNX opset version 17 is not "
            "supported.\nmore detail"
        )

    monkeypatch.setattr(torch.onnx, "export", refuse)
    status, err = cli(
        "export",
        f"ckpt={ckpt}",
        f"output={tmp_path / 'm.onnx'}",
        "export.format=onnx",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert status == 2
    assert err == (
        "polymix: error: cannot export this model to ONNX (model.kind=moe): Exporting the "
        "operator 'aten::frobnicate' to ONNX opset version 17 is not supported.\n"
    )
    assert not (tmp_path / "m.onnx").exists() and not list(tmp_path.glob(".m.onnx.*"))


@needs_onnx
def test_the_onnx_model_agrees_with_the_torchscript_module_and_describes_itself(ckpt, tmp_path):
    import onnxruntime

    trained = load_trained(ckpt, parse_config)
    settings = ExportSettings(num_samples=40, quantiles=(0.1, 0.9), seed=7, format="onnx")
    result = export_trained(trained, tmp_path / "m.onnx", settings)
    assert result.format == "onnx" and result.seed == 7 and not result.with_noise
    assert result.max_difference <= export_onnx.TOLERANCE
    session = onnxruntime.InferenceSession(tmp_path / "m.onnx", providers=["CPUExecutionProvider"])
    (x_info,) = session.get_inputs()
    assert (x_info.name, x_info.type) == ("x", "tensor(double)")
    assert x_info.shape == ["N", 1]  # any number of rows
    assert [o.name for o in session.get_outputs()] == ["mean", "std", "quantiles"]
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["input_names"]) == ["x1"] and json.loads(meta["output_names"]) == ["y1"]
    assert json.loads(meta["quantiles"]) == [0.1, 0.9] and json.loads(meta["bounds"]) == [[-1, 1]]
    assert (meta["num_samples"], meta["seed"], meta["include_noise"]) == ("40", "7", "false")
    scripted = export_trained(
        trained, tmp_path / "m.pt", ExportSettings(num_samples=40, quantiles=(0.1, 0.9), seed=7)
    )
    module = torch.jit.load(scripted.output)
    for n in (1, 9):
        x = torch.linspace(-1, 1, n, dtype=torch.float64)[:, None]
        got = session.run(None, {"x": x.numpy()})
        want = [w.numpy() for w in module(x)]
        assert [g.shape for g in got] == [(n, 1), (n, 1), (n, 1, 2)]
        for g, w in zip(got, want, strict=True):  # the mixture's float32, summed another way
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-5 * max(1.0, np.abs(w).max()))
