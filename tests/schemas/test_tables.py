import numpy as np
import pyarrow as pa
import pytest

from schemas import tables
from schemas.contract import FRAME_OFFSETS_US, FUTURE_OFFSETS_US, HISTORY_OFFSETS_US
from schemas.ids import clip_id, seed_of
from schemas.manifest import validate_manifest
from schemas.reasons import STAGE_OF, Reason


def clip_row(**overrides):
    row = {
        "clip_id": clip_id("log-a", 2_000_000),
        "vehicle_id": "veh-000",
        "log_id": "log-a",
        "t0_us": 2_000_000,
        "date": "2026-01-01",
        "camera_names": ["a", "b", "c", "d"],
        "frame_timestamps_us": [[1, 2, 3, 4]] * 4,
        "images": [b"\xff\xd8"] * 16,
        "ego_history_xyz": np.zeros((16, 3), np.float32).tolist(),
        "ego_history_rot": np.tile(np.eye(3, dtype=np.float32).ravel(), (16, 1)).tolist(),
        "ego_future_xyz": [[0.0, 0.0, 0.0]] * 60 + [None] * 4,
        "ego_future_rot": [[1.0] * 9] * 60 + [None] * 4,
        "source_uri": "memory://logs/log-a.mcap",
    }
    row.update(overrides)
    return row


def test_contract_offsets():
    assert HISTORY_OFFSETS_US[0] == -1_500_000 and HISTORY_OFFSETS_US[-1] == 0
    assert FUTURE_OFFSETS_US[0] == 100_000 and FUTURE_OFFSETS_US[-1] == 6_400_000
    assert FRAME_OFFSETS_US == (-300_000, -200_000, -100_000, 0)


def test_valid_clip_table_passes_and_nulls_in_future_are_allowed():
    table = pa.Table.from_pylist([clip_row()], schema=tables.CLIPS)
    tables.validate_table(table, "clips")
    assert table.schema.metadata[b"coclabel.schema_version"] == tables.SCHEMA_VERSION.encode()


def test_missing_column_and_wrong_type_are_named():
    table = pa.Table.from_pylist([clip_row()], schema=tables.CLIPS).drop_columns(["images"])
    with pytest.raises(tables.SchemaError, match="missing column 'images'"):
        tables.validate_table(table, "clips")
    bad = pa.Table.from_pylist([clip_row()], schema=tables.CLIPS)
    bad = bad.set_column(bad.schema.get_field_index("t0_us"), "t0_us", pa.array(["x"]))
    with pytest.raises(tables.SchemaError, match="'t0_us' is string"):
        tables.validate_table(bad, "clips")


def test_wrong_lengths_are_refused():
    table = pa.Table.from_pylist([clip_row(images=[b"x"] * 15)], schema=tables.CLIPS)
    with pytest.raises(tables.SchemaError, match="'images' must hold 16"):
        tables.validate_table(table, "clips")
    table = pa.Table.from_pylist([clip_row(ego_history_xyz=[[0.0, 0.0]] * 16)], schema=tables.CLIPS)
    with pytest.raises(tables.SchemaError, match="'ego_history_xyz' must hold rows of 3"):
        tables.validate_table(table, "clips")


def test_large_types_from_readers_are_compatible():
    table = pa.Table.from_pylist([clip_row()], schema=tables.CLIPS)
    large = table.cast(pa.schema([
        f.with_type(pa.large_string()) if pa.types.is_string(f.type) else f for f in tables.CLIPS
    ]))
    tables.validate_table(large, "clips")


def test_every_reason_has_a_stage_and_ids_are_deterministic():
    assert set(STAGE_OF) == set(Reason)
    assert clip_id("log-a", 5) == clip_id("log-a", 5) != clip_id("log-a", 6)
    assert clip_id("log-a", 5) != clip_id("log-b", 5)
    assert len(clip_id("x", 0)) == 24
    assert seed_of("abc") == seed_of("abc") != seed_of("abd")
    assert 0 <= seed_of("abc") < 2**63


def test_manifest_validation_names_problems():
    with pytest.raises(ValueError, match="'run_id' missing"):
        validate_manifest({"schema_version": tables.SCHEMA_VERSION})
