"""The unicycle action space: analytic trajectories and exact round trips."""

import numpy as np
import pytest

from models.action_space import DT, actions_to_traj, speed_from_history, traj_to_actions
from schemas.contract import MAX_ACCEL, MAX_CURVATURE

T = np.arange(1, 65) * DT


def test_constant_speed_straight_line():
    xyz, yaw = actions_to_traj(np.zeros((64, 2)), 10.0, z0=0.25)
    np.testing.assert_allclose(xyz[:, 0], 10.0 * T, atol=1e-12)
    np.testing.assert_allclose(xyz[:, 1:], np.stack([np.zeros(64), np.full(64, 0.25)], -1))
    np.testing.assert_allclose(yaw, 0.0)


def test_constant_acceleration_speeds():
    a = 2.0
    actions = np.zeros((64, 2))
    actions[:, 0] = a / MAX_ACCEL
    xyz, _ = actions_to_traj(actions, 5.0)
    # step i moves at v0 + a (i+1) dt, so x_n = dt * sum_{i=1..n} (v0 + a i dt)
    n = np.arange(1, 65)
    np.testing.assert_allclose(xyz[:, 0], DT * (5.0 * n + a * DT * n * (n + 1) / 2), atol=1e-9)


def test_constant_curvature_turns_at_the_commanded_rate():
    k, v = 0.05, 8.0
    actions = np.zeros((64, 2))
    actions[:, 1] = k / MAX_CURVATURE
    xyz, yaw = actions_to_traj(actions, v)
    np.testing.assert_allclose(yaw, k * v * T, atol=1e-12)
    # every point lies on the circle through the chord polygon: radius of the discrete circle
    step = v * DT
    radius = step / (2 * np.sin(k * step / 2))
    centre = np.array([-radius * np.sin(k * step / 2), radius * np.cos(k * step / 2)])
    np.testing.assert_allclose(np.linalg.norm(xyz[:, :2] - centre, axis=1), radius, rtol=1e-9)


def test_curvature_ignored_below_min_speed_and_speed_never_negative():
    actions = np.zeros((64, 2))
    actions[:, 0] = -1.0
    actions[:, 1] = 1.0
    xyz, yaw = actions_to_traj(actions, 0.5)
    np.testing.assert_allclose(xyz, 0.0)
    np.testing.assert_allclose(yaw, 0.0)


def test_actions_clipped_to_bounds():
    big = np.full((64, 2), 5.0)
    np.testing.assert_allclose(actions_to_traj(big, 3.0)[0], actions_to_traj(np.ones((64, 2)), 3.0)[0])


@pytest.mark.parametrize("seed", range(5))
def test_round_trip_exact(seed):
    rng = np.random.default_rng(seed)
    batch = 8
    actions = np.clip(np.cumsum(rng.normal(0, 0.02, (batch, 64, 2)), axis=1), -0.3, 0.3)
    v0 = rng.uniform(0.0, 20.0, batch)
    xyz, yaw = actions_to_traj(actions, v0)
    back = traj_to_actions(xyz, yaw, v0)
    xyz2, yaw2 = actions_to_traj(back, v0)
    assert np.abs(xyz2 - xyz).max() < 1e-4
    assert np.abs(yaw2 - yaw).max() < 1e-6
    # away from standstill (where speed is clamped at 0) the actions themselves come back
    moving = np.all(np.concatenate([v0[:, None], np.linalg.norm(np.diff(xyz[..., :2], axis=1), axis=-1) / DT], 1) > 0.7, axis=1)
    np.testing.assert_allclose(back[moving], actions[moving], atol=1e-8)


def test_analytic_arc_to_actions():
    radius, v = 25.0, 10.0
    # the unicycle's own discrete circle
    actions = np.zeros((64, 2))
    actions[:, 1] = (1 / radius) / MAX_CURVATURE
    xyz, yaw = actions_to_traj(actions, v)
    back = traj_to_actions(xyz, yaw, v) * np.array([MAX_ACCEL, MAX_CURVATURE])
    np.testing.assert_allclose(back[:, 0], 0.0, atol=1e-9)
    np.testing.assert_allclose(back[:, 1], 1 / radius, atol=1e-9)


def test_speed_from_history():
    h = np.zeros((16, 3))
    h[:, 0] = (np.arange(16) - 15) * 0.1 * 7.0
    assert speed_from_history(h) == pytest.approx(7.0)
    assert speed_from_history(np.stack([h, h * 2])).tolist() == pytest.approx([7.0, 14.0])


def test_shapes_checked():
    with pytest.raises(ValueError):
        actions_to_traj(np.zeros((10, 2)), 1.0)
    with pytest.raises(ValueError):
        traj_to_actions(np.zeros((64, 2)), np.zeros(64), 1.0)
