"""Fuzz the clip assembler with damaged message streams: dropped, duplicated and shifted messages
(backward steps, clock jumps), NaN/inf/zero poses, undecodable or odd images, unknown cameras.
Every t0 of the grid ends as exactly one row, every row fits its table's schema, and every
quarantine row carries a clip-stage reason; nothing raises."""

from dataclasses import replace

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from schemas.reasons import STAGE_OF, Reason, Stage
from tests.fakes import analytic_drive
from tests.fuzz.budget import fuzz
from tests.transforms.clip_messages import drive_info, drive_messages
from transforms.clips import ClipAssembler, block_starts, read_range, t0_grid
from transforms.parquet import rows_to_table
from transforms.sources.base import EgoPose

DRIVE = analytic_drive("circle", seconds=3.0, start_us=0)
MESSAGES = drive_messages(DRIVE)
CLIP_REASONS = {r.value for r in Reason if STAGE_OF[r] is Stage.CLIPS}
ODD_FLOATS = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1e300, -1e-300])


def _edit(message, kind: str, draw):
    if kind == "shift":  # backward steps, duplicates and clock jumps
        delta = draw(st.sampled_from([-2_000_000, -10_000, -1, 0, 1, 5_000, 300_000, 2_000_000]))
        return [replace(message, t_us=message.t_us + delta)]
    if kind == "drop":
        return []
    if kind == "duplicate":
        return [message, message]
    if isinstance(message, EgoPose):
        field = draw(st.sampled_from(["xyz", "quat"]))
        values = np.array(getattr(message, field), dtype=np.float64)
        values[draw(st.integers(0, len(values) - 1))] = draw(ODD_FLOATS)
        if draw(st.booleans()):
            values[:] = 0.0
        return [replace(message, **{field: values})]
    if kind == "image":
        data = draw(st.sampled_from([b"", message.data[: len(message.data) // 2], b"\xff\xd8garbage",
                                     message.data[:2] + bytes(64)]))
        return [replace(message, data=data)]
    if kind == "rgb":
        shape = draw(st.sampled_from([(8, 8, 3), (8, 8), (8, 8, 4), (0, 0, 3)]))
        return [replace(message, data=b"", encoding="rgb", pixels=np.zeros(shape, dtype=np.uint8))]
    return [replace(message, camera="camera_rear_tele_30fov")]  # a camera the teacher does not read


@st.composite
def damaged_stream(draw) -> list:
    edits = draw(st.dictionaries(st.integers(0, len(MESSAGES) - 1),
                                 st.sampled_from(["shift", "drop", "duplicate", "value", "image", "rgb", "camera"]),
                                 max_size=12))
    out = []
    for i, m in enumerate(MESSAGES):
        out += _edit(m, edits[i], draw) if i in edits else [m]
    if draw(st.booleans()):  # as a reader that sorts by time (MCAP) would give them
        out.sort(key=lambda m: m.t_us)
    return out


def _info(messages):
    """The LogInfo a reader would give: first and last ego pose times as read."""
    poses = [m.t_us for m in messages if isinstance(m, EgoPose)]
    return replace(drive_info(DRIVE), start_us=poses[0], end_us=poses[-1]) if poses else None


def _check(rows, grid) -> None:
    windows = [o.row["t0_us"] for o in rows if o.row["t0_us"] is not None]
    assert sorted(windows) == list(grid)
    for table in ("clips", "quarantine"):
        rows_to_table(table, [o.row for o in rows if o.table == table])
    assert {o.row["reason"] for o in rows if o.table == "quarantine" and o.row["t0_us"] is not None} <= CLIP_REASONS


@fuzz
@given(damaged_stream())
def test_damaged_streams_give_one_typed_row_per_window(messages):
    info = _info(messages)
    if info is None:
        return
    grid = t0_grid(info)
    whole = ClipAssembler(info).push_all(messages)
    _check(whole, grid)
    # the same windows from blocks of the log (as the batch pipeline reads it)
    block_us = 1_000_000
    blocks = []
    for start in block_starts(info, block_us=block_us):
        lo, hi = read_range(start, block_us)
        assembler = ClipAssembler(info, t0_range=(start, start + block_us))
        blocks += assembler.push_all(m for m in messages if lo <= m.t_us < hi)
    _check(blocks, grid)


def test_the_undamaged_stream_gives_clips_only():
    rows = ClipAssembler(_info(MESSAGES)).push_all(MESSAGES)
    assert [o.table for o in rows] == ["clips"] * len(t0_grid(_info(MESSAGES))) == ["clips"] * 3
