"""polymix's Ray launcher (``hydra/launcher=ray``, the extra ``ray``): hydra-ray-launcher's
jobs, each a Ray task, on a local Ray cluster (started and stopped by the sweep) or on an
existing one (``hydra.launcher.ray.init.address``).

Unlike the plugin's own launcher, a job whose Ray task ends without a result (its worker
killed, out of memory, its node lost) does not end the sweep: it is recorded as failed in
its run dir's ``status.json``, with the reason, and returns the worst objective, so the
sweep summary lists it and an optuna study steers away from it. A job's torch threads
are the CPUs Ray gave its task (``hydra.launcher.ray.remote.num_cpus``, default 1; see
:func:`polymix_cli.runs.threads.ray_task_cpus`).

Light to import (Hydra imports the plugin at every start): ray is imported only when a
sweep is launched.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher as PluginRayLauncher
from omegaconf import OmegaConf, open_dict

log = logging.getLogger(__name__)

FAILED_OBJECTIVE = float("inf")


class RayLauncher(PluginRayLauncher):
    """``hydra/launcher=ray``: the plugin's launcher, with failed tasks recorded."""

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import ray
        from hydra.core.singleton import Singleton
        from hydra.core.utils import configure_log, filter_overrides, setup_globals
        from hydra_plugins.hydra_ray_launcher._launcher_util import launch_job_on_ray, start_ray

        assert self.config is not None and self.hydra_context is not None
        assert self.task_function is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Ray launcher: {len(job_overrides)} jobs, sweep dir {sweep_dir}")
        start_ray(self.ray_cfg.init)
        if self.ray_cfg.init.get("address") is None:
            self._check_local_cpus(ray)
        pending = []
        for offset, overrides in enumerate(job_overrides):
            idx = initial_job_idx + offset
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            config = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(overrides)
            )
            with open_dict(config):
                config.hydra.job.id = f"ray_{idx}"
                config.hydra.job.num = idx
            task = launch_job_on_ray(
                self.hydra_context,
                self.ray_cfg.remote,
                config,
                self.task_function,
                Singleton.get_state(),
            )
            run_dir = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
            pending.append((idx, list(overrides), run_dir, task))
        returns = []
        for idx, overrides, run_dir, task in pending:
            try:
                returns.append(ray.get(task))
            except Exception as err:  # noqa: BLE001 - a lost task must not end the sweep
                returns.append(self._failed(idx, overrides, run_dir, err))
        return returns

    def _check_local_cpus(self, ray: Any) -> None:
        """On a local cluster, a job that asks for more CPUs than this machine has would
        wait forever: say so and stop (exit 2), as for a Slurm job that can never start."""
        need = float((self.ray_cfg.remote or {}).get("num_cpus") or 1)
        have = float(ray.cluster_resources().get("CPU", 0))
        if have and need > have:
            ray.shutdown()
            sys.stderr.write(
                f"polymix: error: hydra.launcher.ray.remote.num_cpus={need:g} asks for more CPUs "
                f"than the local Ray cluster has ({have:g}); lower it, or run on a bigger "
                f"cluster with hydra.launcher.ray.init.address=...\n"
            )
            sys.stderr.flush()
            raise SystemExit(2)

    def _failed(
        self, idx: int, overrides: list[str], run_dir: Path, err: BaseException
    ) -> JobReturn:
        """Record a job whose Ray task left no result, and return the worst objective."""
        from polymix_cli.reporting.sweep import read_status, write_status

        lines = [line for line in str(err).strip().splitlines() if line.strip()]
        reason = f"the Ray task ended without a result ({type(err).__name__}: {lines[0] if lines else ''})"
        log.error(f"polymix: error: job {idx} ({' '.join(overrides)}): {reason}")
        hydra_dir = run_dir / ".hydra"
        if not (hydra_dir / "overrides.yaml").exists():
            hydra_dir.mkdir(parents=True, exist_ok=True)
            (hydra_dir / "overrides.yaml").write_text(OmegaConf.to_yaml(list(overrides)))
        previous = read_status(run_dir)
        if previous is None or previous.get("status") != "failed":
            write_status(run_dir, "failed", 0.0, reason=reason, error=type(err).__name__)
        ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
        ret.return_value = FAILED_OBJECTIVE
        ret.working_dir = str(run_dir)
        ret.task_name = str(self.config.hydra.job.name) if self.config is not None else ""
        return ret
