"""The expert ego driver: one policy stepping in the world at 100 Hz, in road coordinates.

Longitudinal: the Intelligent Driver Model toward a target speed (the cruise speed, lowered
ahead of curves so that the lateral acceleration stays under A_LAT), against the most
constraining obstacle ahead (lead vehicle, red stop line, crosswalk in use), with a jerk limit
and a soft stop. Lateral: quintic lane changes between lane centres (overtaking a slower
vehicle, leaving a turn-only lane, returning to the home lane). Each step also yields the
decision's cause and phase, the scene truth behind the Chain-of-Causation texts.
"""

from dataclasses import dataclass, replace

import numpy as np

from schemas.contract import FUTURE_OFFSETS_US
from sim.agents import EGO_FRONT, EGO_REAR, IDM, Vehicle
from sim.scenarios import EGO_START_S, Route
from sim.world import EgoView, World

A_LAT = 1.8  # m/s^2, lateral acceleration planned for curves (reached with a small lag)
CURVE_DECEL = 1.0  # m/s^2, planned deceleration toward a curve's speed
CURVE_GAIN = 2.0  # 1/s, speed tracking gain ahead of and in curves
JERK = 2.5  # m/s^3, normal jerk limit
JERK_EMERGENCY = 8.0  # m/s^3, when the IDM asks for more than EMERGENCY braking
EMERGENCY = -3.5
A_MIN, A_MAX = -6.0, 2.0
STOPPING_SPEED = 0.3  # m/s: below it the ego either starts off or comes to a stop
START_ACCEL = 0.2  # m/s^2: the least commanded acceleration that starts the ego off
CREEP_STOP_DECEL = -0.3  # m/s^2, commanded when creeping toward an obstacle
BINDING = 0.3  # m/s^2: an obstacle that lowers the acceleration by more than this is the cause
OVERTAKE_GAP = 24.0  # m, start passing a slower vehicle this close
OVERTAKE_CLEARANCE = 8.0  # m between the passed vehicle's front and the ego's rear before returning
TURN_ONLY_REACT = 120.0  # m before the stop line, leave a turn-only lane
CROSSWALK_STANDOFF = 4.0  # m (plus the IDM's standstill gap) before a crosswalk in use
CLEAR_OF_JUNCTION = 25.0  # m past a stop line: through the intersection
LIGHT_RANGE = 150.0  # m, red stop lines and crosswalks in use are seen this far
LEAD_RANGE = 60.0  # m, a slower vehicle this close is the reason for the ego's speed
# s: the ego brakes for a slower vehicle or a pedestrian only once it has been in view this
# long, so that no clip's 6.4 s future slows down for an agent not yet in the clip's images
REACTION_S = FUTURE_OFFSETS_US[-1] / 1e6


@dataclass(frozen=True)
class Decision:
    """Why the ego does what it does at one step (truth for the reasoning text)."""

    cause: str  # sim.reasoning.CAUSES
    phase: str


@dataclass(frozen=True)
class LaneChange:
    t0: float
    d0: float
    d1: float
    duration: float

    def offset(self, t: float) -> tuple[float, float]:
        """Lateral offset and its rate at time t (quintic, zero rate and acceleration at both ends)."""
        tau = min(max((t - self.t0) / self.duration, 0.0), 1.0)
        delta = self.d1 - self.d0
        d = self.d0 + delta * (10 * tau**3 - 15 * tau**4 + 6 * tau**5)
        rate = delta * (30 * tau**2 - 60 * tau**3 + 30 * tau**4) / self.duration
        return d, rate


@dataclass(frozen=True)
class EgoState:
    """The ego in road coordinates: `u` is its speed along the lane, `d_rate` its lateral rate."""

    t: float
    s: float
    d: float
    u: float
    a: float = 0.0
    d_rate: float = 0.0
    lane_change: LaneChange | None = None
    reason: Decision | None = None  # of the lane change in progress

    @property
    def view(self) -> EgoView:
        return EgoView(self.s, self.d, float(np.hypot(self.u, self.d_rate)))


def curve_speed_profile(route: Route) -> np.ndarray:
    """Highest speed at each centre-line sample from which the curves ahead can be taken with
    lateral acceleration <= A_LAT while braking at CURVE_DECEL (a backward pass)."""
    path = route.layout.path
    d = route.layout.lane_d(route.home_lane)
    kappa = np.abs(path.kappa / (1 - path.kappa * d))
    limit = np.minimum(np.sqrt(A_LAT / np.maximum(kappa, 1e-6)), 1e3)
    out = limit.copy()
    step = 2 * CURVE_DECEL * (path.s[1] - path.s[0])
    for i in range(len(out) - 2, -1, -1):
        out[i] = min(out[i], np.sqrt(out[i + 1] ** 2 + step))
    return out


class Expert:
    """The rule-based expert driver of a route."""

    def __init__(self, route: Route, seed: int):
        self.route = route
        self.idm = IDM(a_max=1.5, b=2.0, headway=1.5, s0=2.5)
        self.rng = np.random.default_rng([seed, 11])
        self.v_curve = curve_speed_profile(route)
        self.overtaking: Vehicle | None = None  # the vehicle being passed

    def initial_state(self) -> EgoState:
        lay = self.route.layout
        return EgoState(0.0, EGO_START_S, lay.lane_d(self.route.home_lane), self.route.cruise_speed)

    # ------------------------------------------------------------------ lateral

    def _lane_change(self, ego: EgoState, lane: int, reason: Decision) -> EgoState:
        target = self.route.layout.lane_d(lane)
        duration = float(self.rng.uniform(4.5, 6.0))
        return replace(ego, lane_change=LaneChange(ego.t, ego.d, target, duration), reason=reason)

    def _plan_lateral(self, world: World, ego: EgoState) -> EgoState:
        lay, home = self.route.layout, self.route.home_lane
        if ego.lane_change is not None:
            if ego.t - ego.lane_change.t0 < ego.lane_change.duration:
                return ego
            ego = replace(ego, lane_change=None, reason=None, d=ego.lane_change.d1, d_rate=0.0)
        lane = lay.lane_of(ego.d)
        front = ego.s + EGO_FRONT
        if ego.u < 4.0:
            return ego
        for t in lay.turn_only:
            if t.lane == lane and 0.0 < t.stop_s - front < TURN_ONLY_REACT:
                target = lane - 1 if t.side == "right" else lane + 1
                return self._lane_change(ego, target, Decision("turn_only_lane", "avoid"))
        if self.overtaking is not None:
            v = self.overtaking
            gone = all(w is not v for w in world.vehicles)
            if gone or ego.s - EGO_REAR > v.s + v.half_length + OVERTAKE_CLEARANCE:
                self.overtaking = None
                if lane != home:  # the same observable cause as any return: the right lane is clear
                    return self._lane_change(ego, home, Decision("clear_road", "return"))
            return ego
        lead = world.leader(front, ego.d)
        if lead is not None and lead[1].role == "overtake" and lead[0] < OVERTAKE_GAP and lane > 0:
            left = lay.lane_d(lane - 1)
            blocked = world.leader(ego.s - 15.0, left)
            if blocked is None or blocked[0] > 25.0 + 15.0 + EGO_FRONT:
                self.overtaking = lead[1]
                return self._lane_change(ego, lane - 1, Decision("lead_vehicle", "overtake"))
        if lane != home and not self._turn_only_ahead(front, home):
            return self._lane_change(ego, home, Decision("clear_road", "return"))
        return ego

    def _turn_only_ahead(self, front: float, lane: int) -> bool:
        return any(t.lane == lane and -CLEAR_OF_JUNCTION < t.stop_s - front < TURN_ONLY_REACT + 60.0
                   for t in self.route.layout.turn_only)

    # ------------------------------------------------------------- longitudinal

    def _longitudinal(self, world: World, ego: EgoState) -> tuple[float, Decision | None]:
        """IDM acceleration and the binding obstacle's decision (None: free road)."""
        front = ego.s + EGO_FRONT
        v_target = min(self.route.cruise_speed, float(np.interp(ego.s, self.route.layout.path.s, self.v_curve)))
        u = ego.u
        a_free = self.idm.accel(u, v_target)
        if v_target < self.route.cruise_speed:  # track the curve speed closely (IDM alone lags)
            a_free = min(a_free, CURVE_GAIN * (v_target - u))
        best, cause = a_free, None
        lanes = {ego.d}
        if ego.lane_change is not None:
            lanes.add(ego.lane_change.d1)
        for d in lanes:
            lead = world.leader(front, d)
            if lead is not None and lead[0] < 2 * LEAD_RANGE and world.in_view_for(lead[1]) >= REACTION_S:
                a = self.idm.accel(u, v_target, lead[0], u - lead[1].v)
                if a < best:
                    best, cause = a, Decision("lead_vehicle", "follow")
        for line, _ in world.red_stop_lines(1):
            gap = line - front
            if -0.5 < gap < LIGHT_RANGE:
                a = self.idm.accel(u, v_target, gap, u)
                if a < best:
                    best, cause = a, Decision("red_light", "approach")
        for edge, pedestrian in world.blocked_crosswalks(1):
            gap = edge - CROSSWALK_STANDOFF - front
            if -0.5 < gap < LIGHT_RANGE and world.in_view_for(pedestrian) >= REACTION_S:
                a = self.idm.accel(u, v_target, gap, u)
                if a < best:
                    best, cause = a, Decision("pedestrian", "yield")
        if cause is not None and a_free - best < BINDING:
            cause = None
        return best, cause

    def _context(self, world: World, ego: EgoState, binding: Decision | None) -> Decision:
        """The cause that explains the ego's behaviour now."""
        front = ego.s + EGO_FRONT
        stopped = ego.u < STOPPING_SPEED
        if ego.lane_change is not None:
            return ego.reason
        if binding is not None:
            if binding.cause in ("red_light", "pedestrian") and stopped:
                return Decision(binding.cause, "hold")
            return binding
        lay = self.route.layout
        inst = self.route.instance_at(ego.s)
        for x in lay.intersections:
            if x.red and world.light_state[x.light_id] == "green" and x.stop_s - 40.0 < front < x.s + 20.0:
                return Decision("green_light", "go")
        if self.overtaking is not None:
            return Decision("lead_vehicle", "passing")
        if inst.turn_only is not None:
            t = inst.turn_only
            if -5.0 < t.stop_s - front < TURN_ONLY_REACT + 60.0:
                lane = lay.lane_of(ego.d)
                return Decision("turn_only_lane", "avoid" if lane == t.lane else "straight")
        if inst.curve is not None:
            a, b = inst.curve
            if a - 130.0 < ego.s < b + 30.0:
                return Decision("curve", "approach" if ego.s < a else ("in" if ego.s < b else "exit"))
        if inst.crosswalk is not None:
            cw = inst.crosswalk
            walked = any(p.walking and abs(p.s - cw.s) < 3.0 for p in world.pedestrians)
            if walked and cw.s - 40.0 < front < cw.span[1]:
                return Decision("pedestrian", "cleared")
        lead = world.leader(front, ego.d)
        if lead is not None and lead[0] < 2 * LEAD_RANGE:
            if lead[1].v < self.route.cruise_speed - 0.5:  # named from when it comes into view
                return Decision("lead_vehicle", "follow" if lead[0] < LEAD_RANGE else "far")
            if lead[0] < LEAD_RANGE:
                return Decision("lead_vehicle", "opening")  # a vehicle ahead pulling away
        return Decision("clear_road", "cruise")

    # --------------------------------------------------------------------- step

    def step(self, world: World, ego: EgoState, dt: float) -> tuple[EgoState, Decision]:
        """The ego one step later, and the decision taken at the current state."""
        ego = self._plan_lateral(world, ego)
        a_cmd, binding = self._longitudinal(world, ego)
        decision = self._context(world, ego, binding)
        a_cmd = min(max(a_cmd, A_MIN), A_MAX)
        if ego.u < STOPPING_SPEED and a_cmd < START_ACCEL:
            a_cmd = CREEP_STOP_DECEL  # creeping toward an obstacle: come to a stop instead
        jerk = JERK_EMERGENCY if a_cmd < EMERGENCY else JERK
        a = ego.a + min(max(a_cmd - ego.a, -jerk * dt), jerk * dt)
        a = max(a, -np.sqrt(2 * JERK * ego.u))  # brake off smoothly into the stop
        u = max(ego.u + a * dt, 0.0)
        if u == 0.0:
            a = 0.0  # standing still
        kappa = float(self.route.layout.path.curvature(ego.s))
        s = ego.s + 0.5 * (ego.u + u) * dt / (1.0 - kappa * ego.d)
        t = ego.t + dt
        if ego.lane_change is not None:
            d, d_rate = ego.lane_change.offset(t)
        else:
            d, d_rate = ego.d, 0.0
        return replace(ego, t=t, s=s, d=d, u=u, a=a, d_rate=d_rate), decision
