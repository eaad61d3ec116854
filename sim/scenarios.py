"""Scenario families and the route of a drive: consecutive scenario instances on one road.

Each instance owns a stretch of the main road [s_start, s_end) and puts its cue on it: a red
light, a slower lead vehicle, a turn-only lane, a sharp curve, a pedestrian at a crosswalk, or
nothing (cruise). Stretches are sized for the drive's cruise speed so that an instance lasts
about 15-30 s.
"""

import bisect
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from sim.agents import CLOTHES_COLORS, Pedestrian
from sim.world import (CROSS_HALF_WIDTH, CROSSWALK_WIDTH, LANE_WIDTH, STOP_LINE_GAP, Crosswalk, Intersection,
                       LeadSpawn, RoadLayout, RoadPath, TurnOnlyLane)

FAMILIES = ("red_light", "follow_lead", "lane_change_pass", "turn_only_lane", "curve", "pedestrian", "cruise")
EGO_START_S = 30.0
LEAD_IN = 60.0  # straight road before the first instance
RELEASE_BEFORE_END = 150.0  # a followed lead drives off this far before its instance ends
_JUNCTION = CROSS_HALF_WIDTH + CROSSWALK_WIDTH + STOP_LINE_GAP  # stop line to intersection centre


@dataclass(frozen=True)
class Instance:
    """One scenario instance: its family, its stretch of road and where its cue is."""

    family: str
    s_start: float
    s_end: float
    cue_s: float  # the stop line, crosswalk, curve entry, ... (s of the main road)
    curve: tuple[float, float] | None = None  # s range of the curve (entry clothoid start, exit end)
    intersection: Intersection | None = None
    turn_only: TurnOnlyLane | None = None
    crosswalk: Crosswalk | None = None


@dataclass
class Route:
    """The road layout, the scenario instances along it and the agents they bring."""

    layout: RoadLayout
    instances: list[Instance]
    leads: list[LeadSpawn]
    pedestrians: list[Pedestrian]
    cruise_speed: float
    home_lane: int

    def instance_at(self, s: float) -> Instance:
        return self.instances[max(bisect.bisect_right(self._starts, s) - 1, 0)]

    def __post_init__(self):
        self._starts = [i.s_start for i in self.instances]


class _Builder:
    """Appends road pieces and features instance by instance."""

    def __init__(self, rng: np.random.Generator, n_lanes: int, cruise: float):
        self.rng = rng
        self.n_lanes = n_lanes
        self.cruise = cruise
        self.home = n_lanes - 1
        self.pieces: list[tuple[float, float, float]] = [(LEAD_IN, 0.0, 0.0)]
        self.s = LEAD_IN
        self.heading = 0.0
        self.instances: list[Instance] = []
        self.intersections: list[Intersection] = []
        self.crosswalks: list[Crosswalk] = []
        self.turn_only: list[TurnOnlyLane] = []
        self.leads: list[LeadSpawn] = []
        self.pedestrians: list[Pedestrian] = []

    def straight(self, length: float) -> None:
        self.pieces.append((length, 0.0, 0.0))
        self.s += length

    def bend(self, radius: float, angle: float, transition: float) -> tuple[float, float]:
        """A left (angle > 0) or right bend of `radius` with clothoid transitions; its s range."""
        k = np.sign(angle) / radius
        arc = max(abs(angle) * radius - transition, 1.0)
        start = self.s
        self.pieces += [(transition, 0.0, k), (arc, k, k), (transition, k, 0.0)]
        self.s += 2 * transition + arc
        self.heading += angle
        return start, self.s

    def side(self) -> float:
        """+1 (left) or -1 (right) for the next bend: back toward the start heading once the road
        has drifted, so that it never loops onto itself."""
        if abs(self.heading) > 0.3:
            return -float(np.sign(self.heading))
        return float(self.rng.choice([-1.0, 1.0]))

    def add(self, family: str, s_start: float, cue_s: float, **features) -> None:
        self.instances.append(Instance(family, s_start, self.s, cue_s, **features))

    # one method per family -------------------------------------------------

    def cruise_(self) -> None:
        s0, length = self.s, self.cruise * self.rng.uniform(15, 22)
        if self.rng.random() < 0.5:  # a gentle bend that needs no slowing down
            self.straight(length * 0.2)
            radius = self.rng.uniform(400, 800)
            self.bend(radius, self.side() * length * 0.4 / radius, 40.0)
            self.straight(max(s0 + length - self.s, 20.0))
        else:
            self.straight(length)
        self.add("cruise", s0, s0)

    def curve_(self) -> None:
        s0 = self.s
        self.straight(130.0)
        radius = self.rng.uniform(35, 70)
        angle = self.side() * np.radians(self.rng.uniform(50, 110))
        span = self.bend(radius, angle, 30.0)
        self.straight(90.0)
        self.add("curve", s0, span[0], curve=span)

    def red_light_(self) -> None:
        s0 = self.s
        approach = self.rng.uniform(150, 200)
        self.straight(approach + 2 * _JUNCTION + 100.0)
        x = Intersection(f"light-{len(self.intersections):03d}", s0 + approach + _JUNCTION, True,
                         float(self.rng.uniform(3.0, 7.0)))
        self.intersections.append(x)
        self.add("red_light", s0, x.stop_s, intersection=x)

    def follow_lead_(self) -> None:
        s0 = self.s
        speed = max(self.cruise - self.rng.uniform(3.0, 5.5), 5.0)
        length = speed * self.rng.uniform(22, 28) + RELEASE_BEFORE_END
        self.straight(length)
        self.leads.append(LeadSpawn(s0 + 5.0, float(self.rng.uniform(35, 55)), self.home, float(speed),
                                    s0 + length - RELEASE_BEFORE_END))
        self.add("follow_lead", s0, s0 + 5.0)

    def lane_change_pass_(self) -> None:
        s0 = self.s
        speed = max(self.cruise - self.rng.uniform(4.0, 6.0), 5.0)
        self.straight(self.cruise * 27 + 40.0)
        self.leads.append(LeadSpawn(s0 + 5.0, float(self.rng.uniform(35, 50)), self.home, float(speed),
                                    float("inf"), overtake=True))
        self.add("lane_change_pass", s0, s0 + 5.0)

    def turn_only_lane_(self) -> None:
        s0 = self.s
        approach = self.rng.uniform(200, 240)
        self.straight(approach + 2 * _JUNCTION + 120.0)
        x = Intersection(f"light-{len(self.intersections):03d}", s0 + approach + _JUNCTION, False)
        t = TurnOnlyLane(self.home, "right", x.stop_s)
        self.intersections.append(x)
        self.turn_only.append(t)
        self.add("turn_only_lane", s0, x.stop_s - t.length, intersection=x, turn_only=t)

    def pedestrian_(self) -> None:
        s0 = self.s
        approach = self.rng.uniform(150, 190)
        self.straight(approach + 90.0)
        cw = Crosswalk(s0 + approach)
        edge = self.n_lanes * LANE_WIDTH + 1.5  # on the sidewalk at the kerb
        side = 1.0 if self.rng.random() < 0.6 else -1.0  # +1: starts on the ego's side (right)
        self.pedestrians.append(Pedestrian(
            f"ped-{len(self.pedestrians):04d}", cw.s + float(self.rng.uniform(-1.0, 1.0)), -side * edge, side * edge,
            float(self.rng.uniform(1.1, 1.5)), cw.s - float(self.rng.uniform(12, 16)),
            CLOTHES_COLORS[int(self.rng.integers(len(CLOTHES_COLORS)))]))
        self.crosswalks.append(cw)
        self.add("pedestrian", s0, cw.span[0], crosswalk=cw)


def plan_route(seed: int, length: float, families: Sequence[str] | None = None) -> Route:
    """A road of at least `length` metres past the ego's start, made of scenario instances."""
    families = tuple(families) if families else FAMILIES
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown scenario families {unknown}; choose from {list(FAMILIES)}")
    rng = np.random.default_rng([seed, 7])
    n_lanes = int(rng.choice([2, 3]))
    cruise = float(rng.uniform(11.0, 15.0))
    b = _Builder(rng, n_lanes, cruise)
    while not b.instances or b.s < EGO_START_S + length:
        # shuffled rounds of all families, so that each appears within a few minutes
        for i in rng.permutation(len(families)):
            getattr(b, f"{families[i]}_")()
            if b.s >= EGO_START_S + length:
                break
    b.straight(250.0)  # run-out beyond the last instance
    b.instances[0] = replace(b.instances[0], s_start=0.0)
    layout = RoadLayout(RoadPath(b.pieces), n_lanes, b.intersections, b.crosswalks, b.turn_only)
    b.instances[-1] = replace(b.instances[-1], s_end=layout.path.length)
    return Route(layout, b.instances, b.leads, b.pedestrians, cruise, b.home)
