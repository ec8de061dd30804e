"""polymix benchmark: speed and memory, side by side with the peer library ``pypolymix``.

    make bench                      # everything (several minutes on 2 cores)
    .venv/bin/python bench/run.py --quick
    make bench BENCH_ARGS=--sparse  # small designs: sparse PCE against OpenTURNS (bench extra)
    make bench BENCH_ARGS="--sparse --sparse-seeds 50"  # 50 designs per case (slow: see --help)
    .venv/bin/python bench/run.py --sparse-from bench/results/sparse-*.json  # only its section
    .venv/bin/python bench/run.py --design   # only design/suggest against one-shot designs
    make bench BENCH_ARGS="--csv --loggers"   # only those sections of RESULTS.md
    make bench BENCH_ARGS=--replicas            # only the replicas section (about 10 min)
    make bench BENCH_ARGS="--replicas timing"   # only its timings, the reliability runs kept
    make bench BENCH_ARGS=--wide                # only models of 50 inputs (a few minutes)

Writes ``bench/results/<date>.json``, prints a table and rewrites ``bench/RESULTS.md``.
Each memory figure comes from a fresh subprocess: the peak resident memory (VmHWM, reset
just before the measured work) above the resident memory at that point. Timings are medians over
repetitions; the seed comparison alternates polymix and the peer in one process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "tests"))  # compose_train: the real Hydra configs


# -- helpers -----------------------------------------------------------------------------------
def reset_peak() -> None:
    """Reset this process's peak resident memory (Linux: VmHWM), so that the next
    :func:`peak_mib` measures only what follows."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def peak_mib() -> float:
    """Peak resident memory (VmHWM) of this process in MiB since the last reset."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    """Current resident memory of this process in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def median_time(fn, repeats: int, warmup: int = 1) -> float:
    return median_times(fn, repeats, warmup)[0]


def median_times(fn, repeats: int, warmup: int = 1) -> tuple[float, float]:
    """Median wall time and median CPU time (all threads of this process, user and system:
    page faults included) of ``fn``; the CPU time is less disturbed by other processes."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


# How a worker's malloc is set up (see --allocator): "mallopt", as `polymix` does at start-up
# (polymix_cli.cli.allocator); "env", the environment variables that polymix's former re-exec
# set before the process started (glibc reads them then); "system", glibc's defaults.
MALLOC_MODES = {
    "mallopt": {},
    "env": {
        "MALLOC_MMAP_THRESHOLD_": str(1 << 32),
        "MALLOC_TRIM_THRESHOLD_": str(1 << 33),
        "POLYMIX_MALLOC": "env",
    },
    "system": {"POLYMIX_MALLOC": "system"},
}


def worker(args: list[str], malloc: str = "mallopt") -> dict:
    """Run one measurement in a fresh process: ``python bench/run.py --worker KIND ...``,
    its allocator set up as ``malloc`` says (:data:`MALLOC_MODES`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "POLYMIX_MALLOC"))}
    out = subprocess.run(
        [sys.executable, __file__, "--worker", *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**env, **MALLOC_MODES[malloc]},
    )
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the seed experiment -------------------------------------------------------------------------
def config_trainer(overrides: list[str], gradients: str = "auto", scheduler: bool = False):
    """A Trainer as `polymix train` builds it from the Hydra configs with ``overrides``
    (draws, weight and loss from the config; ``gradients`` as ``trainer.gradients``),
    with no epoch limit; with ``scheduler``, the config's schedule over 1e9 steps."""
    from conftest import compose_train

    from polymix_cli.runs.prepare import prepare
    from polymix_cli.training.loop import Trainer, TrainSettings, build_optimizer, build_scheduler

    p = prepare(compose_train(overrides))
    t = p.cfg.trainer
    opt = build_optimizer(p.cfg.optimizer, p.model.parameters())
    return Trainer(
        p.model,
        p.data.x_train,
        p.data.y_train,
        TrainSettings(10**9, t.num_samples, t.weight_factor, t.loss, gradients=gradients),
        opt,
        build_scheduler(p.cfg.scheduler, opt, 10**9) if scheduler else None,
    )


def seed_polymix(gradients: str = "auto"):
    """A step function for moe_sign exactly as `polymix train` builds it (``gradients``:
    ``auto``, the default hand-derived gradients, or ``autograd``)."""
    return config_trainer(["experiment=moe_sign"], gradients, scheduler=True).step


def seed_peer():
    """The seed notebook's training step against pypolymix."""
    import torch
    from pypolymix import StochasticModel
    from pypolymix.parameter_groups import DeterministicGroup, IIDGaussianGroup
    from pypolymix.surrogate_models import GatingNetwork, MixtureOfExperts, PolynomialChaosExpansion

    torch.manual_seed(1234)
    x = 2 * torch.rand(50, 1) - 1
    y = torch.sin(torch.pi * x) + torch.sign(x) + 0.05 * torch.randn(x.shape)
    surrogate = MixtureOfExperts(
        experts=[PolynomialChaosExpansion(num_inputs=1, num_outputs=1, degree=3) for _ in range(2)],
        gating_network=GatingNetwork(
            num_inputs=1, num_experts=2, width=16, depth=1, activation=torch.nn.functional.tanh
        ),
    )
    groups = [
        IIDGaussianGroup("e1_c0", 2),
        DeterministicGroup("e1_c", 2),
        IIDGaussianGroup("e2_c0", 2),
        DeterministicGroup("e2_c", 2),
        DeterministicGroup("gw", 16),
        DeterministicGroup("gb", 16),
        IIDGaussianGroup("gow", 32),
        IIDGaussianGroup("gob", 2),
    ]
    model = StochasticModel(surrogate_model=surrogate, parameter_groups=groups)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10**9)
    loss_fn = torch.nn.MSELoss(reduction="sum")

    def step():
        opt.zero_grad()
        params = model.sample_parameters(num_samples=100)
        y_hat = surrogate(x, params)
        total = (
            loss_fn(y_hat, y.unsqueeze(0).expand_as(y_hat)) / 100 + 0.1 * model.distribution_loss()
        )
        total.backward()
        opt.step()
        sched.step()

    return step


def bench_seed(rounds: int, steps: int) -> dict:
    import torch

    torch.set_num_threads(1)
    ours, ours_autograd = seed_polymix(), seed_polymix("autograd")
    try:
        peer = seed_peer()
    except ImportError:
        peer = None
    rates: dict[str, list[float]] = {"polymix": [], "polymix_autograd": [], "pypolymix": []}
    for _ in range(rounds):  # alternate, so that all see the same machine conditions
        for name, fn in (
            ("polymix", ours),
            ("polymix_autograd", ours_autograd),
            ("pypolymix", peer),
        ):
            if fn is None:
                continue
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            rates[name].append(steps / (time.perf_counter() - start))
    out = {name: statistics.median(v) for name, v in rates.items() if v}
    out["rounds"], out["steps_per_round"] = rounds, steps
    if "pypolymix" in out:
        out["ratio"] = out["polymix"] / out["pypolymix"]
    return out


def bench_train_wall() -> dict:
    """The whole `polymix train experiment=moe_sign`, start-up and outputs included."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        out = subprocess.run(
            [
                str(Path(sys.executable).parent / "polymix"),
                "train",
                "experiment=moe_sign",
                f"hydra.run.dir={tmp}",
                "trainer.progress=log",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - start
        metrics = (
            json.loads((Path(tmp) / "metrics.json").read_text()) if out.returncode == 0 else {}
        )
    return {
        "wall_seconds": wall,
        "returncode": out.returncode,
        "train_seconds": metrics.get("timing", {}).get("train_seconds"),
        "final_losses": metrics.get("losses"),
    }


# -- polynomial chaos scaling ----------------------------------------------------------------------
def pce_worker(
    impl: str,
    d: int,
    degree: int,
    n: int,
    draws: int,
    batch: int | None,
    threads: int,
    repeats: int = 0,
) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.rand(n, d) * 2 - 1
    y = torch.sin(x).sum(1, keepdim=True)
    base = rss_mib()
    reset_peak()
    if impl == "polymix":
        from polymix_cli import StochasticModel
        from polymix_cli.parameter_groups import IIDGaussianGroup
        from polymix_cli.surrogate_models import PolynomialChaosExpansion
        from polymix_cli.training.loop import Trainer, TrainSettings, build_optimizer

        pce = PolynomialChaosExpansion(d, 1, degree)
        model = StochasticModel(pce, [IIDGaussianGroup("coeffs", pce.num_params())])
        from polymix_cli.config.schema import AdamWConfig

        opt = build_optimizer(AdamWConfig(lr=1e-3, weight_decay=0.0), model.parameters())
        trainer = Trainer(model, x, y, TrainSettings(10**9, draws, 0.1, batch_size=batch), opt)
        terms = pce.num_terms
        if batch:

            def step():  # one mini-batch step on a random batch, as within an epoch
                idx = torch.randint(0, n, (batch,))
                trainer.step(x[idx], y[idx])
        else:
            step = trainer.step
    else:
        from pypolymix import StochasticModel
        from pypolymix.parameter_groups import IIDGaussianGroup
        from pypolymix.surrogate_models import PolynomialChaosExpansion

        pce = PolynomialChaosExpansion(num_inputs=d, num_outputs=1, degree=degree)
        model = StochasticModel(
            surrogate_model=pce, parameter_groups=[IIDGaussianGroup("c", pce.num_params())]
        )
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def step():
            opt.zero_grad()
            y_hat = pce(x, model.sample_parameters(num_samples=draws))
            ((y_hat - y).square().sum() / draws + 0.1 * model.distribution_loss()).backward()
            opt.step()

        terms = pce.num_params()
    start = time.perf_counter()
    step()  # the first step also builds (and caches) the basis
    first = time.perf_counter() - start
    repeats = repeats or (1 if first > 5 else (3 if first > 0.5 else 10))
    per_step, cpu_per_step = median_times(step, repeats, warmup=0)
    return {
        "impl": impl,
        "d": d,
        "degree": degree,
        "n": n,
        "draws": draws,
        "batch": batch,
        "terms": terms,
        "threads": threads,
        "first_step_s": first,
        "step_ms": 1e3 * per_step,
        "step_cpu_ms": 1e3 * cpu_per_step,
        "peak_mib": peak_mib() - base,
        "data_mib": (x.numel() + y.numel()) * 4 / 2**20,
    }


def bench_pce(quick: bool, threads: int) -> list[dict]:
    rows = []
    dims, degrees, sizes = (
        ([2, 8], [3, 5], [1000, 10000]) if quick else ([2, 5, 8], [3, 5], [1000, 10000, 100000])
    )
    for d in dims:
        for p in degrees:
            peer_ok = True
            for n in sizes:
                rows.append(
                    worker(["pce", "polymix", str(d), str(p), str(n), "32", "0", str(threads)])
                )
                if peer_ok:  # the peer only where it finishes in reasonable time
                    row = worker(
                        ["pce", "pypolymix", str(d), str(p), str(n), "32", "0", str(threads)]
                    )
                    rows.append(row)
                    peer_ok = "error" not in row and row["step_ms"] < 3000
    for n in [100000] if quick else [100000, 1000000]:  # mini-batches: memory must not grow with N
        rows.append(worker(["pce", "polymix", "8", "5", str(n), "32", "10000", str(threads)]))
    return rows


def bench_allocator(threads: int, rounds: int = 5, steps: int = 10) -> dict:
    """The mini-batch step at N = 1e5 (d = 8, degree 5: 1287 terms, batches of 1e4, 32
    draws) under each malloc set-up of :data:`MALLOC_MODES`, side by side: every round runs
    one fresh process per set-up, in turn; medians over the rounds of each process's
    median step."""
    args = ["pce", "polymix", "8", "5", "100000", "32", "10000", str(threads), str(steps)]
    runs: dict[str, list[dict]] = {mode: [] for mode in MALLOC_MODES}
    for _ in range(rounds):
        for mode in MALLOC_MODES:
            runs[mode].append(worker(args, malloc=mode))
    out: dict = {"n": 100000, "batch": 10000, "terms": 1287, "threads": threads}
    out["rounds"], out["steps_per_round"] = rounds, steps
    for mode, rows in runs.items():
        ok = [r for r in rows if "error" not in r]
        if not ok:
            out[mode] = {"error": rows[-1]["error"]}
            continue
        out[mode] = {
            "step_ms": statistics.median(r["step_ms"] for r in ok),
            "step_cpu_ms": statistics.median(r["step_cpu_ms"] for r in ok),
            "step_ms_rounds": [r["step_ms"] for r in ok],
            "peak_mib": statistics.median(r["peak_mib"] for r in ok),
        }
    return out


def allocator_lines(a: dict) -> list[str]:
    lines = [
        (
            f"## malloc set-up: the mini-batch step at N = {a['n']} (batch {a['batch']}, "
            f"{a['terms']} terms, {a['threads']} threads)"
        ),
        "",
        (
            f"Side by side: {a['rounds']} rounds of one fresh process per set-up, "
            f"{a['steps_per_round']} steps each; the median over the rounds. CPU ms: all "
            "threads, user and system time (page faults included)."
        ),
        "",
        "| set-up | step ms | CPU ms per step | peak MiB |",
        "|---|---|---|---|",
    ]
    names = {
        "mallopt": "`mallopt` at start-up (polymix now)",
        "env": "environment variables before start (polymix's former re-exec)",
        "system": "glibc's defaults (`POLYMIX_MALLOC=system`)",
    }
    for mode, name in names.items():
        r = a.get(mode, {})
        lines.append(
            f"| {name} | {r['step_ms']:.1f} | {r['step_cpu_ms']:.1f} | {r['peak_mib']:.0f} |"
            if "step_ms" in r
            else f"| {name} | error: {r.get('error')} | | |"
        )
    return lines


# -- replicas ---------------------------------------------------------------------------------------
REPLICA_SEEDS = tuple(range(1, 9))
REPLICA_FAILED = {"crps": 0.08, "coverage_0.8": 0.7}  # a run fails above / below these


def replica_trainer(overrides: list[str], replicas: int):
    """A Trainer for ``trainer.replicas=replicas`` exactly as `polymix train` builds it
    (the config's schedule, stretched over 1e9 steps so that timing can run on)."""
    from conftest import compose_train

    from polymix_cli.runs.prepare import prepare
    from polymix_cli.runs.replicas import build_replicas
    from polymix_cli.training.loop import Trainer, build_optimizer, build_scheduler

    p = prepare(compose_train([*overrides, f"trainer.replicas={replicas}"]))
    r = build_replicas(p)
    opt = build_optimizer(p.cfg.optimizer, (p.model if r is None else r).parameters())
    trainer = Trainer(p.model, p.x_train, p.y_train, p.cfg.trainer, opt, replicas=r)
    trainer.scheduler = build_scheduler(p.cfg.scheduler, opt, 10**9)
    return trainer


def replica_run_worker(seed: int, replicas: int, degree: int) -> dict:
    """One whole moe_sign run (in-process `train`) at expert degree ``degree``."""
    import torch
    from conftest import compose_train
    from helpers import QuietUI

    from polymix_cli.runs.train import train

    torch.set_num_threads(1)
    cfg = compose_train(
        [
            "experiment=moe_sign",
            f"model.expert.degree={degree}",
            f"seed={seed}",
            f"trainer.replicas={replicas}",
        ]
    )
    with tempfile.TemporaryDirectory() as tmp:
        m = train(cfg, Path(tmp), "{}", QuietUI())
    crps, cov = m["test"]["crps"], m["test"]["coverage"]["0.8"]
    return {
        "seed": seed,
        "replicas": replicas,
        "degree": degree,
        "test_crps": crps,
        "test_coverage_0.8": cov,
        "total_loss": m["losses"]["total"],
        "failed": crps >= REPLICA_FAILED["crps"] or cov < REPLICA_FAILED["coverage_0.8"],
        "kept": (m.get("replicas") or {}).get("kept"),
        "criterion": (m.get("replicas") or {}).get("criterion"),
        "train_seconds": m["timing"]["train_seconds"],
    }


def replica_timing_worker(case: str, counts: str, threads: int, rounds: int, steps: int) -> dict:
    """Steps per second of trainers with each number of replicas in ``counts`` (comma
    separated; ``KxS`` for ``K`` replicas of ``S`` draws, e.g. ``1x400``: one model with the
    draws of 4 replicas, the cost of the draws alone), alternating in one process so that
    all see the same machine conditions; ``case`` ``seed`` is moe_sign, ``moe4`` 4 experts
    at N = 1e4."""
    import torch

    torch.set_num_threads(threads)
    overrides = {
        "seed": ["experiment=moe_sign"],
        "moe4": ["experiment=moe_sign", "model.num_experts=4", "data.num_train=10000"],
    }[case]
    labels = counts.split(",")
    trainers = {}
    for label in labels:
        k, _, draws = label.partition("x")
        extra = [f"trainer.num_samples={draws}"] if draws else []
        trainers[label] = replica_trainer([*overrides, *extra], int(k))
    for tr in trainers.values():  # warm up
        for _ in range(max(5, steps // 10)):
            tr.step()
    wall: dict[str, list[float]] = {k: [] for k in labels}
    cpu: dict[str, list[float]] = {k: [] for k in labels}
    for _ in range(rounds):
        for k, tr in trainers.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                tr.step()
            wall[k].append((time.perf_counter() - start) / steps)
            cpu[k].append((time.process_time() - start_cpu) / steps)
    base_wall, base_cpu = statistics.median(wall[labels[0]]), statistics.median(cpu[labels[0]])
    return {
        "case": case,
        "threads": threads,
        "rounds": rounds,
        "steps_per_round": steps,
        "rows": [
            {
                "replicas": trainers[k].replicas.num_replicas if trainers[k].replicas else 1,
                "draws": trainers[k].settings.num_samples,
                "step_ms": 1e3 * statistics.median(wall[k]),
                "step_cpu_ms": 1e3 * statistics.median(cpu[k]),
                "ratio": statistics.median(wall[k]) / base_wall,
                "cpu_ratio": statistics.median(cpu[k]) / base_cpu,
            }
            for k in labels
        ],
    }


def bench_replicas(quick: bool, threads: int, runs: list[dict] | None = None) -> dict:
    """Reliability over seeds (expert degree 5, 1 against 4 replicas; ``runs``: those of
    an earlier measurement, kept), the time of a step with 1, 4 and 16 replicas on
    moe_sign, and with 1 and 4 at 4 experts and N = 1e4."""
    from concurrent.futures import ThreadPoolExecutor

    seeds = REPLICA_SEEDS[:4] if quick else REPLICA_SEEDS
    jobs = [(s, k) for k in (1, 4) for s in seeds]
    if runs is None:
        with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
            runs = list(
                pool.map(lambda job: worker(["replica_run", str(job[0]), str(job[1]), "5"]), jobs)
            )
    return {
        "runs": runs,
        "seed_timing": worker(
            [
                "replica_timing",
                "seed",
                "1,4,16,1x400",
                "1",
                "3" if quick else "5",
                "300" if quick else "1000",
            ]
        ),
        "moe4_timing": worker(
            ["replica_timing", "moe4", "1,4", str(threads), "3", "10" if quick else "30"]
        ),
    }


def replica_lines(r: dict, result: dict | None = None) -> list[str]:
    lines = ["## Replicas (`trainer.replicas`)", ""]
    if result is not None and "machine" in result:
        m = result["machine"]
        lines += [
            (
                f"Measured {result['date']} ({m['cores']} cores, load average at start "
                f"{m['load_average'][0]:.1f}; `make bench BENCH_ARGS=--replicas`)."
            ),
            "",
        ]
    lines += [
        (
            "Reliability: `polymix train experiment=moe_sign model.expert.degree=5 seed=S "
            "trainer.replicas=K` (10000 epochs; with K = 4, `replica_selection=best` keeps the "
            "replica with the lowest validation NLL, `val.nll`, when the data have a validation "
            "split, else the lowest final training objective, `train.total_loss`: the "
            "`kept (by)` column). A run fails with test crps >= "
            f"{REPLICA_FAILED['crps']} or coverage at 0.8 below {REPLICA_FAILED['coverage_0.8']}."
        ),
        "",
        "| seed | K | test crps | coverage 0.8 | total loss | kept (by) | failed | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    failures: dict[int, list[int]] = {}
    for run in sorted(r["runs"], key=lambda x: (x.get("replicas", 0), x.get("seed", 0))):
        if "error" in run:
            lines.append(f"| error: {run['error']} |")
            continue
        failures.setdefault(run["replicas"], []).append(int(run["failed"]))
        lines.append(
            f"| {run['seed']} | {run['replicas']} | {run['test_crps']:.4f} | "
            f"{run['test_coverage_0.8']:.3f} | {run['total_loss']:.3f} | "
            f"{_kept(run)} | {'yes' if run['failed'] else 'no'} | "
            f"{run['train_seconds']:.1f} |"
        )
    lines += [
        "",
        "Failed runs: "
        + ", ".join(f"{sum(v)} of {len(v)} with K = {k}" for k, v in sorted(failures.items()))
        + ".",
    ]
    for key, title in (
        ("seed_timing", "One step of moe_sign (50 points, 100 draws per replica, one thread)"),
        ("moe4_timing", "One step of 4 experts at N = 1e4 (100 draws per replica)"),
    ):
        t = r[key]
        lines += ["", f"{title}:", ""]
        if "error" in t:
            lines.append(f"error: {t['error']}")
            continue
        lines += [
            (
                "| replicas | draws per replica | step ms | CPU ms | time / one replica's "
                "| CPU / one replica's |"
            ),
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {row['replicas']} | {row.get('draws', 100)} | {row['step_ms']:.2f} | "
            f"{row['step_cpu_ms']:.2f} | {row['ratio']:.2f}x | {row['cpu_ratio']:.2f}x |"
            for row in t["rows"]
        ]
        lines += [
            "",
            (
                f"({t['threads']} thread(s); medians of {t['rounds']} alternating rounds of "
                f"{t['steps_per_round']} steps.)"
            ),
        ]
    return lines


def _kept(run: dict) -> str:
    if run.get("kept") is None:
        return ""
    by = run.get("criterion") or "train.total_loss"  # the first results predate the key
    return f"{run['kept']} ({by})"


def write_replica_section(result: dict) -> str:
    """Replace (or add) the replicas section of bench/RESULTS.md; returns the section."""
    section = "\n".join(replica_lines(result["replicas"], result)) + "\n"
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    head, sep, rest = text.partition("## Replicas (`trainer.replicas`)")
    tail = ""
    if sep:
        after = rest.find("\n## ")
        tail = rest[after + 1 :] if after >= 0 else ""
    path.write_text(head.rstrip("\n") + "\n\n" + section + ("\n" + tail if tail else ""))
    return section


# -- mixtures and evaluation --------------------------------------------------------------------
def moe_worker(num_experts: int, n: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    trainer = config_trainer(
        ["experiment=moe_sign", f"model.num_experts={num_experts}", f"data.num_train={n}"]
    )
    per_step = median_time(trainer.step, 50 if n < 1000 else 10, warmup=5)
    return {
        "experts": num_experts,
        "n": n,
        "draws": trainer.settings.num_samples,
        "num_params": trainer.model.num_params(),
        "step_ms": 1e3 * per_step,
        "epochs_per_s": 1 / per_step,
    }


AB_CASES = {  # name -> (config overrides, threads: 0 = --threads)
    "nn_sincos (50 points, 50 draws)": (["experiment=nn_sincos"], 1),
    "nn_sincos, all layers random": (["experiment=nn_sincos", "layout=all_iid"], 1),
    "moe_sign, all parameters random": (["experiment=moe_sign", "layout=all_iid"], 1),
    "pce_sine, N = 1e4": (["experiment=pce_sine", "data.num_train=10000"], 0),
    "2 experts, N = 1e4": (["experiment=moe_sign", "data.num_train=10000"], 0),
    "4 experts, N = 1e4": (
        ["experiment=moe_sign", "model.num_experts=4", "data.num_train=10000"],
        0,
    ),
    "8 experts, N = 1e4": (
        ["experiment=moe_sign", "model.num_experts=8", "data.num_train=10000"],
        0,
    ),
}


def ab_worker(case: str, threads: int) -> dict:
    """Both gradient paths (``trainer.gradients`` auto and autograd) on one model, steps
    alternating in one process: median step times."""
    import torch

    overrides, fixed = AB_CASES[case]
    torch.set_num_threads(fixed or threads)
    trainers = {
        gradients: config_trainer(overrides, gradients) for gradients in ("auto", "autograd")
    }
    times: dict[str, list[float]] = {g: [] for g in trainers}
    repeats = 200 if trainers["auto"].x.shape[0] < 1000 else 15
    for _ in range(repeats + 3):
        for gradients, trainer in trainers.items():
            start = time.perf_counter()
            trainer.step()
            times[gradients].append(time.perf_counter() - start)
    analytic, autograd = (1e3 * statistics.median(times[g][3:]) for g in ("auto", "autograd"))
    return {
        "case": case,
        "path": trainers["auto"].gradient_path,
        "threads": fixed or threads,
        "analytic_ms": analytic,
        "autograd_ms": autograd,
    }


def eval_worker(n: int, draws: int, threads: int) -> dict:
    import torch
    from conftest import compose_train

    from polymix_cli.reporting.evaluation import evaluate_model
    from polymix_cli.runs.prepare import prepare

    torch.set_num_threads(threads)
    p = prepare(
        compose_train(["experiment=moe_sign", f"data.num_test={n}", f"eval.num_samples={draws}"])
    )
    base = rss_mib()
    reset_peak()
    start = time.perf_counter()
    ev = evaluate_model(p.model, p.data, p.cfg.eval, seed=0)
    return {
        "points": n,
        "draws": draws,
        "seconds": time.perf_counter() - start,
        "peak_mib": peak_mib() - base,
        "test_crps": ev.splits["test"]["crps"],
    }


# -- large CSV files -------------------------------------------------------------------------------
CSV_ROWS, CSV_COLUMNS = 500_000, 5


def write_bench_csv(path: Path, rows: int = CSV_ROWS) -> None:
    """A CSV file of ``rows`` x 5 random numbers (17 significant digits: float64 exactly)."""
    import numpy as np

    values = np.random.default_rng(0).standard_normal((rows, CSV_COLUMNS))
    with path.open("w") as handle:
        handle.write(",".join(f"c{j}" for j in range(CSV_COLUMNS)) + "\n")
        np.savetxt(handle, values, delimiter=",", fmt="%.17g")


def csv_worker(impl: str, path: str, repeats: int) -> dict:
    """Read the whole file ``repeats`` times by ``impl`` (loadtxt, polymix: the data=file
    reader, checking: polymix's checking parser alone): median time, peak memory of the
    first read above the process's resident memory before it."""
    import numpy as np

    from polymix_cli.data.files import Table, open_table

    names = [f"c{j}" for j in range(CSV_COLUMNS)]

    def read():
        if impl == "loadtxt":
            return np.loadtxt(path, delimiter=",", skiprows=1)
        table = open_table(path, "data.path")
        block = table.read(names) if impl == "polymix" else Table.read(table, names)
        return block.values

    base = rss_mib()
    reset_peak()
    start = time.perf_counter()
    values = read()
    first = time.perf_counter() - start
    peak = peak_mib() - base
    del values
    seconds = median_time(read, repeats, warmup=0) if repeats else first
    return {"impl": impl, "seconds": min(first, seconds), "peak_mib": peak}


def bench_csv(quick: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.csv"
        write_bench_csv(path)
        repeats = "1" if quick else "3"
        rows = {
            impl: worker(["csv", impl, str(path), repeats])
            for impl in ("loadtxt", "polymix", "checking")
        }
    return {"rows": CSV_ROWS, "columns": CSV_COLUMNS, **rows}


def csv_lines(c: dict) -> list[str]:
    lines = [
        f"## Large CSV files ({c['rows']:,} rows x {c['columns']} columns, 17 digits)",
        "",
        (
            "Reading the whole file (`data=file`, `polymix predict`'s input); memory is the peak "
            "above the process before the read (a fresh process each)."
        ),
        "",
        "| reader | seconds | peak MiB | time / loadtxt | memory / loadtxt |",
        "|---|---|---|---|---|",
    ]
    ref = c["loadtxt"]
    names = {
        "loadtxt": "`numpy.loadtxt`",
        "polymix": "polymix (fast path)",
        "checking": "polymix's checking parser (bad rows by line)",
    }
    for impl in ("loadtxt", "polymix", "checking"):
        r = c[impl]
        if "error" in r:
            lines.append(f"| {names[impl]} | error: {r['error']} | | | |")
            continue
        lines.append(
            f"| {names[impl]} | {r['seconds']:.2f} | {r['peak_mib']:.0f} | "
            f"{r['seconds'] / ref['seconds']:.2f}x | {r['peak_mib'] / max(ref['peak_mib'], 1e-9):.2f}x |"
        )
    return lines


# -- experiment trackers ---------------------------------------------------------------------------
def loggers_worker(rounds: int, steps: int) -> dict:
    """The seed step with and without the trackers' hook (every installed logger at
    once, logging every 1000 epochs as the seed does), alternating in one process."""
    import importlib.util
    import threading

    import torch

    from polymix_cli.config.schema import (
        CsvLoggerConfig,
        MlflowLoggerConfig,
        TensorBoardLoggerConfig,
    )
    from polymix_cli.reporting.loggers import (
        CsvLogger,
        Loggers,
        MlflowLogger,
        RunInfo,
        TensorBoardLogger,
    )

    torch.set_num_threads(1)
    trainer = config_trainer(["experiment=moe_sign"], scheduler=True)
    with tempfile.TemporaryDirectory() as tmp:
        info = RunInfo(Path(tmp) / "run", "bench", launch_dir=Path(tmp))
        objects = [CsvLogger(CsvLoggerConfig(), info)]
        if importlib.util.find_spec("tensorboard"):
            objects.append(TensorBoardLogger(TensorBoardLoggerConfig(), info))
        if importlib.util.find_spec("mlflow"):
            uri = f"sqlite:///{tmp}/mlflow.db"
            objects.append(MlflowLogger(MlflowLoggerConfig(tracking_uri=uri), info))
        for obj in objects:  # started here, so that creating the stores is not measured
            obj.start({"seed": 1234}, "seed: 1234\n")
        loggers = Loggers(objects)
        loggers._thread = threading.Thread(target=loggers._work, daemon=True)
        loggers._thread.start()
        hooks = {"without": [], "with": [loggers.hook(1000, 10**12)]}
        rates: dict[str, list[float]] = {"without": [], "with": []}
        for _ in range(rounds):
            for name, hook in hooks.items():
                trainer.settings.epochs = trainer.epoch + steps
                start = time.perf_counter()
                trainer.fit(hook)
                rates[name].append(steps / (time.perf_counter() - start))
        loggers.finish({}, "ok")
        names = [o.name for o in loggers.loggers]
    without, with_ = statistics.median(rates["without"]), statistics.median(rates["with"])
    return {
        "loggers": names,
        "without": without,
        "with": with_,
        "slowdown_pct": 100 * (without / with_ - 1),
        "rounds": rounds,
        "steps": steps,
    }


def loggers_lines(r: dict) -> list[str]:
    if "error" in r:
        return ["## Experiment trackers", "", f"error: {r['error']}"]
    return [
        "## Experiment trackers (the seed step, one thread)",
        "",
        (
            f"`logger=[{','.join(r['loggers'])}]` logging every 1000 epochs (`trainer.log_every`, "
            f"the seed's) against no logger, alternating {r['rounds']} rounds of {r['steps']} epochs: "
            f"**{r['with']:.0f}** against {r['without']:.0f} epochs/s, a slowdown of "
            f"**{r['slowdown_pct']:.1f} %** (the target: at most 5 %; negative: within the noise)."
        ),
    ]


def update_results(sections: dict[str, list[str]]) -> None:
    """Replace (or add) sections of bench/RESULTS.md by their titles' first words."""
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    for key, lines in sections.items():
        parts = text.split("\n## ")
        kept = [parts[0]] + [part for part in parts[1:] if not part.startswith(key)]
        text = "\n## ".join(kept).rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"
    path.write_text(text)


# -- wide models: 50 inputs from a data file -------------------------------------------------------
WIDE_TITLE = "Wide models: 50 inputs from a data file (`make bench BENCH_ARGS=--wide`)"
WIDE_CASES = {  # name -> train overrides (a short training: the evaluation is measured)
    "pce": ["model=pce", "layout=pce_iid", "model.degree=3", "trainer.epochs=200"],
    "moe": ["trainer.epochs=50"],
}


WIDE_VAL_ROWS = 10_000  # the validation file of the replicas' case


def write_wide_csv(path: Path, rows: int = 500, inputs: int = 50) -> None:
    """A seeded CSV of ``inputs`` uniform inputs on [-1, 1]; y a smooth function of four."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (rows, inputs))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1] ** 2 + 0.3 * x[:, 2] * x[:, 3]
    y += 0.05 * rng.normal(size=rows)
    names = [f"x{i + 1}" for i in range(inputs)] + ["y"]
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", header=",".join(names), comments="")


def timed_command(args: list[str]) -> dict:
    """``polymix ARGS`` in a fresh wrapper process: its wall time and peak resident memory
    (the wrapper's only child, so ``RUSAGE_CHILDREN`` is the command's own)."""
    code = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "print(r.returncode, time.perf_counter() - t, "
        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
        "sys.stderr.write(r.stderr[-2000:])"
    )
    polymix = str(Path(sys.executable).parent / "polymix")
    env = {**os.environ, "MPLBACKEND": "Agg"}
    out = subprocess.run(
        [sys.executable, "-c", code, polymix, *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    status, wall, rss_kib = out.stdout.split()
    return {
        "returncode": int(status),
        "seconds": float(wall),
        "peak_mib": int(rss_kib) / 1024,
        "stderr": out.stderr.strip().splitlines()[-1:] if int(status) else [],
    }


def bench_wide() -> dict:
    """Train (shortly) and evaluate a 50-input degree-3 PCE and the default mixture on a
    500-row data file; the evaluation (metrics, plots, Sobol indices, posterior) in a
    ``polymix evaluate`` of its own, with ``eval.sensitivity=auto``. And the refusal of a
    degree-5 PCE (3.5 million terms) before anything is built."""
    out: dict = {"cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "wide.csv"
        write_wide_csv(data)
        common = ["data=file", f"data.path={data}", "data.outputs=[y]", "trainer.progress=log"]
        for name, overrides in WIDE_CASES.items():
            run_dir = Path(tmp) / name
            train = timed_command(["train", *common, *overrides, f"hydra.run.dir={run_dir}"])
            evaluate = timed_command(
                [
                    "evaluate",
                    f"ckpt={run_dir / 'checkpoints' / 'last.pt'}",
                    "eval.sensitivity=auto",
                    f"hydra.run.dir={Path(tmp) / (name + '-eval')}",
                ]
            )
            metrics_path = Path(tmp) / (name + "-eval") / "metrics.json"
            metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
            sens = metrics.get("sensitivity") or {}
            out["cases"][name] = {
                "overrides": overrides,
                "num_params": metrics.get("num_params"),
                "train": train,
                "evaluate": evaluate,
                "sobol": {k: sens.get(k) for k in ("method", "num_samples", "base_samples")},
            }
        # suggest from the trained PCE: 4096 candidates and the 400 training rows drawn 200 times
        pce_ckpt = Path(tmp) / "pce" / "checkpoints" / "last.pt"
        out["suggest"] = timed_command(
            [
                "suggest",
                f"ckpt={pce_ckpt}",
                "n=5",
                f"output={Path(tmp) / 'suggested.csv'}",
                f"hydra.run.dir={Path(tmp) / 'suggest'}",
            ]
        )
        # the replicas' validation metrics: 4 replicas of the PCE scored on 10,000 rows
        val = Path(tmp) / "val.csv"
        write_wide_csv(val, rows=WIDE_VAL_ROWS)
        out["replicas"] = timed_command(
            [
                "train",
                *common,
                *WIDE_CASES["pce"][:3],
                "trainer.epochs=3",
                "trainer.replicas=4",
                f"data.val_path={val}",
                "eval.sensitivity=off",
                f"hydra.run.dir={Path(tmp) / 'replicas'}",
            ]
        )
        out["refusal"] = timed_command(
            ["train", *common, "model=pce", "layout=pce_iid", "model.degree=5"]
        )
    return out


def wide_lines(w: dict) -> list[str]:
    names = {"pce": "degree-3 PCE (23426 terms)", "moe": "default mixture (2 degree-3 experts)"}
    lines = [
        f"## {WIDE_TITLE}",
        "",
        (
            "500 rows, y a smooth function of 4 of the 50 inputs; a short training (its time is "
            "not the point), then `polymix evaluate ckpt=... eval.sensitivity=auto` timed on its "
            "own: metrics of the train and test splits, the plots, the Sobol indices and the "
            "posterior summary. Wall time and peak resident memory of the whole command "
            "(start-up included)."
        ),
        "",
        "| model | parameters | train s | evaluate s | evaluate peak MiB | Sobol indices |",
        "|---|---|---|---|---|---|",
    ]
    for name, case in w["cases"].items():
        ev, sobol = case["evaluate"], case["sobol"]
        how = sobol.get("method") or "-"
        if sobol.get("base_samples"):
            how += f", {sobol['base_samples']} base samples"
        if sobol.get("num_samples"):
            how += f", {sobol['num_samples']} draws"
        failed = "" if ev["returncode"] == 0 else f" (exit {ev['returncode']})"
        lines.append(
            f"| {names.get(name, name)} | {case['num_params']} | {case['train']['seconds']:.1f} "
            f"| {ev['seconds']:.1f}{failed} | {ev['peak_mib']:.0f} | {how} |"
        )
    r = w["refusal"]
    lines += [""]
    if "suggest" in w:
        sg, rp = w["suggest"], w["replicas"]
        lines.append(
            f"From the degree-3 PCE, `polymix suggest n=5` (4096 candidates and the training rows, "
            f"200 draws, chunks sized by the basis row): {sg['seconds']:.1f} s, peak "
            f"{sg['peak_mib']:.0f} MiB. A 3-epoch `train` of 4 replicas of it whose replica "
            f"selection scores a {WIDE_VAL_ROWS}-row `data.val_path`: {rp['seconds']:.1f} s, "
            f"peak {rp['peak_mib']:.0f} MiB. Before (commit ed49044, their chunks sized "
            f"without the basis row): 1526 MiB and 2503 MiB."
        )
        lines.append("")
    lines += [
        (
            f"`model.degree=5` (3478761 terms) is refused before anything is built: exit "
            f"{r['returncode']} after {r['seconds']:.1f} s, peak {r['peak_mib']:.0f} MiB."
        ),
        "",
        (
            "Before (commit eead04a, the same file): the PCE's evaluation took 45.5 s at a peak of "
            "3.6 GiB (the basis rebuilt one input at a time over 10,000 slice points, a Python "
            "loop of 50 stages); the mixture's run spent about 135 s after its training without "
            "Sobol indices, and with them did "
            "not finish (a Monte Carlo design of 52 x 2048 points whose basis alone is 10 GB)."
        ),
    ]
    return lines


# -- report ----------------------------------------------------------------------------------------
def profile_seed_step(steps: int = 3000) -> dict:
    """Where the time of one seed step goes, by phase (thread CPU time, one thread), and
    the number of aten operations it dispatches (``--profile``)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from polymix_cli.training.loop import get_rng_state

    torch.set_num_threads(1)
    step = seed_polymix()
    trainer = step.__self__
    analytic, mf = trainer._analytic, trainer.model.mean_field
    head, x, y = analytic.head, trainer.x, trainer.y
    for _ in range(300):
        step()

    ops: list[str] = []

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            ops.append(func._schema.name.split("::")[1])
            return func(*args, **(kwargs or {}))

    with Count():
        step()
    views = {
        "view",
        "slice",
        "permute",
        "transpose",
        "unsqueeze",
        "squeeze",
        "expand",
        "select",
        "unbind",
        "detach",
        "t",
        "_unsafe_view",
        "alias",
    }
    phases = [
        "RNG state (for a rewind)",
        "draw and distribution loss",
        "surrogate forward",
        "data term",
        "surrogate backward",
        "draw and loss backward",
        "finite check",
        "optimizer",
        "scheduler",
    ]
    spent = dict.fromkeys(phases, 0.0)
    clock = time.thread_time
    for _ in range(steps):
        t = [clock()]
        get_rng_state(x.device)
        t.append(clock())
        with torch.no_grad():
            theta, dist, saved = mf.draw_with_loss_terms(analytic.num_samples)
            t.append(clock())
            resid = head.forward(x, theta, mf.loc) - y.T
            t.append(clock())
            data, grad_out, _ = analytic._data_term(resid, 1.0 / analytic.num_samples)
            t.append(clock())
            grad_theta, grad_hidden = head.backward(grad_out, mf.loc)
            t.append(clock())
            grad_loc, grad_log_std = mf.gradients(grad_theta, analytic._weight(grad_theta), saved)
            mf.loc.grad, mf.log_std.grad = grad_loc.add_(grad_hidden), grad_log_std
            t.append(clock())
            losses = torch.stack([data, dist, torch.add(data, dist, alpha=analytic.weight_factor)])
        trainer._finite(losses[2])
        t.append(clock())
        trainer.optimizer.step()
        t.append(clock())
        trainer.scheduler.step()
        t.append(clock())
        for k, name in enumerate(phases):
            spent[name] += t[k + 1] - t[k]
    start = clock()
    for _ in range(steps):
        step()
    whole = (clock() - start) / steps
    per_step = {name: 1e6 * v / steps for name, v in spent.items()}

    a, b = torch.randn(50), torch.randn(50)
    start = clock()
    for _ in range(20000):
        torch.add(a, b)
    tiny_op = 1e6 * (clock() - start) / 20000
    return {
        "step_us": 1e6 * whole,
        "phases_us": per_step,
        "ops": len(ops),
        "view_ops": sum(op in views for op in ops),
        "tiny_op_us": tiny_op,
    }


def machine() -> dict:
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average": os.getloadavg(),
    }


# -- small designs: sparse PCE against OpenTURNS's LARS ------------------------------------------
SPARSE_CASES = ((150, 0.0), (300, 0.0), (150, 0.5), (300, 0.5))
SPARSE_SEEDS = 10  # designs per case by default (data.seed 1..10); --sparse-seeds changes it
SPARSE_BEGIN, SPARSE_END = "<!-- sparse: begin -->", "<!-- sparse: end -->"


def openturns_lars(x, y, x_test, degree: int = 12) -> dict:
    """OpenTURNS's sparse PCE: Legendre candidates up to total ``degree``, least squares with
    LARS selection and corrected leave-one-out; its test predictions and Sobol indices."""
    import math

    import numpy as np
    import openturns as ot

    ot.Log.Show(ot.Log.NONE)
    dist = ot.JointDistribution([ot.Uniform(-math.pi, math.pi)] * x.shape[1])
    basis = ot.OrthogonalProductPolynomialFactory([ot.LegendreFactory()] * x.shape[1])
    size = basis.getEnumerateFunction().getStrataCumulatedCardinal(degree)
    selection = ot.LeastSquaresMetaModelSelectionFactory(ot.LARS(), ot.CorrectedLeaveOneOut())
    algo = ot.FunctionalChaosAlgorithm(
        ot.Sample(x),
        ot.Sample(y),
        dist,
        ot.FixedStrategy(basis, size),
        ot.LeastSquaresStrategy(selection),
    )
    start = time.perf_counter()
    algo.run()
    seconds = time.perf_counter() - start
    result = algo.getResult()
    pred = np.asarray(result.getMetaModel()(ot.Sample(x_test)))
    sobol = ot.FunctionalChaosSobolIndices(result)
    d = x.shape[1]
    return {
        "pred": pred,
        "first": [sobol.getSobolIndex(i) for i in range(d)],
        "total": [sobol.getSobolTotalIndex(i) for i in range(d)],
        "terms": int(result.getIndices().getSize()),
        "seconds": seconds,
    }


def bench_sparse(seeds: range = range(1, SPARSE_SEEDS + 1), cases=SPARSE_CASES) -> list[dict]:
    """``experiment=sparse_pce`` (degree 12, 455 candidate terms) and OpenTURNS's LARS on the
    same seeded Ishigami designs (``data.seed`` in ``seeds``), for each ``(N, noise std)`` of
    ``cases``, against the noiseless truth at 20,000 test points."""
    import numpy as np
    from helpers import ISHIGAMI_FIRST, ISHIGAMI_TOTAL, QuietUI, compose_train

    from polymix_cli.runs.prepare import prepare
    from polymix_cli.runs.train import train

    rows = []
    # the noisy cases first: their coverage is the figure most often re-checked
    for n, noise in sorted(cases, key=lambda case: -case[1]):
        for seed in seeds:
            overrides = [
                "experiment=sparse_pce",
                f"data.num_train={n}",
                f"data.noise_std={noise}",
                f"data.seed={seed}",
                "data.num_test=20000",
                "eval.grid_points=25",
            ]
            cfg = compose_train(overrides)
            with tempfile.TemporaryDirectory() as tmp:
                m = train(cfg, Path(tmp), "", QuietUI())
            sens = m["sensitivity"]
            first = [sens["first_order"]["y1"][f"x{i}"]["mean"] for i in (1, 2, 3)]
            total = [sens["total"]["y1"][f"x{i}"]["mean"] for i in (1, 2, 3)]
            exact = np.array(ISHIGAMI_FIRST + ISHIGAMI_TOTAL)
            data = prepare(cfg).data
            x, y = data.x_train.double().numpy(), data.y_train.double().numpy()
            x_test = data.x_test.double().numpy()
            truth = data.true_fn(data.x_test.double()).numpy()
            ot_fit = openturns_lars(x, y, x_test)
            rows.append(
                {
                    "n": n,
                    "noise": noise,
                    "seed": seed,
                    "load_average": os.getloadavg()[0],
                    "polymix": {
                        "rmse_true": m["test"]["rmse_true"],
                        "sobol_error": float(np.abs(np.array(first + total) - exact).max()),
                        "noise_std": m["noise_std"][0],
                        "coverage_80": m["test"]["coverage"]["0.8"],
                        "terms": m["sparse_fit"]["active_terms"][0],
                        "loo_q2": m["loo"]["q2"][0],
                        "train_seconds": m["timing"]["train_seconds"],
                    },
                    "openturns": {
                        "rmse_true": float(np.sqrt(np.mean((ot_fit["pred"] - truth) ** 2))),
                        "sobol_error": float(
                            np.abs(np.array(ot_fit["first"] + ot_fit["total"]) - exact).max()
                        ),
                        "terms": ot_fit["terms"],
                        "train_seconds": ot_fit["seconds"],
                    },
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def seed_range(text: str) -> range:
    """``--sparse-seeds``: ``K`` (seeds 1 to K) or ``FIRST:LAST`` (both included)."""
    first, sep, last = text.partition(":")
    try:
        lo, hi = (int(first), int(last)) if sep else (1, int(first))
    except ValueError:
        raise argparse.ArgumentTypeError(f"K or FIRST:LAST (integers), got {text!r}") from None
    if lo < 0 or hi < lo:
        raise argparse.ArgumentTypeError(f"need 0 <= FIRST <= LAST, got {text!r}")
    return range(lo, hi + 1)


def sparse_case(text: str) -> tuple[int, float]:
    """``--sparse-cases``: ``N:NOISE``, e.g. ``300:0.5``."""
    n, _, noise = text.partition(":")
    try:
        return int(n), float(noise)
    except ValueError:
        raise argparse.ArgumentTypeError(f"N:NOISE, e.g. 300:0.5, got {text!r}") from None


def seed_span(seeds: list[int]) -> str:
    """``1 to 50`` for a contiguous run of seeds, else the seeds listed."""
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]} to {seeds[-1]}"
    return ", ".join(map(str, seeds))


def paired(a: list[float], b: list[float]) -> dict:
    """Paired comparison of two methods' errors on the same designs (lower is better):
    the mean of ``a - b`` with its standard error (sample std / sqrt(n)), the designs where
    ``a`` is lower (wins), higher (losses) or equal (ties), the exact two-sided sign-test
    p-value of the wins against the losses (ties left out), and each side's median."""
    import math

    if len(a) != len(b) or not a:
        raise ValueError("paired: two non-empty lists of the same length")
    diff = [x - y for x, y in zip(a, b, strict=True)]
    n = len(diff)
    mean = sum(diff) / n
    se = statistics.stdev(diff) / math.sqrt(n) if n > 1 else float("nan")
    wins, losses = sum(d < 0 for d in diff), sum(d > 0 for d in diff)
    m, k = wins + losses, min(wins, losses)
    sign_p = min(1.0, 2 * sum(math.comb(m, i) for i in range(k + 1)) / 2**m) if m else 1.0
    return {
        "n": n,
        "mean": mean,
        "se": se,
        "wins": wins,
        "losses": losses,
        "ties": n - wins - losses,
        "sign_p": sign_p,
        "median_a": statistics.median(a),
        "median_b": statistics.median(b),
    }


def read_sparse_rows(paths: list[str]) -> list[dict]:
    """The rows of earlier ``--sparse`` runs: a ``bench/results/sparse-*.json`` file (a JSON
    list) or the run's printed output (one JSON row a line, other lines skipped). A later file's
    row replaces an earlier one of the same case and seed."""
    rows: dict[tuple, dict] = {}
    for path in paths:
        text = Path(path).read_text()
        try:
            found = json.loads(text)
        except json.JSONDecodeError:
            found = [json.loads(line) for line in text.splitlines() if line.startswith('{"n"')]
        for r in found:
            rows[(r["n"], r["noise"], r["seed"])] = r
    return list(rows.values())


def sparse_lines(rows: list[dict]) -> list[str]:
    """The markdown section of :func:`bench_sparse`: per case, means over the seeds; per noisy
    case, the paired comparison with OpenTURNS, the per-design targets, and every design."""
    cases = [
        (case, [r for r in rows if (r["n"], r["noise"]) == case])
        for case in sorted({(r["n"], r["noise"]) for r in rows}, key=lambda c: (c[1], c[0]))
    ]
    lines = [
        SPARSE_BEGIN,
        "## Small designs: sparse PCE against OpenTURNS (`make bench BENCH_ARGS=--sparse`)",
        "",
        "Ishigami, inputs uniform on [-pi, pi]^3, seeded designs (data.seed "
        + "; ".join(
            f"{seed_span(sorted(r['seed'] for r in case))} at N = {n}, noise {noise}"
            for (n, noise), case in cases
        )
        + "), 20,000 test points; errors against the noiseless truth. polymix: "
        "`polymix train experiment=sparse_pce data.num_train=N data.noise_std=S` (degree 12, "
        "455 candidate terms, ARD prior, learned noise, closed-form evidence maximisation). "
        "OpenTURNS: the same candidates, least squares with LARS selection and corrected "
        "leave-one-out. Means over the designs (worst design in brackets; for the learned noise "
        "and the coverage of the 80 % predictive band, the range over the designs). "
        "`python bench/run.py --sparse --sparse-seeds K` runs data.seed 1 to K.",
        *(
            [
                "",
                (
                    "Load average (1 min) during the run: "
                    f"{min(r['load_average'] for r in rows):.1f} to "
                    f"{max(r['load_average'] for r in rows):.1f} "
                    f"on {os.cpu_count()} cores (the train and OT seconds grow with it)."
                ),
            ]
            if rows and all("load_average" in r for r in rows)
            else []
        ),
        "",
        (
            "| N | noise | designs | polymix RMSE | OpenTURNS RMSE | polymix Sobol err "
            "| OpenTURNS Sobol err | polymix noise | polymix coverage 0.8 | terms polymix / OT "
            "| polymix train s | OT s |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (n, noise), case in cases:

        def stat(side: str, key: str, fmt: str, case: list = case) -> str:
            values = [r[side][key] for r in case]
            return f"{sum(values) / len(values):{fmt}} ({max(values):{fmt}})"

        def mean(side: str, key: str, fmt: str, case: list = case) -> str:
            values = [r[side][key] for r in case]
            return f"{sum(values) / len(values):{fmt}}"

        def span(side: str, key: str, fmt: str, case: list = case) -> str:
            values = [r[side][key] for r in case]
            return f"{min(values):{fmt}} to {max(values):{fmt}}"

        lines.append(
            f"| {n} | {noise} | {len(case)} | {stat('polymix', 'rmse_true', '.4f')} | "
            f"{stat('openturns', 'rmse_true', '.4f')} | {stat('polymix', 'sobol_error', '.4f')} | "
            f"{stat('openturns', 'sobol_error', '.4f')} | {span('polymix', 'noise_std', '.4f')} | "
            f"{span('polymix', 'coverage_80', '.3f')} | {mean('polymix', 'terms', '.0f')} / "
            f"{mean('openturns', 'terms', '.0f')} | {stat('polymix', 'train_seconds', '.2f')} | "
            f"{mean('openturns', 'train_seconds', '.2f')} |"
        )
    noisy_cases = [(c, case) for c, case in cases if c[1] > 0]
    if noisy_cases:
        lines += [
            "",
            (
                "Paired, with noise: per design the difference polymix - OpenTURNS (negative: "
                "polymix better), its mean over the designs +- its standard error, the designs "
                "where polymix is better (wins; p: the two-sided sign test of wins against "
                "losses), and each side's median."
            ),
            "",
            (
                "| N | noise | designs | Sobol err: mean diff +- SE | wins (p) | median polymix / OT "
                "| RMSE: mean diff +- SE | wins (p) | median polymix / OT |"
            ),
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for (n, noise), case in noisy_cases:
            cells = []
            for key in ("sobol_error", "rmse_true"):
                p = paired([r["polymix"][key] for r in case], [r["openturns"][key] for r in case])
                ties = f", {p['ties']} ties" if p["ties"] else ""
                cells += [
                    f"{p['mean']:+.4f} +- {p['se']:.4f}",
                    f"{p['wins']} of {p['n']}{ties} (p = {p['sign_p']:.2g})",
                    f"{p['median_a']:.4f} / {p['median_b']:.4f}",
                ]
            lines.append(f"| {n} | {noise} | {len(case)} | " + " | ".join(cells) + " |")
        lines += [
            "",
            (
                "Per-design targets, with noise: the learned noise within 20 % of the true std "
                "and the coverage of the 80 % band within [0.72, 0.88], for every design."
            ),
            "",
        ]
        for (n, noise), case in noisy_cases:
            noise_off = [r for r in case if abs(r["polymix"]["noise_std"] - noise) > 0.2 * noise]
            cover_off = [r for r in case if not 0.72 <= r["polymix"]["coverage_80"] <= 0.88]
            off = ", ".join(
                f"seed {r['seed']} (noise {r['polymix']['noise_std']:.4f}, coverage "
                f"{r['polymix']['coverage_80']:.3f})"
                for r in sorted(
                    {id(r): r for r in noise_off + cover_off}.values(), key=lambda r: r["seed"]
                )
            )
            lines.append(
                f"- N = {n}, noise {noise}: noise within 20 % in {len(case) - len(noise_off)} of "
                f"{len(case)} designs, coverage within [0.72, 0.88] in "
                f"{len(case) - len(cover_off)} of {len(case)}"
                + (f"; outside: {off}." if off else ".")
            )
        lines += [
            "",
            "<details><summary>Every design, with noise</summary>",
            "",
            (
                "| N | noise | seed | RMSE polymix / OT | Sobol err polymix / OT | polymix noise "
                "| coverage 0.8 | LOO Q2 | terms polymix / OT |"
            ),
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted(
            (r for _, case in noisy_cases for r in case), key=lambda r: (r["n"], r["seed"])
        ):
            pm, ot = r["polymix"], r["openturns"]
            lines.append(
                f"| {r['n']} | {r['noise']} | {r['seed']} | {pm['rmse_true']:.4f} / "
                f"{ot['rmse_true']:.4f} | {pm['sobol_error']:.4f} / {ot['sobol_error']:.4f} | "
                f"{pm['noise_std']:.4f} | {pm['coverage_80']:.3f} | {pm['loo_q2']:.4f} | "
                f"{pm['terms']} / {ot['terms']} |"
            )
        lines += ["", "</details>"]
    lines += ["", SPARSE_END]
    return lines


def place_sparse_section(text: str, section: str) -> str:
    """``text`` (``bench/RESULTS.md``) with the sparse section replaced, or added before the
    replicas section (whose writer replaces everything up to the next heading), or at the end."""
    if SPARSE_BEGIN in text and SPARSE_END in text:
        head, _, rest = text.partition(SPARSE_BEGIN)
        _, _, tail = rest.partition(SPARSE_END)
        return head + section + tail
    head, sep, rest = text.partition("## Replicas (`trainer.replicas`)")
    if sep:
        return head.rstrip("\n") + "\n\n" + section + "\n\n" + sep + rest
    return text.rstrip("\n") + "\n\n" + section + "\n"


def write_sparse_section(rows: list[dict]) -> None:
    """Replace (or add) the sparse section of ``bench/RESULTS.md``."""
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    path.write_text(place_sparse_section(text, "\n".join(sparse_lines(rows))))


def markdown(result: dict) -> str:
    m, seed, wall = result["machine"], result["seed"], result["train_wall"]
    lines = [
        "# Benchmark results",
        "",
        (
            f"Latest run: {result['date']} on {m['cpu']} ({m['cores']} cores), Python {m['python']}, "
            f"torch {m['torch']}; load average at start {m['load_average'][0]:.2f}. "
            "Produced by `make bench` (`bench/run.py`); raw numbers in `bench/results/`."
        ),
        "",
        "## Seed experiment (moe_sign: 50 points, 100 draws per step, one thread)",
        "",
        "| | epochs/s |",
        "|---|---|",
        f"| polymix | {seed['polymix']:.0f} |",
    ]
    if "polymix_autograd" in seed:
        lines.append(f"| polymix, `trainer.gradients=autograd` | {seed['polymix_autograd']:.0f} |")
    if "pypolymix" in seed:
        lines += [
            f"| pypolymix 0.1.9 | {seed['pypolymix']:.0f} |",
            f"| ratio | {seed['ratio']:.1f}x |",
        ]
    lines += [
        "",
        (
            f"Whole `polymix train experiment=moe_sign` (10000 epochs, start-up, evaluation and "
            f"plots included): **{wall['wall_seconds']:.1f} s** wall, of which training "
            f"{(wall['train_seconds'] or 0):.1f} s."
        ),
        "",
        "## Polynomial chaos, one training step (32 draws)",
        "",
        "| impl | d | degree | terms | N | batch | threads | step ms | first step s | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["pce"]:
        if "error" in r:
            lines.append(f"| error: {r['error']} |")
            continue
        lines.append(
            f"| {r['impl']} | {r['d']} | {r['degree']} | {r['terms']} | {r['n']} | {r['batch'] or 'all'} | "
            f"{r['threads']} | {r['step_ms']:.1f} | {r['first_step_s']:.2f} | {r['peak_mib']:.0f} |"
        )
    lines += [
        "",
        "## Mixtures of experts (degree-3 experts, gate width 16, 100 draws)",
        "",
        "| experts | N | parameters | step ms | epochs/s |",
        "|---|---|---|---|---|",
    ]
    for r in result["moe"]:
        lines.append(
            f"| {r['experts']} | {r['n']} | {r['num_params']} | {r['step_ms']:.2f} | {r['epochs_per_s']:.0f} |"
            if "error" not in r
            else f"| error: {r['error']} |"
        )
    lines += [
        "",
        "## Hand-derived gradients against autograd (one step; the two alternate in one process)",
        "",
        "| model | path | threads | hand-derived ms | autograd ms | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for r in result.get("gradients", []):
        lines.append(
            f"| {r['case']} | {r['path']} | {r['threads']} | {r['analytic_ms']:.2f} | {r['autograd_ms']:.2f} | "
            f"{r['autograd_ms'] / r['analytic_ms']:.2f}x |"
            if "error" not in r
            else f"| error: {r['error']} |"
        )
    if "allocator" in result:
        lines += ["", *allocator_lines(result["allocator"])]
    if "csv" in result:
        lines += ["", *csv_lines(result["csv"])]
    if "loggers" in result:
        lines += ["", *loggers_lines(result["loggers"])]
    e = result["eval"]
    lines += [
        "",
        "## Evaluation",
        "",
        (
            f"{e.get('draws')} draws at {e.get('points')} test points (metrics on train and test, plot grids): "
            f"{e.get('seconds', float('nan')):.1f} s, peak {e.get('peak_mib', float('nan')):.0f} MiB above the "
            "process baseline."
        ),
        "",
    ]
    if "replicas" in result:
        lines += [*replica_lines(result["replicas"], result), ""]
    if "design" in result:
        lines += design_lines(result["design"])
    return "\n".join(lines)


DESIGN_TITLE = "## Choosing the next simulations (design, suggest) against one-shot designs"


def design_comparison() -> dict:
    """bench/active_learning.py over seeds 0 to 9 (both acquisitions)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from active_learning import compare

    return compare(range(10))


def design_lines(d: dict) -> list[str]:
    """The section of RESULTS.md: per seed, the loop's final test rmse_true against the
    one-shot designs, and how often the loop wins."""
    acq = ("integrated_variance", "epistemic_std")
    lines = [
        "",
        DESIGN_TITLE,
        "",
        (
            "`experiment=pce_sine` (`data=sine`, noise std 0.05, a stochastic degree-5 PCE), "
            "the generator as the simulation (`data.train_inputs`). The loop: a 6-point Latin "
            "hypercube, then 3 rounds of 3 points from `polymix suggest` (retrained on all rows "
            "after each round): 15 points. Against 15 points of a Latin hypercube and 15 uniform "
            "random points (same seed, noise, test set, training options). Test `rmse_true` "
            "(against the noiseless function; the mean of `eval.num_samples=2000` draws), "
            "seeds 0 to 9; `python bench/run.py --design` (`bench/active_learning.py`)."
        ),
        "",
        "| seed | loop, integrated_variance (default) | loop, epistemic_std | Latin hypercube | random |",
        "|---|---|---|---|---|",
    ]
    for r in d["rows"]:
        lines.append(
            f"| {r['seed']} | {r[acq[0]][-1]:.4f} | {r[acq[1]][-1]:.4f} | {r['lhs']:.4f} | "
            f"{r['random']:.4f} |"
        )
    med = d["median"]
    lines.append(
        f"| median | {d[acq[0]]['median']:.4f} | {d[acq[1]]['median']:.4f} | {med['lhs']:.4f} | "
        f"{med['random']:.4f} |"
    )
    lines.append("")
    for a in acq:
        rounds = ", ".join(f"{v:.4f}" for v in d[a]["median_by_round"])
        lines.append(
            f"- `suggest.acquisition={a}`: lower than the Latin hypercube in "
            f"**{d[a]['wins_vs_lhs']} of {len(d['rows'])}** seeds, than random points in "
            f"**{d[a]['wins_vs_random']} of {len(d['rows'])}**; median by round (6, 9, 12, 15 "
            f"points): {rounds}."
        )
    first, n = d[acq[0]], len(d["rows"])
    met = first["wins_vs_lhs"] >= 0.8 * n and first["wins_vs_random"] >= 0.8 * n
    lines.append(
        f"- Issue 15's target (the loop lower than both one-shot designs in at least 8 of "
        f"10 seeds) with the default acquisition: **{'met' if met else 'not met'}** "
        f"({first['wins_vs_lhs']} and {first['wins_vs_random']} of {n})."
    )
    res = d.get("resampled")
    if res:
        lines.append(
            f"- The designs, less the luck of one noise draw: the loop's 15 inputs "
            f"(`{res['acquisition']}`) and the Latin hypercube's, each simulated again with "
            f"`data.seed` in {res['noise_seeds']}: mean test rmse_true over those draws "
            f"lower for the loop in **{res['wins_vs_lhs']} of {len(d['rows'])}** seeds "
            f"(mean over seeds {res['mean_loop']:.4f} against {res['mean_lhs']:.4f})."
        )
    o = d.get("odds")
    if o:
        lines.append(
            f"- What one noise draw per seed allows (`odds` in `bench/active_learning.py`: the "
            f"linear-Gaussian twin of `pce_sine`, plain Legendre P_0..P_5 with a N(0, 1) prior and "
            f"the known noise; the posterior mean in closed form, 4000 noise draws per design): "
            f"the loop's final inputs beat each seed's Latin hypercube in "
            f"{o['expected_wins_loop']:.1f} of {len(d['rows'])} seeds on average, and at least "
            f"8 of 10 with probability "
            f"{o['p_target_loop']:.2f}; the best possible 15 inputs (I-optimal for that model) "
            f"in {o['expected_wins_ideal']:.1f}, with probability {o['p_target_ideal']:.2f}. "
            f"Mean rmse_true over the noise: loop {o['mean_rmse']['loop']:.4f}, best design "
            f"{o['mean_rmse']['ideal']:.4f}, Latin hypercube {o['mean_rmse']['lhs']:.4f}."
        )
    lines.append("")
    return lines


def bench_design() -> None:
    """Run the design comparison alone and replace (or add) its section of RESULTS.md."""
    d = design_comparison()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"design-{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(d, indent=2) + "\n")
    write_design_section(d)
    print(f"wrote {path} and bench/RESULTS.md")


def write_design_section(d: dict) -> None:
    """Replace (or add) the design section of RESULTS.md with the comparison ``d``."""
    results = ROOT / "bench" / "RESULTS.md"
    text = results.read_text() if results.exists() else "# Benchmark results\n"
    section = "\n".join(design_lines(d))
    if DESIGN_TITLE in text:
        head, _, rest = text.partition("\n" + DESIGN_TITLE)
        tail = rest.partition("\n## ")
        text = head.rstrip("\n") + "\n" + section + ("\n## " + tail[2] if tail[1] else "")
    else:
        text = text.rstrip("\n") + "\n" + section
    results.write_text(text.rstrip("\n") + "\n")
    print(section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repetitions")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="torch threads for large problems"
    )
    parser.add_argument(
        "--profile", action="store_true", help="only profile one seed step by phase"
    )
    parser.add_argument(
        "--allocator",
        action="store_true",
        help="only the mini-batch step at N = 1e5 under each malloc set-up, side by side",
    )
    parser.add_argument(
        "--sparse",
        action="store_true",
        help="only the small-design comparison with OpenTURNS (needs the bench extra)",
    )
    parser.add_argument(
        "--sparse-seeds",
        type=seed_range,
        default=range(1, SPARSE_SEEDS + 1),
        metavar="K",
        help=f"with --sparse: the seeded designs of each case, data.seed 1 to K, or FIRST:LAST "
        f"(default {SPARSE_SEEDS}; a design takes about 12 s on 2 cores at a load of 4, so 50 "
        "designs of the four cases about 40 min)",
    )
    parser.add_argument(
        "--sparse-cases",
        nargs="+",
        type=sparse_case,
        default=list(SPARSE_CASES),
        metavar="N:NOISE",
        help="with --sparse: the cases, e.g. 300:0.5 (default: "
        + " ".join(f"{n}:{noise}" for n, noise in SPARSE_CASES)
        + ")",
    )
    parser.add_argument(
        "--sparse-from",
        nargs="+",
        metavar="FILE",
        help="rows of earlier --sparse runs (bench/results/sparse-*.json, or the run's printed "
        "output) to rewrite the section from; with --sparse, this run's rows replace theirs",
    )
    parser.add_argument(
        "--csv", action="store_true", help="only reading a 500,000 x 5 CSV file, against loadtxt"
    )
    parser.add_argument(
        "--loggers", action="store_true", help="only the seed step with and without the trackers"
    )
    parser.add_argument(
        "--replicas",
        nargs="?",
        const="all",
        choices=("all", "timing"),
        help="only the replicas section: all (reliability over seeds and time per step with K "
        "replicas) or timing (the reliability runs of the latest replicas results kept)",
    )
    parser.add_argument(
        "--design",
        action="store_true",
        help="only the design/suggest loop against one-shot designs (about 10 min); updates "
        "its section of bench/RESULTS.md",
    )
    parser.add_argument(
        "--wide",
        action="store_true",
        help="only models of 50 inputs from a data file (evaluation time and memory); updates "
        "its section of bench/RESULTS.md",
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.wide:
        result = {"date": dt.datetime.now().isoformat(timespec="seconds"), "machine": machine()}
        result["wide"] = bench_wide()
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now().strftime("%Y-%m-%dT%H-%M")
        (RESULTS / f"wide-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
        lines = wide_lines(result["wide"])
        load = ", ".join(f"{v:.1f}" for v in result["machine"]["load_average"])
        lines.insert(2, f"Run {result['date']}, load average at start {load}.")
        lines.insert(3, "")
        update_results({"Wide models": lines})
        print("\n".join(lines))
        return
    if args.sparse or args.sparse_from:
        rows = read_sparse_rows(args.sparse_from or [])
        if args.sparse:
            new = bench_sparse(args.sparse_seeds, args.sparse_cases)
            RESULTS.mkdir(parents=True, exist_ok=True)
            stamp = dt.datetime.now().strftime("%Y-%m-%dT%H-%M")
            (RESULTS / f"sparse-{stamp}.json").write_text(json.dumps(new, indent=1))
            done = {(r["n"], r["noise"], r["seed"]) for r in new}
            rows = [r for r in rows if (r["n"], r["noise"], r["seed"]) not in done] + new
        write_sparse_section(rows)
        print("\n".join(sparse_lines(rows)))
        return
    if args.design:
        bench_design()
        return
    if (args.csv or args.loggers) and not args.worker:
        sections = {}
        if args.csv:
            sections["Large CSV"] = csv_lines(bench_csv(args.quick))
        if args.loggers:
            rounds, steps = (3, 2000) if args.quick else (7, 4000)
            sections["Experiment trackers"] = loggers_lines(
                worker(["loggers", str(rounds), str(steps)])
            )
        update_results(sections)
        print("\n\n".join("\n".join(lines) for lines in sections.values()))
        print("updated those sections of bench/RESULTS.md")
        return
    if args.allocator:
        print("\n".join(allocator_lines(bench_allocator(args.threads))))
        return
    if args.profile:
        prof = profile_seed_step()
        total = sum(prof["phases_us"].values())
        for name, us in prof["phases_us"].items():
            print(f"{name:28s} {us:7.0f} us  {100 * us / total:5.1f} %")
        print(
            f"{'sum of the phases':28s} {total:7.0f} us; the whole step, timed apart: {prof['step_us']:.0f} us "
            f"({1e6 / prof['step_us']:.0f} steps/s)"
        )
        print(
            f"{prof['ops']} aten operations per step, {prof['view_ops']} of them views; "
            f"one tiny add costs {prof['tiny_op_us']:.1f} us here"
        )
        return
    if args.worker:
        from polymix_cli.cli.allocator import tune_malloc

        # as `polymix` does at start-up (a no-op unless MALLOC_MODES says mallopt)
        malloc = tune_malloc()
        kind, *rest = args.worker
        if kind == "pce":
            impl, d, p, n, draws, batch, threads, *repeats = rest
            row = pce_worker(
                impl,
                int(d),
                int(p),
                int(n),
                int(draws),
                int(batch) or None,
                int(threads),
                int(repeats[0]) if repeats else 0,
            )
            print(json.dumps({**row, "malloc": malloc}))
        elif kind == "moe":
            print(json.dumps(moe_worker(int(rest[0]), int(rest[1]), int(rest[2]))))
        elif kind == "ab":
            print(json.dumps(ab_worker(rest[0], int(rest[1]))))
        elif kind == "csv":
            print(json.dumps(csv_worker(rest[0], rest[1], int(rest[2]))))
        elif kind == "loggers":
            print(json.dumps(loggers_worker(int(rest[0]), int(rest[1]))))
        elif kind == "eval":
            print(json.dumps(eval_worker(int(rest[0]), int(rest[1]), int(rest[2]))))
        elif kind == "replica_run":
            print(json.dumps(replica_run_worker(int(rest[0]), int(rest[1]), int(rest[2]))))
        elif kind == "replica_timing":
            case, counts, threads, rounds, steps = rest
            row = replica_timing_worker(case, counts, int(threads), int(rounds), int(steps))
            print(json.dumps(row))
        return
    if args.replicas:
        result = {"date": dt.datetime.now().isoformat(timespec="seconds"), "machine": machine()}
        previous = sorted(RESULTS.glob("*-replicas.json"))
        runs = None
        if args.replicas == "timing" and previous:
            runs = json.loads(previous[-1].read_text())["replicas"]["runs"]
        result["replicas"] = bench_replicas(args.quick, args.threads, runs)
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{dt.date.today().isoformat()}-replicas.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(write_replica_section(result))
        print(f"wrote {path} and the replicas section of bench/RESULTS.md")
        return
    result = {"date": dt.datetime.now().isoformat(timespec="seconds"), "machine": machine()}
    print("seed experiment ...", flush=True)
    result["seed"] = bench_seed(rounds=3 if args.quick else 5, steps=300 if args.quick else 1000)
    print("whole train run ...", flush=True)
    result["train_wall"] = bench_train_wall()
    print("polynomial chaos scaling ...", flush=True)
    result["pce"] = bench_pce(args.quick, args.threads)
    print("mixtures ...", flush=True)
    result["moe"] = [
        worker(["moe", str(m), str(n), "1" if n < 1000 else str(args.threads)])
        for m in (2, 4, 8)
        for n in (50, 10000)
    ]
    print("gradient paths ...", flush=True)
    result["gradients"] = [worker(["ab", case, str(args.threads)]) for case in AB_CASES]
    print("malloc set-ups ...", flush=True)
    result["allocator"] = bench_allocator(args.threads, rounds=3 if args.quick else 5)
    print("evaluation ...", flush=True)
    result["eval"] = worker(["eval", "100000", "1000", str(args.threads)])
    print("large CSV files ...", flush=True)
    result["csv"] = bench_csv(args.quick)
    print("experiment trackers ...", flush=True)
    result["loggers"] = worker(["loggers", *(("3", "2000") if args.quick else ("7", "4000"))])
    print("replicas ...", flush=True)
    result["replicas"] = bench_replicas(args.quick, args.threads)
    print("design and suggest ...", flush=True)
    result["design"] = design_comparison()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    results_md = ROOT / "bench" / "RESULTS.md"
    old = results_md.read_text() if results_md.exists() else ""
    if SPARSE_BEGIN in old and SPARSE_END in old:  # kept: the --sparse part runs on its own
        kept = SPARSE_BEGIN + old.partition(SPARSE_BEGIN)[2].partition(SPARSE_END)[0] + SPARSE_END
        text = place_sparse_section(text, kept)
    wide = f"\n## {WIDE_TITLE}"
    if wide in old and wide not in text:  # kept: the --wide part runs on its own
        text = text.rstrip("\n") + "\n" + wide + old.partition(wide)[2].partition("\n## ")[0]
    results_md.write_text(text)
    print(text)
    print(f"wrote {path} and bench/RESULTS.md")


if __name__ == "__main__":
    main()
