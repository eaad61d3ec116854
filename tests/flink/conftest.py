"""A local Flink cluster for the tests marked flink: started by infra/flink/up.sh once per
session and stopped by infra/flink/down.sh afterwards (needs Java and Maven; the first start
downloads Flink from PyPI and Beam's Flink runner from Maven Central)."""

import json
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.cli import main
from tests.infra.fleet import synth
from transforms.parquet import read_table

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra" / "flink"
REST = "http://localhost:8081"
SECONDS = 8  # per vehicle: 13 windows at t0 = 2.0, 2.5, ... 8.0 s of log time
LABEL_OPTIONS = ["--quiet", "--block-s", "3", "--samples", "2"]


@dataclass
class Cluster:
    home: Path  # FLINK_HOME
    run_dir: Path  # pid files, worker pool log
    job_server_jar: str
    flink_version: str

    def beam_args(self) -> list[str]:
        return ["--runner", "FlinkRunner", "--flink_master", "localhost:8081",
                "--flink_version", self.flink_version, "--flink_job_server_jar", self.job_server_jar,
                "--environment_type", "EXTERNAL", "--environment_config", "localhost:50000",
                "--parallelism", "2"]


def _env(name: str) -> str:
    return subprocess.run(["bash", "-c", f'source "{INFRA}/env.sh" && echo "${name}"'],
                          check=True, capture_output=True, text=True).stdout.strip()


def rest(path: str):
    with urllib.request.urlopen(f"{REST}{path}", timeout=10) as response:
        return json.load(response)


def job_ids() -> set[str]:
    return {job["id"] for job in rest("/jobs")["jobs"]}


def label_rows(out, table: str) -> list[dict]:
    rows = read_table(str(out), table).to_pylist()
    for row in rows:
        row.pop("source_uri", None)  # where the log was read from, not what was labelled
    return sorted(rows, key=lambda r: (r["clip_id"] or "", r.get("reason", ""), r["log_id"]))


@pytest.fixture(scope="session")
def cluster():
    if not (shutil.which("java") or shutil.which("apt-get")) or not shutil.which("curl"):
        pytest.skip("needs Java (or apt-get to install it) and curl")
    subprocess.run([str(INFRA / "up.sh")], check=True)
    try:
        yield Cluster(Path(_env("FLINK_HOME")), Path(_env("FLINK_RUN")), _env("JOB_SERVER_JAR"),
                      _env("FLINK_MINOR"))
    finally:
        subprocess.run([str(INFRA / "down.sh")], check=True)


@pytest.fixture(scope="session")
def fleet(tmp_path_factory):
    """Two clean MCAP drives of SECONDS each, one per vehicle."""
    root = tmp_path_factory.mktemp("fleet")
    synth(root, SECONDS)
    return root


@pytest.fixture(scope="session")
def reference(fleet, tmp_path_factory):
    """The fleet labelled by the local runner: what every Flink run must equal."""
    out = tmp_path_factory.mktemp("local")
    assert main(["label", "--logs", str(fleet), "--out", str(out), *LABEL_OPTIONS]) == 0
    return out
