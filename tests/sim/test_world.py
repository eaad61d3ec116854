"""Road geometry, the static map, agents and the world's lights."""

import numpy as np
import pytest

from sim.agents import IDM, Pedestrian
from sim.scene import BOX_KINDS, GROUND_KINDS
from sim.world import (CROSS_HALF_WIDTH, CROSSWALK_WIDTH, LANE_WIDTH, STOP_LINE_GAP, Crosswalk, EgoView, Intersection,
                       RoadLayout, RoadPath, TurnOnlyLane, World, build_static_map)


def _signed_area(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _convex_ccw(xy: np.ndarray) -> bool:
    """Every corner turns left: a convex, counter-clockwise polygon (no bow ties)."""
    edges = np.roll(xy, -1, axis=0) - xy
    turns = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    return bool(np.all(turns > -1e-9))


def test_path_of_straight_then_arc_matches_the_circle():
    radius, angle = 50.0, np.pi / 2
    path = RoadPath([(100.0, 0.0, 0.0), (radius * angle, 1 / radius, 1 / radius)])
    end_xy, end_h = path.pose(path.length, 0.0)
    assert path.length == pytest.approx(100.0 + radius * angle, abs=0.5)
    assert end_h == pytest.approx(angle, abs=1e-2)
    np.testing.assert_allclose(end_xy, [100.0 + radius, radius], atol=0.3)
    xy, h = path.pose(40.0, -3.5)  # on the straight, 3.5 m to the right
    np.testing.assert_allclose(xy, [40.0, -3.5], atol=1e-9)
    assert h == 0.0


def test_project_inverts_pose():
    path = RoadPath([(60.0, 0.0, 0.02), (80.0, 0.02, -0.01), (50.0, -0.01, 0.0)])
    for s, d in [(10.0, -5.25), (75.0, 1.75), (150.0, -8.0)]:
        xy, _ = path.pose(s, d)
        s2, d2 = path.project(xy)
        assert s2 == pytest.approx(s, abs=0.05)
        assert d2 == pytest.approx(d, abs=0.05)


def test_lane_offsets_and_lane_of():
    layout = RoadLayout(RoadPath([(100.0, 0.0, 0.0)]), 3)
    assert [layout.lane_d(i) for i in range(3)] == [-1.75, -5.25, -8.75]
    assert layout.lane_d(1, oncoming=True) == 5.25
    assert [layout.lane_of(layout.lane_d(i)) for i in range(3)] == [0, 1, 2]
    assert layout.lane_of(-20.0) == 2 and layout.lane_of(1.0) == 0
    assert layout.half_width == 3 * LANE_WIDTH


@pytest.fixture(scope="module")
def junction_map():
    path = RoadPath([(400.0, 0.0, 0.0)])
    x = Intersection("light-000", 200.0, True, 4.0)
    turn = TurnOnlyLane(1, "right", x.stop_s)
    layout = RoadLayout(path, 2, [x], [Crosswalk(330.0)], [turn])
    return layout, x, build_static_map(layout, 0.0, 400.0, seed=3)


def test_static_map_kinds_and_orientation(junction_map):
    _, _, static = junction_map
    assert {g.kind for g in static.ground} <= set(GROUND_KINDS)
    assert {b.kind for b in static.boxes} <= set(BOX_KINDS)
    assert all(_signed_area(g.xy) > 0 and _convex_ccw(g.xy) for g in static.ground), "ground polygons must be CCW"
    kinds = {g.kind for g in static.ground}
    assert {"road", "grass", "sidewalk", "marking_white", "marking_yellow", "crosswalk", "stop_line"} <= kinds
    # road surface in pieces of at most 8 m: 400 m of main road -> 50 quads plus the cross road
    assert sum(g.kind == "road" for g in static.ground) == 51
    assert len(static.ground) < 1500


def test_roadside_stays_off_the_road_inside_a_tight_bend():
    radius = 30.0  # the grass strip would reach past the bend's centre (10.5 + 3 + 25 m)
    path = RoadPath([(50.0, 0.0, 0.0), (30.0, 0.0, 1 / radius), (radius * 2.0, 1 / radius, 1 / radius),
                     (30.0, 1 / radius, 0.0), (50.0, 0.0, 0.0)])
    layout = RoadLayout(path, 3)
    static = build_static_map(layout, 0.0, path.length, seed=1)
    assert all(_convex_ccw(g.xy) for g in static.ground)
    for box in static.boxes:
        if box.kind in ("building", "tree"):
            length, width, _ = box.size
            c, s = np.cos(box.yaw), np.sin(box.yaw)
            corners = np.array([[x, y] for x in (-length / 2, length / 2) for y in (-width / 2, width / 2)])
            corners = corners @ np.array([[c, s], [-s, c]]) + box.center[:2]
            gap = np.linalg.norm(path.xy[None] - corners[:, None], axis=-1).min()
            assert gap > layout.half_width + 1.0, box


def test_signal_and_stop_line_positions(junction_map):
    layout, x, static = junction_map
    assert x.stop_s == 200.0 - CROSS_HALF_WIDTH - CROSSWALK_WIDTH - STOP_LINE_GAP
    (light,) = static.lights
    assert light.light_id == "light-000"
    (a, b) = light.stop_line
    assert a == pytest.approx((x.stop_s, -layout.half_width)) and b == pytest.approx((x.stop_s, 0.0))
    assert light.xy[0] > x.s and light.yaw == 0.0  # beyond the junction, facing the ego's direction
    assert sum(b.kind == "light_head" for b in static.boxes) == 1
    lines = [g for g in static.ground if g.kind == "stop_line"]
    assert len(lines) == 2  # one per direction
    ego_line = next(g for g in lines if g.xy[:, 1].max() <= 0.0)
    assert ego_line.xy[:, 0].max() == pytest.approx(x.stop_s)


def test_turn_arrows_are_in_the_turn_only_lane(junction_map):
    layout, x, static = junction_map
    d = layout.lane_d(1)
    arrows = [g for g in static.ground if g.kind == "marking_white"
              and abs(g.xy[:, 1].mean() - d) < 1.2 and x.stop_s - 45 <= g.xy[:, 0].mean() <= x.stop_s]
    assert len(arrows) == 6  # two arrows of three pieces
    # the head points right (toward the kerb)
    assert min(g.xy[:, 1].min() for g in arrows) < d - 1.2


def test_zebra_stripes_span_the_road(junction_map):
    layout, _, static = junction_map
    stripes = [g for g in static.ground if g.kind == "crosswalk" and abs(g.xy[:, 0].mean() - 330.0) < 3]
    assert len(stripes) == 12  # 14 m of road less margins: a 0.5 m stripe every 1.1 m from -6.6 m
    assert all(abs(g.xy[:, 1]).max() < layout.half_width for g in stripes)


def test_idm_free_road_and_standstill():
    idm = IDM(a_max=1.5, b=2.0, headway=1.5, s0=2.5)
    assert idm.accel(10.0, 10.0) == 0.0
    assert idm.accel(0.0, 10.0) == 1.5
    # standing at exactly the standstill gap behind a stopped obstacle: free term 1, interaction 1
    assert idm.accel(0.0, 10.0, gap=2.5, dv=0.0) == pytest.approx(0.0)
    # s* = 2.5 + 10 * 1.5 + 10 * 10 / (2 sqrt(3))
    s_star = 2.5 + 15.0 + 100.0 / (2 * np.sqrt(3.0))
    assert idm.accel(10.0, 20.0, gap=40.0, dv=10.0) == pytest.approx(1.5 * (1 - 0.5**4 - (s_star / 40.0) ** 2))


def test_pedestrian_blocks_the_half_it_is_in_or_heading_to():
    hw = 7.0
    ped = Pedestrian("ped-0", 100.0, -8.5, 8.5, 1.0, 50.0, (0, 0, 0))
    assert ped.blocks(1, hw) and ped.blocks(-1, hw)  # waiting at the ego's kerb to cross
    ped.step(1.0)
    assert ped.d == -8.5  # waiting until triggered
    ped.walking = True
    ped.step(1.0)
    assert ped.d == -7.5
    assert ped.blocks(1, hw) and ped.blocks(-1, hw)  # in the ego half, heading into the oncoming half
    ped.d = 2.0
    assert not ped.blocks(1, hw) and ped.blocks(-1, hw)  # past the ego half's margin
    ped.d = 8.5
    assert ped.arrived and not ped.blocks(-1, hw) and not ped.blocks(1, hw)
    far = Pedestrian("ped-1", 100.0, 12.0, -12.0, 1.0, 50.0, (0, 0, 0))  # beyond the kerb zone
    assert not far.blocks(1, hw)
    for _ in range(10):
        ped.step(0.5)
    assert ped.d == 8.5


def test_red_light_turns_green_after_the_ego_waited():
    path = RoadPath([(300.0, 0.0, 0.0)])
    x = Intersection("light-000", 150.0, True, 3.0)
    layout = RoadLayout(path, 2, [x])
    world = World(layout, [], [], cruise_speed=12.0, seed=0)
    ego = EgoView(x.stop_s - 3.8 - 3.0, -5.25, 0.0)  # front 3 m before the line, standing
    world.start(ego)
    assert world.red_stop_lines(1) == [(x.stop_s, x)]
    changed_at = None
    for k in range(1, 1500):
        world.step(0.01, ego)
        if world.light_state["light-000"] == "green":
            changed_at = k
            break
    # 3 s of waiting at 100 Hz, plus however long the last cross vehicle needs to clear
    assert changed_at is not None and 300 <= changed_at < 1000
    assert world.light_changes["light-000"] == [(0, "red"), (changed_at, "green")]
    assert world.red_stop_lines(1) == [] and world.red_stop_lines(-1) == []
