#!/usr/bin/env bash
# Start a standalone Flink cluster on loopback (a JobManager, a TaskManager with $FLINK_SLOTS
# slots, REST and web UI on $FLINK_REST) and a Beam Python worker pool on $WORKER_POOL_PORT for
# `--environment_type EXTERNAL`; waits until the TaskManager has registered. Stop with down.sh.
#
#   infra/flink/up.sh                 # or: make flink-up
#   coclabel label --logs L --out O --runner FlinkRunner --flink_master localhost:8081 \
#     --flink_version 1.19 --flink_job_server_jar "$(infra/flink/up.sh --jar)" \
#     --environment_type EXTERNAL --environment_config localhost:50000 --parallelism 2
set -euo pipefail
source "$(dirname "$0")/env.sh"
if [ "${1:-}" = "--jar" ]; then echo "$JOB_SERVER_JAR"; exit 0; fi

"$INFRA_FLINK/install.sh" >/dev/null
mkdir -p "$FLINK_RUN"

if curl -fs "http://$FLINK_REST/overview" >/dev/null; then
  echo "flink: a cluster already answers on $FLINK_REST"
else
  "$FLINK_HOME/bin/start-cluster.sh" >/dev/null
fi

pool_pid="$FLINK_RUN/worker_pool.pid"
if [ -f "$pool_pid" ] && kill -0 "$(cat "$pool_pid")" 2>/dev/null; then
  echo "flink: worker pool already running (pid $(cat "$pool_pid"))"
else
  # The pool starts each SDK harness as `python`: put the project's Python first on PATH, so
  # workers run this package.
  cd "$REPO_ROOT"
  PATH="$(dirname "$PYTHON"):$PATH" nohup "$PYTHON" -m apache_beam.runners.worker.worker_pool_main \
    --service_port="$WORKER_POOL_PORT" >"$FLINK_RUN/worker_pool.log" 2>&1 &
  echo $! >"$pool_pid"
fi

for _ in $(seq 90); do
  slots=$(curl -fs "http://$FLINK_REST/overview" 2>/dev/null \
          | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["slots-total"])' 2>/dev/null || echo 0)
  if [ "$slots" -ge "$FLINK_SLOTS" ] && (exec 3<>"/dev/tcp/127.0.0.1/$WORKER_POOL_PORT") 2>/dev/null; then
    echo "flink: up on http://$FLINK_REST ($slots slots), worker pool on localhost:$WORKER_POOL_PORT"
    echo "flink: --flink_version $FLINK_MINOR --flink_job_server_jar $JOB_SERVER_JAR"
    exit 0
  fi
  sleep 1
done
echo "error: Flink did not come up in 90 s; logs in $FLINK_HOME/log and $FLINK_RUN" >&2
exit 1
