#!/usr/bin/env bash
# Start a private one-node SLURM with accounting for the cluster tests: MariaDB, slurmdbd, slurmctld and slurmd, plus
# munged (an already running munged is used and left alone).
#   Usage: start_cluster.sh STATE_DIR        (root; packages from install_slurm.sh; stop with stop_cluster.sh STATE_DIR)
# slurm.conf, slurmdbd.conf, spool, logs, the MariaDB data and the pid file of every daemon started here live in
# STATE_DIR (which must be reachable by the users slurm and mysql, e.g. mode 0755 under /tmp). The one file outside it is
# the symlink /etc/slurm/slurm.conf -> STATE_DIR/slurm.conf: the jobs' nested srun (snakemake-executor-plugin-slurm-
# jobstep) drops SLURM_CONF from its environment, so clients must find the configuration at the default place. A real
# /etc/slurm/slurm.conf (not such a symlink) is never touched: the script exits with status 4 instead.
# The node line is this host's `slurmd -C` under its `hostname -s`; the one partition is `debug`, the account `root`
# exists by default. STATE_DIR/pids lists the pid file of each daemon started here, in start order; stop_cluster.sh
# stops them in reverse and removes the symlink. A start that fails stops whatever it had started.
# Ports (override by environment): SLURMCTLD_PORT 6817, SLURMD_PORT 6818, SLURMDBD_PORT 6819, MARIADB_PORT 3307, all on
# 127.0.0.1. Exit status 3: one of them is in use already.
set -euo pipefail
STATE=${1:?usage: start_cluster.sh STATE_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
SLURMCTLD_PORT=${SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SLURMD_PORT:-6818}
SLURMDBD_PORT=${SLURMDBD_PORT:-6819}
MARIADB_PORT=${MARIADB_PORT:-3307}
CLUSTER=ifmsantest
T0=$(date +%s%N)

say() { local ms=$(( ($(date +%s%N) - T0) / 1000000 )); printf '[%3d.%03d s] %s\n' $((ms / 1000)) $((ms % 1000)) "$*"; }
fail() { echo "start_cluster.sh: $*" >&2; exit 1; }
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# wait_for SECONDS WHAT COMMAND...: poll COMMAND every 0.1 s until it succeeds, fail after SECONDS
wait_for() {
  local seconds=$1 what=$2; shift 2
  local deadline=$(( $(date +%s) + seconds ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "$what not ready after ${seconds} s (logs in $STATE/log)"
    sleep 0.1
  done
}
# started PIDFILE: remember a daemon started here, so that stop_cluster.sh (and a failed start) stops it
started() { echo "$1" >>"$STATE/pids"; }

[ "$(id -u)" = 0 ] || fail "must run as root"
for binary in slurmctld slurmd slurmdbd munged mariadbd; do
  [ -x "/usr/sbin/$binary" ] || fail "/usr/sbin/$binary is missing: run install_slurm.sh first"
done
for port in "$SLURMCTLD_PORT" "$SLURMD_PORT" "$SLURMDBD_PORT" "$MARIADB_PORT"; do
  if port_in_use "$port"; then
    echo "start_cluster.sh: port $port on 127.0.0.1 is in use: another SLURM or database runs on this machine" >&2
    exit 3
  fi
done
# /etc/slurm/slurm.conf is ours when it is a symlink that dangles (a crashed run's) or leads to a file this script wrote.
if { [ -L /etc/slurm/slurm.conf ] && [ -e /etc/slurm/slurm.conf ] \
     && ! grep -qs "written by ifmsan tests/cluster/start_cluster.sh" /etc/slurm/slurm.conf; } \
   || { [ ! -L /etc/slurm/slurm.conf ] && [ -e /etc/slurm/slurm.conf ]; }; then
  echo "start_cluster.sh: /etc/slurm/slurm.conf exists and is not from this script: this machine has its own SLURM" >&2
  exit 4
fi
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
[ ! -e "$STATE/pids" ] || fail "$STATE/pids exists: a cluster from this state folder may still run (stop_cluster.sh)"
chmod 0755 "$STATE"
: >"$STATE/pids"
trap 'status=$?; if [ $status -ne 0 ]; then echo "start failed: stopping what was started" >&2; "$HERE/stop_cluster.sh" "$STATE" >&2 || true; fi' EXIT

HOST=$(hostname -s)
NODE=$(/usr/sbin/slurmd -C | head -n 1)  # NodeName=<host> CPUs=.. Boards=.. SocketsPerBoard=.. CoresPerSocket=.. ThreadsPerCore=.. RealMemory=..
[[ $NODE == "NodeName=$HOST "* ]] || fail "slurmd -C printed '$NODE', expected a line starting with NodeName=$HOST"
install -d -o slurm -g slurm -m 0755 "$STATE/log" "$STATE/run" "$STATE/spool/slurmctld"
install -d -o root -g root -m 0755 "$STATE/spool/slurmd"
install -d -o mysql -g mysql -m 0750 "$STATE/mysql" "$STATE/mysql-run"

# --- munge: authenticates every SLURM message ---
if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
  say "munged already running: using it, it stays running"
else
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile /etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  started /run/munge/munged.pid
  wait_for 20 munged bash -c 'munge -n </dev/null | unmunge'
  say "munged up (pid $(cat /run/munge/munged.pid))"
fi

# --- MariaDB: a private instance in STATE/mysql, TCP on 127.0.0.1 only ---
mariadb-install-db --no-defaults --user=mysql --datadir="$STATE/mysql" --auth-root-authentication-method=socket \
  --skip-test-db >"$STATE/log/mariadb-install-db.log" 2>&1 || fail "mariadb-install-db failed: $STATE/log/mariadb-install-db.log"
started "$STATE/mysql-run/mysqld.pid"
setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$STATE/mysql" --socket="$STATE/mysql-run/mysqld.sock" \
  --port="$MARIADB_PORT" --bind-address=127.0.0.1 --pid-file="$STATE/mysql-run/mysqld.pid" \
  --log-error="$STATE/log/mariadbd.err" </dev/null >"$STATE/log/mariadbd.out" 2>&1 &
MARIADB_LAUNCHER=$!
if ! (wait_for 60 mariadbd test -s "$STATE/mysql-run/mysqld.pid" \
      && wait_for 60 mariadbd mariadb-admin --no-defaults --socket="$STATE/mysql-run/mysqld.sock" ping); then
  kill "$MARIADB_LAUNCHER" 2>/dev/null || true
  fail "mariadbd did not start: $STATE/log/mariadbd.err"
fi
DB_PASSWORD=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
mariadb --no-defaults --socket="$STATE/mysql-run/mysqld.sock" -u root -e "
  CREATE DATABASE slurm_acct_db;
  CREATE USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
  CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
  FLUSH PRIVILEGES;"
say "mariadbd up (pid $(cat "$STATE/mysql-run/mysqld.pid"), port $MARIADB_PORT)"

# --- configuration: slurmdbd.conf is read from the folder of SLURM_CONF ---
export SLURM_CONF="$STATE/slurm.conf"
echo "SLURM_CONF=$SLURM_CONF" >"$STATE/env"
cat >"$STATE/slurmdbd.conf" <<EOF
# written by ifmsan tests/cluster/start_cluster.sh
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$SLURMDBD_PORT
SlurmUser=slurm
DebugLevel=info
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MARIADB_PORT
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=slurm_acct_db
EOF
chown slurm:slurm "$STATE/slurmdbd.conf"
chmod 0600 "$STATE/slurmdbd.conf"
cat >"$SLURM_CONF" <<EOF
# written by ifmsan tests/cluster/start_cluster.sh: one node ($HOST) on 127.0.0.1, accounting through slurmdbd
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=$SLURMCTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$STATE/spool/slurmctld
SlurmdSpoolDir=$STATE/spool/slurmd
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ReturnToService=2
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$SLURMDBD_PORT
AccountingStoreFlags=job_comment
SlurmctldTimeout=120
SlurmdTimeout=300
InactiveLimit=0
MinJobAge=300
KillWait=30
Waittime=0
$NODE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
install -d -m 0755 /etc/slurm
ln -sfn "$SLURM_CONF" /etc/slurm/slurm.conf
echo /etc/slurm/slurm.conf >"$STATE/link"

# --- slurmdbd, slurmctld, slurmd (each daemonizes and writes its pid file) ---
started "$STATE/run/slurmdbd.pid"
/usr/sbin/slurmdbd
wait_for 30 slurmdbd port_in_use "$SLURMDBD_PORT"
say "slurmdbd up (pid $(cat "$STATE/run/slurmdbd.pid"), port $SLURMDBD_PORT)"
started "$STATE/run/slurmctld.pid"
/usr/sbin/slurmctld
started "$STATE/run/slurmd.pid"
/usr/sbin/slurmd
wait_for 30 slurmctld bash -c 'scontrol ping | grep -q UP'
wait_for 30 "node $HOST" bash -c "[ \"\$(sinfo -h -n $HOST -o %t)\" = idle ]"
say "slurmctld (pid $(cat "$STATE/run/slurmctld.pid")) and slurmd (pid $(cat "$STATE/run/slurmd.pid")) up, node $HOST idle"
wait_for 30 "accounting (cluster $CLUSTER in sacctmgr)" bash -c "sacctmgr -n -P list cluster format=cluster | grep -qx $CLUSTER"
say "accounting ready; clients: export SLURM_CONF=$SLURM_CONF"
sinfo
