#!/usr/bin/env bash
# A real Slurm cluster on this one machine, for the tests marked `slurm` (tests/test_slurm.py).
#
#   ci/slurm.sh start    install (Debian packages) and start munged, MariaDB, slurmdbd,
#                        slurmctld and two slurmd; returns once `srun hostname` works
#   ci/slurm.sh stop     stop every daemon it started, by the pid it recorded
#   ci/slurm.sh status   sinfo
#
# Runs as root without an init system (CI containers): every daemon is started by hand and
# its pid kept in $STATE_DIR. `start` twice is harmless: what runs is left running.
#
# The cluster (ClusterName=mnist) has two nodes on this host, each its own slurmd:
#   cpu1  partition `cpu`:   the host's real CPUs, no GPU (a CPU-only partition)
#   gpu1  partition `debug` (the default): 8 CPUs and two fake GPUs (gres gpu:2 backed by
#         /dev/null and /dev/zero; SlurmdParameters=config_overrides lets slurmd accept a
#         node larger than the host), so GPU requests are scheduled like on a GPU node
#         while the jobs themselves find no CUDA device.
# Accounting (slurmdbd on MariaDB) is on: submitit learns from `sacct` that a job was
# cancelled; without it a launcher waits forever for a result file that never comes.
set -euo pipefail

STATE_DIR=${MNIST_SWEEP_SLURM_STATE:-/run/mnist_sweep_slurm}
CLUSTER=mnist
HOST=$(hostname -s)
CONF=/etc/slurm
LOGS=/var/log/slurm
NODES=(cpu1 gpu1)

say() { echo "[slurm.sh] $*"; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      say "gave up after ${limit}s waiting for ${what}"; tail -n 30 "$LOGS"/*.log 2>/dev/null || true
      return 1
    fi
    sleep 0.5
  done
}

alive() {  # alive NAME: the daemon recorded under NAME still runs
  [[ -f $STATE_DIR/$1.pid ]] && kill -0 "$(cat "$STATE_DIR/$1.pid")" 2>/dev/null
}

record_pid() {  # record_pid NAME PIDFILE: copy a daemon's own pid file into $STATE_DIR
  local deadline=$((SECONDS + 20))
  until [[ -s $2 ]]; do
    ((SECONDS < deadline)) || { say "$1 wrote no pid file $2"; return 1; }
    sleep 0.2
  done
  cp "$2" "$STATE_DIR/$1.pid"
}

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmdbd >/dev/null \
      && command -v munged >/dev/null && command -v mariadbd >/dev/null; then
    return
  fi
  say "installing slurm-wlm munge slurmdbd mariadb-server"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm munge slurmdbd mariadb-server \
    >/dev/null
}

write_configs() {
  local mem cpus
  mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  cpus=$(nproc)
  install -d -o slurm -g slurm /var/spool/slurmctld "$LOGS"
  for node in "${NODES[@]}"; do install -d "/var/spool/slurmd/$node"; done
  cat >"$CONF/slurm.conf" <<EOF
# written by ci/slurm.sh
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=300
KillWait=10
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd/%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd-%n.log
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=cpu1 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=6821 CPUs=$cpus RealMemory=$mem State=UNKNOWN
NodeName=gpu1 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=6822 CPUs=8 RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=gpu1 Default=YES MaxTime=INFINITE State=UP
PartitionName=cpu Nodes=cpu1 MaxTime=INFINITE State=UP
EOF
  cat >"$CONF/gres.conf" <<EOF
NodeName=gpu1 Name=gpu File=/dev/null
NodeName=gpu1 Name=gpu File=/dev/zero
EOF
  cat >"$CONF/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
LogFile=$LOGS/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
  chown slurm:slurm "$CONF/slurmdbd.conf"
  chmod 600 "$CONF/slurmdbd.conf"
}

start_munge() {
  alive munged && return
  install -d -o munge -g munge -m 0755 /run/munge
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged
  record_pid munged /run/munge/munged.pid
  wait_for 10 munge bash -c 'munge -n | unmunge'
}

start_mariadb() {
  alive mariadbd && return
  install -d -o mysql -g mysql /run/mysqld
  /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --pid-file=/run/mysqld/mysqld.pid \
    --log-error=$LOGS/mariadb.log >/dev/null 2>&1 &
  echo $! >"$STATE_DIR/mariadbd.pid"
  wait_for 30 MariaDB mariadb-admin ping
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
}

start_slurmdbd() {
  alive slurmdbd && return
  rm -f /run/slurmdbd.pid
  /usr/sbin/slurmdbd
  record_pid slurmdbd /run/slurmdbd.pid
  wait_for 30 slurmdbd sacctmgr -n list cluster
  if [[ -z $(sacctmgr -n -P list cluster "$CLUSTER" format=cluster) ]]; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
  fi
}

start_slurmctld() {
  alive slurmctld && return
  rm -f /run/slurmctld.pid
  /usr/sbin/slurmctld
  record_pid slurmctld /run/slurmctld.pid
  wait_for 30 slurmctld scontrol ping
}

start_slurmd() {
  local node
  for node in "${NODES[@]}"; do
    alive "slurmd-$node" && continue
    rm -f "/run/slurmd-$node.pid"
    /usr/sbin/slurmd -N "$node"
    record_pid "slurmd-$node" "/run/slurmd-$node.pid"
  done
  # a node that was DOWN in a previous run's saved state comes back
  scontrol update NodeName=cpu1,gpu1 State=RESUME >/dev/null 2>&1 || true
  wait_for 60 "both nodes idle" bash -c \
    '[[ $(sinfo -h -N -o "%N %t" | grep -c -E "idle|mix|alloc") -ge 2 ]]'
  wait_for 60 "srun hostname" timeout 20 srun -p cpu -N1 hostname
  wait_for 60 "srun hostname on the GPU node" timeout 20 srun -p debug -N1 hostname
}

start() {
  local began=$SECONDS
  [[ $(id -u) == 0 ]] || { say "needs root (it installs packages and starts daemons)"; exit 1; }
  install_packages
  mkdir -p "$STATE_DIR"
  write_configs
  start_munge
  start_mariadb
  start_slurmdbd
  start_slurmctld
  start_slurmd
  say "cluster $CLUSTER up in $((SECONDS - began)) s:"
  sinfo
}

stop() {
  # reverse order; each daemon by the pid recorded when it was started
  local name pid
  for name in slurmd-gpu1 slurmd-cpu1 slurmctld slurmdbd mariadbd munged; do
    [[ -f $STATE_DIR/$name.pid ]] || continue
    pid=$(cat "$STATE_DIR/$name.pid")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
      say "stopped $name (pid $pid)"
    fi
    rm -f "$STATE_DIR/$name.pid"
  done
}

case ${1:-start} in
  start) start ;;
  stop) stop ;;
  status) sinfo ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
