"""Meta-actions of analytic trajectories and of the sim's reasoning phrasings."""

import numpy as np
import pytest

from models.meta_actions import classify, classify_trajectories, stated

T = np.arange(1, 65) * 0.1


def straight(x: np.ndarray, y: np.ndarray | None = None):
    y = np.zeros_like(x) if y is None else y
    xyz = np.stack([x, y, np.zeros_like(x)], -1)
    full = np.concatenate([[[0.0, 0.0]], xyz[:, :2]])
    d = np.diff(full, axis=0)
    yaw = np.arctan2(d[:, 1], d[:, 0])
    return xyz, yaw


def arc(radius: float, speed: float, side: float = 1.0):
    theta = speed * T / radius
    xyz = np.stack([radius * np.sin(theta), side * radius * (1 - np.cos(theta)), np.zeros_like(T)], -1)
    return xyz, side * theta


@pytest.mark.parametrize(
    "x, v0, expected",
    [
        (10.0 * T, 10.0, "keep_speed"),
        (5 * T + 0.5 * 1.0 * T**2, 5.0, "accelerate"),
        (10 * T - 0.5 * 0.5 * T**2, 10.0, "decelerate"),
        (np.where(T < 5, 10 * T - T**2, 25.0), 10.0, "stop"),  # 2 m/s^2 to rest at 5 s
        (np.zeros_like(T), 0.0, "stop"),
        (10 * T + 0.5 * 0.05 * T**2, 10.0, "keep_speed"),  # within the deadband
        (0.5 * 2.0 * np.minimum(T, 1.5) ** 2 + 3.0 * np.maximum(T - 1.5, 0), 0.0, "accelerate"),
    ],
)
def test_longitudinal_analytic(x, v0, expected):
    xyz, yaw = straight(x)
    assert classify(xyz, yaw, v0)[0] == expected


def test_hard_early_brake_is_deceleration_even_if_speed_recovers():
    v = np.where(T < 2, 12 - 3 * T, 6 + 2 * (T - 2))  # -3 m/s^2 for 2 s then +2 m/s^2
    x = np.cumsum(v) * 0.1
    xyz, yaw = straight(x)
    assert classify(xyz, yaw, 12.0)[0] == "decelerate"


def test_lateral_analytic():
    assert classify(*straight(10 * T), 10.0)[1] == "keep_lane"
    assert classify(*arc(100.0, 15.0), 15.0)[1] == "keep_lane"  # road curve, 0.96 rad
    assert classify(*arc(100.0, 15.0, -1.0), 15.0)[1] == "keep_lane"
    assert classify(*arc(12.0, 5.0), 5.0)[1] == "turn_left"
    assert classify(*arc(12.0, 5.0, -1.0), 5.0)[1] == "turn_right"
    s = np.clip(T / 5.0, 0, 1)
    smooth = 3.5 * (3 * s**2 - 2 * s**3)
    assert classify(*straight(12 * T, smooth), 12.0) == ("keep_speed", "lane_change_left")
    assert classify(*straight(12 * T, -smooth), 12.0) == ("keep_speed", "lane_change_right")
    # lane change on a gentle bend: offset from the arc
    xyz, yaw = arc(600.0, 12.0)
    normal = np.stack([-np.sin(yaw), np.cos(yaw)], -1)
    xyz[:, :2] += normal * smooth[:, None]
    assert classify(xyz, yaw, 12.0)[1] == "lane_change_left"


def test_a_batch_is_classified_as_each_trajectory_alone():
    s = np.clip(T / 5.0, 0, 1)
    smooth = 3.5 * (3 * s**2 - 2 * s**3)
    cases = [(straight(10 * T), 10.0), (straight(5 * T + 0.5 * T**2), 5.0), (straight(np.zeros_like(T)), 0.0),
             (arc(12.0, 5.0), 5.0), (arc(12.0, 5.0, -1.0), 8.0), (arc(100.0, 15.0), 15.0),
             (straight(12 * T, smooth), 12.0), (straight(12 * T, -smooth), 12.0),
             (straight(10 * T - 0.25 * T**2), 10.0)]
    xyz = np.stack([c[0][0] for c in cases])
    yaw = np.stack([c[0][1] for c in cases])
    v0 = [c[1] for c in cases]
    expected = [("keep_speed", "keep_lane"), ("accelerate", "keep_lane"), ("stop", "keep_lane"),
                ("keep_speed", "turn_left"), ("decelerate", "turn_right"), ("keep_speed", "keep_lane"),
                ("keep_speed", "lane_change_left"), ("keep_speed", "lane_change_right"), ("decelerate", "keep_lane")]
    assert classify_trajectories(xyz, yaw, v0) == expected
    assert [classify(x, y, v) for x, y, v in zip(xyz, yaw, v0)] == expected
    assert classify_trajectories(xyz[:2], yaw[:2], 10.0) == [("keep_speed", "keep_lane"), ("decelerate", "keep_lane")]
    with pytest.raises(ValueError):
        classify_trajectories(xyz, yaw[:, :10], v0)


def test_stationary_keeps_lane():
    assert classify(np.zeros((64, 3)), np.zeros(64), 0.0) == ("stop", "keep_lane")


def test_bad_shape_is_an_error():
    with pytest.raises(ValueError):
        classify(np.zeros((10, 3)), np.zeros(10), 0.0)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Stop at the stop line since the straight traffic light is red.", ("stop", None)),
        ("Decelerate and keep lane because the lead vehicle is slowing down.", ("decelerate", "keep_lane")),
        ("Keep speed since the road ahead is clear.", ("keep_speed", None)),
        ("Accelerate since the light turned green.", ("accelerate", None)),
        ("Change lanes to the left since a vehicle is parked in the lane.", (None, "lane_change_left")),
        ("Slow down and turn right at the intersection as the route goes right.", ("decelerate", "turn_right")),
        ("Keep lane and follow the curve.", (None, "keep_lane")),
        ("Something unrelated.", (None, None)),
    ],
)
def test_stated(text, expected):
    assert stated(text) == expected


def test_cause_clause_is_ignored():
    # "slowing down" describes the lead vehicle, not the ego
    assert stated("Keep speed since the lead vehicle is slowing down.") == ("keep_speed", None)


def test_every_sim_phrasing_states_its_meta_action():
    from sim.reasoning import CAUSES, action_clauses

    for cause in CAUSES:
        for longitudinal in ("stop", "decelerate", "keep_speed", "accelerate"):
            for lateral in ("keep_lane", "lane_change_left", "lane_change_right", "turn_left", "turn_right"):
                for moving in (True, False):
                    for clause in action_clauses(cause, longitudinal, lateral, moving):
                        said_long, said_lat = stated(f"{clause} since the road ahead is clear.")
                        assert said_long == longitudinal, clause
                        assert (said_lat or "keep_lane") == lateral, clause


def test_lane_change_in_progress_at_t0():
    # the ego is half-way through a left lane change at t0 (heading 0.1 rad off the road): the
    # rest of it (1.75 m to the left of the road) is still a left lane change
    t = np.arange(0, 65) * 0.1
    s = np.clip((t + 2.5) / 5.0, 0, 1)
    d = 3.5 * (3 * s**2 - 2 * s**3)  # offset from the road, completes at t = 2.5 s
    road_xy = np.stack([12 * t, d - d[0]], -1)
    phi = np.arctan2(np.gradient(d, t)[0], 12.0)  # heading at t0 relative to the road
    c, sn = np.cos(-phi), np.sin(-phi)
    local = road_xy @ np.array([[c, sn], [-sn, c]])  # into the ego frame at t0
    xyz = np.concatenate([local[1:], np.zeros((64, 1))], 1)
    step = np.diff(local, axis=0)
    yaw = np.arctan2(step[:, 1], step[:, 0])
    assert classify(xyz, yaw, 12.0)[1] == "lane_change_left"
