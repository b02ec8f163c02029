#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, to try the sweep launcher (hydra/launcher=slurm) without a real cluster.
#
#   scripts/slurm_local.sh start    # install slurm-wlm + munge if missing (apt-get), start munged, slurmctld, slurmd;
#                                   # waits until the node is idle and prints `export SLURM_CONF=...` for the clients
#   scripts/slurm_local.sh status   # sinfo / squeue of the local cluster
#   scripts/slurm_local.sh stop     # cancel its jobs, stop the daemons
#   scripts/slurm_local.sh dir      # where its state lives
#
# State, logs and the generated slurm.conf live in $BORA_SLURM_DIR (default outputs/slurm-local in this checkout: a
# folder of ours, not a fixed name in /tmp that another user could have made first). The node is this host
# with its CPUs and memory, proctrack/linuxproc and task/none (no systemd or cgroups needed), one partition `local`
# with JobRequeue=1, so `scontrol requeue <job>` (what a pre-emption with PreemptMode=REQUEUE does) sends SIGTERM and
# puts the job back in the queue. On a real cluster none of this is needed: set partition / account / gpus / time in
# conf/hydra/launcher/slurm.yaml. Any failure is one line on stderr and exit status 3.
set -euo pipefail

STATE=${BORA_SLURM_DIR:-$(cd "$(dirname "$0")/.." && pwd)/outputs/slurm-local}
CONF=$STATE/slurm.conf
HOST=$(hostname -s)

fail() { echo "slurm_local: $*" >&2; exit 3; }

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && return 0
  [ "$(id -u)" = 0 ] || fail "slurm-wlm and munge are not installed and installing them needs root (apt-get install slurm-wlm munge)"
  command -v apt-get >/dev/null || fail "slurm-wlm and munge are not installed and this machine has no apt-get"
  local apt="apt-get install -y --no-install-recommends slurm-wlm munge"
  if ! DEBIAN_FRONTEND=noninteractive $apt >"$STATE/apt.log" 2>&1; then  # a fresh machine may need the index first
    { apt-get update && DEBIAN_FRONTEND=noninteractive $apt; } >>"$STATE/apt.log" 2>&1 \
      || fail "apt-get install slurm-wlm munge failed (see $STATE/apt.log)"
  fi
}

write_conf() {
  local cpus mem_mb
  cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc obeys OMP_NUM_THREADS (make test sets it to 1)
  mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
  mkdir -p "$STATE/spool" "$STATE/state" "$STATE/log"
  cat >"$CONF" <<EOF
ClusterName=bora-local
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPort=${BORA_SLURMCTLD_PORT:-6817}
SlurmdPort=${BORA_SLURMD_PORT:-6818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
JobRequeue=1
JobFileAppend=1  # a requeued job appends to its log instead of truncating the first attempt
KillWait=30
AuthInfo=cred_expire=10  # a requeued job waits this long (default 120 s) before it may start again
SchedulerParameters=defer
NodeName=$HOST CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=local Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

start() {
  mkdir -p "$STATE"
  install_packages
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --force >/dev/null 2>&1 || fail "could not create /etc/munge/munge.key (mungekey)"
  fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  if ! munge -n >/dev/null 2>&1; then  # a munged already running (the machine's own) is used and left alone
    munged --force >/dev/null 2>&1 || fail "munged did not start (see /var/log/munge/munged.log)"
    cp /run/munge/munged.pid "$STATE/munged.pid" 2>/dev/null || pgrep -n -x munged > "$STATE/munged.pid"
  fi
  write_conf
  export SLURM_CONF=$CONF
  pkill -f "slurmctld -f $CONF" 2>/dev/null || true
  pkill -f "slurmd -f $CONF" 2>/dev/null || true
  slurmctld -f "$CONF" -c -i >/dev/null 2>&1 || fail "slurmctld did not start (see $STATE/log/slurmctld.log)"
  slurmd -f "$CONF" >/dev/null 2>&1 || fail "slurmd did not start (see $STATE/log/slurmd.log)"
  for _ in $(seq 1 60); do
    state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
    if [ "$state" = idle ]; then
      echo "export SLURM_CONF=$CONF"
      return 0
    fi
    sleep 0.5
  done
  fail "node $HOST is not idle after 30 s (state: ${state:-none}); see $STATE/log/"
}

stop() {
  stop_slurm
  stop_munged
}

stop_slurm() {
  [ -f "$CONF" ] || return 0
  export SLURM_CONF=$CONF
  scancel --full --quiet --user "$(id -un)" 2>/dev/null || true
  for pidfile in "$STATE/slurmd.pid" "$STATE/slurmctld.pid"; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  for _ in $(seq 1 20); do
    pgrep -f "slurm(ctl)?d -f $CONF" >/dev/null || return 0
    sleep 0.25
  done
  pkill -9 -f "slurm(ctl)?d -f $CONF" 2>/dev/null || true
}

stop_munged() {  # only the munged this script started; it takes a second or two to exit
  [ -f "$STATE/munged.pid" ] || return 0
  local pid
  pid=$(cat "$STATE/munged.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  rm -f "$STATE/munged.pid"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) export SLURM_CONF=$CONF; sinfo; squeue ;;
  dir) echo "$STATE" ;;
  *) echo "usage: $0 start|status|stop|dir" >&2; exit 2 ;;
esac
