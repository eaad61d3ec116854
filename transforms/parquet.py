"""Partitioned Parquet output: one file per (table, date, vehicle_id, file stem), published atomically.

Layout: `<out>/<table>/date=<date>/vehicle_id=<vehicle_id>/<file_stem>.parquet`, where a file stem
names a block of a log's clips (`block_stem`). `date` and `vehicle_id` are kept as columns in the
files as well as in the paths, so readers need no partition discovery. Partition discovery must
read them as strings: pyarrow's inferred "hive" partitioning turns `vehicle_id=001` into int32 and
fails to merge it with the string column (`read_table` passes string partition types), and
DuckDB's `hive_partitioning=true` autocasts `date` to DATE and `vehicle_id=7` to BIGINT unless
`hive_types_autocast=false` (as schemas.views does).

A file is written under a hidden temporary name (`_tmp.` prefix, no `.parquet` suffix, so neither
`**/*.parquet` globs nor pyarrow datasets see it) and moved into place; a rerun replaces the file
with identical content (rows are sorted, names are deterministic). `_SUCCESS` is written last by
`mark_complete`.
"""

import contextlib
import datetime
import hashlib
import json
import posixpath
import re
from typing import Any, Callable, Iterable

import apache_beam as beam
import fsspec
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from schemas.manifest import validate_manifest
from schemas.tables import PARTITION_KEYS, TABLES, validate_table
from transforms.publish import TEMP_PREFIX, atomic_output

MANIFEST_NAME = "_manifest.json"
SUCCESS_NAME = "_SUCCESS"
COMPRESSION = "zstd"
# Columns of already-compressed media, stored as they are: zstd gains nothing on camera JPEGs
# (0.0 % on photographs re-encoded at the clips' size) and 18 % only on the simulator's flat
# renders, at ~0.6 ms of CPU a clip (docs/PERFORMANCE.md); dictionary pages of unique images are
# wasted work too.
STORED_COLUMNS = {"clips": ("images",)}
# Row groups of about 64 MiB uncompressed (about 140 clip rows with 16 JPEGs of 30 kB; a 60 s block
# at a 0.5 s stride is 120 rows) and at most DuckDB's own row-group size in rows.
ROW_GROUP_BYTES = 64 << 20
MAX_ROW_GROUP_ROWS = 122_880
# Rows are written in this order, so a file's bytes depend only on its set of rows.
SORT_KEYS = {
    "clips": ("log_id", "t0_us", "clip_id"),
    "labels": ("log_id", "t0_us", "clip_id"),
    "quarantine": ("log_id", "t0_us", "clip_id", "stage", "reason", "detail"),
}
HIVE_PARTITIONING = ds.partitioning(pa.schema([(key, pa.string()) for key in PARTITION_KEYS]), flavor="hive")

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*\Z")
_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9._+-]")


def check_name(value: str, what: str) -> str:
    """`value` if it is a safe path component (letters, digits, `._+-`, not hidden, no `..`)."""
    if not isinstance(value, str) or not _SAFE_NAME.match(value) or ".." in value:
        raise ValueError(f"unsafe {what} {value!r}: use letters, digits and . _ + - (not leading), no '..'")
    return value


def check_date(value: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError(f"date must be YYYY-MM-DD, got {value!r}")
    datetime.date.fromisoformat(value)
    return value


def safe_name(value: str, fallback: str = "log") -> str:
    """`value` if it is a safe path component (check_name), else its safe characters (or
    `fallback`) plus a hash of the original, so distinct values never share a name."""
    if _SAFE_NAME.match(value) and ".." not in value:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:12]
    safe = _UNSAFE_CHAR.sub("_", value).replace("..", "__").lstrip("._") or fallback
    return f"{safe}-{digest}"


def block_stem(log_id: str, block_start_us: int) -> str:
    """The file stem of a log's block of clips: `<log_id>-<block_start_us>`, the log id made a
    safe file name by `safe_name`."""
    return f"{safe_name(log_id)}-{int(block_start_us)}"


def partition_path(table: str, date: str, vehicle_id: str, file_stem: str) -> str:
    """The file's path relative to the dataset root (all parts checked)."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; expected one of {sorted(TABLES)}")
    return (f"{table}/date={check_date(date)}/vehicle_id={check_name(vehicle_id, 'vehicle_id')}/"
            f"{check_name(file_stem, 'file stem')}.parquet")


def _join(out_uri: str, relative: str) -> str:
    return f"{out_uri.rstrip('/')}/{relative}"


def _sort_key(columns: tuple[str, ...]):
    return lambda row: tuple((row.get(c) is None, row.get(c) if row.get(c) is not None else 0) for c in columns)


def rows_to_table(table: str, rows: list[dict]) -> pa.Table:
    """Rows (dicts) -> an Arrow table of `table`'s schema in the canonical row order.

    Raises schemas.tables.SchemaError on a null in a required column or a list of the wrong length.
    """
    arrow = pa.Table.from_pylist(sorted(rows, key=_sort_key(SORT_KEYS[table])), schema=TABLES[table])
    validate_table(arrow, table)
    return arrow


def write_partition_file(out_uri: str, table: str, rows: list[dict], date: str, vehicle_id: str,
                         file_stem: str) -> str:
    """Write `rows` as `out_uri/<table>/date=<date>/vehicle_id=<vehicle_id>/<file_stem>.parquet`.

    Every row must belong to the partition. Returns the file's URI. An existing file is replaced;
    a failure leaves the previous file (or none) under the final name.
    """
    uri = _join(out_uri, partition_path(table, date, vehicle_id, file_stem))
    for row in rows:
        if (row.get("date"), row.get("vehicle_id")) != (date, vehicle_id):
            raise ValueError(f"row of clip {row.get('clip_id')!r} is in partition "
                             f"({row.get('date')!r}, {row.get('vehicle_id')!r}), not ({date!r}, {vehicle_id!r})")
    arrow = rows_to_table(table, rows)
    bytes_per_row = max(1, arrow.nbytes // max(1, arrow.num_rows))
    row_group_size = max(1, min(MAX_ROW_GROUP_ROWS, ROW_GROUP_BYTES // bytes_per_row))
    with atomic_output(uri) as f:
        pq.write_table(arrow, f, row_group_size=row_group_size, **column_encodings(table, arrow.schema.names))
    return uri


def column_encodings(table: str, columns: list[str]) -> dict:
    """`pq.write_table` options: zstd and dictionary pages, but for `STORED_COLUMNS`."""
    stored = STORED_COLUMNS.get(table, ())
    return {"compression": {c: "none" if c in stored else COMPRESSION for c in columns},
            "use_dictionary": [c for c in columns if c not in stored]}


def read_table(out_uri: str, table: str, columns: list[str] | None = None) -> pa.Table:
    """All rows of `table` under `out_uri` (any fsspec URL) with its schema; empty if none."""
    schema = TABLES[table]
    fs, path = fsspec.core.url_to_fs(_join(out_uri, table))
    if not fs.exists(path):
        empty = schema.empty_table()
        return empty.select(columns) if columns else empty
    dataset = ds.dataset(path, schema=schema, format="parquet", partitioning=HIVE_PARTITIONING, filesystem=fs)
    return dataset.to_table(columns=columns)


def clear_stale_temp(out_uri: str) -> int:
    """Remove temporary files a killed run left under `out_uri`; returns how many.

    Call before a run starts writing, never while another writer uses the same output.
    """
    fs, root = fsspec.core.url_to_fs(out_uri)
    if not fs.exists(root):
        return 0
    stale = [p for p in fs.find(root) if posixpath.basename(p).startswith(TEMP_PREFIX)]
    for p in stale:
        fs.rm(p)
    return len(stale)


def mark_incomplete(out_uri: str) -> None:
    """Remove `_SUCCESS` (a run is about to change the dataset)."""
    fs, root = fsspec.core.url_to_fs(out_uri)
    with contextlib.suppress(FileNotFoundError):
        fs.rm(posixpath.join(root, SUCCESS_NAME))


def mark_complete(out_uri: str, manifest: dict) -> None:
    """Write `_manifest.json` (validated), then the `_SUCCESS` marker last."""
    validate_manifest(manifest)
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    with atomic_output(_join(out_uri, MANIFEST_NAME)) as f:
        f.write(text.encode())
    with atomic_output(_join(out_uri, SUCCESS_NAME)) as f:
        f.write(f"{manifest['run_id']}\n".encode())


def _partition_of(rows: list[dict]) -> tuple[str, str]:
    partitions = {(row["date"], row["vehicle_id"]) for row in rows}
    if len(partitions) != 1:
        raise ValueError(f"a block spans partitions {sorted(partitions)}")
    return partitions.pop()


class WriteBlocks(beam.DoFn):
    """(file_stem, rows of one partition) -> one file; emits (table, path, row count).

    For clips, the element is a whole block of a log, so image bytes are never shuffled.
    `stem_rows(element)` gives (file_stem, rows) of another kind of element (e.g. a block of
    clips as it is read, so that its rows never become an element of their own, which runners
    would sample and encode to estimate its size).
    """

    def __init__(self, out_uri: str, table: str, stem_rows: Callable[[Any], tuple[str, Iterable[dict]]] | None = None):
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}")
        self._out_uri = out_uri
        self._table = table
        self._stem_rows = stem_rows

    def process(self, element):
        file_stem, rows = element if self._stem_rows is None else self._stem_rows(element)
        rows = list(rows)
        if not rows:
            return
        date, vehicle_id = _partition_of(rows)
        path = write_partition_file(self._out_uri, self._table, rows, date, vehicle_id, file_stem)
        beam.metrics.Metrics.counter("write", f"{self._table}_rows").inc(len(rows))
        yield self._table, path, len(rows)


class WriteGroupedRows(beam.PTransform):
    """(file_stem, row) of a small table (labels, quarantine) -> one file per (date, vehicle_id,
    file stem) after a GroupByKey; emits (table, path, row count)."""

    def __init__(self, out_uri: str, table: str):
        super().__init__()
        self._out_uri = out_uri
        self._table = table

    def expand(self, pcoll):
        return (
            pcoll
            | "Key" >> beam.Map(lambda kv: ((kv[1]["date"], kv[1]["vehicle_id"], kv[0]), kv[1]))
            | "Group" >> beam.GroupByKey()
            | "Stem" >> beam.MapTuple(lambda key, rows: (key[2], rows))
            | "Write" >> beam.ParDo(WriteBlocks(self._out_uri, self._table))
        )
