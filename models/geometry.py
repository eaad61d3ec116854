"""Pose math in numpy: quaternions (x, y, z, w), rotation matrices, slerp, ego-frame transforms.

World poses are a position `xyz` and a rotation `R` (body -> world). The ego frame at t0 is
the body frame at t0: `xyz_local = R_t0^T (xyz - xyz_t0)`, `R_local = R_t0^T R`.
"""

import numpy as np


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions (x, y, z, w) -> (..., 3, 3) rotation matrices."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 4) quaternions (x, y, z, w) with w >= 0."""
    R = np.asarray(R, dtype=np.float64)
    m = R.reshape(-1, 3, 3)
    out = np.empty((len(m), 4))
    for i, r in enumerate(m):
        t = np.trace(r)
        if t > 0:
            s = 2.0 * np.sqrt(1.0 + t)
            out[i] = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, s / 4]
        else:
            k = int(np.argmax(np.diag(r)))
            a, b = (k + 1) % 3, (k + 2) % 3
            s = 2.0 * np.sqrt(1.0 + r[k, k] - r[a, a] - r[b, b])
            v = np.empty(4)
            v[k] = s / 4
            v[a] = (r[a, k] + r[k, a]) / s
            v[b] = (r[b, k] + r[k, b]) / s
            v[3] = (r[b, a] - r[a, b]) / s
            out[i] = v
    out *= np.where(out[:, 3:4] < 0, -1.0, 1.0)
    return out.reshape(R.shape[:-2] + (4,))


def yaw_to_quat(yaw: np.ndarray) -> np.ndarray:
    """Yaw angles (rad, about +z) -> quaternions (x, y, z, w)."""
    yaw = np.asarray(yaw, dtype=np.float64)
    zero = np.zeros_like(yaw)
    return np.stack([zero, zero, np.sin(yaw / 2), np.cos(yaw / 2)], -1)


def yaw_to_matrix(yaw: np.ndarray) -> np.ndarray:
    """Yaw angles (rad) -> (..., 3, 3) rotations about +z."""
    yaw = np.asarray(yaw, dtype=np.float64)
    c, s, zero, one = np.cos(yaw), np.sin(yaw), np.zeros_like(yaw), np.ones_like(yaw)
    return np.stack(
        [np.stack([c, -s, zero], -1), np.stack([s, c, zero], -1), np.stack([zero, zero, one], -1)], -2
    )


def matrix_to_yaw(R: np.ndarray) -> np.ndarray:
    """Yaw (rad) of (..., 3, 3) rotations: the heading of the body x axis in the xy plane."""
    R = np.asarray(R)
    return np.arctan2(R[..., 1, 0], R[..., 0, 0])


def slerp(q0: np.ndarray, q1: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Spherical interpolation between (..., 4) quaternions at fractions `w` in [0, 1]."""
    q0 = np.asarray(q0, dtype=np.float64)
    q1 = np.asarray(q1, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)[..., None]
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin = np.sin(theta)
    small = sin < 1e-9
    safe = np.where(small, 1.0, sin)
    a = np.where(small, 1.0 - w, np.sin((1.0 - w) * theta) / safe)
    b = np.where(small, w, np.sin(w * theta) / safe)
    q = a * q0 + b * q1
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def interpolate_poses(
    t_src: np.ndarray, xyz: np.ndarray, quat: np.ndarray, t_query: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Poses at `t_query` from sorted samples: linear in position, slerp in rotation.

    `t_query` must lie within [t_src[0], t_src[-1]]; raises ValueError otherwise.
    """
    t_src = np.asarray(t_src, dtype=np.int64)
    t_query = np.asarray(t_query, dtype=np.int64)
    if len(t_src) == 0 or t_query.min() < t_src[0] or t_query.max() > t_src[-1]:
        raise ValueError("query times outside the pose samples")
    hi = np.clip(np.searchsorted(t_src, t_query, side="left"), 1, max(len(t_src) - 1, 1))
    lo = hi - 1
    if len(t_src) == 1:
        lo = hi = np.zeros_like(t_query)
    span = (t_src[hi] - t_src[lo]).astype(np.float64)
    w = np.where(span > 0, (t_query - t_src[lo]) / np.where(span > 0, span, 1.0), 0.0)
    xyz = np.asarray(xyz, dtype=np.float64)
    pos = xyz[lo] + (xyz[hi] - xyz[lo]) * w[:, None]
    return pos, slerp(np.asarray(quat)[lo], np.asarray(quat)[hi], w)


def to_ego_frame(
    xyz: np.ndarray, R: np.ndarray, xyz_t0: np.ndarray, R_t0: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """World poses -> the ego frame at t0 (REFERENCE.md section 1)."""
    R_t0_T = np.asarray(R_t0).T
    local_xyz = (np.asarray(xyz) - np.asarray(xyz_t0)) @ R_t0_T.T
    return local_xyz, R_t0_T @ np.asarray(R)


def from_ego_frame(
    xyz_local: np.ndarray, R_local: np.ndarray, xyz_t0: np.ndarray, R_t0: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of `to_ego_frame`."""
    R_t0 = np.asarray(R_t0)
    return np.asarray(xyz_local) @ R_t0.T + np.asarray(xyz_t0), R_t0 @ np.asarray(R_local)
