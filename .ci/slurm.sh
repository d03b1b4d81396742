#!/usr/bin/env bash
# A real Slurm on this one machine, for tests/test_slurm_cluster.py: Debian's slurm-wlm and munge,
# one slurmctld and two slurmd daemons declared as two 1-CPU nodes (n1, n2) of this host on their
# own ports, so a job spans two "nodes" as on a cluster.
#
#   .ci/slurm.sh up     install (apt-get, as root, when sbatch is missing) and start; ~35 s
#   .ci/slurm.sh down   stop the daemons it started (the packages stay)
#
# It writes /etc/slurm/slurm.conf (Debian's default path, so sbatch/sinfo need no SLURM_CONF)
# only when there is none or it wrote that one itself: a machine with a real Slurm is left alone.
# State and logs live in $BERTABL_SLURM_DIR (default /tmp/bertabl-slurm).
set -euo pipefail

STATE="${BERTABL_SLURM_DIR:-/tmp/bertabl-slurm}"
CONF=/etc/slurm/slurm.conf
MARK="# written by bertabl's .ci/slurm.sh"
HOST="$(hostname -s)"

die() { echo "slurm.sh: $*" >&2; exit 1; }

install() {
  command -v sbatch >/dev/null && command -v munged >/dev/null && return
  [ "$(id -u)" = 0 ] || die "sbatch is missing and installing it needs root (apt-get install slurm-wlm munge)"
  command -v apt-get >/dev/null || die "sbatch is missing and there is no apt-get to install slurm-wlm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_conf() {
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    die "$CONF exists and is not this script's: this machine has its own Slurm"
  fi
  mkdir -p "$STATE/ctld" "$STATE/n1" "$STATE/n2" "$(dirname "$CONF")"
  local cpus_per_node=1 memory
  memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 4 ))  # MB per node
  cat >"$CONF" <<EOF
$MARK
ClusterName=bertabl-ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=16817
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/%n
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/%n/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/%n/slurmd.log
# No cgroup plugins: this may run in a container without a writable cgroup tree.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=30
InactiveLimit=0
MinJobAge=600
NodeName=n1 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=16818 CPUs=$cpus_per_node RealMemory=$memory State=UNKNOWN
NodeName=n2 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=16819 CPUs=$cpus_per_node RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
EOF
}

up() {
  install
  write_conf
  if ! munge -n >/dev/null 2>&1; then
    mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
    runuser -u munge -- /usr/sbin/munged
  fi
  pgrep -f "^/usr/sbin/slurmctld" >/dev/null || /usr/sbin/slurmctld
  for node in n1 n2; do
    [ -f "$STATE/$node/slurmd.pid" ] && kill -0 "$(cat "$STATE/$node/slurmd.pid")" 2>/dev/null \
      || /usr/sbin/slurmd -N "$node"
  done
  for _ in $(seq 60); do  # both nodes idle: the cluster answers
    if [ "$(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l)" = 2 ]; then
      sinfo
      return
    fi
    sleep 0.5
  done
  sinfo -N -l || true
  die "the nodes did not come up: see $STATE/*.log"
}

down() {
  for pidfile in "$STATE"/n*/slurmd.pid "$STATE/slurmctld.pid"; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) die "usage: .ci/slurm.sh up|down" ;;
esac
