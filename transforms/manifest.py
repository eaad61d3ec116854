"""The run manifest (`_manifest.json`, schemas/manifest.py): what ran, on what, and what it wrote.

Counts are read back from the written dataset (`dataset_summary`), so they are exact and a
rerun gives the same numbers. `transforms.parquet.mark_complete` writes the manifest, then
`_SUCCESS`.
"""

import collections
import datetime
import hashlib
import importlib.metadata
import json

import fsspec
import pyarrow.compute as pc

from schemas.tables import SCHEMA_VERSION
from transforms.parquet import MANIFEST_NAME, read_table

KEY_PACKAGES = ("coclabel", "apache-beam", "pyarrow", "duckdb", "fsspec", "gcsfs", "numpy", "torch",
                "great-expectations", "mcap", "mcap-ros2-support", "av", "physical-ai-av")


def run_id(inputs: list[str], options: dict, teacher: dict) -> str:
    """A hash of what determines the output: the inputs (in any order), the options, the teacher."""
    canonical = json.dumps({"inputs": sorted(inputs), "options": options, "teacher": teacher},
                           sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def package_versions(packages: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str]:
    """Installed versions of `packages` (those not installed are left out)."""
    versions = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def dataset_summary(out_uri: str) -> tuple[dict, list[dict]]:
    """(counts, teachers) of the written dataset, from one read of each table.

    counts: {logs, windows, clips, labels, quarantined: {stage: {reason: n}}}; logs: distinct log
    ids in any table; windows: distinct (log_id, t0_us) clip windows in any table (log-level
    quarantine rows have no t0); clips, labels: rows. teachers: the distinct {name, version,
    weights_sha256} of the labels, sorted."""
    tables = {
        "clips": read_table(out_uri, "clips", ["log_id", "t0_us"]),
        "labels": read_table(out_uri, "labels", ["log_id", "t0_us", "teacher"]),
        "quarantine": read_table(out_uri, "quarantine", ["log_id", "t0_us", "stage", "reason"]),
    }
    logs, windows = set(), set()
    for table in tables.values():
        logs.update(table.column("log_id").to_pylist())
        with_t0 = table.filter(pc.is_valid(table.column("t0_us")))
        windows.update(zip(with_t0.column("log_id").to_pylist(), with_t0.column("t0_us").to_pylist()))
    quarantine = tables["quarantine"]
    pairs = collections.Counter(zip(quarantine.column("stage").to_pylist(), quarantine.column("reason").to_pylist()))
    quarantined: dict[str, dict[str, int]] = {}
    for (stage, reason), n in sorted(pairs.items()):
        quarantined.setdefault(stage, {})[reason] = n
    counts = {
        "logs": len(logs),
        "windows": len(windows),
        "clips": tables["clips"].num_rows,
        "labels": tables["labels"].num_rows,
        "quarantined": quarantined,
    }
    fields = ("name", "version", "weights_sha256")
    distinct = tables["labels"].select(["teacher"]).flatten().group_by([f"teacher.{f}" for f in fields]).aggregate([])
    teachers = sorted((dict(zip(fields, (r[f"teacher.{f}"] for f in fields))) for r in distinct.to_pylist()),
                      key=lambda t: tuple(t.values()))
    return counts, teachers


def build_manifest(inputs: list[str], options: dict, teacher: dict, counts: dict, timings_s: dict,
                   created_utc: str | None = None) -> dict:
    """The manifest dict (schemas.manifest.MANIFEST_FIELDS); `created_utc` defaults to now."""
    if created_utc is None:
        created_utc = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    teacher = {k: teacher[k] for k in ("name", "version", "weights_sha256")}
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id(inputs, options, teacher),
        "created_utc": created_utc,
        "inputs": sorted(inputs),
        "options": options,
        "teacher": teacher,
        "counts": counts,
        "timings_s": {stage: round(float(s), 3) for stage, s in timings_s.items()},
        "versions": package_versions(),
    }


def read_manifest(out_uri: str) -> dict:
    with fsspec.open(f"{out_uri.rstrip('/')}/{MANIFEST_NAME}", "r") as f:
        return json.load(f)
