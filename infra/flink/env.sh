# Shared settings of the local Flink cluster scripts (sourced, not run). Override any of them
# in the environment, e.g. `FLINK_CACHE=/data/flink make flink-up`.
#
# Beam 2.77's own Flink job server jars are not on Maven Central as this is written, so the job
# server is assembled with Maven from Beam's Flink runner library (BEAM_JAVA_VERSION), and the
# cluster runs the Flink release that library was built for (FLINK_VERSION, `--flink_version`
# FLINK_MINOR).
FLINK_VERSION="${FLINK_VERSION:-1.19.3}"
FLINK_MINOR="${FLINK_VERSION%.*}"
BEAM_JAVA_VERSION="${BEAM_JAVA_VERSION:-2.62.0}"
FLINK_CACHE="${FLINK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/coclabel/flink}"
FLINK_HOME="$FLINK_CACHE/flink-$FLINK_VERSION"
FLINK_RUN="$FLINK_CACHE/run"
FLINK_REST="${FLINK_REST:-localhost:8081}"
FLINK_SLOTS="${FLINK_SLOTS:-2}"
WORKER_POOL_PORT="${WORKER_POOL_PORT:-50000}"
JOB_SERVER_JAR="$FLINK_CACHE/beam-runners-flink-$FLINK_MINOR-job-server-$BEAM_JAVA_VERSION.jar"
INFRA_FLINK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$INFRA_FLINK/../.." && pwd)"
PYTHON="${PYTHON:-$REPO_ROOT/.venv/bin/python}"
# Flink's pid files go next to ours (a failure test kills the TaskManager by its pid).
export FLINK_HOME FLINK_CONF_DIR="$FLINK_HOME/conf" FLINK_PID_DIR="$FLINK_RUN"
