"""A user's own config folder: `polymix train --config-dir DIR experiment=mine`, with
DIR/experiment/mine.yaml an overlay on the shipped configs, run from an empty folder."""

from __future__ import annotations

import json

from helpers import TINY, run_cli

MINE = """\
# @package _global_
# A user's experiment: the shipped groups, picked and adjusted.
defaults:
  - override /data: sine
  - override /model: pce
  - override /layout: pce_iid
  - override /optimizer: mine

name: mine
model: {degree: 2}
"""

OPTIMIZER = """\
# a user's own option of a shipped group
name: adam
lr: 0.02
weight_decay: 0.0
"""


def test_users_config_dir(tmp_path):
    configs = tmp_path / "my_configs"
    (configs / "experiment").mkdir(parents=True)
    (configs / "optimizer").mkdir()
    (configs / "experiment" / "mine.yaml").write_text(MINE)
    (configs / "optimizer" / "mine.yaml").write_text(OPTIMIZER)
    work = tmp_path / "empty"
    work.mkdir()
    run_dir = work / "run"
    result = run_cli(
        "train",
        "--config-dir",
        str(configs),
        "experiment=mine",
        *TINY,
        f"hydra.run.dir={run_dir}",
        cwd=work,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    config = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "name: mine" in config and "degree: 2" in config and "lr: 0.02" in config
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["losses"]["data"] > 0
    assert (run_dir / "checkpoints" / "last.pt").is_file()
