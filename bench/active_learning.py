"""Choosing the next simulations: the loop design, simulate, train, suggest, against
one-shot designs of the same size (issue 15, item 3).

On ``data=sine`` (``experiment=pce_sine``: a stochastic degree-5 PCE, noise std 0.05) with
the generator as the simulation (``data.train_inputs``): 6 starting points of a Latin
hypercube, then 3 rounds of 3 points from ``polymix suggest`` (the model retrained from
scratch on all rows after each round): 15 points. Against 15 uniform random points (the
generator's own draws) and a 15-point Latin hypercube, each with the same seed, noise
and test set, by the test ``rmse_true`` (against the noiseless function). Then the
final designs again (the loop's 15 inputs and the Latin hypercube's) with other noise
draws (``data.seed`` in :data:`NOISE_SEEDS`): the design's worth less the luck of one
draw of the noise, which at this size decides many single comparisons.

Run in-process through the same functions as ``polymix train`` and ``polymix suggest``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from polymix_cli.config.compose import compose
from polymix_cli.config.schema import SuggestOptions
from polymix_cli.runs.checkpoint import load_trained
from polymix_cli.runs.design import design_points, suggest_points, write_table
from polymix_cli.runs.prepare import SilentUI
from polymix_cli.runs.train import train

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = str(ROOT / "configs")
# eval.num_samples=2000: rmse_true is that of the mean of the draws; with 200 its Monte
# Carlo error (about 0.004 here) was of the size of the differences between the designs
BASE = ["experiment=pce_sine", "eval.sensitivity=off", "eval.num_samples=2000"]
BOUNDS = np.array([[-1.0, 1.0]])
ACQUISITIONS = ("integrated_variance", "epistemic_std")  # the default first
NOISE_SEEDS = (1001, 1002, 1003, 1004)  # the designs again under other noise draws


def _parse(text: str) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.create(text), resolve=True)  # type: ignore[return-value]


def _train(run_dir: Path, overrides: list[str]) -> dict[str, Any]:
    import yaml

    cfg = compose("train", [*BASE, *overrides], CONFIGS)
    return train(cfg, run_dir, yaml.safe_dump(cfg), SilentUI())


def _loop(seed: int, work: Path, acquisition: str, start: int, rounds: int, per_round: int):
    import torch

    inputs = work / f"inputs_{acquisition}.csv"
    x = design_points(start, BOUNDS, "lhs", seed)
    write_table(inputs, ["x1"], x)
    rmse, history = [], [x[:, 0].tolist()]
    options = SuggestOptions(acquisition=acquisition)
    for r in range(rounds + 1):
        run = work / f"{acquisition}{r}"
        metrics = _train(run, [f"seed={seed}", f"data.seed={seed}", f"data.train_inputs={inputs}"])
        rmse.append(metrics["test"]["rmse_true"])
        if r == rounds:
            break
        trained = load_trained(run / "checkpoints" / "last.pt", _parse)
        found = suggest_points(trained, torch.from_numpy(x), per_round, options, seed)
        x = np.concatenate([x, found.points])
        history.append(found.points[:, 0].tolist())
        write_table(inputs, ["x1"], x)
    return rmse, history


def loop(
    seed: int,
    work: Path,
    acquisitions: tuple[str, ...] = ACQUISITIONS,
    start: int = 6,
    rounds: int = 3,
    per_round: int = 3,
    noise_seeds: tuple[int, ...] = NOISE_SEEDS,
) -> dict[str, Any]:
    """One seed of the comparison: the test rmse_true after each round of the loop (for
    each acquisition) and of the one-shot designs, the loop's points by round, and the
    final designs (the loop's with the first acquisition) under the other noise draws
    ``noise_seeds``."""
    row: dict[str, Any] = {"seed": seed}
    for acquisition in acquisitions:
        row[acquisition], row[f"{acquisition}_points"] = _loop(
            seed, work, acquisition, start, rounds, per_round
        )
    total = start + rounds * per_round
    common = [f"seed={seed}", f"data.seed={seed}"]
    lhs = work / "lhs.csv"
    write_table(lhs, ["x1"], design_points(total, BOUNDS, "lhs", seed))
    row["lhs"] = _train(work / "lhs", [*common, f"data.train_inputs={lhs}"])["test"]["rmse_true"]
    row["random"] = _train(work / "random", [*common, f"data.num_train={total}"])["test"][
        "rmse_true"
    ]
    # the same 15 inputs of the loop (default acquisition) and of the Latin hypercube,
    # simulated with other noise draws: how good the designs are, less the luck of one
    # noise draw (for a PCE the suggestions depend on the inputs, not on the values seen)
    final = work / "final.csv"
    write_table(final, ["x1"], np.concatenate(row[f"{acquisitions[0]}_points"])[:, None])
    for name, path in (("loop", final), ("lhs", lhs)) if noise_seeds else ():
        row[f"{name}_resampled"] = [
            _train(
                work / f"{name}{k}", [f"seed={seed}", f"data.seed={k}", f"data.train_inputs={path}"]
            )["test"]["rmse_true"]
            for k in noise_seeds
        ]
    return row


def compare(seeds: range = range(10), acquisitions: tuple[str, ...] = ACQUISITIONS) -> dict:
    """The comparison over ``seeds``: per seed, and how often the loop wins."""
    logging.getLogger("polymix").setLevel(logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory(prefix="polymix-al-") as tmp:
        for seed in seeds:
            work = Path(tmp) / str(seed)
            work.mkdir()
            r = loop(seed, work, acquisitions)
            rows.append(r)
            loops = ", ".join(f"{a} {' > '.join(f'{v:.4f}' for v in r[a])}" for a in acquisitions)
            print(f"seed {seed}: {loops}; lhs {r['lhs']:.4f}, random {r['random']:.4f}", flush=True)
    lhs = np.array([r["lhs"] for r in rows])
    rnd = np.array([r["random"] for r in rows])
    out: dict[str, Any] = {
        "rows": rows,
        "median": {"lhs": float(np.median(lhs)), "random": float(np.median(rnd))},
    }
    loop_mean = np.array([np.mean(r["loop_resampled"]) for r in rows])
    lhs_mean = np.array([np.mean(r["lhs_resampled"]) for r in rows])
    out["resampled"] = {
        "acquisition": acquisitions[0],
        "noise_seeds": list(NOISE_SEEDS),
        "wins_vs_lhs": int((loop_mean < lhs_mean).sum()),
        "mean_loop": float(loop_mean.mean()),
        "mean_lhs": float(lhs_mean.mean()),
    }
    for a in acquisitions:
        final = np.array([r[a][-1] for r in rows])
        out[a] = {
            "wins_vs_lhs": int((final < lhs).sum()),
            "wins_vs_random": int((final < rnd).sum()),
            "median": float(np.median(final)),
            "median_by_round": [float(v) for v in np.median([r[a] for r in rows], axis=0)],
        }
    return out


if __name__ == "__main__":
    print(json.dumps(compare(range(1)), indent=1))
