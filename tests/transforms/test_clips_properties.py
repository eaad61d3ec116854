"""Properties of the ego frame and of clip assembly under random poses, faults and splits."""

from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.geometry import from_ego_frame, quat_to_matrix, to_ego_frame
from tests.fakes import analytic_drive
from tests.transforms.clip_messages import drive_info, drive_messages, with_pose
from transforms.clips import ClipAssembler, read_range, t0_grid
from transforms.sources.base import CameraFrame, EgoPose

S = 1_000_000
finite = st.floats(-1e4, 1e4, allow_nan=False)
quaternions = st.lists(st.floats(-1, 1, allow_nan=False), min_size=4, max_size=4).filter(
    lambda q: np.linalg.norm(q) > 0.1)

DRIVE = analytic_drive("accel", 6.0, start_us=0)
INFO = drive_info(DRIVE)
MESSAGES = drive_messages(DRIVE)
WHOLE = ClipAssembler(INFO).push_all(MESSAGES)


@given(st.lists(st.tuples(finite, finite, finite), min_size=1, max_size=20), st.lists(quaternions, min_size=1,
       max_size=20), st.tuples(finite, finite, finite), quaternions)
def test_world_to_t0_frame_and_back_is_the_identity(points, quats, origin, q0):
    n = min(len(points), len(quats))
    xyz, rot = np.array(points[:n]), quat_to_matrix(np.array(quats[:n]))
    xyz0, rot0 = np.array(origin), quat_to_matrix(np.array(q0))
    local_xyz, local_rot = to_ego_frame(xyz, rot, xyz0, rot0)
    np.testing.assert_allclose(np.linalg.norm(local_xyz, axis=-1), np.linalg.norm(xyz - xyz0, axis=-1),
                               atol=1e-8)
    back_xyz, back_rot = from_ego_frame(local_xyz, local_rot, xyz0, rot0)
    np.testing.assert_allclose(back_xyz, xyz, atol=1e-8)
    np.testing.assert_allclose(back_rot, rot, atol=1e-12)
    # The t0 pose itself is the origin of its own frame.
    self_xyz, self_rot = to_ego_frame(xyz0[None], rot0[None], xyz0, rot0)
    np.testing.assert_allclose(self_xyz, 0, atol=1e-9)
    np.testing.assert_allclose(self_rot[0], np.eye(3), atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(st.tuples(finite, finite, st.floats(-50, 50)), quaternions)
def test_clips_do_not_depend_on_where_the_world_frame_is(shift, q):
    rot = quat_to_matrix(np.array(q))
    quat_world = np.array(q) / np.linalg.norm(q)

    def moved(m):
        if not isinstance(m, EgoPose):
            return m
        x, y, z, w = m.quat
        a, b, c, d = quat_world[3], *quat_world[:3]  # (w, x, y, z) of the world rotation
        composed = [a * x + b * w + c * z - d * y, a * y - b * z + c * w + d * x,
                    a * z + b * y - c * x + d * w, a * w - b * x - c * y - d * z]
        return with_pose(m, xyz=rot @ m.xyz + np.array(shift), quat=composed)

    out = ClipAssembler(INFO).push_all([moved(m) for m in MESSAGES])
    assert [o.table for o in out] == [o.table for o in WHOLE] == ["clips"] * 9
    for a, b in zip(out, WHOLE):
        for column in ("ego_history_xyz", "ego_future_xyz"):
            got = np.array([v for v in a.row[column] if v is not None])
            want = np.array([v for v in b.row[column] if v is not None])
            np.testing.assert_allclose(got, want, atol=1e-4 + 1e-7 * np.abs(shift).max())
        np.testing.assert_allclose(a.row["ego_history_rot"], b.row["ego_history_rot"], atol=1e-5)


faults = st.lists(st.tuples(st.sampled_from(["drop", "nan", "duplicate", "swap", "corrupt"]),
                            st.integers(0, len(MESSAGES) - 2)), max_size=12,
                   unique_by=lambda fault: fault[1])  # one fault per message: repeated drops would run off the end


def inject(messages, chosen):
    out = list(messages)
    for kind, i in sorted(chosen, key=lambda f: -f[1]):
        m = out[i]
        if kind == "drop":
            del out[i]
        elif kind == "nan" and isinstance(m, EgoPose):
            out[i] = with_pose(m, quat=[np.nan, 0, 0, 1])
        elif kind == "duplicate":
            out.insert(i, m)
        elif kind == "swap":
            out[i], out[i + 1] = out[i + 1], out[i]
        elif kind == "corrupt" and isinstance(m, CameraFrame):
            out[i] = replace(m, data=m.data[:100])
    return out


@settings(max_examples=20, deadline=None)
@given(faults, st.lists(st.integers(1, 7 * S), min_size=0, max_size=3, unique=True))
def test_every_window_ends_as_one_row_and_splits_change_nothing(chosen, cuts):
    messages = inject(MESSAGES, chosen)
    assembler = ClipAssembler(INFO)
    whole = {o.row["t0_us"]: o for o in assembler.push_all(messages)}
    assert sorted(whole) == list(t0_grid(INFO))
    assert assembler.windows == len(whole) == 9
    bounds = [0, *sorted(cuts), 8 * S]
    split = {}
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        r_lo, r_hi = read_range(lo, hi - lo)
        part = [m for m in messages if r_lo <= m.t_us < r_hi]
        for o in ClipAssembler(INFO, t0_range=(lo, hi)).push_all(part):
            assert o.row["t0_us"] not in split
            split[o.row["t0_us"]] = o
    assert split == whole
