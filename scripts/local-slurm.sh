#!/usr/bin/env bash
# A single-node Slurm on this machine, for vssbench's tests: `start` writes a one-node config under
# $VSSBENCH_SLURM_DIR (default /tmp/vssbench-slurm), starts munged, slurmctld and slurmd on the
# loopback interface only, and waits until the node is idle; `stop` stops them; `env` prints the
# variables a shell needs to talk to it (SLURM_CONF). Needs Debian's slurm-wlm and munge packages
# and root (SlurmUser=root). All traffic stays on 127.0.0.1. A requeued job may start again 10 s
# later (cred_expire=10; Slurm's default holds it 120 s), so the requeue tests stay short.
#
#   scripts/local-slurm.sh start && eval "$(scripts/local-slurm.sh env)" && sinfo
#   scripts/local-slurm.sh stop
set -euo pipefail

DIR="${VSSBENCH_SLURM_DIR:-/tmp/vssbench-slurm}"
HOST="$(hostname -s)"
CTLD_PORT="${VSSBENCH_SLURM_PORT:-6917}"
SLURMD_PORT=$((CTLD_PORT + 1))

die() { echo "local-slurm: $*" >&2; exit 1; }

write_config() {
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/munge"
    chmod 700 "$DIR/munge"
    if [ ! -s "$DIR/munge/munge.key" ]; then
        dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
        chmod 400 "$DIR/munge/munge.key"
    fi
    local cpus mem
    cpus="$(nproc)"
    mem="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
    cat > "$DIR/slurm.conf" <<EOF
ClusterName=vssbench-local
SlurmctldHost=${HOST}(127.0.0.1)
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=${DIR}/munge/munge.socket,cred_expire=10
CredType=cred/munge
StateSaveLocation=${DIR}/state
SlurmdSpoolDir=${DIR}/spool
SlurmctldPidFile=${DIR}/slurmctld.pid
SlurmdPidFile=${DIR}/slurmd.pid
SlurmctldLogFile=${DIR}/log/slurmctld.log
SlurmdLogFile=${DIR}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
MinJobAge=3600
KillWait=5
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    command -v slurmctld >/dev/null || die "slurmctld not found (apt-get install slurm-wlm munge)"
    command -v munged >/dev/null || die "munged not found (apt-get install munge)"
    [ "$(id -u)" = 0 ] || die "must run as root (SlurmUser=root)"
    stop quiet
    write_config
    munged --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
        --seed-file="$DIR/munge/munged.seed" --force
    export SLURM_CONF="$DIR/slurm.conf"
    slurmctld -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF"
    for _ in $(seq 1 60); do
        if sinfo -h -o "%t" 2>/dev/null | grep -qx "idle"; then
            echo "local-slurm: up (SLURM_CONF=$SLURM_CONF)"
            return 0
        fi
        sleep 0.5
    done
    die "the node did not come up within 30 s; see $DIR/log"
}

kill_pidfile() {
    local file="$1"
    if [ -s "$file" ]; then
        local pid
        pid="$(cat "$file")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$file"
    fi
}

stop() {
    if [ -f "$DIR/slurm.conf" ]; then
        SLURM_CONF="$DIR/slurm.conf" scancel --quiet --user=root 2>/dev/null || true
    fi
    kill_pidfile "$DIR/slurmd.pid"
    kill_pidfile "$DIR/slurmctld.pid"
    kill_pidfile "$DIR/munge/munged.pid"
    rm -rf "$DIR/state" "$DIR/spool"
    [ "${1:-}" = quiet ] || echo "local-slurm: stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    env) echo "export SLURM_CONF=$DIR/slurm.conf" ;;
    *) die "usage: $0 start|stop|env" ;;
esac
