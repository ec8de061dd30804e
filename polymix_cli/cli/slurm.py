"""polymix's Slurm launcher (``hydra/launcher=slurm``): hydra-submitit-launcher's, with a
wait that knows about Slurm.

The plugin submits the sweep as one job array and then waits on submitit, which asks
``sacct`` for the jobs' states. That wait has three blind spots, which this launcher
closes by watching the array with ``squeue`` (and ``scontrol`` once a job has left it):

- a job that can never start (pending with a reason such as ``PartitionConfig``: it asks
  for more than the partition has) is reported within seconds as one line naming the
  reason and the option to change, its array is cancelled, and the sweep ends with exit
  status 2, instead of waiting until the timeout;
- a job that Slurm ended without a result (``scancel``, its time limit, out of memory, a
  node failure) is recorded in its run dir's ``status.json`` as failed with that reason;
  the other jobs are kept and summarised;
- a cluster without accounting (``sacct``: "accounting storage is disabled") is no
  problem: submitit's warning about it is shown once, with what it means.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
    SlurmLauncher as SubmititSlurmLauncher,
)
from omegaconf import OmegaConf, open_dict

log = logging.getLogger("polymix")

# What a job that left no result returns to the sweeper: the worst value, as a failed
# job does (polymix_cli.cli.apps.FAILED_OBJECTIVE).
FAILED_OBJECTIVE = float("inf")
# Seconds between two looks at the queue; a job is taken as gone from it after two looks.
POLL_S = 3.0
# Pending reasons that mean "never", with the launcher option that usually fixes them
# (None: worked out from the partition's nodes, see :func:`option_to_change`).
NEVER_STARTS: dict[str, str | None] = {
    "PartitionConfig": None,
    "BadConstraints": None,
    "ReqNodeNotAvail": None,
    "PartitionNodeLimit": "hydra.launcher.nodes",
    "PartitionTimeLimit": "hydra.launcher.timeout_min",
    "InvalidAccount": "hydra.launcher.account",
    "InvalidQOS": "hydra.launcher.qos",
    "AccountNotAllowed": "hydra.launcher.account",
    "QOSNotAllowed": "hydra.launcher.qos",
    "PartitionDown": "hydra.launcher.partition",
    "PartitionInactive": "hydra.launcher.partition",
    "DependencyNeverSatisfied": None,
}
# Of those, reasons that a cluster's admin may lift soon: reported once seen this long.
TRANSIENT = {"ReqNodeNotAvail", "PartitionDown", "PartitionInactive"}
TRANSIENT_GRACE_S = 30.0
# Limits of an association or QOS on one job (AssocMaxCpuPerJobLimit, QOSMaxMemoryPerJob,
# QOSMaxWallDurationPerJobLimit, ...): a part of the name, and the option it is about.
PER_JOB_LIMITS = (
    ("Cpu", "hydra.launcher.cpus_per_task"),
    ("Mem", "hydra.launcher.mem_gb"),
    ("WallDuration", "hydra.launcher.timeout_min"),
    ("Node", "hydra.launcher.nodes"),
    ("Gres", "hydra.launcher.gpus_per_node"),
    ("TRES", "hydra.launcher.gpus_per_node"),
)
# How Slurm ended a job that left no result, in words.
END_STATES = {
    "CANCELLED": "cancelled (scancel, or by an administrator)",
    "TIMEOUT": "killed at its time limit (hydra.launcher.timeout_min)",
    "OUT_OF_MEMORY": "killed for using more memory than it asked for (hydra.launcher.mem_gb)",
    "NODE_FAIL": "its node failed",
    "PREEMPTED": "preempted",
    "BOOT_FAIL": "its node failed to boot",
    "DEADLINE": "past its deadline",
    "FAILED": "the job script failed",
}
SACCT_NOTE = (
    "sacct, which submitit asks for job states, does not answer on this cluster (often: "
    "accounting storage is disabled); polymix reads the states from squeue and scontrol "
    "instead, so nothing is lost (this note is shown once)"
)


# --------------------------------------------------------------------------- pure helpers


@dataclass(frozen=True)
class Queued:
    """One line of ``squeue -h -r -o %i|%T|%r``."""

    job_id: str
    state: str
    reason: str


def parse_squeue(text: str) -> dict[str, Queued]:
    """The jobs in the output of ``squeue -h -r -o '%i|%T|%r'``, by job id (``12_0``)."""
    jobs = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[0]:
            jobs[parts[0]] = Queued(*parts)
    return jobs


def never_starts(reason: str) -> bool:
    """Whether a pending reason means the job can never start as it is."""
    if reason in NEVER_STARTS:
        return True
    return reason.startswith(("Assoc", "QOS")) and "PerJob" in reason


def option_to_change(
    reason: str, request: Mapping[str, Any], nodes: Sequence[tuple[int, int]] = ()
) -> str:
    """The launcher option to change for a job pending with ``reason``: for a per-job
    limit the option of that resource; for ``PartitionConfig`` and friends the request
    that exceeds every node of the partition (``nodes``: (CPUs, memory in MB) of each),
    else the partition itself."""
    fixed = NEVER_STARTS.get(reason)
    if fixed:
        return fixed
    if reason.startswith(("Assoc", "QOS")):
        for part, option in PER_JOB_LIMITS:
            if part in reason:
                return option
    if nodes:
        cpus = request.get("cpus_per_task") or 1
        mem_mb = (request.get("mem_gb") or 0) * 1024
        if all(cpus > c for c, _ in nodes):
            return "hydra.launcher.cpus_per_task"
        if all(mem_mb > m for _, m in nodes):
            return "hydra.launcher.mem_gb"
        if not any(cpus <= c and mem_mb <= m for c, m in nodes):
            return "hydra.launcher.cpus_per_task or hydra.launcher.mem_gb"
    if request.get("gpus_per_node"):
        return "hydra.launcher.gpus_per_node or hydra.launcher.partition"
    return "hydra.launcher.partition (or the resources the jobs ask for)"


def describe_request(request: Mapping[str, Any]) -> str:
    keys = ("partition", "cpus_per_task", "mem_gb", "gpus_per_node", "timeout_min")
    return ", ".join(f"{k}={request[k]}" for k in keys if request.get(k) is not None)


def parse_scontrol(text: str) -> dict[str, str]:
    """``Key=Value`` pairs of ``scontrol -o show job ID`` (one line per job)."""
    pairs = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if sep and key not in pairs:
            pairs[key] = value
    return pairs


def end_reason(state: str, reason: str | None, stderr: Path | None) -> str:
    """One line for a job that Slurm ended without a result."""
    base = state.split()[0] if state else "UNKNOWN"
    words = END_STATES.get(base.rstrip("+"), "it ended without a result")
    text = f"killed by Slurm: {base}, {words}"
    if reason and reason not in ("None", "(null)"):
        text += f" (reason {reason})"
    if stderr is not None:
        text += f"; see {stderr}"
    return text


# --------------------------------------------------------------------------- Slurm commands


def _run(args: list[str]) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return None


def squeue(array_id: str) -> dict[str, Queued] | None:
    """The array's jobs still in the queue; None when squeue does not answer."""
    done = _run(["squeue", "-h", "-r", "-j", array_id, "-o", "%i|%T|%r"])
    if done is None:
        return None
    if done.returncode != 0:
        # the whole array has left the queue (and Slurm's memory): squeue refuses the id
        return {} if "Invalid job id" in done.stderr else None
    return parse_squeue(done.stdout)


def partition_nodes(partition: str | None) -> list[tuple[int, int]]:
    """(CPUs, memory in MB) of each node configuration of ``partition`` (or the default)."""
    args = ["sinfo", "-h", "-o", "%P|%c|%m"]
    done = _run(args)
    if done is None or done.returncode != 0:
        return []
    nodes = []
    for line in done.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 3:
            continue
        name, default = parts[0].rstrip("*"), parts[0].endswith("*")
        if (partition and name != partition) or (not partition and not default):
            continue
        try:
            nodes.append((int(parts[1].rstrip("+")), int(parts[2].rstrip("+"))))
        except ValueError:
            continue
    return nodes


def slurm_end(job_id: str) -> tuple[str, str | None]:
    """(state, reason) of a job that has left the queue: scontrol (which remembers a job
    for MinJobAge seconds), else sacct; ``UNKNOWN`` when neither knows it."""
    done = _run(["scontrol", "-o", "show", "job", job_id])
    if done is not None and done.returncode == 0 and "JobState=" in done.stdout:
        pairs = parse_scontrol(done.stdout)
        return pairs.get("JobState", "UNKNOWN"), pairs.get("Reason")
    done = _run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State"])
    if done is not None and done.returncode == 0 and done.stdout.strip():
        return done.stdout.split()[0], None
    if done is not None and done.returncode != 0:
        _SacctOnce.note()
    return "UNKNOWN", None


class _SacctOnce(logging.Filter):
    """On submitit's logger: its "Bypassing sacct error" warning (one per poll) becomes
    one note with what it means."""

    shown = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "sacct" not in record.getMessage():
            return True
        if _SacctOnce.shown:
            return False
        _SacctOnce.shown = True
        record.msg, record.args = f"polymix: note: {SACCT_NOTE}", ()
        return True

    @classmethod
    def note(cls) -> None:
        if not cls.shown:
            cls.shown = True
            log.warning(f"polymix: note: {SACCT_NOTE}")

    @classmethod
    def install(cls) -> None:
        logger = logging.getLogger("submitit")
        if not any(isinstance(f, cls) for f in logger.filters):
            logger.addFilter(cls())


class NeverStarts(Exception):
    """The jobs of the array can never start: the message says why and what to change."""


# --------------------------------------------------------------------------- the launcher


class SlurmLauncher(SubmititSlurmLauncher):
    """hydra-submitit-launcher's Slurm launcher, waiting with ``squeue`` (see the module)."""

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None
        _SacctOnce.install()
        executor = self._executor(submitit)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        log.info(f"Submitit 'slurm' sweep output dir : {sweep_dir}")
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            sweep_dir.chmod(int(str(self.config.hydra.sweep.mode), 8))
        job_params = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append(
                (
                    list(overrides),
                    "hydra.sweep.dir",
                    idx,
                    f"job_id_for_{idx}",
                    Singleton.get_state(),
                )
            )
        try:
            jobs = executor.map_array(self, *zip(*job_params, strict=True))
        except (
            submitit.core.utils.UncompletedJobError,
            submitit.core.utils.FailedSubmissionError,
        ) as err:
            _leave(f"sbatch refused the sweep's jobs: {_sbatch_error(err)}; {self._request_hint()}")
        try:
            ended = self._wait(jobs)
        except NeverStarts as err:
            for job in jobs:
                job.cancel(check=False)
            _leave(f"{err}; cancelled job array {jobs[0].job_id.split('_')[0]}")
        returns = []
        for (overrides, _, idx, _, _), job in zip(job_params, jobs, strict=True):
            if job in ended:
                returns.append(self._failed(overrides, idx, job, ended[job]))
                continue
            outcome, value = submitit.core.utils.pickle_load(job.paths.result_pickle)
            if outcome == "success":
                returns.append(value)
            else:  # raised outside polymix's own guard (e.g. by Hydra in the job)
                last = [line for line in str(value).strip().splitlines() if line.strip()]
                reason = (
                    f"the job raised: {last[-1] if last else 'no trace'}; see {job.paths.stderr}"
                )
                returns.append(self._failed(overrides, idx, job, reason))
        return returns

    # ------------------------------------------------------------------ submission

    def _executor(self, submitit: Any) -> Any:
        """submitit's executor with the launcher's parameters (as the plugin builds it)."""
        params = dict(self.params)
        init = {
            "folder": params["submitit_folder"],
            "slurm_max_num_timeout": params["max_num_timeout"],
        }
        executor = submitit.AutoExecutor(cluster="slurm", **init)
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{
                key if key in base else f"slurm_{key}": value
                for key, value in params.items()
                if key not in ("submitit_folder", "max_num_timeout")
            }
        )
        return executor

    def _request_hint(self, reason: str | None = None) -> str:
        nodes = partition_nodes(self.params.get("partition"))
        offer = ""
        if nodes:
            where = self.params.get("partition") or "the default partition"
            sizes = sorted({f"{c} CPUs, {m} MB" for c, m in nodes})
            offer = f"{where} has nodes of {'; '.join(sizes)}; "
        option = option_to_change(reason or "PartitionConfig", self.params, nodes)
        return f"{offer}the jobs ask for {describe_request(self.params)}: change {option}"

    # ------------------------------------------------------------------ waiting

    def _wait(self, jobs: Sequence[Any]) -> dict[Any, str]:
        """Wait until every job has a result or has left the queue without one; return the
        reasons of the latter. Raises :class:`NeverStarts`."""
        array_id = jobs[0].job_id.split("_")[0]
        waiting = list(jobs)
        ended: dict[Any, str] = {}
        gone: dict[Any, int] = {}
        stuck_since: dict[str, float] = {}
        next_poll = time.monotonic() + 1.0
        while waiting:
            waiting = [j for j in waiting if not j.paths.result_pickle.exists()]
            if not waiting or time.monotonic() < next_poll:
                time.sleep(0.5)
                continue
            next_poll = time.monotonic() + POLL_S
            queue = squeue(array_id)
            if queue is None:
                continue  # squeue did not answer: look again later
            reasons = {q.reason for q in queue.values() if q.state == "PENDING"}
            now = time.monotonic()
            for reason in [r for r in reasons if never_starts(r)]:
                first = stuck_since.setdefault(reason, now)
                if reason not in TRANSIENT or now - first >= TRANSIENT_GRACE_S:
                    raise NeverStarts(
                        f"the sweep's Slurm jobs cannot start: pending with reason {reason}; "
                        + self._request_hint(reason)
                    )
            for job in waiting:
                if job.job_id in queue:
                    gone.pop(job, None)
                    continue
                gone[job] = gone.get(job, 0) + 1
                if gone[job] >= 2 and not job.paths.result_pickle.exists():
                    state, reason = slurm_end(job.job_id)
                    log_file = job.paths.stderr if job.paths.stderr.exists() else None
                    ended[job] = end_reason(state, reason, log_file)
            waiting = [j for j in waiting if j not in ended]
        return ended

    # ------------------------------------------------------------------ failed jobs

    def _failed(self, overrides: list[str], idx: int, job: Any, reason: str) -> JobReturn:
        """Record a job that left no result in its run dir (made if the job never started,
        so that the summary lists it) and return the worst objective for it."""
        from polymix_cli.reporting.sweep import STATUS_FILE, read_status, write_status

        log.error(f"polymix: error: job {idx} ({' '.join(overrides)}): {reason}")
        run_dir = self._run_dir(overrides, idx)
        if run_dir is not None:
            hydra_dir = run_dir / ".hydra"
            if not (hydra_dir / "overrides.yaml").exists():
                hydra_dir.mkdir(parents=True, exist_ok=True)
                (hydra_dir / "overrides.yaml").write_text(OmegaConf.to_yaml(list(overrides)))
            previous = read_status(run_dir)
            if previous is None or previous.get("status") != "failed":
                write_status(run_dir, "failed", 0.0, reason=reason, error="SlurmJobEnded")
            else:  # the job saw it coming (SIGTERM: its checkpoint is saved): both reasons
                previous["reason"] = f"{reason}; the job: {previous.get('reason')}"
                _write_json(run_dir / STATUS_FILE, previous)
        ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
        ret.return_value = FAILED_OBJECTIVE
        ret.working_dir = str(run_dir) if run_dir is not None else ""
        ret.task_name = str(self.config.hydra.job.name) if self.config is not None else ""
        return ret

    def _run_dir(self, overrides: list[str], idx: int) -> Path | None:
        """The run dir of job ``idx``, as Hydra would name it (``hydra.sweep.subdir``)."""
        from hydra.core.hydra_config import HydraConfig

        assert self.hydra_context is not None and self.config is not None
        previous = HydraConfig.instance().cfg
        try:
            config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
            with open_dict(config.hydra.job):
                config.hydra.job.num = idx
            HydraConfig.instance().set_config(config)
            return Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        except Exception as err:  # noqa: BLE001 - the summary then misses the job, nothing worse
            log.debug(f"run dir of job {idx}: {err}")
            return None
        finally:
            if previous is not None:
                HydraConfig.instance().cfg = previous


def _sbatch_error(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if "error" in line.lower()]
    return lines[-1] if lines else str(err).strip().splitlines()[-1]


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


def _leave(message: str) -> None:
    sys.stderr.write(f"polymix: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(2)
