"""The label pipeline end to end on a small synthetic fleet with faulty logs beside it."""

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.compute as pc
import pytest

from pipelines.cli import main
from schemas import tables
from schemas.views import open_dataset
from tests.datasets import assert_examples_match
from transforms.parquet import read_table

SECONDS = 8  # per vehicle: windows at t0 = 2.0, 2.5, ... 8.0 s of log time


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Two clean MCAP drives, a truncated copy of one, a file that is not a log and an empty one."""
    root = tmp_path_factory.mktemp("fleet")
    assert main(["synth", "--out", str(root), "--format", "mcap", "--vehicles", "2",
                 "--minutes", str(SECONDS / 60), "--workers", "1"]) == 0
    good = sorted(root.glob("veh-000/*.mcap"))[0]
    bad = root / "veh-009"
    bad.mkdir()
    data = good.read_bytes()
    (bad / "truncated.mcap").write_bytes(data[: len(data) * 2 // 3])
    (bad / "garbage.mcap").write_bytes(b"this is not an mcap file" * 10)
    (bad / "empty.mcap").write_bytes(b"")
    return root


def label(fleet, out, *extra):
    return main(["label", "--logs", str(fleet), "--out", str(out), "--quiet", "--block-s", "3", *extra])


def rows(out, table):
    t = read_table(str(out), table)
    return sorted(t.to_pylist(), key=lambda r: (r["clip_id"] or "", r.get("reason", ""), r["log_id"]))


@pytest.fixture(scope="module")
def dataset(fleet, tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset")
    assert label(fleet, out) == 0
    return out


def test_every_window_ends_in_labels_or_quarantine(dataset):
    manifest = json.loads((dataset / "_manifest.json").read_text())
    counts = manifest["counts"]
    labels, quarantine = read_table(str(dataset), "labels"), read_table(str(dataset), "quarantine")
    windows = quarantine.filter(pc.is_valid(quarantine.column("t0_us")))
    assert counts["logs"] == 5
    assert counts["labels"] == labels.num_rows > 0
    assert counts["windows"] == labels.num_rows + windows.num_rows
    # clean logs: t0 = 2.0 ... 8.0 s every 0.5 s = 13 windows each; the truncated copy has fewer
    per_log = {}
    for r in labels.select(["log_id"]).to_pylist() + windows.select(["log_id"]).to_pylist():
        per_log[r["log_id"]] = per_log.get(r["log_id"], 0) + 1
    clean = [n for log, n in per_log.items() if log.startswith("veh-0") and log != "truncated"]
    assert clean == [13, 13]
    assert 0 < per_log["truncated"] < 13
    log_level = {r["log_id"]: r["reason"] for r in quarantine.filter(pc.is_null(quarantine.column("t0_us"))).to_pylist()}
    assert log_level == {"garbage": "log_unreadable", "empty": "log_unreadable"}
    assert (dataset / "_SUCCESS").read_text().strip() == manifest["run_id"]


def test_labels_read_back_by_duckdb_match_the_schema(dataset):
    con = open_dataset(str(dataset))
    for table in ("clips", "labels", "quarantine"):
        arrow = con.sql(f"SELECT * FROM {table}").to_arrow_table()
        tables.validate_table(arrow, table)
    dup = con.execute("SELECT count(*) - count(DISTINCT clip_id) FROM labels").fetchone()[0]
    assert dup == 0
    k = con.execute("SELECT min(len(samples)), max(len(samples)) FROM labels").fetchone()
    assert k == (6, 6)


def test_rerun_writes_the_same_rows_without_duplicates(fleet, dataset):
    before = {t: rows(dataset, t) for t in ("clips", "labels", "quarantine")}
    files = sorted(p.relative_to(dataset) for p in dataset.rglob("*.parquet"))
    assert label(fleet, dataset) == 0
    assert sorted(p.relative_to(dataset) for p in dataset.rglob("*.parquet")) == files
    for table, expected in before.items():
        assert rows(dataset, table) == expected


def test_other_options_into_the_same_dataset_are_refused(fleet, dataset):
    assert label(fleet, dataset, "--stride-s", "1.0") == 2


def test_example_queries_return_what_they_promise(dataset):
    tables = {t: read_table(str(dataset), t).to_pylist() for t in ("labels", "clips", "quarantine")}
    red, night, by_reason, mix = assert_examples_match(
        open_dataset(str(dataset)), tables["labels"], tables["clips"], tables["quarantine"])
    assert night and by_reason and mix  # vehicle 1 drives at night; the faulty logs are quarantined


@pytest.mark.slow
def test_multi_processing_gives_the_same_labels(fleet, dataset, tmp_path):
    assert label(fleet, tmp_path, "--direct_num_workers", "2", "--direct_running_mode", "multi_processing") == 0
    for table in ("labels", "quarantine"):
        assert rows(tmp_path, table) == rows(dataset, table)


@pytest.mark.slow
def test_killed_run_then_rerun_is_complete_and_duplicate_free(fleet, dataset, tmp_path):
    command = [sys.executable, "-m", "pipelines.cli", "label", "--logs", str(fleet), "--out", str(tmp_path),
               "--quiet", "--block-s", "3"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # Clips are published block by block while the run goes on; labels only after their
    # GroupByKey, near the end: kill at the first published clip file, mid-run.
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob("clips/**/*.parquet")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "_SUCCESS").exists()
    assert label(fleet, tmp_path) == 0
    assert not [p for p in tmp_path.rglob("_tmp.*")]
    for table in ("clips", "labels", "quarantine"):
        assert rows(tmp_path, table) == rows(dataset, table)
