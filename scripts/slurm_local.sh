#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for end-to-end tests of the submitit launcher.
#
#   scripts/slurm_local.sh start DIR   # install the packages if missing (root, Debian), write the configs
#                                      # under DIR, start munged, MariaDB, slurmdbd, slurmctld and slurmd,
#                                      # record their PIDs in DIR/pids, wait until a job runs
#   scripts/slurm_local.sh stop DIR    # stop exactly the daemons that `start DIR` started
#
# Clients need SLURM_CONF=DIR/slurm.conf. Accounting (slurmdbd + MariaDB) is on so that sacct works: without
# it, a job killed hard leaves submitit waiting forever. Every daemon but munged gets free ports, so two
# clusters (two test runs) can run side by side; they share one munged on the default socket (SLURM's
# clients reach slurmdbd through that socket whatever AuthInfo says), started by the first cluster that
# needs it and stopped with the last (clusters register in $MUNGE_USERS). A munged that was running
# before is used and never stopped.
set -euo pipefail

command=${1:?usage: slurm_local.sh start|stop DIR}
dir=$(realpath -m "${2:?usage: slurm_local.sh start|stop DIR}")

MUNGE_USERS=/run/munge/slurm_local.users     # one file per running cluster
MUNGE_PID=/run/munge/slurm_local.munged.pid  # the munged these clusters started, if they did
cluster_key() { echo "$dir" | md5sum | cut -c1-16; }

stop() {
  if [ -f "$dir/pids" ]; then
    tac "$dir/pids" | while read -r name pid; do
      kill "$pid" 2>/dev/null && echo "stopped $name ($pid)" || true
    done
  fi
  rm -f "$dir/pids" "$MUNGE_USERS/$(cluster_key)"
  if [ -f "$MUNGE_PID" ] && [ -z "$(ls -A "$MUNGE_USERS" 2>/dev/null)" ]; then  # the last cluster out
    local munged_pid
    munged_pid=$(cat "$MUNGE_PID")
    kill "$munged_pid" 2>/dev/null && echo "stopped munged ($munged_pid)" || true
    rm -f "$MUNGE_PID"
  fi
  if [ -f "$dir/shared" ]; then rm -rf "$(cat "$dir/shared")" "$dir/shared"; fi
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2
  shift 2
  for _ in $(seq "$seconds"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "error: $what did not come up within ${seconds}s; logs in $dir/log" >&2
  return 1
}

record() { echo "$1 $2" >>"$dir/pids"; }

start() {
  if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "error: SLURM is not installed and installing it needs root" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      slurmctld slurmd slurm-client slurmdbd munge mariadb-server >/dev/null
  fi
  mkdir -p "$dir"/{state,spool,log,run}
  # MariaDB runs as its own user, which may not enter DIR (e.g. a private temporary folder).
  local shared
  shared=$(mktemp -d /tmp/slurm_local.XXXXXX) && chmod 0755 "$shared" && echo "$shared" >"$dir/shared"
  mkdir -p "$shared/mysqld" && chown mysql:mysql "$shared/mysqld"
  local host cpus memory mysql_port dbd_port ctld_port slurmd_port
  mysql_port=$(free_port) dbd_port=$(free_port) ctld_port=$(free_port) slurmd_port=$(free_port)
  host=$(hostname -s)
  cpus=$(nproc)
  memory=$(($(free -m | awk '/^Mem:/ {print $2}') * 85 / 100))

  # munge: the key comes with the package (created by mungekey where missing).
  [ -f /etc/munge/munge.key ] || mungekey --create --keyfile /etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  mkdir -p /run/munge && chown munge:munge /run/munge && chmod 0755 /run/munge  # clients use its default socket
  mkdir -p "$MUNGE_USERS" && touch "$MUNGE_USERS/$(cluster_key)"
  if ! munge -n >/dev/null 2>&1; then
    runuser -u munge -- munged --pid-file "$MUNGE_PID" --log-file /run/munge/slurm_local.munged.log \
      --seed-file /run/munge/slurm_local.munged.seed || return 1
    wait_for 10 munged munge -n || return 1
  fi

  # MariaDB for accounting, with its own data folder.
  mariadb-install-db --user=mysql --datadir="$shared/mysqld/data" >"$dir/log/mariadb-install.log" 2>&1 || return 1
  mariadbd --user=mysql --datadir="$shared/mysqld/data" --socket="$shared/mysqld/mysqld.sock" \
    --bind-address=127.0.0.1 --port="$mysql_port" --pid-file="$shared/mysqld/mysqld.pid" >"$dir/log/mariadb.log" 2>&1 &
  record mariadbd $!
  wait_for 30 MariaDB mariadb --socket="$shared/mysqld/mysqld.sock" -e "select 1" || return 1
  mariadb --socket="$shared/mysqld/mysqld.sock" -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"

  cat >"$dir/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=$dbd_port
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$mysql_port
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
PidFile=$dir/run/slurmdbd.pid
LogFile=$dir/log/slurmdbd.log
EOF
  chmod 0600 "$dir/slurmdbd.conf"
  cat >"$dir/slurm.conf" <<EOF
ClusterName=rigltest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$dbd_port
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP DefMemPerCPU=1024
EOF
  export SLURM_CONF="$dir/slurm.conf"
  slurmdbd || return 1
  wait_for 30 slurmdbd test -s "$dir/run/slurmdbd.pid" || return 1
  record slurmdbd "$(cat "$dir/run/slurmdbd.pid")"
  wait_for 30 "slurmdbd's database" sacctmgr -i add cluster rigltest || return 1
  slurmctld -f "$dir/slurm.conf" || return 1
  wait_for 30 slurmctld test -s "$dir/run/slurmctld.pid" || return 1
  record slurmctld "$(cat "$dir/run/slurmctld.pid")"
  slurmd -f "$dir/slurm.conf" || return 1
  wait_for 30 slurmd test -s "$dir/run/slurmd.pid" || return 1
  record slurmd "$(cat "$dir/run/slurmd.pid")"
  wait_for 60 "a first job" timeout 10 srun -p debug true || return 1
  echo "SLURM is up: export SLURM_CONF=$dir/slurm.conf"
}

case $command in
  start) start || { stop; exit 1; } ;;
  stop) stop ;;
  *) echo "usage: slurm_local.sh start|stop DIR" >&2; exit 2 ;;
esac
