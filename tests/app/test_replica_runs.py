"""Runs with replicas (trainer.replicas > 1): resume bit for bit, selection, the ensemble
through evaluate and predict, what metrics.json, history.csv and the checkpoints record,
and the options' errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import yaml
from helpers import TINY, QuietUI, compose_train, is_png, train_then_resume, write_csv

from polymix_cli.config.validation import ConfigError
from polymix_cli.runs.checkpoint import load_checkpoint, load_trained
from polymix_cli.runs.train import train

pytestmark = pytest.mark.usefixtures("one_thread")

RUN = [*TINY, "trainer.epochs=40", "eval.num_samples=16", "data.num_test=50"]


def _parse(text):
    return yaml.safe_load(text)


@pytest.mark.parametrize("experiment", ["moe_sign", "moe_sign_nll"])
def test_resume_with_replicas_is_bit_exact(tmp_path, experiment):
    cfg = compose_train(
        [f"experiment={experiment}", *RUN, "trainer.replicas=3", "trainer.checkpoint_every=15"]
    )
    full, resumed = train_then_resume(cfg, tmp_path, "epoch_15.pt")
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert a["replicas"]["loc"].shape[0] == 3
    for part in ("model", "replicas"):
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part])
    assert torch.equal(a["history"]["losses"], b["history"]["losses"])
    assert full["test"] == resumed["test"] and full["replicas"] == resumed["replicas"]


def test_best_keeps_the_replica_with_the_lowest_final_objective(tmp_path):
    cfg = compose_train(["experiment=moe_sign", *RUN, "trainer.replicas=4", "data.num_val=0"])
    metrics = train(cfg, tmp_path, "{}", QuietUI())
    block = metrics["replicas"]
    totals = [r["losses"]["total"] for r in block["replicas"]]
    assert block["count"] == 4 and block["selection"] == "best"
    assert block["criterion"] == "train.total_loss"
    assert block["kept"] == totals.index(min(totals)) and len(set(totals)) == 4
    assert metrics["losses"] == block["replicas"][block["kept"]]["losses"]
    # the checkpoint's model is the kept replica
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    kept = block["kept"]
    assert torch.equal(ckpt["model"]["mean_field.loc"], ckpt["replicas"]["loc"][kept])
    assert ckpt["extra"]["replica_kept"] == kept
    # history.csv: the kept replica's losses, then every replica's total
    with open(tmp_path / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 40 and list(rows[0])[-4:] == [f"total_loss_{k}" for k in range(4)]
    assert float(rows[-1]["total_loss"]) == pytest.approx(totals[kept])
    assert [float(rows[-1][f"total_loss_{k}"]) for k in range(4)] == pytest.approx(totals)
    assert is_png(tmp_path / "plots" / "loss.png")
    assert json.loads((tmp_path / "metrics.json").read_text())["replicas"] == block


def test_one_replica_writes_what_it_always_wrote(tmp_path):
    cfg = compose_train(["experiment=moe_sign", *RUN])
    metrics = train(cfg, tmp_path, "{}", QuietUI())
    assert "replicas" not in metrics
    assert "replicas" not in load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    with open(tmp_path / "history.csv") as handle:
        assert next(csv.reader(handle)) == [
            "epoch",
            "lr",
            "data_loss",
            "distribution_loss",
            "total_loss",
        ]


def test_ensemble_is_the_mixture_of_the_replicas(tmp_path):
    cfg = compose_train(
        ["experiment=moe_sign", *RUN, "trainer.replicas=3", "trainer.replica_selection=ensemble"]
    )
    metrics = train(cfg, tmp_path, yaml.safe_dump(cfg), QuietUI())
    assert metrics["replicas"]["selection"] == "ensemble" and metrics["replicas"]["kept"] is None
    trained = load_trained(tmp_path / "checkpoints" / "last.pt", _parse)
    assert trained.model.num_replicas == 3
    draws = trained.model.sample_parameters(9, torch.Generator().manual_seed(0))
    locs = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["replicas"]["loc"]
    deterministic = torch.ones(locs.shape[1], dtype=torch.bool)
    deterministic[trained.model.replicas.model.mean_field.stochastic_index] = False
    for k in range(3):  # each block of draws holds its replica's deterministic values
        assert torch.equal(
            draws[3 * k : 3 * k + 3, deterministic], locs[k, deterministic].expand(3, -1)
        )


def test_replica_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"trainer\.replicas must be >= 1, got 0"):
        train(compose_train(["experiment=moe_sign", "trainer.replicas=0"]), tmp_path, "", QuietUI())
    with pytest.raises(ConfigError, match="replica_selection=ensemble needs trainer.loss=mse_sum"):
        train(
            compose_train(
                [
                    "experiment=moe_sign_nll",
                    "trainer.replicas=2",
                    "trainer.replica_selection=ensemble",
                ]
            ),
            tmp_path,
            "",
            QuietUI(),
        )


def test_replicas_refuse_a_layout_that_is_not_mean_field(tmp_path):
    overrides = ["experiment=moe_sign", *RUN, "trainer.replicas=2"]
    overrides += ["layout.default.kind=gaussian"]
    with pytest.raises(ConfigError, match="trainer.replicas=2 needs a mean-field layout"):
        train(compose_train(overrides), tmp_path / "run", "", QuietUI())
    assert not (tmp_path / "run").exists()


def _trained_replicas(overrides):
    from polymix_cli.runs.prepare import prepare
    from polymix_cli.runs.replicas import build_replicas
    from polymix_cli.training.loop import Trainer, build_optimizer

    p = prepare(compose_train(["experiment=moe_sign", *RUN, "trainer.epochs=60", *overrides]))
    replicas = build_replicas(p)
    opt = build_optimizer(p.cfg.optimizer, replicas.parameters())
    trainer = Trainer(p.model, p.x_train, p.y_train, p.cfg.trainer, opt, replicas=replicas)
    trainer.fit()
    return p, trainer


def test_best_ranks_by_validation_nll_and_never_looks_at_the_test_set():
    from polymix_cli.runs.replicas import choose_replicas

    p, trainer = _trained_replicas(["trainer.replicas=4", "data.num_val=40"])
    assert p.data.x_val.shape[0] == 40
    choice = choose_replicas(p, trainer)
    nll = [r["val"]["nll"] for r in choice.replicas]
    assert choice.criterion == "val.nll" and choice.kept == nll.index(min(nll))
    assert torch.equal(p.model.mean_field.loc, trainer.replicas.loc[choice.kept])
    # corrupting the test labels changes nothing; the validation labels decide
    p.data.y_test = p.data.y_test * 0 + 100.0
    again = choose_replicas(p, trainer)
    assert again.kept == choice.kept and again.replicas == choice.replicas
    worst = max(range(4), key=nll.__getitem__)
    # move the validation labels to the worst replica's own predictive mean: it now wins
    replica = trainer.replicas.copy_to(worst, p.model)
    with torch.no_grad():
        draws = replica.predict(p.maps.inputs.forward(p.data.x_val), replica.sample_parameters(200))
    p.data.y_val = p.maps.outputs.inverse(draws.mean(0))
    assert choose_replicas(p, trainer).kept == worst


def test_a_run_with_a_validation_split_records_each_replicas_validation_metrics(tmp_path):
    cfg = compose_train(["experiment=moe_sign", *RUN, "trainer.replicas=3", "data.num_val=30"])
    metrics = train(cfg, tmp_path, "{}", QuietUI())
    block = metrics["replicas"]
    nll = [r["val"]["nll"] for r in block["replicas"]]
    assert block["criterion"] == "val.nll" and block["kept"] == nll.index(min(nll))
    assert {"crps", "rmse", "coverage"} <= set(block["replicas"][0]["val"])
    assert "val" in metrics  # the kept replica's own validation block


def test_replicas_and_early_stopping_are_refused_together(tmp_path):
    overrides = ["experiment=moe_sign", "trainer.replicas=2", "trainer.early_stopping.patience=5"]
    with pytest.raises(ConfigError, match="cannot be combined with trainer.replicas=2"):
        train(compose_train(overrides), tmp_path, "", QuietUI())


def test_ensemble_through_the_cli_evaluate_and_predict(cli, tmp_path):
    run = tmp_path / "run"
    args = ["experiment=moe_sign", *RUN, "trainer.replicas=3", "trainer.progress=log"]
    status, err = cli("train", *args, "trainer.replica_selection=ensemble", f"hydra.run.dir={run}")
    assert status == 0, err
    trained = json.loads((run / "metrics.json").read_text())
    ckpt = run / "checkpoints" / "last.pt"
    status, err = cli("evaluate", f"ckpt={ckpt}", f"hydra.run.dir={tmp_path / 'ev'}")
    assert status == 0, err
    evaluated = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert evaluated["test"] == trained["test"]  # the same mixture, the same draws
    write_csv(tmp_path / "in.csv", "x1", ["-0.5", "0.5"])
    status, err = cli(
        "predict",
        f"ckpt={ckpt}",
        f"input={tmp_path / 'in.csv'}",
        f"output={tmp_path / 'out.npz'}",
        "predict.save_draws=true",
        "predict.num_samples=30",
        f"hydra.run.dir={tmp_path / 'p'}",
    )
    assert status == 0, err
    draws = np.load(tmp_path / "out.npz")["y1_draws"]  # (rows, draws): 10 from each replica
    assert draws.shape == (2, 30)
    blocks = draws.reshape(2, 3, 10).mean(2)
    assert not np.allclose(blocks[:, 0], blocks[:, 1])  # the replicas differ


def test_an_ensemble_of_expansions_reports_the_mixtures_active_terms(tmp_path):
    """An ensemble of PCE replicas: metrics.json's active terms and posterior come from the
    mixture of the replicas' posteriors (it crashed: an ensemble has no parameter groups)."""
    cfg = compose_train(
        [
            "experiment=pce_sine",
            *RUN,
            "trainer.epochs=300",
            "trainer.replicas=2",
            "trainer.replica_selection=ensemble",
        ]
    )
    metrics = train(cfg, tmp_path, yaml.safe_dump(cfg), QuietUI())
    assert metrics["replicas"]["selection"] == "ensemble"
    assert {tuple(t["index"]) for t in metrics["active_terms"]} >= {(1,)}  # sin(pi x): odd
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["active_terms"] == metrics["active_terms"]
