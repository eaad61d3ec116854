"""The unicycle action space (REFERENCE.md section 1): 64 x (acceleration, curvature) <-> trajectory.

One 0.1 s step i -> i+1 of the unicycle, from speed v_i and heading yaw_i (t0 frame, yaw_0 = 0):

    v_{i+1}   = max(v_i + a_i dt, 0)
    yaw_{i+1} = yaw_i + k_i v_{i+1} dt          (k_i treated as 0 when v_{i+1} < 0.6 m/s)
    xy_{i+1}  = xy_i + v_{i+1} dt (cos yaw_{i+1}, sin yaw_{i+1})

so each waypoint's step fixes its speed and heading directly, and `traj_to_actions` inverts
`actions_to_traj` exactly, step by step, without error accumulating. The speeds are mean speeds
over a step; the speed at t0 (`v0`) is that of the last history step (`speed_from_history`).
Actions are normalised by the release bounds: a / MAX_ACCEL, k / MAX_CURVATURE; a feasible
trajectory has normalised actions within [-1, 1], and `actions_to_traj` clips to that range.
Arrays may carry leading batch dimensions.
"""

import numpy as np

from schemas.contract import (
    MAX_ACCEL,
    MAX_CURVATURE,
    MIN_SPEED_FOR_CURVATURE,
    NUM_FUTURE,
    STEP_US,
)

DT = STEP_US / 1e6
ACTION_SCALE = np.array([MAX_ACCEL, MAX_CURVATURE])


def speed_from_history(history_xyz: np.ndarray) -> np.ndarray:
    """Speed at t0 (m/s): the planar speed over the last 0.1 s history step. (..., 16, 3) -> (...)."""
    h = np.asarray(history_xyz, dtype=np.float64)
    return np.linalg.norm(h[..., -1, :2] - h[..., -2, :2], axis=-1) / DT


def actions_to_traj(actions: np.ndarray, v0, z0=0.0) -> tuple[np.ndarray, np.ndarray]:
    """(..., 64, 2) normalised actions, speed `v0` and height `z0` at t0 -> xyz (..., 64, 3), yaw (..., 64)."""
    actions = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0) * ACTION_SCALE
    if actions.shape[-2:] != (NUM_FUTURE, 2):
        raise ValueError(f"actions must be (..., {NUM_FUTURE}, 2), got {actions.shape}")
    batch = actions.shape[:-2]
    v = np.broadcast_to(np.asarray(v0, dtype=np.float64), batch).copy()
    yaw = np.zeros(batch)
    xy = np.zeros(batch + (2,))
    xyz = np.empty(batch + (NUM_FUTURE, 3))
    yaws = np.empty(batch + (NUM_FUTURE,))
    for i in range(NUM_FUTURE):
        v = np.maximum(v + actions[..., i, 0] * DT, 0.0)
        curvature = np.where(v < MIN_SPEED_FOR_CURVATURE, 0.0, actions[..., i, 1])
        yaw = yaw + curvature * v * DT
        xy = xy + (v * DT)[..., None] * np.stack([np.cos(yaw), np.sin(yaw)], -1)
        xyz[..., i, :2] = xy
        yaws[..., i] = yaw
    xyz[..., 2] = np.broadcast_to(np.asarray(z0, dtype=np.float64), batch)[..., None]
    return xyz, yaws


def traj_to_actions(traj_xyz: np.ndarray, traj_yaw: np.ndarray, v0) -> np.ndarray:
    """(..., 64, 3) trajectory in the t0 frame and speed `v0` -> (..., 64, 2) normalised actions.

    A unicycle heads where it goes, so each step's heading is read from the positions; `traj_yaw`
    only has its shape checked. Values are not clipped: an infeasible trajectory shows up as
    |action| > 1.
    """
    traj_xyz = np.asarray(traj_xyz, dtype=np.float64)
    traj_yaw = np.asarray(traj_yaw, dtype=np.float64)
    if traj_xyz.shape[-2:] != (NUM_FUTURE, 3) or traj_yaw.shape[-1:] != (NUM_FUTURE,):
        raise ValueError(f"expected (..., 64, 3) and (..., 64), got {traj_xyz.shape} and {traj_yaw.shape}")
    batch = traj_xyz.shape[:-2]
    xy = np.concatenate([np.zeros(batch + (1, 2)), traj_xyz[..., :2]], axis=-2)
    step = np.diff(xy, axis=-2)
    speed = np.linalg.norm(step, axis=-1) / DT
    v_prev = np.broadcast_to(np.asarray(v0, dtype=np.float64), batch)
    yaw_prev = np.zeros(batch)
    actions = np.empty(batch + (NUM_FUTURE, 2))
    for i in range(NUM_FUTURE):
        v = speed[..., i]
        turn = np.angle(np.exp(1j * (np.arctan2(step[..., i, 1], step[..., i, 0]) - yaw_prev)))
        slow = v < MIN_SPEED_FOR_CURVATURE
        actions[..., i, 0] = (v - v_prev) / DT
        actions[..., i, 1] = np.where(slow, 0.0, turn / np.where(slow, 1.0, v * DT))
        yaw_prev = yaw_prev + np.where(slow, 0.0, turn)
        v_prev = v
    return actions / ACTION_SCALE
