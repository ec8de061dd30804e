"""polymix's Slurm launcher, without a cluster: reading squeue and scontrol, the pending
reasons that mean "never" and the option each names (the real runs: e2e/test_slurm.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from polymix_cli.cli.slurm import (
    Queued,
    end_reason,
    never_starts,
    option_to_change,
    parse_scontrol,
    parse_squeue,
)

REQUEST = {"partition": None, "cpus_per_task": 4, "mem_gb": 2, "timeout_min": 60}


def test_parse_squeue_keeps_each_array_task():
    text = "12_0|RUNNING|None\n12_1|PENDING|Resources\n\n12_2|PENDING|PartitionConfig\n"
    jobs = parse_squeue(text)
    assert jobs["12_1"] == Queued("12_1", "PENDING", "Resources")
    assert sorted(jobs) == ["12_0", "12_1", "12_2"]


@pytest.mark.parametrize(
    "reason",
    ["PartitionConfig", "ReqNodeNotAvail", "AssocMaxCpuPerJobLimit", "QOSMaxMemoryPerJob"],
)
def test_reasons_that_never_start(reason):
    assert never_starts(reason)


@pytest.mark.parametrize(
    "reason", ["Resources", "Priority", "None", "AssocGrpCpuLimit", "QOSGrpJobs"]
)
def test_reasons_that_only_wait(reason):
    assert not never_starts(reason)  # a busy cluster or a group's running total: it will start


@pytest.mark.parametrize(
    ("reason", "nodes", "option"),
    [
        ("PartitionConfig", [(2, 20000)], "hydra.launcher.cpus_per_task"),
        ("PartitionConfig", [(8, 1000)], "hydra.launcher.mem_gb"),
        (
            "PartitionConfig",
            [(2, 64000), (64, 1000)],
            "hydra.launcher.cpus_per_task or hydra.launcher.mem_gb",
        ),
        ("AssocMaxCpuPerJobLimit", [], "hydra.launcher.cpus_per_task"),
        ("QOSMaxWallDurationPerJobLimit", [], "hydra.launcher.timeout_min"),
        ("PartitionTimeLimit", [], "hydra.launcher.timeout_min"),
        ("InvalidAccount", [], "hydra.launcher.account"),
        (
            "ReqNodeNotAvail",
            [(8, 64000)],
            "hydra.launcher.partition (or the resources the jobs ask for)",
        ),
    ],
)
def test_option_to_change(reason, nodes, option):
    assert option_to_change(reason, REQUEST, nodes) == option


def test_scontrol_and_end_reason():
    line = "JobId=7 ArrayJobId=6 ArrayTaskId=1 JobName=train JobState=TIMEOUT Reason=TimeLimit Dependency=(null)"
    pairs = parse_scontrol(line)
    assert (pairs["JobState"], pairs["Reason"]) == ("TIMEOUT", "TimeLimit")
    text = end_reason(pairs["JobState"], pairs["Reason"], Path("x/6_1_0_log.err"))
    assert text.startswith(
        "killed by Slurm: TIMEOUT, killed at its time limit (hydra.launcher.timeout_min)"
    )
    assert "reason TimeLimit" in text and text.endswith("see x/6_1_0_log.err")
    assert end_reason("CANCELLED by 0", "None", None) == (
        "killed by Slurm: CANCELLED, cancelled (scancel, or by an administrator)"
    )
