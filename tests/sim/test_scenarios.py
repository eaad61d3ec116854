"""Drives of the expert through the scenario families: timing, determinism, physics, behaviour."""

import itertools
import pickle

import numpy as np
import pytest

from models.geometry import matrix_to_yaw, quat_to_matrix
from models.meta_actions import stated
from schemas.contract import LATERAL_ACTIONS, LONGITUDINAL_ACTIONS, MAX_ACCEL, MAX_CURVATURE
from sim.agents import EGO_FRONT
from sim.expert import A_LAT
from sim.fleet import showcase, simulate_drive, simulate_with_state
from sim.reasoning import CAUSES, cause_of
from sim.scenarios import FAMILIES
from sim.scene import BOX_KINDS, GROUND_KINDS
from sim.world import LANE_WIDTH

START = 1_767_254_400_000_000


@pytest.fixture(scope="module")
def long_drive():
    return simulate_drive("veh-007", seed=5, duration_s=240.0, start_us=START)


def _family(family: str, seed: int = 0, duration_s: float = 40.0):
    return simulate_with_state("veh-001", seed, duration_s, START, night=False, families=(family,))


def _yaw(drive):
    return matrix_to_yaw(quat_to_matrix(drive.ego.quat))


def test_families_are_the_contract():
    assert FAMILIES == ("red_light", "follow_lead", "lane_change_pass", "turn_only_lane", "curve", "pedestrian", "cruise")


def test_same_seed_same_drive_other_seed_other_drive():
    a = simulate_drive("veh-001", 3, 30.0, START)
    b = simulate_drive("veh-001", 3, 30.0, START)
    c = simulate_drive("veh-001", 4, 30.0, START)
    for name in ("t_us", "xyz", "quat", "velocity", "acceleration", "curvature"):
        np.testing.assert_array_equal(getattr(a.ego, name), getattr(b.ego, name))
    assert a.segments == b.segments and a.night == b.night and a.meta == b.meta
    assert len(a.static_map.ground) == len(b.static_map.ground)
    t = START + 12_345_678
    assert a.snapshot(t).agents == b.snapshot(t).agents
    assert not np.array_equal(a.ego.xyz, c.ego.xyz)


def test_ego_track_is_100hz_yaw_only_on_the_ground():
    drive = simulate_drive("veh-001", 1, 20.0, START, night=True)
    assert drive.night is True
    assert len(drive.ego.t_us) == 2001
    np.testing.assert_array_equal(drive.ego.t_us, START + 10_000 * np.arange(2001))
    assert drive.ego.t_us.dtype == np.int64
    assert drive.end_us == START + 20_000_000
    assert np.all(drive.ego.xyz[:, 2] == 0) and np.all(drive.ego.velocity[:, 2] == 0)
    np.testing.assert_array_equal(drive.ego.quat[:, :2], 0.0)
    np.testing.assert_allclose(np.linalg.norm(drive.ego.quat, axis=1), 1.0)
    # the velocity points along the heading, its integral is the path
    yaw = _yaw(drive)
    v = drive.ego.velocity[:, :2]
    speed = np.linalg.norm(v, axis=1)
    moving = speed > 1.0
    np.testing.assert_allclose(np.arctan2(v[moving, 1], v[moving, 0]), yaw[moving], atol=1e-9)
    step = np.diff(drive.ego.xyz[:, :2], axis=0)
    np.testing.assert_allclose(step, 0.005 * (v[1:] + v[:-1]), atol=2e-3)


def test_expert_stays_in_physical_and_comfort_bounds(long_drive):
    ego = long_drive.ego
    acc = ego.acceleration[:, :2]
    assert np.all(np.isfinite(acc)) and np.all(np.isfinite(ego.curvature))
    assert np.abs(np.linalg.norm(acc, axis=1)).max() <= MAX_ACCEL
    assert np.abs(ego.curvature).max() <= MAX_CURVATURE
    yaw = np.unwrap(_yaw(long_drive))
    tangent = np.stack([np.cos(yaw), np.sin(yaw)], -1)
    normal = np.stack([-np.sin(yaw), np.cos(yaw)], -1)
    a_lon, a_lat = (acc * tangent).sum(1), (acc * normal).sum(1)
    assert -4.05 <= a_lon.min() and a_lon.max() <= 2.40
    assert np.abs(a_lat).max() < 4.89
    yaw_rate = np.gradient(yaw, 0.01)
    assert np.abs(yaw_rate).max() < 0.95
    assert np.abs(np.gradient(yaw_rate, 0.01)).max() < 1.93
    assert np.linalg.norm(np.gradient(acc, 0.01, axis=0), axis=1).max() < 8.37
    assert np.abs(np.gradient(a_lon, 0.01)).max() < 4.13


def test_segments_cover_the_drive_and_state_their_truth(long_drive):
    segs = long_drive.segments
    assert segs[0].t_start_us == long_drive.start_us and segs[-1].t_end_us == long_drive.end_us
    for a, b in zip(segs, segs[1:]):
        assert a.t_end_us == b.t_start_us and a.t_start_us < a.t_end_us
    for s in segs:
        assert s.family in FAMILIES and s.cause in CAUSES
        assert s.longitudinal in LONGITUDINAL_ACTIONS and s.lateral in LATERAL_ACTIONS
        assert cause_of(s.reasoning) == s.cause, s.reasoning
        longitudinal, lateral = stated(s.reasoning)
        assert longitudinal == s.longitudinal, s.reasoning
        assert lateral in (None, s.lateral), s.reasoning


def test_every_family_and_cause_occurs_in_four_minutes(long_drive):
    assert {s.family for s in long_drive.segments} == set(FAMILIES)
    assert {s.cause for s in long_drive.segments} == set(CAUSES)
    assert {s.lateral for s in long_drive.segments} == {"keep_lane", "lane_change_left", "lane_change_right"}


def test_static_map_of_a_drive_is_well_formed(long_drive):
    static = long_drive.static_map
    assert {g.kind for g in static.ground} <= set(GROUND_KINDS)
    assert {b.kind for b in static.boxes} <= set(BOX_KINDS)
    for g in static.ground:  # convex and counter-clockwise
        edges = np.roll(g.xy, -1, axis=0) - g.xy
        nxt = np.roll(edges, -1, axis=0)
        assert np.all(edges[:, 0] * nxt[:, 1] - edges[:, 1] * nxt[:, 0] > -1e-9), g
    driven = np.linalg.norm(np.diff(long_drive.ego.xyz[:, :2], axis=0), axis=1).sum()
    assert len(static.ground) < 2.0 * (driven + 150.0)  # a moderate budget: < 200 per 100 m of road
    light_ids = {light.light_id for light in static.lights}
    assert set(long_drive.snapshot(long_drive.end_us).light_states) == light_ids
    assert all(b.emissive for b in static.boxes if b.kind == "lamp")


def test_red_light_stop_before_the_line_then_go_on_green():
    drive, run = _family("red_light")
    x = run.route.instances[0].intersection
    changes = run.world.light_changes[x.light_id]
    assert changes[0] == (0, "red") and changes[1][1] == "green"
    k_green = changes[1][0]
    front = run.s + EGO_FRONT
    assert front[:k_green].max() < x.stop_s  # never over the line while red
    assert front[:k_green].max() > x.stop_s - 4.0  # but close to it
    assert run.speed[k_green - 100 : k_green].max() < 0.05  # standing at the line before green
    assert front[-1] > x.s  # and through the intersection after
    assert run.speed[-1] > 5.0
    t_green = drive.start_us + 10_000 * k_green
    light_state = drive.snapshot(t_green - 10_000).light_states[x.light_id]
    assert (light_state, drive.snapshot(t_green).light_states[x.light_id]) == ("red", "green")
    causes = [(s.cause, s.longitudinal) for s in drive.segments]
    assert ("red_light", "stop") in causes and ("green_light", "accelerate") in causes
    red = [s.longitudinal for s in drive.segments if s.cause == "red_light"]
    assert "decelerate" in red and "stop" in red and "accelerate" not in red


def test_follow_lead_keeps_a_gap_and_matches_speed():
    drive, run = _family("follow_lead", seed=2, duration_s=30.0)
    lead = run.route.leads[0]
    # the first vehicle to appear in the ego's lane
    track = min((tr for tr in run.world.tracks.values() if tr.rows[0][1] == pytest.approx(run.d[0])), key=lambda tr: tr.k0)
    rows = np.asarray(track.rows)
    k = np.arange(track.k0, track.k0 + len(rows))
    gap = rows[:, 0] - track.size[0] / 2 - (run.s[k] + EGO_FRONT)
    assert gap.min() > 10.0
    assert np.abs(run.speed[k] - lead.speed).min() < 0.2  # settled behind it
    k_release = int(np.searchsorted(run.s, lead.release_s))
    assert k_release > 1000
    following = [s.cause for s in drive.segments if s.t_end_us <= drive.start_us + 10_000 * k_release]
    assert following and set(following) == {"lead_vehicle"}


def test_lane_change_pass_moves_one_lane_left_and_back():
    drive, run = _family("lane_change_pass", duration_s=30.0)
    home = run.d[0]
    k_out = int(np.searchsorted(run.s, run.route.instances[0].s_end))  # the first instance only
    d, end_us = run.d[:k_out], drive.start_us + 10_000 * k_out
    assert d.max() == pytest.approx(home + LANE_WIDTH)  # one lane to the left (d grows to the left)
    assert d.min() == pytest.approx(home)
    assert d[-1] == pytest.approx(home)
    lateral = [lat for lat, _ in itertools.groupby(s.lateral for s in drive.segments if s.t_end_us <= end_us)]
    assert lateral == ["keep_lane", "lane_change_left", "keep_lane", "lane_change_right", "keep_lane"]
    # out for the slower vehicle, back because the right lane is clear (as after a turn-only lane)
    changes = [(s.lateral, s.cause) for s in drive.segments if s.lateral != "keep_lane" and s.t_end_us <= end_us]
    assert {c for lat, c in changes if lat == "lane_change_left"} == {"lead_vehicle"}
    assert {c for lat, c in changes if lat == "lane_change_right"} == {"clear_road"}
    passed = min((tr for tr in run.world.tracks.values() if tr.rows[0][1] == pytest.approx(home)), key=lambda tr: tr.k0)
    k_end = passed.k0 + len(passed.rows) - 1
    assert run.s[k_end] > passed.rows[-1][0]  # the ego ends ahead of the passed vehicle


def test_turn_only_lane_is_left_before_the_stop_line():
    drive, run = _family("turn_only_lane", duration_s=40.0)
    turn = run.route.instances[0].turn_only
    lay = run.route.layout
    k = int(np.argmax(run.s + EGO_FRONT >= turn.stop_s))
    assert k > 0 and lay.lane_of(run.d[k]) == turn.lane - 1
    assert lay.lane_of(run.d[0]) == turn.lane
    assert ("turn_only_lane", "lane_change_left") in {(s.cause, s.lateral) for s in drive.segments}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pedestrian_ego_waits_while_the_crosswalk_is_in_use(seed):
    drive, run = _family("pedestrian", seed=seed, duration_s=40.0)
    cw = run.route.instances[0].crosswalk
    (ped_id,) = [p.agent_id for p in run.route.pedestrians if abs(p.s - cw.s) < 2]
    track = run.world.tracks[ped_id]
    d = np.asarray(track.rows)[:, 1]
    k = np.arange(track.k0, track.k0 + len(d))
    in_path = (d < 1.0) & (d > -run.route.layout.half_width)  # on the ego's half of the crosswalk
    front = run.s[k] + EGO_FRONT
    assert in_path.any()
    assert front[in_path].max() < cw.span[0]  # never onto the crosswalk while the pedestrian is in its path
    assert run.speed[k[in_path]].min() == 0.0  # the ego stands while the pedestrian is in its path
    assert front[-1] > cw.span[1]  # then on its way
    assert "pedestrian" in {s.cause for s in drive.segments}


def test_curve_speed_keeps_lateral_acceleration_down():
    drive, run = _family("curve", seed=1, duration_s=40.0)
    a, b = run.route.instances[0].curve
    path = run.route.layout.path
    in_curve = (run.s > a) & (run.s < b)
    assert in_curve.any()
    kappa = np.abs(path.curvature(run.s[in_curve]) / (1 - path.curvature(run.s[in_curve]) * run.d[in_curve]))
    assert (run.speed[in_curve] ** 2 * kappa).max() < A_LAT + 0.4
    assert run.speed[in_curve].min() < run.route.cruise_speed - 1.0  # it did slow down
    assert {"curve"} <= {s.cause for s in drive.segments}


def test_snapshot_interpolates_and_is_bounded():
    drive = simulate_drive("veh-001", 2, 20.0, START, families=("follow_lead",))
    t = START + 5_005_000  # between two 100 Hz samples
    snap = drive.snapshot(t)
    np.testing.assert_allclose(snap.ego_xyz, 0.5 * (drive.ego.xyz[500] + drive.ego.xyz[501]))
    assert snap.t_us == t and snap.night == drive.night
    assert all(a.kind in ("vehicle", "pedestrian") for a in snap.agents)
    assert len({a.agent_id for a in snap.agents}) == len(snap.agents)
    with pytest.raises(ValueError):
        drive.snapshot(START - 1)
    with pytest.raises(ValueError):
        drive.snapshot(drive.end_us + 1)
    copy = pickle.loads(pickle.dumps(drive))
    assert copy.snapshot(t).agents == snap.agents


def test_unknown_family_and_bad_duration_are_errors():
    with pytest.raises(ValueError, match="unknown scenario families"):
        simulate_drive("veh-001", 0, 10.0, START, families=("parade",))
    with pytest.raises(ValueError, match="duration_s"):
        simulate_drive("veh-001", 0, 0.0, START)


@pytest.mark.parametrize("night", [False, True])
@pytest.mark.parametrize("family", FAMILIES)
def test_showcase_puts_the_cue_in_front(family, night):
    drive, t_us, cue = showcase(family, night)
    assert drive.night is night and drive.start_us <= t_us <= drive.end_us
    snap = drive.snapshot(t_us)
    agents = {a.agent_id: a for a in snap.agents}
    R = snap.ego_rot[:2, :2]

    def ahead(xy):
        return (np.asarray(xy) - snap.ego_xyz[:2]) @ R

    if family == "red_light":
        assert cue["light_state"] == "red" == snap.light_states[cue["light_id"]]
        light = next(l for l in drive.static_map.lights if l.light_id == cue["light_id"])
        x, y = ahead(light.xy)
        assert 15.0 <= x <= 40.0 and abs(y) < 10.0
    elif family in ("follow_lead", "lane_change_pass"):
        x, y = ahead(agents[cue["lead_agent_id"]].xy)
        assert 10.0 <= x <= 30.0 and abs(y) < 2.0
    elif family == "pedestrian":
        ped = agents[cue["pedestrian_agent_id"]]
        assert ped.kind == "pedestrian"
        x, _ = ahead(ped.xy)
        assert 10.0 <= x <= 30.0
    elif family == "turn_only_lane":
        x, y = ahead(cue["turn_arrow_xy"])
        assert 10.0 <= x <= 30.0 and abs(y) < 6.0
    elif family == "curve":
        x, _ = ahead(cue["curve_entry_xy"])
        assert 10.0 <= x <= 40.0 and cue["curve_direction"] in ("left", "right")
    else:
        assert cue["road"] == "clear"
    assert cue["distance_m"] == pytest.approx(x if family != "cruise" else 0.0, abs=4.0)
