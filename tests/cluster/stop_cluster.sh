#!/usr/bin/env bash
# Stop the one-node SLURM that start_cluster.sh STATE_DIR started: cancel its jobs, then stop each daemon by the PID in
# its pid file (listed in STATE_DIR/pids), in reverse start order; SIGKILL after 15 s. Never by process name. Then
# removes the /etc/slurm/slurm.conf symlink into STATE_DIR. Leaves STATE_DIR (logs) in place; the caller removes it.
# Safe to run twice, and after a start that failed half-way.
#   Usage: stop_cluster.sh STATE_DIR
set -uo pipefail
STATE=${1:?usage: stop_cluster.sh STATE_DIR}
PIDS="$STATE/pids"
[ -e "$PIDS" ] || { echo "stop_cluster.sh: nothing was started from $STATE"; exit 0; }
export SLURM_CONF="$STATE/slurm.conf"

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Cancel the jobs first, so that no job step outlives slurmd (every job of this private cluster is a test's).
if [ -e "$SLURM_CONF" ] && alive "$STATE/run/slurmctld.pid"; then
  jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
  if [ -n "${jobs// /}" ]; then
    echo "cancelling jobs: $jobs"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null
    for _ in $(seq 150); do
      [ -z "$(squeue -h -t pending,running,completing,suspended -o %i 2>/dev/null)" ] && break
      sleep 0.1
    done
  fi
fi

status=0
mapfile -t pidfiles <"$PIDS"
for (( i=${#pidfiles[@]}-1; i>=0; i-- )); do
  pidfile=${pidfiles[i]}
  if ! alive "$pidfile"; then
    echo "$pidfile: not running"
    continue
  fi
  pid=$(cat "$pidfile")
  kill "$pid"
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "pid $pid ($pidfile) still alive after 15 s: SIGKILL"
    kill -9 "$pid" 2>/dev/null
    sleep 0.2
    kill -0 "$pid" 2>/dev/null && { echo "pid $pid ($pidfile) survived SIGKILL" >&2; status=1; }
  fi
  echo "stopped pid $pid ($pidfile)"
  rm -f "$pidfile"
done
if [ -s "$STATE/link" ]; then
  link=$(cat "$STATE/link")
  if [ -L "$link" ] && [ "$(readlink "$link")" = "$SLURM_CONF" ]; then rm -f "$link" && echo "removed $link"; fi
  rm -f "$STATE/link"
fi
[ $status -ne 0 ] || rm -f "$PIDS"
exit $status
