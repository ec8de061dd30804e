"""The experiments and the sweepable model options: composed by Hydra and built in process."""

from __future__ import annotations

import pytest
from helpers import compose_train


def test_moe_sign_resolves_to_the_seed():
    cfg = compose_train(["experiment=moe_sign"])
    assert cfg["trainer"]["epochs"] == 10000 and cfg["trainer"]["num_samples"] == 100
    assert cfg["optimizer"] == {"name": "adamw", "lr": 0.01, "weight_decay": 0.0001}
    assert cfg["scheduler"]["name"] == "onecycle" and cfg["scheduler"]["max_lr_factor"] == 10.0
    assert cfg["data"]["num_train"] == 50 and cfg["data"]["noise_std"] == 0.05
    from polymix_cli.runs.prepare import prepare

    p = prepare(cfg)
    assert p.model.num_params() == 74 and len(p.specs) == 8


@pytest.mark.parametrize(
    "override,expected",
    [
        (["model.gate.width=32"], 4 * 2 + (32 + 32 + 64 + 2)),
        (["model.expert.degree=5"], 6 * 2 + 66),
        (["model.num_experts=3"], 4 * 3 + (16 + 16 + 48 + 3)),
        (["model.gate.depth=2"], 8 + 66 + 16 * 16 + 16),
    ],
)
def test_sweepable_names_change_the_model(override, expected):
    from polymix_cli.runs.prepare import prepare

    assert prepare(compose_train(override)).model.num_params() == expected


@pytest.mark.parametrize("experiment", ["pce_sine", "nn_sincos"])
def test_other_experiments_build(experiment):
    from polymix_cli.runs.prepare import prepare

    p = prepare(compose_train([f"experiment={experiment}"]))
    assert p.model.num_params() > 0 and p.data.num_outputs == (
        2 if experiment == "nn_sincos" else 1
    )
