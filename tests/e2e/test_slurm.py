"""Sweeps on a real (one-node) Slurm cluster: `polymix train -m hydra/launcher=slurm`.

The cluster is scripts/slurm_cluster.sh's: used if it answers, else started here (as
root, with slurm-wlm and munge installed: `scripts/slurm_cluster.sh install`) and stopped
at the end. Skipped, with the reason, where neither is possible. .ci/run installs the
packages and starts the cluster, so CI runs these tests. About a minute on 2 cores:
each job is a fresh interpreter that imports torch.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, TINY, is_png, run_cli

SCRIPT = REPO / "scripts" / "slurm_cluster.sh"
SWEEP_TINY = [*TINY, "trainer.epochs=5", "experiment=pce_sine", "hydra/launcher=slurm"]


def _cluster(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def node_cpus() -> int:
    """A Slurm cluster that takes jobs (started here if need be); the CPUs of its node."""
    if shutil.which("sbatch") is None or shutil.which("slurmctld") is None:
        pytest.skip("Slurm is not installed (as root: scripts/slurm_cluster.sh install)")
    started = False
    if _cluster("status").returncode != 0:
        if os.geteuid() != 0:
            pytest.skip("no Slurm cluster answers, and starting one needs root")
        up = _cluster("up")
        if up.returncode != 0:
            pytest.skip(f"scripts/slurm_cluster.sh up failed: {up.stderr.strip()[-300:]}")
        started = True
    sinfo = subprocess.run(["sinfo", "-h", "-o", "%c"], check=False, capture_output=True, text=True)
    yield int(sinfo.stdout.split()[0].rstrip("+"))
    if started:
        _cluster("down")


def sweep(sweep_dir: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return run_cli(
        "train", "-m", *SWEEP_TINY, *args, f"hydra.sweep.dir={sweep_dir}", timeout=timeout
    )


def rows(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "summary.csv").open() as handle:
        return list(csv.DictReader(handle))


def status(job_dir: Path) -> dict:
    return json.loads((job_dir / "status.json").read_text())


def sbatch_cpus(sweep_dir: Path) -> set[int]:
    """The --cpus-per-task of the sbatch scripts that submitit wrote for the sweep."""
    scripts = (sweep_dir / ".submitit").glob("*/*_submission.sh")
    found = {re.search(r"--cpus-per-task=(\d+)", s.read_text()) for s in scripts}
    return {int(m.group(1)) for m in found if m}


def test_sweep_with_an_invalid_job(node_cpus, tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = sweep(sweep_dir, "model.degree=2,3,-1")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Traceback" not in result.stderr
    assert output.count("sacct") <= 1  # the warning of a cluster without accounting: once at most
    table = rows(sweep_dir)
    assert [(r["job"], r["model.degree"], r["status"]) for r in table] == [
        ("0", "2", "ok"),
        ("1", "3", "ok"),
        ("2", "-1", "failed"),
    ]
    assert "degree must be >= 0" in table[2]["reason"]
    assert is_png(sweep_dir / "plots" / "sweep.png")
    assert json.loads((sweep_dir / "summary.json").read_text())["counts"] == {
        "ok": 2,
        "failed": 1,
        "incomplete": 0,
    }
    # each job ran as a task of one Slurm array, with the CPUs Slurm gave it as its threads
    jobs = [status(sweep_dir / r["job"]) for r in table]
    assert len({j["slurm"]["array_job_id"] for j in jobs}) == 1
    assert {j["threads"] for j in jobs} == {int(j["slurm"]["cpus_per_task"]) for j in jobs}
    assert sbatch_cpus(sweep_dir) == {1}  # the shipped default
    assert all(j["pid"] != os.getpid() for j in jobs)

    # polymix summarize rebuilds the same summary from the sweep dir
    (sweep_dir / "summary.csv").unlink()
    (sweep_dir / "plots" / "sweep.png").unlink()
    summarized = run_cli("summarize", str(sweep_dir))
    assert summarized.returncode == 0, summarized.stderr
    assert [r["status"] for r in rows(sweep_dir)] == ["ok", "ok", "failed"]
    assert is_png(sweep_dir / "plots" / "sweep.png")


def test_a_job_cancelled_by_slurm_is_recorded_and_the_others_kept(node_cpus, tmp_path):
    """Job 1 trains for ever until scancel ends it; job 0 ends normally. Both use all the
    node's CPUs (up to 2), which become their threads."""
    cpus = min(2, node_cpus)
    sweep_dir = tmp_path / "sweep"
    args = [
        sys.executable,
        "-m",
        "polymix_cli",
        "train",
        "-m",
        *SWEEP_TINY,
        "trainer.epochs=5,1000000",
        f"hydra.launcher.cpus_per_task={cpus}",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    env.pop("POLYMIX_DEBUG", None)
    with subprocess.Popen(
        args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            deadline = time.monotonic() + 180
            while not (sweep_dir / "1" / ".hydra" / "overrides.yaml").exists():  # job 1 runs
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.5)
            subprocess.run(["scancel", _task(sweep_dir, index=1)], check=True, timeout=30)
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, (out + err)[-3000:]
    table = rows(sweep_dir)
    assert [(r["job"], r["status"]) for r in table] == [("0", "ok"), ("1", "failed")]
    assert "killed by Slurm: CANCELLED" in table[1]["reason"]
    assert (
        status(sweep_dir / "0")["threads"]
        == cpus
        == int(status(sweep_dir / "0")["slurm"]["cpus_per_task"])
    )
    assert sbatch_cpus(sweep_dir) == {cpus}
    assert (sweep_dir / "0" / "checkpoints" / "last.pt").is_file()


def _task(sweep_dir: Path, index: int) -> str:
    """The Slurm id (``ARRAY_INDEX``) of task ``index`` of the sweep's array."""
    folders = [p.name for p in (sweep_dir / ".submitit").iterdir() if p.name.endswith(f"_{index}")]
    assert folders, list((sweep_dir / ".submitit").iterdir())
    return folders[0]


def test_a_job_that_can_never_start_ends_the_sweep_at_once(node_cpus, tmp_path):
    """More CPUs per task than the node has: pending with reason PartitionConfig for ever.
    polymix says so in one line, with the option to change, cancels the array, exits 2."""
    sweep_dir = tmp_path / "sweep"
    start = time.monotonic()
    result = sweep(sweep_dir, "model.degree=2,3", f"hydra.launcher.cpus_per_task={node_cpus + 1}")
    elapsed = time.monotonic() - start
    assert result.returncode == 2, result.stderr[-3000:]
    assert elapsed < 60
    errors = [line for line in result.stderr.splitlines() if line.startswith("polymix: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in ("PartitionConfig", "hydra.launcher.cpus_per_task", "cancelled job array"):
        assert needle in errors[0], errors[0]
    array_id = errors[0].rsplit(" ", 1)[-1]
    queue = subprocess.run(
        ["squeue", "-h", "-r", "-j", array_id, "-o", "%T"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert "PENDING" not in queue.stdout  # nothing left waiting on the cluster
