"""Torch threads per run: one thread for small steps, and a parallel launcher's share of
the cores (joblib's ``n_jobs``, submitit's ``cpus_per_task``, the CPUs of a Ray task) for
the jobs of a sweep."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

import torch

from polymix_cli.runs.prepare import Prepared


def set_threads(requested: int | None, p: Prepared, max_threads: int | None = None) -> int:
    """Set torch's intra-op threads for a run.

    Args:
        requested: The threads asked for (``trainer.num_threads``); with ``None``, one
            thread for small steps (where threading costs more than it saves) and
            otherwise ``max_threads`` or torch's default.
        p: The prepared run (its step size decides "small").
        max_threads: A parallel launcher's share of the cores.

    Returns:
        The number of threads torch now uses.
    """
    if requested is None:
        t = p.cfg.trainer
        points = min(t.batch_size or p.data.x_train.shape[0], p.data.x_train.shape[0])
        draws = t.num_samples * t.replicas  # every replica's draws go through one step
        work = points * draws * p.model.num_params()  # ~ multiply-adds per step
        requested = 1 if work < _SMALL_STEP else (max_threads or _DEFAULT_THREADS)
    torch.set_num_threads(requested)
    return torch.get_num_threads()


_SMALL_STEP = 1 << 22  # points x draws x parameters below which one thread is faster
_DEFAULT_THREADS = torch.get_num_threads()


# --------------------------------------------------------------------------- threads


def threads_per_job(
    requested: int | None, launcher: Mapping[str, Any] | None, cores: int | None = None
) -> int | None:
    """Torch threads for one job, so that parallel jobs x threads <= cores.

    Args:
        requested: ``trainer.num_threads``; wins when set.
        launcher: The Hydra launcher's settings (``cpus_per_task``, ``n_jobs``,
            ``_target_``), or ``None``.
        cores: The cores available (``None``: :func:`available_cores`).

    Returns:
        ``requested``; else, in a job of the Ray launcher, the CPUs Ray gave its task
        (``ray.remote.num_cpus``, default 1); else, in a job of the Slurm launcher, the
        CPUs Slurm gave it (``SLURM_CPUS_PER_TASK``); else a submitit launcher's ``cpus_per_task``; else,
        under joblib (``n_jobs``, -1 for all cores), the cores divided among the parallel
        jobs; else ``None`` (torch's default).
    """
    if requested is not None:
        return int(requested)
    launcher = launcher or {}
    if "ray" in str(launcher.get("_target_", "")).lower():
        return ray_task_cpus(launcher)
    slurm_cpus = slurm_cpus_per_task()
    if slurm_cpus and "slurm" in str(launcher.get("_target_", "")).lower():
        return slurm_cpus
    if launcher.get("cpus_per_task"):
        return int(launcher["cpus_per_task"])
    n_jobs = launcher.get("n_jobs")
    if n_jobs is None or "submitit" in str(launcher.get("_target_", "")):
        return None
    cores = cores or available_cores()
    n_jobs = int(n_jobs)
    parallel = cores + 1 + n_jobs if n_jobs < 0 else n_jobs  # joblib: -1 = all cores
    return max(1, cores // max(1, min(parallel, cores)))


def ray_task_cpus(launcher: Any) -> int:
    """The CPUs of this Ray task: those Ray assigned it when running in one, else the
    launcher's ``ray.remote.num_cpus`` (Ray's default, 1, when unset)."""
    ray = sys.modules.get("ray")  # imported by the Ray worker that runs the job
    if ray is not None and ray.is_initialized():
        try:
            cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
            if cpus:
                return max(1, round(cpus))
        except Exception:  # noqa: BLE001, S110 - not in a task: the configured request
            pass
    remote = (launcher.get("ray") or {}).get("remote") or {}
    return max(1, round(float(remote.get("num_cpus") or 1)))


def slurm_cpus_per_task() -> int | None:
    """The CPUs Slurm gave this job's task (``SLURM_CPUS_PER_TASK``), if in one."""
    try:
        return int(os.environ["SLURM_CPUS_PER_TASK"]) or None
    except (KeyError, ValueError):
        return None


def available_cores() -> int:
    """Cores this process may use (its CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
