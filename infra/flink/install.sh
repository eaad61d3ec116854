#!/usr/bin/env bash
# Install what the local Flink cluster needs, once, into $FLINK_CACHE (no Docker, nothing
# installed into the project's .venv): Java from Debian if missing, the Flink distribution
# unpacked from the apache-flink / apache-flink-libraries packages on PyPI, and Beam's Flink
# job server assembled with Maven from Maven Central. Idempotent: a second run does nothing.
set -euo pipefail
source "$(dirname "$0")/env.sh"

if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "error: need Java 17 and Maven: apt-get install openjdk-17-jdk-headless maven" >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null
fi

if [ ! -x "$FLINK_HOME/bin/start-cluster.sh" ]; then
  echo "flink: downloading apache-flink $FLINK_VERSION from PyPI (about 230 MB, once)"
  mkdir -p "$FLINK_CACHE/wheels"
  "$PYTHON" -m pip download -q --no-deps -d "$FLINK_CACHE/wheels" \
    "apache-flink==$FLINK_VERSION" "apache-flink-libraries==$FLINK_VERSION"
  rm -rf "$FLINK_HOME.tmp"
  "$PYTHON" "$INFRA_FLINK/flinkdist.py" unpack "$FLINK_HOME.tmp" \
    "$FLINK_CACHE"/wheels/apache[-_]flink-"$FLINK_VERSION"*.whl \
    "$FLINK_CACHE"/wheels/apache[-_]flink[-_]libraries-"$FLINK_VERSION"*
  # Loopback only (the distribution's defaults), FLINK_SLOTS slots, and restarts after a
  # lost TaskManager.
  sed -i "s/numberOfTaskSlots: 1\$/numberOfTaskSlots: $FLINK_SLOTS/" "$FLINK_HOME.tmp/conf/config.yaml"
  cat >> "$FLINK_HOME.tmp/conf/config.yaml" <<YAML
restart-strategy:
  type: fixed-delay
  fixed-delay:
    attempts: 10
    delay: 5 s
heartbeat:
  timeout: 20000
YAML
  rm -rf "$FLINK_CACHE/wheels"
  mv "$FLINK_HOME.tmp" "$FLINK_HOME"
fi

if [ ! -f "$JOB_SERVER_JAR" ]; then
  echo "flink: resolving Beam's Flink $FLINK_MINOR runner $BEAM_JAVA_VERSION from Maven Central (once)"
  mvn -q -B -f "$INFRA_FLINK/pom.xml" dependency:build-classpath \
    -Dbeam.version="$BEAM_JAVA_VERSION" -Dflink.minor="$FLINK_MINOR" \
    -Dmdep.outputFile="$FLINK_CACHE/job-server.classpath"
  "$PYTHON" "$INFRA_FLINK/flinkdist.py" launcher "$JOB_SERVER_JAR" \
    org.apache.beam.runners.flink.FlinkJobServerDriver "$(cat "$FLINK_CACHE/job-server.classpath")"
fi
echo "flink: $FLINK_HOME, job server $JOB_SERVER_JAR"
