"""The road network of a drive, its static map, and the world that steps around the ego.

One long main road follows a reference centre line (the solid yellow line) built from
clothoid-like pieces of linearly varying curvature. Everything on it is addressed in road
(Frenet) coordinates: `s` along the centre line, `d` to its left. Traffic drives on the right:
the ego direction's lanes have `d < 0` (lane 0 next to the centre line, lane n-1 at the edge),
the oncoming lanes `d > 0`. Cross roads meet the main road at right angles on straight pieces.

`World` holds the dynamic state (agents, traffic lights) and is stepped with the ego's road
coordinates; the ego itself is a separate policy (sim.expert or a learned one).
"""

from dataclasses import dataclass, field

import numpy as np

from sim.agents import EGO_FRONT, IDM, VEHICLE_COLORS, VEHICLE_SIZES, CrossVehicle, Pedestrian, Vehicle
from sim.scene import Box, GroundPolygon, StaticMap, TrafficLight

LANE_WIDTH = 3.5
SIDEWALK_WIDTH = 3.0
GRASS_WIDTH = 25.0
CROSS_HALF_WIDTH = 7.0  # cross roads: two lanes each way
CROSSWALK_WIDTH = 4.0
STOP_LINE_GAP = 1.0  # between the stop line and the crosswalk before an intersection
QUAD_LENGTH = 8.0  # road surface pieces along s
GRASS_PIECE = 40.0  # grass strips are cut into pieces this long, each as wide as the bend allows
DASH, GAP = 3.0, 9.0  # dashed lane lines
LINE_WIDTH = 0.15
GRID_STEP = 0.5  # sampling of the reference line


class RoadPath:
    """The main road's centre line sampled every 0.5 m: position, heading and curvature by s."""

    def __init__(self, pieces: list[tuple[float, float, float]]):
        """`pieces`: (length, curvature at start, curvature at end), curvature varying linearly."""
        kappa = [np.zeros(1)]
        for length, k0, k1 in pieces:
            n = max(int(round(length / GRID_STEP)), 1)
            kappa.append(np.linspace(k0, k1, n + 1)[1:])
        self.kappa = np.concatenate(kappa)
        self.s = np.arange(len(self.kappa)) * GRID_STEP
        mid_k = 0.5 * (self.kappa[1:] + self.kappa[:-1])
        self.heading = np.concatenate([[0.0], np.cumsum(mid_k * GRID_STEP)])
        mid_h = 0.5 * (self.heading[1:] + self.heading[:-1])
        step = GRID_STEP * np.stack([np.cos(mid_h), np.sin(mid_h)], -1)
        self.xy = np.concatenate([np.zeros((1, 2)), np.cumsum(step, axis=0)])

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def curvature(self, s):
        return np.interp(s, self.s, self.kappa)

    def heading_at(self, s):
        return np.interp(s, self.s, self.heading)

    def pose(self, s, d):
        """World xy (..., 2) and heading of the point `d` to the left of the centre line at `s`."""
        s = np.asarray(s, dtype=np.float64)
        h = np.interp(s, self.s, self.heading)
        x = np.interp(s, self.s, self.xy[:, 0]) - np.sin(h) * d
        y = np.interp(s, self.s, self.xy[:, 1]) + np.cos(h) * d
        return np.stack([x, y], -1), h

    def project(self, xy) -> tuple[float, float]:
        """Road coordinates (s, d) of a world point (nearest centre-line sample, refined)."""
        xy = np.asarray(xy, dtype=np.float64)
        i = int(np.argmin(np.sum((self.xy - xy) ** 2, axis=1)))
        h = self.heading[i]
        delta = xy - self.xy[i]
        ds = delta[0] * np.cos(h) + delta[1] * np.sin(h)
        dd = -delta[0] * np.sin(h) + delta[1] * np.cos(h)
        return float(self.s[i] + ds), float(dd)


@dataclass(frozen=True)
class Intersection:
    """A cross road centred at `s`; the ego direction's stop line lies before it."""

    light_id: str
    s: float
    red: bool  # the ego direction's light starts red (a red_light scenario) or stays green
    wait_s: float = 4.0  # a red light turns green once the ego has waited this long at it

    @property
    def stop_s(self) -> float:
        return self.s - CROSS_HALF_WIDTH - CROSSWALK_WIDTH - STOP_LINE_GAP

    @property
    def oncoming_stop_s(self) -> float:
        return self.s + CROSS_HALF_WIDTH + CROSSWALK_WIDTH + STOP_LINE_GAP

    @property
    def span(self) -> tuple[float, float]:
        """The stretch of main road without kerbside markings, sidewalk or grass."""
        return self.s - CROSS_HALF_WIDTH - CROSSWALK_WIDTH, self.s + CROSS_HALF_WIDTH + CROSSWALK_WIDTH


@dataclass(frozen=True)
class Crosswalk:
    """A zebra crossing of the whole main road, `s` at its centre."""

    s: float

    @property
    def span(self) -> tuple[float, float]:
        return self.s - CROSSWALK_WIDTH / 2, self.s + CROSSWALK_WIDTH / 2


@dataclass(frozen=True)
class TurnOnlyLane:
    """Lane `lane` (of the ego direction) turns `side` only at the intersection whose stop line
    is at `stop_s`; solid line and arrows over the last `length` metres."""

    lane: int
    side: str  # "left" or "right"
    stop_s: float
    length: float = 45.0


@dataclass
class RoadLayout:
    """The main road, its lanes and its features."""

    path: RoadPath
    n_lanes: int  # per direction
    intersections: list[Intersection] = field(default_factory=list)
    crosswalks: list[Crosswalk] = field(default_factory=list)
    turn_only: list[TurnOnlyLane] = field(default_factory=list)

    @property
    def half_width(self) -> float:
        return self.n_lanes * LANE_WIDTH

    def lane_d(self, lane: int, oncoming: bool = False) -> float:
        """Centre offset of a lane (0 = next to the centre line)."""
        d = (lane + 0.5) * LANE_WIDTH
        return d if oncoming else -d

    def lane_of(self, d: float) -> int:
        """The ego-direction lane containing offset `d` (clipped to the road)."""
        return min(max(int(-d // LANE_WIDTH), 0), self.n_lanes - 1)


# ---------------------------------------------------------------- static map


def _strip(path: RoadPath, s0: float, s1: float, d0: float, d1: float, kind: str) -> list[GroundPolygon]:
    """Quads covering s0..s1 between offsets d0 < d1, one per QUAD_LENGTH (counter-clockwise)."""
    n = max(int(np.ceil((s1 - s0) / QUAD_LENGTH)), 1)
    s = np.linspace(s0, s1, n + 1)
    right, _ = path.pose(s, d0)
    left, _ = path.pose(s, d1)
    return [GroundPolygon(np.array([right[i], right[i + 1], left[i + 1], left[i]]), kind) for i in range(n)]


def _free_spans(s0: float, s1: float, holes: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """[s0, s1] minus the holes."""
    spans, cur = [], s0
    for a, b in sorted(holes):
        if b <= cur or a >= s1:
            continue
        if a > cur:
            spans.append((cur, a))
        cur = max(cur, b)
    if cur < s1:
        spans.append((cur, s1))
    return spans


def _dashes(path, s0, s1, d, kind) -> list[GroundPolygon]:
    out = []
    s = s0 + GAP / 2
    while s + DASH <= s1:
        out += _strip(path, s, s + DASH, d - LINE_WIDTH / 2, d + LINE_WIDTH / 2, kind)
        s += DASH + GAP
    return out


def _solid(path, s0, s1, d, kind) -> list[GroundPolygon]:
    return _strip(path, s0, s1, d - LINE_WIDTH / 2, d + LINE_WIDTH / 2, kind)


def _local_quad(origin, heading, x0, x1, y0, y1) -> np.ndarray:
    """A rectangle in a local frame (x along heading) -> world corners, counter-clockwise."""
    c, s = np.cos(heading), np.sin(heading)
    pts = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    return np.asarray(origin) + pts @ np.array([[c, s], [-s, c]])


def _arrow(path: RoadPath, s: float, d: float, side: str) -> list[GroundPolygon]:
    """A turn arrow painted in a lane: a shaft along the lane and a head pointing to `side`."""
    (origin,), (h,) = path.pose(np.array([s]), d)
    sign = 1.0 if side == "left" else -1.0
    shaft = _local_quad(origin, h, -4.5, 1.5, -0.2, 0.2)
    bend = _local_quad(origin, h, 1.0, 1.5, *sorted((0.0, sign * 0.9)))
    tip = np.array([[0.45, sign * 0.9], [2.05, sign * 0.9], [1.25, sign * 1.5]])
    c, s_ = np.cos(h), np.sin(h)
    tip = origin + tip @ np.array([[c, s_], [-s_, c]])
    if sign < 0:  # keep every polygon counter-clockwise
        tip = tip[::-1]
    return [GroundPolygon(p, "marking_white") for p in (shaft, bend, tip)]


def _zebra(path: RoadPath, s_lo: float, s_hi: float, half_width: float) -> list[GroundPolygon]:
    out = []
    d = -half_width + 0.4
    while d + 0.5 <= half_width - 0.2:
        out += _strip(path, s_lo, s_hi, d, d + 0.5, "crosswalk")
        d += 1.1
    return out


def _cross_road(layout: RoadLayout, x: Intersection) -> list[GroundPolygon]:
    """The cross road's surface, sidewalks, centre and edge lines on both sides of the main road."""
    path, hw = layout.path, layout.half_width
    (origin,), (h,) = path.pose(np.array([x.s]), 0.0)
    normal = h + np.pi / 2  # the cross road's local x axis points to the main road's left
    reach = hw + SIDEWALK_WIDTH + GRASS_WIDTH
    out = [GroundPolygon(_local_quad(origin, normal, -reach, reach, -CROSS_HALF_WIDTH, CROSS_HALF_WIDTH), "road")]
    for lo, hi in ((-reach, -hw), (hw, reach)):  # the sidewalks reach the main road's kerb
        for y0, y1 in ((-CROSS_HALF_WIDTH - SIDEWALK_WIDTH, -CROSS_HALF_WIDTH), (CROSS_HALF_WIDTH, CROSS_HALF_WIDTH + SIDEWALK_WIDTH)):
            out.append(GroundPolygon(_local_quad(origin, normal, lo, hi, y0, y1), "sidewalk"))
    for lo, hi in ((-reach, -hw - SIDEWALK_WIDTH), (hw + SIDEWALK_WIDTH, reach)):
        out.append(GroundPolygon(_local_quad(origin, normal, lo, hi, -0.1, 0.1), "marking_yellow"))
    return out


def _light_fixture(layout: RoadLayout, x: Intersection) -> tuple[TrafficLight, list[Box]]:
    """The ego direction's signal head on a mast arm at the far side of the intersection."""
    path, hw = layout.path, layout.half_width
    s_far = x.s + CROSS_HALF_WIDTH + 1.0
    (pole_xy,), (h,) = path.pose(np.array([s_far]), -hw - 1.0)
    (head_xy,), _ = path.pose(np.array([s_far]), -hw / 2)
    (arm_xy,), _ = path.pose(np.array([s_far]), -(hw + 1.0) / 2 - hw / 4)
    stop, _ = path.pose(np.array([x.stop_s, x.stop_s]), np.array([-hw, 0.0]))
    light = TrafficLight(x.light_id, (float(head_xy[0]), float(head_xy[1])), 5.6, float(h),
                         ((float(stop[0, 0]), float(stop[0, 1])), (float(stop[1, 0]), float(stop[1, 1]))))
    grey = (90, 90, 90)
    boxes = [
        Box((float(pole_xy[0]), float(pole_xy[1]), 3.2), (0.3, 0.3, 6.4), float(h), grey, "pole"),
        Box((float(arm_xy[0]), float(arm_xy[1]), 6.3), (0.25, hw / 2 + 1.2, 0.25), float(h), grey, "pole"),
        Box((float(head_xy[0]), float(head_xy[1]), 5.6), (0.45, 0.45, 1.2), float(h), (30, 30, 30), "light_head"),
    ]
    return light, boxes


def _room(path: RoadPath, s0: float, s1: float, side: float) -> float:
    """How far from the centre line a roadside strip on `side` (+1 left) may reach over s0..s1:
    short of the centre of curvature on the inside of a bend."""
    i0, i1 = np.searchsorted(path.s, [s0, s1])
    inward = side * path.kappa[max(i0 - 1, 0) : i1 + 1]
    return 0.8 / inward.max() if inward.size and inward.max() > 0 else np.inf


def _roadside(layout: RoadLayout, s0: float, s1: float, holes, rng: np.random.Generator) -> list[Box]:
    """Buildings, trees and street lamps along both sides, away from cross roads."""
    path, hw = layout.path, layout.half_width
    boxes = []
    for side in (-1.0, 1.0):
        s = s0 + rng.uniform(0, 10)
        while s < s1:
            if any(a - 8 < s < b + 8 for a, b in holes):
                s += 6.0
                continue
            if rng.random() < 0.55:
                depth, width, height = rng.uniform(8, 16), rng.uniform(10, 22), rng.uniform(6, 25)
                if hw + SIDEWALK_WIDTH + 4 + depth > _room(path, s - width, s + width, side):
                    s += width  # no room on the inside of a bend
                    continue
                d = side * (hw + SIDEWALK_WIDTH + 4 + depth / 2)
                (xy,), (h,) = path.pose(np.array([s]), d)
                shade = int(rng.integers(110, 210))
                color = (shade, int(shade * rng.uniform(0.8, 1.0)), int(shade * rng.uniform(0.7, 1.0)))
                boxes.append(Box((float(xy[0]), float(xy[1]), height / 2), (width, depth, height), float(h), color, "building"))
                s += width + rng.uniform(3, 10)
            else:
                d = side * (hw + SIDEWALK_WIDTH + rng.uniform(1.5, 3.5))
                (xy,), (h,) = path.pose(np.array([s]), d)
                size = rng.uniform(2.0, 4.0)
                green = (int(rng.integers(30, 70)), int(rng.integers(100, 150)), int(rng.integers(30, 70)))
                boxes.append(Box((float(xy[0]), float(xy[1]), 1.5 + size / 2), (size, size, size + 1.5), 0.0, green, "tree"))
                s += rng.uniform(6, 14)
        for s in np.arange(s0 + 15.0, s1, 35.0):
            if any(a - 3 < s < b + 3 for a, b in holes):
                continue
            (xy,), (h,) = path.pose(np.array([s]), side * (hw + 0.6))
            boxes.append(Box((float(xy[0]), float(xy[1]), 3.5), (0.2, 0.2, 7.0), float(h), (100, 100, 100), "pole"))
            (lamp,), _ = path.pose(np.array([s]), side * (hw - 0.6))
            boxes.append(Box((float(lamp[0]), float(lamp[1]), 7.0), (0.6, 0.4, 0.2), float(h), (255, 236, 180), "lamp", True))
    return boxes


def build_static_map(layout: RoadLayout, s0: float, s1: float, seed: int) -> StaticMap:
    """Ground polygons, boxes and signals of the main road between s0 and s1."""
    path, hw, n = layout.path, layout.half_width, layout.n_lanes
    rng = np.random.default_rng(seed)
    xs = [x for x in layout.intersections if s0 - 30 < x.s < s1 + 30]
    cws = [c for c in layout.crosswalks if s0 - 10 < c.s < s1 + 10]
    x_holes = [x.span for x in xs]
    kerb_holes = [(x.s - CROSS_HALF_WIDTH - SIDEWALK_WIDTH, x.s + CROSS_HALF_WIDTH + SIDEWALK_WIDTH) for x in xs]
    line_holes = x_holes + [c.span for c in cws]
    ground: list[GroundPolygon] = []
    for a, b in _free_spans(s0, s1, kerb_holes):
        for side in (-1.0, 1.0):
            for c in np.arange(a, b, GRASS_PIECE):  # narrower inside tight bends
                e = min(c + GRASS_PIECE, b)
                reach = min(hw + SIDEWALK_WIDTH + GRASS_WIDTH, _room(path, c, e, side))
                if reach > hw + SIDEWALK_WIDTH:
                    lo, hi = sorted((side * (hw + SIDEWALK_WIDTH), side * reach))
                    ground += _strip(path, c, e, lo, hi, "grass")
            lo, hi = sorted((side * hw, side * (hw + SIDEWALK_WIDTH)))
            ground += _strip(path, a, b, lo, hi, "sidewalk")
    ground += _strip(path, s0, s1, -hw, hw, "road")
    for x in xs:
        ground += _cross_road(layout, x)
    solid_spans = {t.lane: [] for t in layout.turn_only}
    for t in layout.turn_only:
        solid_spans[t.lane].append((t.stop_s - t.length, t.stop_s))
    for a, b in _free_spans(s0, s1, line_holes):
        ground += _solid(path, a, b, 0.0, "marking_yellow")
        for side in (-1.0, 1.0):
            ground += _solid(path, a, b, side * (hw - 0.3), "marking_white")
            for k in range(1, n):
                if side > 0:
                    ground += _dashes(path, a, b, k * LANE_WIDTH, "marking_white")
                    continue
                # the line between ego lanes k-1 and k is solid along a turn-only stretch of either
                solid = solid_spans.get(k, []) + solid_spans.get(k - 1, [])
                for c, e in _free_spans(a, b, solid):
                    ground += _dashes(path, c, e, -k * LANE_WIDTH, "marking_white")
                for c, e in solid:
                    if c < b and e > a:
                        ground += _solid(path, max(a, c), min(b, e), -k * LANE_WIDTH, "marking_white")
    for t in layout.turn_only:
        if s0 < t.stop_s < s1 + t.length:
            for back in (6.0, t.length - 8.0):
                ground += _arrow(path, t.stop_s - back, layout.lane_d(t.lane), t.side)
    lights, boxes = [], []
    for x in xs:
        ground += _strip(path, x.stop_s - 0.4, x.stop_s, -hw, 0.0, "stop_line")
        ground += _strip(path, x.oncoming_stop_s, x.oncoming_stop_s + 0.4, 0.0, hw, "stop_line")
        for lo in (x.s - CROSS_HALF_WIDTH - CROSSWALK_WIDTH, x.s + CROSS_HALF_WIDTH):
            ground += _zebra(path, lo, lo + CROSSWALK_WIDTH - 0.5, hw)
        light, fixture = _light_fixture(layout, x)
        lights.append(light)
        boxes += fixture
    for c in cws:
        ground += _zebra(path, *c.span, hw)
    boxes += _roadside(layout, s0, s1, kerb_holes, rng)
    return StaticMap(ground=ground, boxes=boxes, lights=lights)


# ---------------------------------------------------------------- dynamic world

RED_FALLBACK_S = 25.0  # a red light turns green at the latest this long after the ego comes near
NEAR_RANGE = 60.0  # m between the ego's front and a stop line or crosswalk: "near"
WAIT_ZONE = 30.0  # m before a stop line where standing counts as waiting at it
STANDING_SPEED = 0.2  # m/s
ONCOMING_AHEAD = 180.0  # oncoming traffic appears this far ahead of the ego
ONCOMING_BEHIND = 40.0  # and leaves this far behind it
LEAD_LEAVES_AT_GAP = 70.0  # a released lead disappears beyond this gap
LEAVING_EXTRA_SPEED = 8.0  # m/s over the cruise speed, for a released lead
LEAVING_ACCEL = 2.5  # m/s^2
PASSED_LEAD_LEAVES = 40.0  # a passed lead disappears this far behind the ego
WAVE_ON_SPEED = 1.0  # m/s: a waiting pedestrian starts crossing once the ego has slowed below this


LEAD_SPAWN_EARLY = 100.0  # m of the ego's travel by which a slower vehicle comes into view early
# m ahead of the ego where a pedestrian comes into view: the 150 m at which the expert can start
# yielding plus the ego's travel over a clip's 6.4 s horizon at any cruise speed (sim.expert
# reacts to an agent only once it has been in view that long)
PEDESTRIAN_VIEW_AHEAD = 250.0


@dataclass(frozen=True)
class LeadSpawn:
    """A slower vehicle placed `gap` ahead of the ego's front, in `lane`, once the ego reaches
    `trigger_s`; released (it speeds up and leaves) once the ego passes `release_s`.

    The world brings it into view LEAD_SPAWN_EARLY metres of the ego's travel earlier (less at
    the start of a drive), farther ahead by what the ego gains on it meanwhile at the cruise
    speed: it stands about where it would have been, but is in the cameras' view seconds
    before the ego's braking for it begins (the expert reacts to it only after a clip's 6.4 s
    horizon, which the ego's travel over LEAD_SPAWN_EARLY outlasts at any cruise speed), so
    that a clip's future brakes only for a vehicle that its images show."""

    trigger_s: float
    gap: float
    lane: int
    speed: float
    release_s: float
    overtake: bool = False  # the ego passes it (lane_change_pass) instead of following it


@dataclass(frozen=True)
class EgoView:
    """What the world needs to know about the ego: road coordinates and speed."""

    s: float
    d: float
    v: float

    @property
    def front(self) -> float:
        return self.s + EGO_FRONT


@dataclass
class _Track:
    k0: int
    kind: str
    size: tuple[float, float, float]
    color: tuple[int, int, int]
    rows: list = field(default_factory=list)  # (s, d, yaw relative to the road)


class World:
    """Agents and traffic lights around the ego, stepped at a fixed rate.

    The ego is not part of it: any policy (sim.expert.Expert, or a learned one in closed loop)
    keeps its own state and calls `start(EgoView)` once, then `step(dt, EgoView)` after each of
    its own steps; a world-frame ego pose gives its road coordinates by `layout.path.project`.

    Lights: a red-light intersection is red until the ego has waited `wait_s` at it (or
    RED_FALLBACK_S after it came near) and the cross road is clear; then green for good. Other
    intersections are green. Cross traffic passes while the light is red. Pedestrians wait at
    the kerb until the ego comes close or slows down, then cross.
    """

    def __init__(self, layout: RoadLayout, leads: list[LeadSpawn], pedestrians: list[Pedestrian],
                 cruise_speed: float, seed: int):
        self.layout = layout
        self.cruise_speed = cruise_speed
        self.rng = np.random.default_rng(seed)
        self.idm = IDM()
        self.idm_leaving = IDM(a_max=LEAVING_ACCEL)
        self.k = 0
        self.t = 0.0
        self.light_state = {x.light_id: ("red" if x.red else "green") for x in layout.intersections}
        self.light_changes = {i: [(0, s)] for i, s in self.light_state.items()}
        self._waited = {x.light_id: 0.0 for x in layout.intersections}
        self._near_since: dict[str, float] = {}
        self._next_cross = {x.light_id: 0.0 for x in layout.intersections}
        self._pending_leads = sorted(leads, key=lambda l: l.trigger_s)
        self._pending_peds = sorted(pedestrians, key=lambda p: p.s)
        self._next_oncoming = 0.0
        self._serial = 0
        self.vehicles: list[Vehicle] = []
        self.cross: list[CrossVehicle] = []
        self.pedestrians: list[Pedestrian] = []
        self.tracks: dict[str, _Track] = {}
        self._appeared: dict[str, float] = {}  # time each slower vehicle and pedestrian came into view

    # -------------------------------------------------------------- queries

    def red_stop_lines(self, direction: int = 1) -> list[tuple[float, Intersection]]:
        """Stop lines (s) of red lights for traffic travelling `direction`."""
        return [(x.stop_s if direction > 0 else x.oncoming_stop_s, x)
                for x in self.layout.intersections if self.light_state[x.light_id] != "green"]

    def blocked_crosswalks(self, direction: int = 1) -> list[tuple[float, Pedestrian]]:
        """The near edge (s) of each crosswalk a pedestrian is using, for `direction` traffic."""
        hw = self.layout.half_width
        out = []
        for p in self.pedestrians:
            if p.blocks(direction, hw):
                edge = p.s - CROSSWALK_WIDTH / 2 if direction > 0 else p.s + CROSSWALK_WIDTH / 2
                out.append((edge, p))
        return out

    def in_view_for(self, agent: Vehicle | Pedestrian) -> float:
        """Seconds since a slower vehicle or a pedestrian came into view (infinite for one there
        from the start)."""
        return self.t - self._appeared.get(agent.agent_id, -np.inf)

    def leader(self, s_front: float, d: float, direction: int = 1, exclude: object = None):
        """The nearest vehicle ahead of `s_front` overlapping lateral offset `d`: (gap, vehicle)."""
        best = None
        for v in self.vehicles:
            if v is exclude or v.direction != direction or abs(v.d - d) > 1.6:
                continue
            gap = direction * (v.s - s_front) - v.half_length
            if gap > -v.size[0] and (best is None or gap < best[0]):
                best = (gap, v)
        return best

    # -------------------------------------------------------------- stepping

    def start(self, ego: EgoView) -> None:
        """Place the agents around the ego's starting point and record the first state."""
        self._spawn(ego)
        self._appeared.clear()  # what is there at the start has been in view since before it
        self._record()

    def step(self, dt: float, ego: EgoView) -> None:
        """Advance lights, spawns and agents by `dt` given the ego's current state."""
        self._update_lights(dt, ego)
        self._spawn(ego)
        for p in self.pedestrians:
            if not p.walking and (ego.front >= p.trigger_s or ego.v < WAVE_ON_SPEED and p.s - ego.front < NEAR_RANGE):
                p.walking = True
            p.step(dt)
        for c in self.cross:
            c.d += c.direction * c.v * dt
        self._move_vehicles(dt, ego)
        self._despawn(ego)
        self.k += 1
        self.t += dt
        self._record()

    def _update_lights(self, dt: float, ego: EgoView) -> None:
        hw = self.layout.half_width
        for x in self.layout.intersections:
            if self.light_state[x.light_id] == "green":
                continue
            to_line = x.stop_s - ego.front
            if to_line < NEAR_RANGE:
                self._near_since.setdefault(x.light_id, self.t)
            if ego.v < STANDING_SPEED and -1.0 < to_line < WAIT_ZONE:
                self._waited[x.light_id] += dt
            waited = self._waited[x.light_id] >= x.wait_s
            late = x.light_id in self._near_since and self.t - self._near_since[x.light_id] > RED_FALLBACK_S
            clear = not any(abs(c.s - x.s) < CROSS_HALF_WIDTH and abs(c.d) < hw + 3.0 for c in self.cross)
            if (waited or late) and clear:
                self.light_state[x.light_id] = "green"
                self.light_changes[x.light_id].append((self.k + 1, "green"))

    def _new_id(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}-{self._serial:04d}"

    def _look(self) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
        """A colour and a body (length, width, height) for a new vehicle."""
        return (VEHICLE_COLORS[int(self.rng.integers(len(VEHICLE_COLORS)))],
                VEHICLE_SIZES[int(self.rng.integers(len(VEHICLE_SIZES)))])

    def _spawn(self, ego: EgoView) -> None:
        lay = self.layout
        while self._pending_leads and ego.s >= self._pending_leads[0].trigger_s - LEAD_SPAWN_EARLY:
            spawn = self._pending_leads.pop(0)
            early = max(spawn.trigger_s - ego.s, 0.0)  # metres before its trigger
            gap = spawn.gap + early * (1.0 - spawn.speed / self.cruise_speed)
            color, size = self._look()
            role = "overtake" if spawn.overtake else "lead"
            lead = Vehicle(self._new_id("veh"), 0.0, lay.lane_d(spawn.lane), spawn.speed, spawn.speed, 1, color,
                           role, size, release_s=spawn.release_s)
            lead.s = ego.front + gap + lead.half_length
            self.vehicles.append(lead)
            self._appeared[lead.agent_id] = self.t
        while self._pending_peds and self._pending_peds[0].s < ego.s + PEDESTRIAN_VIEW_AHEAD:
            self.pedestrians.append(self._pending_peds.pop(0))
            self._appeared[self.pedestrians[-1].agent_id] = self.t
        if self.t >= self._next_oncoming:
            self._next_oncoming = self.t + float(self.rng.uniform(3.0, 9.0))
            lane = int(self.rng.integers(lay.n_lanes))
            s = ego.s + ONCOMING_AHEAD
            d = lay.lane_d(lane, oncoming=True)
            near = any(v.direction < 0 and abs(v.d - d) < 1.0 and abs(v.s - s) < 25.0 for v in self.vehicles)
            in_junction = any(abs(s - x.s) < 25.0 for x in lay.intersections)
            if not near and not in_junction and s < lay.path.length:
                speed = float(self.rng.uniform(0.7, 1.0)) * self.cruise_speed
                color, size = self._look()
                self.vehicles.append(Vehicle(self._new_id("veh"), s, d, speed, speed, -1, color, "oncoming", size))
        reach = lay.half_width + SIDEWALK_WIDTH + GRASS_WIDTH
        for x in lay.intersections:
            if self.light_state[x.light_id] == "green" or not (-5.0 < x.stop_s - ego.front < 200.0):
                continue
            if self._waited[x.light_id] > x.wait_s - 3.0 or self.t < self._next_cross[x.light_id]:
                continue
            self._next_cross[x.light_id] = self.t + float(self.rng.uniform(3.5, 6.5))
            direction = 1 if self.rng.random() < 0.5 else -1
            lane_s = x.s + direction * LANE_WIDTH * (0.5 + int(self.rng.integers(2)))
            color, size = self._look()
            self.cross.append(CrossVehicle(self._new_id("veh"), lane_s, -direction * reach, float(self.rng.uniform(8.0, 12.0)),
                                           direction, color, size))

    def _move_vehicles(self, dt: float, ego: EgoView) -> None:
        stops = {1: self.red_stop_lines(1), -1: self.red_stop_lines(-1)}
        walks = {1: self.blocked_crosswalks(1), -1: self.blocked_crosswalks(-1)}
        accels = []
        for v in self.vehicles:
            idm = self.idm
            if v.role == "lead" and ego.s > v.release_s:  # drive off briskly, out of the next scenario's way
                v.v_desired, idm = self.cruise_speed + LEAVING_EXTRA_SPEED, self.idm_leaving
            front = v.s + v.direction * v.half_length
            a = idm.accel(v.v, v.v_desired)
            lead = self.leader(front, v.d, v.direction, exclude=v)
            if lead is not None:
                a = min(a, idm.accel(v.v, v.v_desired, lead[0], v.v - lead[1].v))
            if v.direction > 0 and v.d < 0 and abs(v.d - ego.d) < 1.6 and ego.s > v.s:
                gap = ego.s - 1.0 - front
                a = min(a, idm.accel(v.v, v.v_desired, gap, v.v - ego.v))
            for line, _ in stops[v.direction] + walks[v.direction]:
                gap = v.direction * (line - front)
                if gap > -0.5:
                    a = min(a, idm.accel(v.v, v.v_desired, gap, v.v))
            accels.append(a)
        for v, a in zip(self.vehicles, accels):
            v.v = max(0.0, v.v + min(max(a, -6.0), 2.5) * dt)
            v.s += v.direction * v.v * dt

    def _despawn(self, ego: EgoView) -> None:
        reach = self.layout.half_width + SIDEWALK_WIDTH + GRASS_WIDTH

        def keep(v: Vehicle) -> bool:
            if v.direction < 0:
                return v.s > ego.s - ONCOMING_BEHIND
            if v.role == "lead" and ego.s > v.release_s:
                return v.s - ego.s < LEAD_LEAVES_AT_GAP
            return v.s > ego.s - PASSED_LEAD_LEAVES

        self.vehicles = [v for v in self.vehicles if keep(v)]
        self.cross = [c for c in self.cross if abs(c.d) <= reach]
        self.pedestrians = [p for p in self.pedestrians if p.s > ego.s - 30.0]

    def _record(self) -> None:
        for kind, agents in (("vehicle", self.vehicles), ("vehicle", self.cross), ("pedestrian", self.pedestrians)):
            for a in agents:
                track = self.tracks.get(a.agent_id)
                if track is None:
                    track = self.tracks[a.agent_id] = _Track(self.k, kind, a.size, a.color)
                track.rows.append((a.s, a.d, a.yaw_rel))
