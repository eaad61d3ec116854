#!/usr/bin/env bash
# Stop what up.sh started: the Beam worker pool (by its pid file) and the Flink cluster
# (TaskManagers, then the JobManager). Safe to run when nothing is running.
set -euo pipefail
source "$(dirname "$0")/env.sh"

pool_pid="$FLINK_RUN/worker_pool.pid"
if [ -f "$pool_pid" ]; then
  pid=$(cat "$pool_pid")
  if kill -0 "$pid" 2>/dev/null; then
    # The pool's SDK harnesses are its children: stop them first, then the pool.
    pkill -TERM -P "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
  fi
  rm -f "$pool_pid"
fi
if [ -x "$FLINK_HOME/bin/stop-cluster.sh" ]; then
  "$FLINK_HOME/bin/stop-cluster.sh" >/dev/null 2>&1 || true
  # Also a TaskManager started by hand (taskmanager.sh start) after a failure test.
  "$FLINK_HOME/bin/taskmanager.sh" stop-all >/dev/null 2>&1 || true
fi
echo "flink: stopped"
