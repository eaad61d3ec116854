"""Arrow schemas of the dataset tables (DESIGN.md "Core columns") and their validation.

Nested arrays are variable-size Arrow lists (DuckDB sees them as LISTs); their lengths are part
of the contract and are checked by `validate_table`. `date` and `vehicle_id` are also the Hive
partition keys of every table.
"""

import pyarrow as pa

from schemas.contract import NUM_FRAMES, NUM_FUTURE, NUM_HISTORY, TEACHER_CAMERAS

SCHEMA_VERSION = "1.0"

_f32_list = pa.list_(pa.float32())
_xyz_list = pa.list_(_f32_list)  # N x 3
_rot_list = pa.list_(_f32_list)  # N x 9 (row-major 3x3)

CLIPS = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("vehicle_id", pa.string(), nullable=False),
        pa.field("log_id", pa.string(), nullable=False),
        pa.field("t0_us", pa.int64(), nullable=False),
        pa.field("date", pa.string(), nullable=False),  # YYYY-MM-DD (UTC) of the log start, partition key
        pa.field("camera_names", pa.list_(pa.string()), nullable=False),  # 4
        pa.field("frame_timestamps_us", pa.list_(pa.list_(pa.int64())), nullable=False),  # 4x4
        pa.field("images", pa.list_(pa.binary()), nullable=False),  # 16 JPEG, camera-major
        pa.field("ego_history_xyz", _xyz_list, nullable=False),  # 16x3, t0 ego frame
        pa.field("ego_history_rot", _rot_list, nullable=False),  # 16x9
        pa.field("ego_future_xyz", _xyz_list, nullable=False),  # 64x3, null rows past log end
        pa.field("ego_future_rot", _rot_list, nullable=False),  # 64x9
        pa.field("source_uri", pa.string(), nullable=False),
        # Extra: mean luma (0-255) of the front wide camera at t0; low at night and in tunnels.
        pa.field("image_luma", pa.float32()),
    ],
    metadata={b"coclabel.table": b"clips", b"coclabel.schema_version": SCHEMA_VERSION.encode()},
)

TEACHER = pa.struct(
    [
        pa.field("name", pa.string(), nullable=False),
        pa.field("version", pa.string(), nullable=False),
        pa.field("weights_sha256", pa.string(), nullable=False),
    ]
)

META_ACTION = pa.struct([pa.field("longitudinal", pa.string()), pa.field("lateral", pa.string())])

SAMPLE = pa.struct(
    [
        pa.field("reasoning", pa.string(), nullable=False),
        pa.field("traj_xyz", _xyz_list, nullable=False),  # 64x3
        pa.field("traj_yaw", _f32_list, nullable=False),  # 64
        pa.field("meta_action", META_ACTION),  # of the trajectory
        pa.field("ade_m", pa.float32()),  # against ground truth where there is one
    ]
)

CHECKS = pa.struct(
    [
        pa.field("flags", pa.list_(pa.string()), nullable=False),  # e.g. comfort_lat_accel
        pa.field("sample_spread_m", pa.float32()),  # mean pairwise final-point distance, K samples
        pa.field("max_abs_accel", pa.float32()),
        pa.field("max_abs_curvature", pa.float32()),
    ]
)

LABELS = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("vehicle_id", pa.string(), nullable=False),
        pa.field("log_id", pa.string(), nullable=False),
        pa.field("t0_us", pa.int64(), nullable=False),
        pa.field("date", pa.string(), nullable=False),
        pa.field("teacher", TEACHER, nullable=False),
        pa.field("samples", pa.list_(SAMPLE), nullable=False),  # K
        pa.field("min_ade_m", pa.float32()),  # null where the future is incomplete
        pa.field("checks", CHECKS, nullable=False),
    ],
    metadata={b"coclabel.table": b"labels", b"coclabel.schema_version": SCHEMA_VERSION.encode()},
)

QUARANTINE = pa.schema(
    [
        pa.field("clip_id", pa.string()),  # null when the whole source failed
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("vehicle_id", pa.string(), nullable=False),
        pa.field("log_id", pa.string(), nullable=False),
        pa.field("t0_us", pa.int64()),  # null for log-level rows
        pa.field("date", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),  # schemas.reasons.Stage
        pa.field("reason", pa.string(), nullable=False),  # schemas.reasons.Reason
        pa.field("detail", pa.string(), nullable=False),
    ],
    metadata={
        b"coclabel.table": b"quarantine",
        b"coclabel.schema_version": SCHEMA_VERSION.encode(),
    },
)

TABLES = {"clips": CLIPS, "labels": LABELS, "quarantine": QUARANTINE}
PARTITION_KEYS = ("date", "vehicle_id")

# Fixed lengths of list columns: column -> (outer length, inner length or None).
_FIXED_LENGTHS = {
    "clips": {
        "camera_names": (len(TEACHER_CAMERAS), None),
        "frame_timestamps_us": (len(TEACHER_CAMERAS), NUM_FRAMES),
        "images": (len(TEACHER_CAMERAS) * NUM_FRAMES, None),
        "ego_history_xyz": (NUM_HISTORY, 3),
        "ego_history_rot": (NUM_HISTORY, 9),
        "ego_future_xyz": (NUM_FUTURE, 3),
        "ego_future_rot": (NUM_FUTURE, 9),
    },
}


class SchemaError(ValueError):
    """A table does not match its coclabel schema."""


def validate_table(table: pa.Table, kind: str, check_lengths: bool = True) -> None:
    """Raise SchemaError unless `table` has every core column of `kind` with the right type.

    Extra columns are allowed. Hive partition columns read back as dictionary or string are
    accepted for `date` and `vehicle_id`.
    """
    expected = TABLES[kind]
    problems = []
    for field in expected:
        if field.name not in table.schema.names:
            problems.append(f"missing column {field.name!r}")
            continue
        actual = table.schema.field(field.name).type
        if pa.types.is_dictionary(actual):
            actual = actual.value_type
        if not _compatible(actual, field.type):
            problems.append(f"column {field.name!r} is {actual}, expected {field.type}")
        elif not field.nullable and table.column(field.name).null_count:
            problems.append(f"column {field.name!r} has {table.column(field.name).null_count} nulls")
    if not problems and check_lengths:
        problems += _length_problems(table, kind)
    if problems:
        raise SchemaError(f"{kind} table does not match schema v{SCHEMA_VERSION}: " + "; ".join(problems))


def _compatible(actual: pa.DataType, expected: pa.DataType) -> bool:
    if actual.equals(expected):
        return True
    # Readers may return large_string / large_list; the logical type is the same.
    if pa.types.is_string(expected) and (pa.types.is_large_string(actual) or pa.types.is_string_view(actual)):
        return True
    if pa.types.is_binary(expected) and (pa.types.is_large_binary(actual) or pa.types.is_binary_view(actual)):
        return True
    if pa.types.is_list(expected) and (pa.types.is_list(actual) or pa.types.is_large_list(actual)):
        return _compatible(actual.value_type, expected.value_type)
    if pa.types.is_struct(expected) and pa.types.is_struct(actual):
        names = [actual.field(i).name for i in range(actual.num_fields)]
        return all(
            f.name in names and _compatible(actual.field(f.name).type, f.type) for f in expected
        )
    return False


def _length_problems(table: pa.Table, kind: str) -> list[str]:
    import pyarrow.compute as pc

    problems = []
    for name, (outer, inner) in _FIXED_LENGTHS.get(kind, {}).items():
        column = table.column(name)
        lengths = pc.list_value_length(column)
        if table.num_rows and (pc.min(lengths).as_py() != outer or pc.max(lengths).as_py() != outer):
            problems.append(f"column {name!r} must hold {outer} entries per row")
        elif inner is not None and table.num_rows:
            flat = pc.list_flatten(column)
            inner_lengths = pc.drop_null(pc.list_value_length(flat))
            if len(inner_lengths) and (
                pc.min(inner_lengths).as_py() != inner or pc.max(inner_lengths).as_py() != inner
            ):
                problems.append(f"column {name!r} must hold rows of {inner} values")
    return problems
