"""Run manifest (transforms/manifest.py): deterministic run id, counts read back from the dataset."""

import uuid

from schemas.manifest import validate_manifest
from tests.datasets import TEACHER as LABELLED_BY
from tests.datasets import clip_row, label_row, quarantine_row, sample
from transforms.manifest import (
    build_manifest,
    dataset_summary,
    package_versions,
    read_manifest,
    run_id,
)
from transforms.parquet import mark_complete, write_partition_file

TEACHER = {"name": "tiny", "version": "1", "weights_sha256": "ab" * 32}


DATE = "2026-01-01"
SAMPLES = [sample("Keep speed since the road ahead is clear.", 5.0, 0.0, "keep_speed")]


def write_dataset(out):
    """log-a: 3 windows (2 labelled, 1 rejected by validate); log-b: 1 window with a pose gap and
    1 labelled; log-c: unreadable."""
    write_partition_file(out, "clips", [clip_row("log-a", t, vehicle_id="veh-1") for t in (0, 500_000, 1_000_000)],
                         DATE, "veh-1", "log-a-0")
    write_partition_file(out, "labels", [label_row("log-a", t, SAMPLES, vehicle_id="veh-1") for t in (0, 500_000)],
                         DATE, "veh-1", "log-a-0")
    write_partition_file(out, "quarantine", [quarantine_row("log-a", 1_000_000, "nonfinite", "validate", vehicle_id="veh-1")],
                         DATE, "veh-1", "log-a-0")
    write_partition_file(out, "clips", [clip_row("log-b", 0, vehicle_id="veh-2")], DATE, "veh-2", "log-b-0")
    write_partition_file(out, "labels", [label_row("log-b", 0, SAMPLES, vehicle_id="veh-2")], DATE, "veh-2", "log-b-0")
    write_partition_file(out, "quarantine", [quarantine_row("log-b", 500_000, "pose_gap", "clips", vehicle_id="veh-2"),
                                             quarantine_row("log-c", None, "log_unreadable", "read", vehicle_id="veh-2")],
                         DATE, "veh-2", "log-b-0")


def test_dataset_summary_counts(tmp_path):
    write_dataset(str(tmp_path))
    expected = {
        "logs": 3,
        "windows": 5,
        "clips": 4,
        "labels": 3,
        "quarantined": {"clips": {"pose_gap": 1}, "read": {"log_unreadable": 1}, "validate": {"nonfinite": 1}},
    }
    assert dataset_summary(str(tmp_path))[0] == expected
    write_dataset(str(tmp_path))  # a rerun writes the same files
    assert dataset_summary(str(tmp_path))[0] == expected


def test_dataset_summary_lists_the_distinct_teachers(tmp_path):
    out = str(tmp_path)
    write_dataset(out)
    assert dataset_summary(out)[1] == [LABELLED_BY]
    other = dict(label_row("log-d", 0, SAMPLES, vehicle_id="veh-2"), teacher=TEACHER)
    write_partition_file(out, "labels", [other], DATE, "veh-2", "log-d-0")
    assert dataset_summary(out)[1] == [TEACHER, LABELLED_BY]  # sorted by name, version, sha256
    assert dataset_summary(f"memory://coclabel-{uuid.uuid4().hex}/none")[1] == []


def test_counts_of_an_empty_dataset_on_memory_fs():
    out = f"memory://coclabel-{uuid.uuid4().hex}/empty"
    assert dataset_summary(out)[0] == {"logs": 0, "windows": 0, "clips": 0, "labels": 0, "quarantined": {}}
    write_dataset(out)
    assert dataset_summary(out)[0]["windows"] == 5


def test_run_id_is_deterministic():
    a = run_id(["/fleet/b.mcap", "/fleet/a.mcap"], {"samples": 6, "stride_s": 0.5}, TEACHER)
    assert a == run_id(["/fleet/a.mcap", "/fleet/b.mcap"], {"stride_s": 0.5, "samples": 6}, TEACHER)
    assert a != run_id(["/fleet/a.mcap", "/fleet/b.mcap"], {"samples": 4, "stride_s": 0.5}, TEACHER)
    assert a != run_id(["/fleet/a.mcap", "/fleet/b.mcap"], {"samples": 6, "stride_s": 0.5}, dict(TEACHER, version="2"))
    assert len(a) == 16 and int(a, 16) >= 0


def test_build_write_and_read_manifest(tmp_path):
    out = str(tmp_path)
    write_dataset(out)
    manifest = build_manifest(["/fleet/b.mcap", "/fleet/a.mcap"], {"samples": 6}, dict(TEACHER, path="/w"),
                              dataset_summary(out)[0], {"clips": 1.23456, "teacher": 2}, created_utc="2026-01-01T00:00:00+00:00")
    validate_manifest(manifest)
    assert manifest["inputs"] == ["/fleet/a.mcap", "/fleet/b.mcap"]
    assert manifest["teacher"] == TEACHER
    assert manifest["run_id"] == run_id(["/fleet/a.mcap", "/fleet/b.mcap"], {"samples": 6}, TEACHER)
    assert manifest["timings_s"] == {"clips": 1.235, "teacher": 2.0}
    assert {"apache-beam", "pyarrow", "duckdb"} <= set(manifest["versions"])
    assert manifest["counts"]["labels"] == 3
    mark_complete(out, manifest)
    assert read_manifest(out) == manifest
    assert (tmp_path / "_SUCCESS").read_text() == manifest["run_id"] + "\n"
    later = build_manifest(["/fleet/a.mcap", "/fleet/b.mcap"], {"samples": 6}, TEACHER, {}, {})
    assert later["run_id"] == manifest["run_id"] and later["created_utc"] != manifest["created_utc"]


def test_package_versions_skips_missing():
    versions = package_versions(("pyarrow", "no-such-package-coclabel"))
    assert list(versions) == ["pyarrow"]
