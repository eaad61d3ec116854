"""The label pipeline, unchanged, on a real local Flink cluster (parallelism 2, Beam Python
workers from an EXTERNAL worker pool): equal to the local runner row for row, surviving a
killed TaskManager, and labelling logs continuously with --follow."""

import os
import signal
import subprocess
import sys
import time

import pytest

from pipelines.cli import main
from tests.flink.conftest import INFRA, LABEL_OPTIONS, job_ids, label_rows, rest
from tests.infra.follow_run import follow_process, land, stop

pytestmark = [pytest.mark.flink, pytest.mark.timeout(900)]
TABLES = ("clips", "labels", "quarantine")


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def label_command(logs, out, cluster, *extra) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", "label", "--logs", str(logs), "--out", str(out),
            *LABEL_OPTIONS, *extra, *cluster.beam_args()]


def assert_finished(new_jobs: set[str], count: int):
    assert len(new_jobs) == count, new_jobs
    for job in new_jobs:
        detail = rest(f"/jobs/{job}")
        assert detail["state"] == "FINISHED", detail["state"]
        assert max(v["parallelism"] for v in detail["vertices"]) == 2


def test_flink_labels_equal_the_local_runner(cluster, fleet, reference, tmp_path):
    before = job_ids()
    assert main(["label", "--logs", str(fleet), "--out", str(tmp_path), *LABEL_OPTIONS, *cluster.beam_args()]) == 0
    assert_finished(job_ids() - before, 1)
    for table in TABLES:
        flink, local = label_rows(tmp_path, table), label_rows(reference, table)
        assert [r["clip_id"] for r in flink] == [r["clip_id"] for r in local]
        assert flink == local, table
    assert len(label_rows(tmp_path, "labels")) == 26  # 2 logs x 13 windows, all labelled
    assert (tmp_path / "_SUCCESS").exists()


def test_flink_clips_equal_the_local_runner(cluster, fleet, tmp_path):
    options = ["--quiet", "--block-s", "3"]
    local, flink = tmp_path / "local", tmp_path / "flink"
    assert main(["clips", "--logs", str(fleet), "--out", str(local), *options]) == 0
    before = job_ids()
    assert main(["clips", "--logs", str(fleet), "--out", str(flink), *options, *cluster.beam_args()]) == 0
    assert_finished(job_ids() - before, 1)
    for table in ("clips", "quarantine"):
        assert label_rows(flink, table) == label_rows(local, table), table
    assert len(label_rows(flink, "clips")) == 26


def test_killed_taskmanager_then_restart_is_complete_without_duplicates(cluster, fleet, reference, tmp_path):
    before = job_ids()
    proc = subprocess.Popen(label_command(fleet, tmp_path, cluster), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        job = wait_for(lambda: next(iter(job_ids() - before), None), 120, "the job to be submitted")
        wait_for(lambda: list(tmp_path.glob("clips/**/*.parquet")), 120, "the first clips file")
        assert rest(f"/jobs/{job}")["state"] == "RUNNING"
        pid_file = next(cluster.run_dir.glob("flink-*-taskexecutor.pid"))
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        subprocess.run(["bash", "-c", f'source "{INFRA}/env.sh" && "$FLINK_HOME/bin/taskmanager.sh" start'],
                       check=True, capture_output=True)
        assert proc.wait(timeout=600) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    detail = rest(f"/jobs/{job}")
    assert detail["state"] == "FINISHED"
    assert rest(f"/jobs/{job}/exceptions")["exceptionHistory"]["entries"], "the job never saw the failure"
    for table in TABLES:
        flink = label_rows(tmp_path, table)
        assert len({(r["clip_id"], r.get("reason")) for r in flink}) == len(flink), f"duplicates in {table}"
        assert flink == label_rows(reference, table), table
    assert not list(tmp_path.rglob("_tmp.*"))


def test_follow_labels_each_new_log_once_while_running(cluster, fleet, reference, tmp_path):
    incoming, out = tmp_path / "incoming", tmp_path / "out"
    incoming.mkdir()
    logs = sorted(fleet.glob("veh-*/*.mcap"))
    expected = {log.stem: [r for r in label_rows(reference, "labels") if r["log_id"] == log.stem] for log in logs}
    before = job_ids()
    with follow_process(label_command(incoming, out, cluster, "--follow", "--poll-s", "2")) as proc:
        started = time.time()
        land(logs[0], incoming)
        time.sleep(10)
        land(logs[1], incoming)
        for log in logs:
            wait_for(lambda log=log: {r["log_id"] for r in label_rows(out, "labels")} >= {log.stem}, 300,
                     f"labels of {log.name}")
        print(f"follow: both logs labelled {time.time() - started:.0f} s after the first landed")
        output = stop(proc)
    assert proc.returncode == 0, output
    assert "2 log(s) labelled" in output
    assert_finished(job_ids() - before, 2)
    labels = label_rows(out, "labels")
    assert labels == sorted(expected[logs[0].stem] + expected[logs[1].stem],
                            key=lambda r: (r["clip_id"], "", r["log_id"]))
    assert (out / "_SUCCESS").exists()
