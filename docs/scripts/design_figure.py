"""The picture of docs/guides/design.md: the loop design, simulate, train, suggest on
data=sine (seed 1234, as the guide's commands), run in-process with the benchmark's code
(bench/active_learning.py), drawn into docs/design_loop.png. ``make docs-figures`` runs it
(about a minute).

    python docs/scripts/design_figure.py
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
from active_learning import _parse, loop

from polymix_cli.data.synthetic import simulate
from polymix_cli.reporting.evaluation import draw_function
from polymix_cli.runs.checkpoint import load_trained

TARGET = REPO / "docs" / "design_loop.png"
SEED = 1234
ACQUISITION = "integrated_variance"  # suggest.acquisition's default


def _band(run: Path, grid: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """The mean and 80 % band on the grid, and the training data at ``rows`` (noisy, as
    simulated for that round: the inputs file grows, so it is simulated again here)."""
    trained = load_trained(run / "checkpoints" / "last.pt", _parse)
    d = trained.cfg.data
    x, y = simulate(d.generator, torch.from_numpy(rows[:, None]), d.noise_std, d.seed)
    generator = torch.Generator().manual_seed(SEED)
    params = trained.model.sample_parameters(500, generator=generator)
    with torch.no_grad():
        draws = draw_function(trained.model, params, trained.maps)(torch.from_numpy(grid))
    draws = draws[:, :, 0].numpy()
    return (
        draws.mean(0),
        np.quantile(draws, 0.1, axis=0),
        np.quantile(draws, 0.9, axis=0),
        x[:, 0].numpy(),
        y[:, 0].numpy(),
    )


def main() -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with tempfile.TemporaryDirectory(prefix="polymix-design-") as tmp:
        work = Path(tmp)
        row = loop(SEED, work, (ACQUISITION,), noise_seeds=())
        grid = np.linspace(-1, 1, 201)[:, None]
        truth = np.sin(math.pi * grid[:, 0])
        points = row[f"{ACQUISITION}_points"]
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), dpi=120)
        for ax, r, title in (
            (axes[0], 0, "round 0: 6 starting points"),
            (axes[1], 3, "after 3 rounds: 15 points"),
        ):
            rows = np.concatenate([np.asarray(p) for p in points[: r + 1]])
            mean, lo, hi, x, y = _band(work / f"{ACQUISITION}{r}", grid, rows)
            ax.fill_between(grid[:, 0], lo, hi, color="C3", alpha=0.3, label="80 % band")
            ax.plot(grid[:, 0], mean, color="C3", label="mean")
            ax.plot(grid[:, 0], truth, "k--", lw=1, label="sin(pi x)")
            ax.scatter(x, y, c="C0", edgecolors="k", zorder=3, label="simulated (training data)")
            if r < 3:
                nxt = np.asarray(points[r + 1])
                for x in nxt:
                    ax.axvline(x, color="C2", ls=":", lw=1.5)
                ax.plot([], [], color="C2", ls=":", label="suggested next")
            ax.set_title(title)
            ax.set_xlabel("x1")
            ax.set_ylabel("y")
            ax.set_ylim(-1.8, 1.8)
            ax.legend(loc="lower right", fontsize=8)
        ax = axes[2]
        rounds = np.arange(4)
        ax.plot(rounds, row[ACQUISITION], "o-", color="C3", label="design + suggest (6 + 3 x 3)")
        ax.axhline(row["lhs"], color="C0", ls="--", label="15-point Latin hypercube")
        ax.axhline(row["random"], color="0.4", ls=":", label="15 random points")
        ax.set_xticks(rounds, [f"{6 + 3 * r}" for r in rounds])
        ax.set_xlabel("training points")
        ax.set_ylabel("test rmse_true")
        ax.set_yscale("log")
        ax.set_title("error against the noiseless function")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(TARGET)
    print(
        f"{TARGET.relative_to(REPO)}: rmse_true by round "
        f"{', '.join(f'{v:.4f}' for v in row[ACQUISITION])}; lhs {row['lhs']:.4f}, "
        f"random {row['random']:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
