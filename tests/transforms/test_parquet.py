"""Partitioned Parquet writer (transforms/parquet.py): layout, round trip, readers, atomicity."""

import json
import os
import random
import uuid

import apache_beam as beam
import duckdb
import fsspec
import pyarrow.parquet as pq
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

import transforms.parquet as parquet
from schemas.tables import LABELS, TABLES, SchemaError, validate_table
from schemas.views import table_view_sql
from tests.datasets import clip_row, label_row, quarantine_row, sample
from transforms.parquet import (
    WriteBlocks,
    WriteGroupedRows,
    block_stem,
    clear_stale_temp,
    mark_complete,
    mark_incomplete,
    read_table,
    write_partition_file,
)

DATE, VEHICLE = "2026-01-01", "veh-000"
LABEL_FILE = f"labels/date={DATE}/vehicle_id={VEHICLE}/log-a-0.parquet"
CLIP_FILE = f"clips/date={DATE}/vehicle_id={VEHICLE}/log-a-0.parquet"
# Two samples, the second with null fields (no ADE, no lateral meta-action).
SAMPLES = [sample("Keep speed since the road ahead is clear.", 5.0, 0.0, "keep_speed"),
           sample("Stop for the red light ahead.", 5.0, -1.5, "stop", lateral=None, ade=None)]


def labels(n=5, log_id="log-a", vehicle_id=VEHICLE):
    return [label_row(log_id, 1_000_000 + 500_000 * i, SAMPLES, vehicle_id=vehicle_id) for i in range(n)]


def files_under(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def manifest(run_id="r1"):
    return {"schema_version": "1.0", "run_id": run_id, "created_utc": "2026-01-01T00:00:00+00:00",
            "inputs": [], "options": {}, "teacher": {}, "counts": {}, "timings_s": {}, "versions": {}}


def test_labels_round_trip_exactly(tmp_path):
    rows = labels()
    uri = write_partition_file(str(tmp_path), "labels", rows, DATE, VEHICLE, "log-a-0")
    assert uri == f"{tmp_path}/{LABEL_FILE}"
    assert files_under(tmp_path) == [LABEL_FILE]
    table = read_table(str(tmp_path), "labels")
    validate_table(table, "labels")
    assert table.schema.equals(LABELS)
    assert table.to_pylist() == rows
    meta = pq.ParquetFile(tmp_path / LABEL_FILE).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_clips_and_quarantine_round_trip(tmp_path):
    clips = [clip_row("log-a", t, future_steps=60) for t in (2_000_000, 1_500_000)]
    quarantine = [quarantine_row("log-a", None, "log_empty", "read"),
                  quarantine_row("log-a", 2_500_000, "pose_gap", "clips")]
    write_partition_file(str(tmp_path), "clips", clips, DATE, VEHICLE, "log-a-0")
    write_partition_file(str(tmp_path), "quarantine", quarantine, DATE, VEHICLE, "log-a-0")
    assert read_table(str(tmp_path), "clips").to_pylist() == clips[::-1]  # sorted by t0
    # JPEG bytes are stored as they are, without dictionary pages; the other columns with zstd
    group = pq.ParquetFile(tmp_path / CLIP_FILE).metadata.row_group(0)
    chunks = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    assert chunks["images.list.element"].compression == "UNCOMPRESSED"
    assert not chunks["images.list.element"].has_dictionary_page
    assert chunks["clip_id"].compression == "ZSTD" and chunks["clip_id"].has_dictionary_page
    assert read_table(str(tmp_path), "quarantine").to_pylist() == quarantine[::-1]  # log-level rows last
    assert read_table(str(tmp_path), "clips", ["t0_us"]).column("t0_us").to_pylist() == [1_500_000, 2_000_000]


def test_duckdb_reads_the_partitions(tmp_path):
    write_partition_file(str(tmp_path), "labels", labels(3), DATE, VEHICLE, "log-a-0")
    write_partition_file(str(tmp_path), "labels", labels(2, "log-b", "7"), DATE, "7", "log-b-0")
    con = duckdb.connect()
    rel = con.sql(f"SELECT * FROM ({table_view_sql(str(tmp_path), 'labels')}) ORDER BY vehicle_id, t0_us")
    assert rel.columns == LABELS.names
    types = dict(zip(rel.columns, map(str, rel.types)))
    assert (types["date"], types["vehicle_id"], types["t0_us"], types["min_ade_m"]) == ("VARCHAR", "VARCHAR", "BIGINT", "FLOAT")
    assert types["samples"].startswith("STRUCT(reasoning VARCHAR, traj_xyz FLOAT[][], traj_yaw FLOAT[]")
    table = rel.to_arrow_table()
    validate_table(table, "labels")
    assert table.column("vehicle_id").to_pylist() == ["7", "7", VEHICLE, VEHICLE, VEHICLE]
    # Plain hive_partitioning autocasts partition values (why the views turn it off).
    rel = con.sql(f"SELECT date, vehicle_id FROM read_parquet('{tmp_path}/labels/*/vehicle_id=7/*.parquet', hive_partitioning=true)")
    assert [str(t) for t in rel.types] == ["DATE", "BIGINT"]
    count = con.sql(f"SELECT count(*) FROM ({table_view_sql(str(tmp_path), 'labels')}) WHERE vehicle_id = '7'").fetchall()
    assert count == [(2,)]


def test_numeric_vehicle_id_reads_back_as_string(tmp_path):
    write_partition_file(str(tmp_path), "labels", labels(1, "log-c", "001"), DATE, "001", "log-c-0")
    assert read_table(str(tmp_path), "labels").column("vehicle_id").to_pylist() == ["001"]


def test_rerun_replaces_files_with_identical_bytes(tmp_path):
    rows = labels()
    write_partition_file(str(tmp_path), "labels", rows, DATE, VEHICLE, "log-a-0")
    first = (tmp_path / LABEL_FILE).read_bytes()
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    write_partition_file(str(tmp_path), "labels", shuffled, DATE, VEHICLE, "log-a-0")
    assert files_under(tmp_path) == [LABEL_FILE]
    assert (tmp_path / LABEL_FILE).read_bytes() == first
    assert read_table(str(tmp_path), "labels").num_rows == 5


def test_failing_writer_leaves_no_file_under_the_final_name(tmp_path, monkeypatch):
    def half_written(table, f, **kwargs):
        f.write(b"PAR1 partial")
        raise OSError("disk full")

    monkeypatch.setattr(parquet.pq, "write_table", half_written)
    with pytest.raises(OSError, match="disk full"):
        write_partition_file(str(tmp_path), "labels", labels(), DATE, VEHICLE, "log-a-0")
    assert files_under(tmp_path) == []
    monkeypatch.undo()
    write_partition_file(str(tmp_path), "labels", labels(2), DATE, VEHICLE, "log-a-0")
    monkeypatch.setattr(parquet.pq, "write_table", half_written)
    with pytest.raises(OSError):
        write_partition_file(str(tmp_path), "labels", labels(5), DATE, VEHICLE, "log-a-0")
    assert files_under(tmp_path) == [LABEL_FILE]
    assert read_table(str(tmp_path), "labels").num_rows == 2  # the previous file is intact


def test_memory_filesystem():
    out = f"memory://coclabel-{uuid.uuid4().hex}/dataset"
    rows = labels(3)
    uri = write_partition_file(out, "labels", rows, DATE, VEHICLE, "log-a-0")
    assert uri == f"{out}/{LABEL_FILE}"
    assert read_table(out, "labels").to_pylist() == rows
    assert read_table(out, "clips").num_rows == 0
    fs, root = fsspec.core.url_to_fs(out)
    fs.pipe(f"{root}/labels/date={DATE}/vehicle_id={VEHICLE}/_tmp.log-a-1.parquet.0123", b"partial")
    assert read_table(out, "labels").num_rows == 3  # temp files are invisible to readers
    assert clear_stale_temp(out) == 1
    mark_complete(out, manifest())
    assert json.loads(fs.cat(f"{root}/_manifest.json"))["run_id"] == "r1"
    assert fs.cat(f"{root}/_SUCCESS") == b"r1\n"
    assert sorted(p.rsplit("/", 1)[1] for p in fs.find(root)) == ["_SUCCESS", "_manifest.json", "log-a-0.parquet"]


@pytest.mark.parametrize(
    "date, vehicle_id, stem",
    [
        ("2026-01-01", "../etc", "x"),
        ("2026-01-01", "a/b", "x"),
        ("2026-01-01", ".hidden", "x"),
        ("2026-01-01", "", "x"),
        ("2026-01-01", "veh 1", "x"),
        ("2026-01-01", "v", "_tmp.x"),
        ("2026-01-01", "v", "a..b"),
        ("2026-01-01", "v", "x/../../y"),
        ("2026-13-01", "v", "x"),
        ("2026/01/01", "v", "x"),
    ],
)
def test_unsafe_partition_values_are_refused(tmp_path, date, vehicle_id, stem):
    row = label_row("log-a", 0, SAMPLES, vehicle_id=vehicle_id, date=date)
    with pytest.raises(ValueError):
        write_partition_file(str(tmp_path), "labels", [row], date, vehicle_id, stem)
    assert files_under(tmp_path) == []


def test_rows_must_match_partition_and_schema(tmp_path):
    with pytest.raises(ValueError, match="partition"):
        write_partition_file(str(tmp_path), "labels", labels(1), DATE, "veh-2", "log-a-0")
    bad = clip_row("log-a", 0)
    bad["images"] = bad["images"][:15]
    with pytest.raises(SchemaError, match="images"):
        write_partition_file(str(tmp_path), "clips", [bad], DATE, VEHICLE, "log-a-0")
    with pytest.raises(ValueError, match="unknown table"):
        write_partition_file(str(tmp_path), "frames", [], DATE, VEHICLE, "log-a-0")
    assert files_under(tmp_path) == []


def test_block_stem():
    assert block_stem("log-a", 1_500_000) == "log-a-1500000"
    unsafe = block_stem("../my log", 0)
    assert "/" not in unsafe and not unsafe.startswith(".") and unsafe.endswith("-0")
    assert block_stem("my log", 0) != block_stem("my_log", 0)
    parquet.check_name(unsafe, "file stem")


def test_row_groups_follow_the_byte_target(tmp_path, monkeypatch):
    monkeypatch.setattr(parquet, "ROW_GROUP_BYTES", 400_000)
    images = [bytes([i]) * 10_000 for i in range(16)]
    clips = [clip_row("log-a", 1_000_000 * i, images=images) for i in range(10)]  # ~160 kB a row
    write_partition_file(str(tmp_path), "clips", clips, DATE, VEHICLE, "log-a-0")
    meta = pq.ParquetFile(next(tmp_path.rglob("*.parquet"))).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [2] * 5


def test_clear_stale_temp_and_markers(tmp_path):
    write_partition_file(str(tmp_path), "labels", labels(1), DATE, VEHICLE, "log-a-0")
    stale = tmp_path / f"labels/date={DATE}/vehicle_id={VEHICLE}/_tmp.log-a-0.parquet.dead"
    stale.write_bytes(b"half")
    assert clear_stale_temp(str(tmp_path)) == 1
    assert clear_stale_temp(str(tmp_path / "missing")) == 0
    assert files_under(tmp_path) == [LABEL_FILE]
    with pytest.raises(ValueError, match="invalid run manifest"):
        mark_complete(str(tmp_path), {"run_id": "r1"})
    assert files_under(tmp_path) == [LABEL_FILE]
    mark_complete(str(tmp_path), manifest())
    assert (tmp_path / "_SUCCESS").read_text() == "r1\n"
    assert json.loads((tmp_path / "_manifest.json").read_text()) == manifest()
    assert (tmp_path / "_SUCCESS").stat().st_mtime_ns >= (tmp_path / "_manifest.json").stat().st_mtime_ns
    mark_incomplete(str(tmp_path))
    mark_incomplete(str(tmp_path))
    assert not (tmp_path / "_SUCCESS").exists()


def test_beam_writers(tmp_path):
    out = str(tmp_path)
    block_a = ("log-a-0", [clip_row("log-a", t) for t in (0, 500_000)])
    block_b = ("log-b-0", [clip_row("log-b", 0, vehicle_id="veh-2")])
    small = [("log-a-0", label_row("log-a", t, SAMPLES)) for t in (0, 500_000)] + [
        ("log-b-0", label_row("log-b", 0, SAMPLES, vehicle_id="veh-2"))]
    with test_pipeline.TestPipeline(runner="BundleBasedDirectRunner") as p:
        written_clips = p | "Blocks" >> beam.Create([block_a, block_b, ("log-c-0", [])]) | beam.ParDo(WriteBlocks(out, "clips"))
        written_labels = p | "Rows" >> beam.Create(small) | WriteGroupedRows(out, "labels")
        assert_that(written_clips, equal_to([
            ("clips", f"{out}/clips/date={DATE}/vehicle_id={VEHICLE}/log-a-0.parquet", 2),
            ("clips", f"{out}/clips/date={DATE}/vehicle_id=veh-2/log-b-0.parquet", 1)]), label="clips")
        assert_that(written_labels, equal_to([
            ("labels", f"{out}/labels/date={DATE}/vehicle_id={VEHICLE}/log-a-0.parquet", 2),
            ("labels", f"{out}/labels/date={DATE}/vehicle_id=veh-2/log-b-0.parquet", 1)]), label="labels")
    assert read_table(out, "labels").num_rows == 3
    assert sorted(read_table(out, "clips", ["log_id"]).column("log_id").to_pylist()) == ["log-a", "log-a", "log-b"]
    assert set(TABLES) >= {p.split("/")[0] for p in files_under(tmp_path)}
