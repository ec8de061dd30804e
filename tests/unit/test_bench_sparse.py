"""The pure parts of the small-design benchmark (bench/run.py --sparse): the paired
comparison, the seed ranges and the section written to bench/RESULTS.md."""

from __future__ import annotations

import argparse
import importlib.util
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paired_mean_standard_error_wins_and_medians(bench):
    a, b = [0.1, 0.4, 0.2, 0.3], [0.2, 0.2, 0.3, 0.3]
    p = bench.paired(a, b)
    diff = [-0.1, 0.2, -0.1, 0.0]
    mean = sum(diff) / 4
    sd = math.sqrt(sum((d - mean) ** 2 for d in diff) / 3)
    assert p["mean"] == pytest.approx(mean)
    assert p["se"] == pytest.approx(sd / 2)
    assert (p["wins"], p["losses"], p["ties"], p["n"]) == (2, 1, 1, 4)
    assert (p["median_a"], p["median_b"]) == pytest.approx((0.25, 0.25))


@pytest.mark.parametrize(
    ("wins", "losses", "p_value"),
    # exact two-sided binomial(1/2) tail: 2 * P(X <= min) capped at 1
    [
        (5, 0, 2 / 32),
        (0, 5, 2 / 32),
        (6, 6, 1.0),
        (7, 5, 0.7744140625),
        (30, 20, 0.20263875106454066),
        (10, 0, 2 / 1024),
    ],
)
def test_sign_test_is_the_exact_binomial_tail(bench, wins, losses, p_value):
    a = [0.0] * wins + [1.0] * losses
    assert bench.paired(a, [0.5] * (wins + losses))["sign_p"] == pytest.approx(p_value)


def test_paired_refuses_unmatched_designs(bench):
    with pytest.raises(ValueError, match="same length"):
        bench.paired([0.1, 0.2], [0.1])


def test_seed_ranges_and_cases(bench):
    assert bench.seed_range("50") == range(1, 51)
    assert bench.seed_range("26:50") == range(26, 51)
    assert bench.sparse_case("300:0.5") == (300, 0.5)
    for bad in ("3:2", "x", "1:y"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.seed_range(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="N:NOISE"):
        bench.sparse_case("300")


def row(n, noise, seed, pm_sobol, ot_sobol, coverage=0.8, noise_std=0.5):
    return {
        "n": n,
        "noise": noise,
        "seed": seed,
        "polymix": {
            "rmse_true": 0.2,
            "sobol_error": pm_sobol,
            "noise_std": noise_std,
            "coverage_80": coverage,
            "terms": 12,
            "loo_q2": 0.98,
            "train_seconds": 0.3,
        },
        "openturns": {"rmse_true": 0.3, "sobol_error": ot_sobol, "terms": 20, "train_seconds": 0.1},
    }


def test_section_has_the_paired_line_and_names_designs_off_target(bench):
    rows = [
        row(300, 0.5, 1, 0.01, 0.02),
        row(300, 0.5, 2, 0.02, 0.01, coverage=0.70, noise_std=0.41),
        row(300, 0.5, 3, 0.01, 0.03),
        row(300, 0.0, 1, 0.0, 0.0),
    ]
    text = "\n".join(bench.sparse_lines(rows))
    assert "1 to 3 at N = 300, noise 0.5" in text
    assert "| 300 | 0.5 | 3 | -0.0067 +- 0.0088 | 2 of 3 (p = 1) | 0.0100 / 0.0200 |" in text
    assert "coverage within [0.72, 0.88] in 2 of 3; outside: seed 2 (noise 0.4100" in text
    assert "noise within 20 % in 3 of 3 designs" in text
    # the means, the paired line and the three designs (in the details block)
    assert text.count("| 300 | 0.5 | ") == 5
    assert text.index("<details>") < text.index("| 300 | 0.5 | 2 |") < text.index("</details>")


def test_rows_are_read_from_saved_results_and_printed_output(bench, tmp_path):
    import json

    saved = tmp_path / "sparse.json"
    saved.write_text(json.dumps([row(150, 0.5, 1, 0.01, 0.02), row(150, 0.5, 2, 0.01, 0.02)]))
    printed = tmp_path / "run.log"
    printed.write_text("noise\n" + json.dumps(row(150, 0.5, 2, 0.05, 0.02)) + "\n| table |\n")
    rows = bench.read_sparse_rows([str(saved), str(printed)])
    assert sorted((r["seed"], r["polymix"]["sobol_error"]) for r in rows) == [(1, 0.01), (2, 0.05)]
