#!/usr/bin/env bash
# A one-node Slurm cluster on this Debian machine, for trying and testing
# `polymix train -m hydra/launcher=slurm` (tests/e2e/test_slurm.py, .ci/run). Needs root.
#
#   scripts/slurm_cluster.sh install   apt-get install slurm-wlm and munge, only if missing
#   scripts/slurm_cluster.sh up        munge key, /etc/slurm/slurm.conf, munged, slurmctld, slurmd;
#                                      waits until the node takes jobs (idempotent)
#   scripts/slurm_cluster.sh down      stops slurmd, slurmctld and munged (idempotent)
#   scripts/slurm_cluster.sh status    exit 0 when the cluster answers and its node is up
#
# The node is this host (`hostname -s`) with its CPUs (`nproc`) and a RealMemory 10% under
# its memory; one partition, `debug`, the default. No accounting (sacct says so; polymix
# then reads job states from squeue and scontrol). The config names this cluster
# `polymix` in a comment line: `up` never overwrites a slurm.conf without that line.
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
MARK="# written by polymix scripts/slurm_cluster.sh"
STATE=/var/spool/slurmctld
SPOOL=/var/spool/slurmd
LOGS=/var/log/slurm
RUN=/run/slurm-polymix

say() { printf 'slurm_cluster: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
need_root() { [ "$(id -u)" -eq 0 ] || die "run as root (it writes /etc/slurm and starts daemons)"; }
installed() { command -v sbatch >/dev/null && command -v slurmctld >/dev/null \
    && command -v slurmd >/dev/null && command -v munged >/dev/null; }

# the pid in FILE when that process is alive
alive() { local pid; pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

cmd_install() {
    need_root
    if installed; then say "slurm-wlm and munge are installed"; return; fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null
    installed || die "slurm-wlm and munge did not install"
    say "installed slurm-wlm and munge"
}

write_conf() {
    local host cpus mem_mb real_mb
    host=$(hostname -s)
    cpus=$(nproc --all)
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    real_mb=$((mem_mb * 9 / 10))
    if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        die "$CONF exists and was not written by this script: not touching it"
    fi
    mkdir -p "$CONF_DIR" "$STATE" "$SPOOL" "$LOGS" "$RUN"
    cat > "$CONF.new" <<EOF
$MARK
ClusterName=polymix
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# quick turnarounds for tests: jobs killed 5 s after SIGTERM, finished jobs kept 5 min
KillWait=5
MinJobAge=300
SchedulerType=sched/backfill
NodeName=$host CPUs=$cpus RealMemory=$real_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    if [ -f "$CONF" ] && cmp -s "$CONF" "$CONF.new"; then
        rm "$CONF.new"
        return 1  # unchanged
    fi
    mv "$CONF.new" "$CONF"
    say "wrote $CONF (node $host: $cpus CPUs, RealMemory $real_mb MB, partition debug)"
}

node_ready() {
    local state
    state=$(sinfo -h -N -o '%T' 2>/dev/null | head -1) || return 1
    case "$state" in idle* | mixed* | allocated* | completing*) return 0 ;; *) return 1 ;; esac
}

cmd_up() {
    need_root
    installed || die "slurm-wlm and munge are not installed (scripts/slurm_cluster.sh install)"
    local changed=0
    write_conf && changed=1
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        chown munge:munge /etc/munge/munge.key 2>/dev/null || true
        chmod 400 /etc/munge/munge.key
        say "made /etc/munge/munge.key"
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
    if ! munge -n >/dev/null 2>&1; then
        if id munge >/dev/null 2>&1; then
            runuser -u munge -- munged --force
        else
            munged --force
        fi
        say "started munged"
    fi
    if [ "$changed" = 1 ]; then  # a new config: restart what runs with the old one
        stop_daemon slurmd
        stop_daemon slurmctld
    fi
    alive "$RUN/slurmctld.pid" || { slurmctld; say "started slurmctld"; }
    alive "$RUN/slurmd.pid" || { slurmd; say "started slurmd"; }
    local i
    for i in $(seq 1 60); do
        if node_ready; then
            # a node left down or drained (e.g. by an earlier unclean stop) takes no jobs
            say "up: $(sinfo -h -o '%P %D node(s) %c CPUs %m MB %T' | head -1)"
            return 0
        fi
        if [ "$i" = 10 ]; then
            scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
        fi
        sleep 0.5
    done
    die "the node did not come up in 30 s; see $LOGS/slurmctld.log and $LOGS/slurmd.log"
}

stop_daemon() {  # NAME: stop the daemon of its pid file, waiting for it to end
    local file=$RUN/$1.pid pid i
    alive "$file" || { rm -f "$file"; return 0; }
    pid=$(cat "$file")
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    rm -f "$file"
    say "stopped $1"
}

cmd_down() {
    need_root
    if installed && alive "$RUN/slurmctld.pid"; then
        scancel --quiet --user=root 2>/dev/null || true  # no job left to come back at the next up
    fi
    stop_daemon slurmd
    stop_daemon slurmctld
    local pid
    pid=$(cat /run/munge/munged.pid 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        say "stopped munged"
    fi
    rm -rf "${STATE:?}"/* 2>/dev/null || true  # forget the jobs: the next `up` starts clean
    say "down"
}

cmd_status() {
    installed || die "slurm-wlm is not installed"
    node_ready || die "no Slurm node takes jobs here"
    sinfo -h -o '%P %D node(s) %c CPUs %m MB %T'
}

case "${1:-}" in
    install) cmd_install ;;
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) die "usage: $0 install|up|down|status" ;;
esac
