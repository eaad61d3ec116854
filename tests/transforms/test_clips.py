"""Clip assembly against the analytic drives: closed-form poses, frame choice, faults, blocks."""

import io
from collections import Counter
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from models.geometry import yaw_to_matrix
from schemas import tables
from schemas.contract import FUTURE_OFFSETS_US, HISTORY_OFFSETS_US, IMAGE_HEIGHT, IMAGE_WIDTH, TEACHER_CAMERAS
from schemas.ids import clip_id
from schemas.reasons import Reason
from tests.fakes import START_US, accel_pose, analytic_drive, circle_pose
from tests.transforms.clip_messages import PHASES_US, drive_info, drive_messages, frame_jpeg, with_pose
from transforms.clips import (
    ClipAssembler,
    block_key,
    block_starts,
    read_range,
    t0_grid,
    teacher_jpeg,
)
from transforms.sources.base import CameraFrame, EgoPose

S = 1_000_000


def at(seconds: float) -> int:
    """The log time `seconds` after the drive start."""
    return START_US + int(round(seconds * S))


@pytest.fixture(scope="module")
def circle():
    drive = analytic_drive("circle", 20.0)
    return drive, drive_messages(drive), drive_info(drive)


def assemble(info, messages, **kw):
    out = ClipAssembler(info, **kw).push_all(messages)
    clips = {o.row["t0_us"]: o.row for o in out if o.table == "clips"}
    quarantine = [o.row for o in out if o.table == "quarantine"]
    return clips, quarantine


def reasons_by_t0(quarantine):
    return {(q["t0_us"] - START_US) / S: q["reason"] for q in quarantine}


def closed_form(kind, t0_s, offsets_us):
    pose = circle_pose if kind == "circle" else accel_pose
    xyz0, yaw0 = pose(np.array([t0_s]))
    xyz, yaw = pose(t0_s + np.asarray(offsets_us) / 1e6)
    rot0 = yaw_to_matrix(yaw0[0])
    return (xyz - xyz0) @ rot0, (rot0.T @ yaw_to_matrix(yaw)).reshape(-1, 9), yaw - yaw0[0]


@pytest.mark.parametrize("kind", ["circle", "accel"])
def test_history_and_future_match_the_closed_form(kind):
    drive = analytic_drive(kind, 20.0)
    info = drive_info(drive)
    clips, quarantine = assemble(info, drive_messages(drive))
    assert quarantine == []
    assert sorted(clips) == list(t0_grid(info))
    assert len(clips) == 37  # t0 = 2.0 s ... 20.0 s
    for t0, row in clips.items():
        t0_s = (t0 - START_US) / S
        xyz, rot, _ = closed_form(kind, t0_s, HISTORY_OFFSETS_US)
        np.testing.assert_allclose(row["ego_history_xyz"], xyz, atol=1e-4, rtol=0)
        np.testing.assert_allclose(row["ego_history_rot"], rot, atol=1e-5, rtol=0)
        n_future = min(64, int(round((20.0 - t0_s) * 10)))
        future = row["ego_future_xyz"]
        assert [p is None for p in future] == [False] * n_future + [True] * (64 - n_future)
        assert [r is None for r in row["ego_future_rot"]] == [p is None for p in future]
        if n_future:
            xyz, rot, dyaw = closed_form(kind, t0_s, FUTURE_OFFSETS_US[:n_future])
            np.testing.assert_allclose(future[:n_future], xyz, atol=1e-4, rtol=0)
            got = np.asarray(row["ego_future_rot"][:n_future])
            np.testing.assert_allclose(np.arctan2(got[:, 3], got[:, 0]), np.arctan2(np.sin(dyaw), np.cos(dyaw)),
                                       atol=1e-5, rtol=0)
            np.testing.assert_allclose(got, rot, atol=1e-5, rtol=0)


def test_rows_match_the_schema_and_pick_frames_at_or_before(circle):
    drive, messages, info = circle
    clips, _ = assemble(info, messages)
    rows = list(clips.values())
    tables.validate_table(pa.Table.from_pylist(rows, schema=tables.CLIPS), "clips")
    row = clips[START_US + 10 * S]
    assert row["clip_id"] == clip_id(info.log_id, START_US + 10 * S)
    assert (row["log_id"], row["vehicle_id"], row["date"], row["source_uri"]) == (
        "drive-000", "veh-000", "2026-01-01", info.uri)
    assert row["camera_names"] == list(TEACHER_CAMERAS)
    t0 = START_US + 10 * S
    expected = [[t0 + d - PHASES_US[c] for d in (-300_000, -200_000, -100_000, 0)] for c in TEACHER_CAMERAS]
    assert row["frame_timestamps_us"] == expected
    # JPEGs already at the teacher size pass through byte for byte, camera-major.
    assert row["images"] == [frame_jpeg(c, t // 100_000) for c, times in zip(TEACHER_CAMERAS, expected)
                             for t in times]


def test_other_sizes_and_encodings_are_resized_to_teacher_jpegs():
    big = np.zeros((640, 1152, 3), np.uint8)
    big[:, :576] = 200
    png = io.BytesIO()
    Image.fromarray(big).save(png, format="PNG")
    for frame in (CameraFrame("camera_front_wide_120fov", 0, png.getvalue(), "png"),
                  CameraFrame("camera_front_wide_120fov", 0, b"", "rgb", pixels=big)):
        data = teacher_jpeg(frame)
        image = Image.open(io.BytesIO(data))
        assert (image.format, image.size) == ("JPEG", (IMAGE_WIDTH, IMAGE_HEIGHT))
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
        assert abs(pixels[:, :280].mean() - 200) < 3 and pixels[:, 300:].mean() < 3
        assert teacher_jpeg(frame) == data  # deterministic


def faulty_messages(messages):
    """The circle drive with one fault of each kind (times in seconds after the start)."""
    out = []
    for m in messages:
        if isinstance(m, EgoPose):
            if at(11.0) < m.t_us < at(11.3):
                continue  # a 300 ms pose gap
            if m.t_us == at(8.0):
                m = with_pose(m, xyz=[np.nan, 0, 0])
            out.append(m)
            if m.t_us == at(6.0):
                out.append(m)  # a duplicate timestamp
        elif m.camera == "camera_cross_right_120fov" and m.t_us > at(12.0):
            continue  # the camera stops
        elif m.camera == "camera_front_wide_120fov" and m.t_us == at(10.2) - PHASES_US[m.camera]:
            out.append(replace(m, data=m.data[: len(m.data) // 2]))  # truncated JPEG
        elif m.camera == "camera_front_wide_120fov" and m.t_us == at(4.2) - PHASES_US[m.camera]:
            out.append(replace(m, data=b"\xff\xd8 not a jpeg"))
        else:
            out.append(m)
    # One camera frame out of order: 14.979 s arrives after 15.079 s.
    tele = "camera_front_tele_30fov"
    i = next(k for k, m in enumerate(out) if isinstance(m, CameraFrame) and m.camera == tele and m.t_us == at(14.979))
    j = next(k for k, m in enumerate(out) if isinstance(m, CameraFrame) and m.camera == tele and m.t_us == at(15.079))
    out.insert(j, out.pop(i))
    return out


EXPECTED_FAULTS = {
    4.5: "image_corrupt",
    6.0: "time_backwards", 6.5: "time_backwards", 7.0: "time_backwards", 7.5: "time_backwards",
    8.0: "pose_nonfinite", 8.5: "pose_nonfinite", 9.0: "pose_nonfinite", 9.5: "pose_nonfinite",
    10.5: "image_corrupt",
    11.5: "pose_gap", 12.0: "pose_gap", 12.5: "pose_gap",
    13.0: "camera_stale", 13.5: "camera_stale",  # cross-right's last frame: 11.986 s
    **{14.0 + 0.5 * k: "camera_missing" for k in range(13)},  # > 1.6 s after it
    15.0: "time_backwards",  # a tele frame out of order (checked before the cameras)
}


def test_faults_give_their_reason_and_every_window_one_row(circle):
    drive, messages, info = circle
    assembler = ClipAssembler(info)
    out = assembler.push_all(faulty_messages(messages))
    clips = {o.row["t0_us"]: o.row for o in out if o.table == "clips"}
    quarantine = [o.row for o in out if o.table == "quarantine"]
    assert reasons_by_t0(quarantine) == EXPECTED_FAULTS
    assert assembler.windows == len(t0_grid(info)) == len(clips) + len(quarantine) == 37
    assert set(clips).isdisjoint(q["t0_us"] for q in quarantine)
    tables.validate_table(pa.Table.from_pylist(quarantine, schema=tables.QUARANTINE), "quarantine")
    details = {(q["t0_us"] - START_US) / S: q["detail"] for q in quarantine}
    assert details[13.0].startswith("camera_cross_right_120fov: closest frame at or before")
    assert "camera_front_wide_120fov: frame at" in details[10.5]
    assert details[6.0] == f"ego_pose: duplicate timestamp {START_US + 6 * S} us after {START_US + 6 * S} us"
    assert "300.0 ms apart" in details[12.0]
    assert all(q["stage"] == "clips" for q in quarantine)
    # Futures end before the first defect after t0: the duplicate at 6.0 s, the NaN at 8.0 s,
    # the gap after 11.0 s.
    nulls = {(t0 - START_US) / S: sum(p is None for p in r["ego_future_xyz"]) for t0, r in clips.items()}
    assert nulls[2.0] == 64 - 39  # valid poses before 6.0 s: future steps 2.1 ... 5.9 s
    assert nulls[5.5] == 64 - 4
    assert nulls[10.0] == 64 - 10  # last valid pose 11.0 s
    assert nulls[4.0] == 64 - 19


def test_an_out_of_order_frame_is_time_backwards_for_the_windows_that_read_it(circle):
    _, messages, info = circle
    tele = "camera_front_tele_30fov"
    messages = list(messages)
    i = next(k for k, m in enumerate(messages) if getattr(m, "camera", "") == tele and m.t_us == at(14.979))
    j = next(k for k, m in enumerate(messages) if getattr(m, "camera", "") == tele and m.t_us == at(15.079))
    messages.insert(j, messages.pop(i))
    clips, quarantine = assemble(info, messages)
    assert reasons_by_t0(quarantine) == {15.0: "time_backwards"}
    assert quarantine[0]["detail"] == f"{tele}: decreasing timestamp {at(14.979)} us after {at(15.079)} us"
    assert len(clips) == 36


def test_a_log_too_short_or_without_poses_is_one_log_empty_row(circle):
    _, messages, info = circle
    short = replace(info, end_us=info.start_us + 1_500_000)
    rows = ClipAssembler(short).push_all([m for m in messages if m.t_us <= short.end_us])
    assert [(o.table, o.row["reason"], o.row["clip_id"], o.row["t0_us"]) for o in rows] == [
        ("quarantine", "log_empty", None, None)]
    streaming = ClipAssembler(info, open_ended=True)
    assert [o.row["reason"] for o in streaming.finish()] == ["log_empty"]


def test_a_reader_failing_mid_log_quarantines_the_rest(circle):
    _, messages, info = circle
    assembler = ClipAssembler(info)
    out = []
    for m in messages:
        if m.t_us > START_US + 12 * S:
            break
        out += assembler.push(m)
    out += assembler.abort(Reason.LOG_UNREADABLE, "damaged chunk")
    assert assembler.finish() == []
    counts = Counter((o.table, o.row.get("reason")) for o in out)
    assert counts == {("clips", None): 8, ("quarantine", "log_unreadable"): 29}
    assert sorted(o.row["t0_us"] for o in out) == list(t0_grid(info))


def split_rows(info, messages, t0_ranges):
    rows = {}
    for lo, hi in t0_ranges:
        r_lo, r_hi = read_range(lo, hi - lo)
        part = [m for m in messages if r_lo <= m.t_us < r_hi]
        for o in ClipAssembler(info, t0_range=(lo, hi)).push_all(part):
            assert o.row["t0_us"] not in rows
            assert lo <= o.row["t0_us"] < hi
            rows[o.row["t0_us"]] = o
    return rows


@pytest.mark.parametrize("pieces", [1, 3, 7])
def test_split_into_ranges_gives_identical_rows(circle, pieces):
    _, messages, info = circle
    messages = faulty_messages(messages)
    whole = {o.row["t0_us"]: o for o in ClipAssembler(info).push_all(messages)}
    cuts = np.linspace(START_US + 1 * S, START_US + 21 * S, pieces + 1).astype(np.int64)
    cuts[1:-1] += 123_457  # not aligned to the stride
    split = split_rows(info, messages, list(zip(cuts[:-1].tolist(), cuts[1:].tolist())))
    assert split == whole


def test_blocks_are_aligned_to_multiples_of_block_us(circle):
    _, messages, info = circle
    block_us = 7 * S
    starts = block_starts(info, block_us=block_us)
    assert all(b % block_us == 0 for b in starts)
    grid = t0_grid(info)
    assert sorted({block_key(info.log_id, t, block_us)[1] for t in grid}) == starts
    assert len(starts) == 4  # 18 s of t0 over 7 s blocks aligned to the epoch
    whole = {o.row["t0_us"]: o for o in ClipAssembler(info).push_all(messages)}
    assert split_rows(info, messages, [(b, b + block_us) for b in starts]) == whole
    assert block_starts(replace(info, end_us=info.start_us)) == []


def test_memory_is_bounded_by_the_window_not_the_log():
    drive = analytic_drive("accel", 60.0)
    info = drive_info(drive)
    assembler = ClipAssembler(info)
    peak = Counter()
    n = 0
    for m in drive_messages(drive):
        n += len(assembler.push(m))
        peak["poses"] = max(peak["poses"], len(assembler._pose_t))
        peak["frames"] = max(peak["frames"], max(len(f) for f in assembler._frames.values()))
        peak["pending"] = max(peak["pending"], len(assembler._pending))
    n += len(assembler.finish())
    assert n == len(t0_grid(info)) == 117
    assert peak["poses"] <= (16 + 1 + 64 + 10 + 5) * 10 + 256  # ~9.6 s of 100 Hz poses + slack
    assert peak["frames"] <= 5  # ~0.35 s of 10 Hz frames per camera
    assert peak["pending"] <= 15  # windows waiting for 6.4 s of future


def test_image_luma_is_the_mean_brightness_of_the_front_camera_at_t0():
    from tests.fakes import jpeg
    from transforms.clips import LUMA_IMAGE, image_luma

    assert TEACHER_CAMERAS[LUMA_IMAGE // 4] == "camera_front_wide_120fov" and LUMA_IMAGE % 4 == 3
    grey = np.full((320, 576, 3), 100, np.uint8)
    assert image_luma(jpeg(grey)) == pytest.approx(100.0, abs=1.0)
    half = grey.copy()
    half[:160] = 20
    assert image_luma(jpeg(half)) == pytest.approx(60.0, abs=1.5)
