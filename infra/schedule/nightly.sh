#!/usr/bin/env bash
# Label one day's logs into that day's dataset, on the engine named by ENGINE. Run nightly by
# cron or the systemd timer beside this file (see docs/ENGINES.md):
#
#   ENGINE=local LOGS_ROOT=/data/logs OUT_ROOT=/data/labelled infra/schedule/nightly.sh
#   ENGINE=flink ... infra/schedule/nightly.sh 2026-11-23     # a given day (a backfill)
#
# The day (default: yesterday, UTC) picks the input folder LOGS_ROOT/DAY and the output dataset
# OUT_ROOT/DAY, so a rerun of a day rewrites that day only, with the same files.
# ENGINE: local (this machine), flink (the cluster of infra/flink/up.sh, started and stopped
# here unless FLINK_KEEP=1), dataflow (infra/dataflow/launch.sh direct; needs PROJECT, BUCKET).
set -euo pipefail
cd "$(dirname "$0")/../.."

DAY="${1:-$(date -u -d yesterday +%F)}"
ENGINE="${ENGINE:-local}"
: "${LOGS_ROOT:?set LOGS_ROOT}" "${OUT_ROOT:?set OUT_ROOT}"
COCLABEL="${COCLABEL:-.venv/bin/coclabel}"
LABEL=("$COCLABEL" label --logs "$LOGS_ROOT/$DAY" --out "$OUT_ROOT/$DAY" --quiet
       --teacher "${TEACHER:-tiny}" --report)

case "$ENGINE" in
  local)
    "${LABEL[@]}"
    ;;
  flink)
    infra/flink/up.sh
    [ "${FLINK_KEEP:-0}" = 1 ] || trap infra/flink/down.sh EXIT
    source infra/flink/env.sh
    "${LABEL[@]}" --runner FlinkRunner --flink_master "$FLINK_REST" --flink_version "$FLINK_MINOR" \
      --flink_job_server_jar "$JOB_SERVER_JAR" --environment_type EXTERNAL \
      --environment_config "localhost:$WORKER_POOL_PORT" --parallelism "$FLINK_SLOTS"
    ;;
  dataflow)
    DATE="$DAY" LOGS="$LOGS_ROOT/$DAY" OUT="$OUT_ROOT/$DAY" infra/dataflow/launch.sh direct
    ;;
  *)
    echo "error: ENGINE must be local, flink or dataflow, got '$ENGINE'" >&2
    exit 2
    ;;
esac
