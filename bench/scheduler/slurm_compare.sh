#!/usr/bin/env bash
# The same small workload (short jobs of one GPU each) through Macrohard's Slurm executor and
# through plain `sbatch --wrap`, side by side, on a one-node Slurm cluster started here (as the
# tests do: munged, slurmctld, slurmd from Debian's slurm-wlm and munge; run as root).
#   bench/scheduler/slurm_compare.sh [jobs, 50] [rounds, 3]
set -euo pipefail
cd "$(dirname "$0")/../.."
jobs="${1:-50}"
rounds="${2:-3}"
[ "$(id -u)" -eq 0 ] || { echo "run as root (slurmd)" >&2; exit 1; }
d=$(mktemp -d /tmp/mh-bench-slurm.XXXXXX)
cleanup() {
  for f in slurmd.pid slurmctld.pid munged.pid; do
    [ -s "$d/$f" ] && kill -TERM "$(cat "$d/$f")" 2>/dev/null || true
  done
  sleep 2
  rm -rf "$d"
}
trap cleanup EXIT
node=$(hostname -s)
port=$((20000 + $$ % 20000))
mkdir -p "$d/state" "$d/spool" "$d/dev" "$d/work"
head -c 1024 /dev/urandom > "$d/munge.key"; chmod 600 "$d/munge.key"
/usr/sbin/munged --force --key-file "$d/munge.key" --socket "$d/munge.sock" \
  --pid-file "$d/munged.pid" --log-file "$d/munged.log" --seed-file "$d/munge.seed"
for i in 0 1 2 3; do : > "$d/dev/gpu$i"; done
cat > "$d/slurm.conf" <<CONF
ClusterName=mh
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$d/munge.sock
CredType=cred/munge
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldPort=$port
SlurmdPort=$((port + 1))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SlurmctldLogFile=$d/slurmctld.log
SlurmdLogFile=$d/slurmd.log
GresTypes=gpu
NodeName=$node CPUs=$(nproc) RealMemory=1000 Gres=gpu:4 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
printf 'AutoDetect=off\nNodeName=%s Name=gpu File=%s/dev/gpu[0-3]\n' "$node" "$d" > "$d/gres.conf"
export SLURM_CONF="$d/slurm.conf"
/usr/sbin/slurmctld -c
/usr/sbin/slurmd
for _ in $(seq 100); do
  sinfo -h -o %T | grep -q idle && break
  sinfo -h -o %T | grep -q drain && scontrol update nodename="$node" state=resume || true
  sleep 0.1
done
build/default/bench/slurm_bench --work "$d/work" --jobs "$jobs" --rounds "$rounds"
