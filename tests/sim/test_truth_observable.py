"""The truth names only what a clip can see: no reasoning text of a drive names a vehicle ahead
while none is in view at that time (sim.world brings a slower vehicle into view before the ego
reaches its trigger; sim.truth never explains a future by one not yet in view)."""

import numpy as np
import pytest

from sim.agents import EGO_FRONT
from sim.fleet import LEAD_VIEW_RANGE, simulate_drive
from sim.scenarios import plan_route
from sim.truth import build_segments
from sim.world import LEAD_SPAWN_EARLY, EgoView, LeadSpawn, World

START = 1_767_254_400_000_000
# lead-vehicle phases whose vehicle is beside or behind the ego: passing it, having passed it
_BESIDE_OR_BEHIND = ("pass", "behind", "overtaking", "ahead of the")


def _vehicle_in_view(drive, t_us: int) -> bool:
    """A vehicle from 6 m behind to LEAD_VIEW_RANGE ahead of the ego, in its lane or a lane beside it."""
    snap = drive.snapshot(t_us)
    rot = snap.ego_rot[:2, :2]
    for agent in snap.agents:
        x, y = (np.asarray(agent.xy) - snap.ego_xyz[:2]) @ rot
        if agent.kind == "vehicle" and -6.0 < x < LEAD_VIEW_RANGE and abs(y) < 6.0:
            return True
    return False


@pytest.mark.parametrize("seed", [1000, 1003])
def test_no_text_names_a_vehicle_ahead_before_it_is_in_view(seed):
    drive = simulate_drive(f"sim-{seed:05d}", seed, 120.0, START)
    checked = 0
    for seg in drive.segments:
        if seg.cause != "lead_vehicle" or any(w in seg.reasoning for w in _BESIDE_OR_BEHIND):
            continue
        for t_us in range(seg.t_start_us, seg.t_end_us, 250_000):
            assert _vehicle_in_view(drive, t_us), f"{seg.reasoning!r} at {(t_us - START) / 1e6} s"
            checked += 1
    assert checked > 50  # the drive has lead-vehicle phases to check


@pytest.mark.parametrize("ego_s, early", [(100.0, LEAD_SPAWN_EARLY), (170.0, 30.0), (200.0, 0.0)])
def test_a_lead_comes_into_view_early_about_where_it_would_have_been(ego_s, early):
    """A lead triggered at s=200 appears once the ego is LEAD_SPAWN_EARLY metres before it (or at
    once when the ego starts later), farther ahead by what the ego gains on it meanwhile."""
    layout = plan_route(0, 500.0, ("cruise",)).layout
    spawn = LeadSpawn(trigger_s=200.0, gap=40.0, lane=0, speed=9.0, release_s=float("inf"))
    before = World(layout, [spawn], [], cruise_speed=12.0, seed=0)
    before.start(EgoView(200.0 - LEAD_SPAWN_EARLY - 0.1, layout.lane_d(0), 12.0))
    assert not [v for v in before.vehicles if v.role == "lead"]
    world = World(layout, [spawn], [], cruise_speed=12.0, seed=0)
    world.start(EgoView(ego_s, layout.lane_d(0), 12.0))
    (lead,) = [v for v in world.vehicles if v.role == "lead"]
    assert lead.s - lead.half_length - (ego_s + EGO_FRONT) == pytest.approx(40.0 + early * (1 - 9.0 / 12.0))


def test_braking_for_a_lead_not_yet_in_view_is_not_explained_by_it():
    """A straight drive at 10 m/s braking from t = 5 s for a lead the expert sees from then on:
    the first segment's braking is the lead's while the lead is in view, and not while it is not."""
    n = 1001
    t_us = START + 10_000 * np.arange(n, dtype=np.int64)
    t = np.arange(n) * 0.01
    speed = np.where(t < 5.0, 10.0, 10.0 - 1.0 * (t - 5.0))
    x = np.concatenate([[0.0], np.cumsum(0.5 * (speed[1:] + speed[:-1]) * 0.01)])
    xyz = np.stack([x, np.zeros(n), np.zeros(n)], -1)
    decisions = [("clear_road", "cruise") if ti < 5.0 else ("lead_vehicle", "follow") for ti in t]
    args = (t_us, xyz, np.zeros(n), speed, np.full(n, -1.75), decisions, ["follow_lead"] * n)
    seen = build_segments(*args, seed=0, lead_in_view=np.ones(n, bool))
    assert (seen[0].cause, seen[0].longitudinal) == ("lead_vehicle", "decelerate")
    assert build_segments(*args, seed=0) == seen  # in view by default
    unseen = build_segments(*args, seed=0, lead_in_view=t >= 5.0)
    assert (unseen[0].cause, unseen[0].longitudinal, unseen[0].t_start_us) == ("clear_road", "decelerate", START)
    assert unseen[-1].cause == "lead_vehicle"
