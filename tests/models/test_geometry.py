import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models import geometry as g

angles = st.floats(-np.pi, np.pi, allow_nan=False)
coords = st.floats(-1e4, 1e4, allow_nan=False)


def random_rotation(a, b, c):
    q = np.array([np.sin(a) * np.cos(b), np.sin(a) * np.sin(b), np.cos(a) * np.sin(c), np.cos(a) * np.cos(c)])
    return g.quat_to_matrix(q / np.linalg.norm(q))


@settings(max_examples=200, deadline=None)
@given(angles, angles, angles)
def test_quaternion_matrix_round_trip(a, b, c):
    R = random_rotation(a, b, c)
    assert np.allclose(g.quat_to_matrix(g.matrix_to_quat(R)), R, atol=1e-9)
    assert np.allclose(R @ R.T, np.eye(3), atol=1e-9)


@settings(max_examples=200, deadline=None)
@given(angles, angles, angles, coords, coords, coords, angles)
def test_ego_frame_round_trip(a, b, c, x, y, z, yaw):
    R_t0 = random_rotation(a, b, c)
    xyz_t0 = np.array([x, y, z])
    pts = np.array([[1.0, 2.0, 3.0], [x / 2, -y, 0.5]])
    rots = np.stack([g.yaw_to_matrix(yaw), random_rotation(b, c, a)])
    local, local_R = g.to_ego_frame(pts, rots, xyz_t0, R_t0)
    back, back_R = g.from_ego_frame(local, local_R, xyz_t0, R_t0)
    assert np.allclose(back, pts, atol=1e-6)
    assert np.allclose(back_R, rots, atol=1e-9)


def test_ego_frame_is_the_body_frame_at_t0():
    R_t0 = g.yaw_to_matrix(np.pi / 2)  # heading +y
    local, _ = g.to_ego_frame(np.array([[10.0, 15.0, 0.0]]), np.eye(3)[None], np.array([10.0, 5.0, 0.0]), R_t0)
    assert np.allclose(local, [[10.0, 0.0, 0.0]])  # 10 m straight ahead


def test_slerp_and_interpolation_are_exact_on_yaw():
    t = np.array([0, 100_000], dtype=np.int64)
    xyz = np.array([[0.0, 0, 0], [1.0, 2, 0]])
    quat = g.yaw_to_quat(np.array([0.0, 0.4]))
    pos, q = g.interpolate_poses(t, xyz, quat, np.array([25_000, 100_000]))
    assert np.allclose(pos, [[0.25, 0.5, 0], [1.0, 2.0, 0]])
    assert np.allclose(g.matrix_to_yaw(g.quat_to_matrix(q)), [0.1, 0.4])


def test_interpolation_outside_samples_is_refused():
    import pytest

    with pytest.raises(ValueError):
        g.interpolate_poses(np.array([0, 10]), np.zeros((2, 3)), g.yaw_to_quat(np.zeros(2)), np.array([11]))
