"""Public entry points of the synthetic fleet: `simulate_drive` and `showcase`.

A drive is one vehicle on one long road made of consecutive scenario instances, the expert
driving it at 100 Hz while the world (agents, lights) steps around it.
"""

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from models.geometry import interpolate_poses, quat_to_matrix, yaw_to_quat
from schemas.contract import MIN_SPEED_FOR_CURVATURE
from sim.agents import EGO_FRONT
from sim.drive import EGO_RATE_HZ, Drive, EgoTrack
from sim.expert import Expert
from sim.scenarios import FAMILIES, Route, plan_route
from sim.scene import Agent, Snapshot
from sim.truth import build_segments
from sim.world import World, build_static_map

DT_US = 1_000_000 // EGO_RATE_HZ
DT = DT_US / 1e6
MAX_CRUISE = 15.0  # m/s, the fastest cruise speed plan_route draws
MAP_AHEAD = 150.0  # m of road drawn beyond where the ego stops
LEAD_VIEW_RANGE = 150.0  # m: a vehicle ahead in the ego's lane is in view (and can be named) this close
SHOWCASE_START_US = 1_767_268_800_000_000  # 2026-01-01T12:00:00Z


@dataclass
class _AgentTracks:
    """Every agent's world pose at each 100 Hz step of its life."""

    ids: list[str]
    kinds: list[str]
    sizes: list[tuple[float, float, float]]
    colors: list[tuple[int, int, int]]
    k0: np.ndarray  # first step
    k1: np.ndarray  # last step
    xy: list[np.ndarray]  # (n, 2)
    yaw: list[np.ndarray]  # (n,)

    def at(self, k: float) -> list[Agent]:
        i, w = int(np.floor(k)), k - np.floor(k)
        out = []
        for n in np.flatnonzero((self.k0 <= i) & (i <= self.k1)):
            r = i - self.k0[n]
            if i + 1 <= self.k1[n] and w > 0:
                xy = self.xy[n][r] * (1 - w) + self.xy[n][r + 1] * w
                dyaw = np.angle(np.exp(1j * (self.yaw[n][r + 1] - self.yaw[n][r])))
                yaw = self.yaw[n][r] + w * dyaw
            else:
                xy, yaw = self.xy[n][r], self.yaw[n][r]
            out.append(Agent(self.ids[n], self.kinds[n], (float(xy[0]), float(xy[1])), float(yaw),
                             self.sizes[n], self.colors[n]))
        return out


class _Snapshots:
    """`Drive.snapshot`: the world state at any time within the drive (picklable)."""

    def __init__(self, ego: EgoTrack, agents: _AgentTracks, light_steps: dict[str, list[tuple[int, str]]], night: bool):
        self.ego = ego
        self.agents = agents
        self.light_steps = light_steps
        self.night = night

    def __call__(self, t_us: int) -> Snapshot:
        t_us = int(t_us)
        start, end = int(self.ego.t_us[0]), int(self.ego.t_us[-1])
        if not start <= t_us <= end:
            raise ValueError(f"t_us {t_us} outside the drive [{start}, {end}]")
        xyz, quat = interpolate_poses(self.ego.t_us, self.ego.xyz, self.ego.quat, np.array([t_us]))
        k = (t_us - start) / DT_US
        lights = {}
        for light_id, changes in self.light_steps.items():
            lights[light_id] = [state for step, state in changes if step <= k][-1]
        return Snapshot(t_us, xyz[0], quat_to_matrix(quat[0]), self.agents.at(k), lights, self.night)


@dataclass
class DriveState:
    """What a simulation leaves besides the Drive: the route, the ego's road coordinates and
    speed per 100 Hz step, and the world in its final state (with every agent's track)."""

    route: Route
    s: np.ndarray
    d: np.ndarray
    speed: np.ndarray
    world: World


def _ego_track(route: Route, start_us: int, s, d, u, d_rate) -> tuple[EgoTrack, np.ndarray]:
    """The world-frame track (and yaw) of the ego's road coordinates, lane speed and lateral rate."""
    path = route.layout.path
    xy, heading = path.pose(s, d)
    yaw = heading + np.arctan2(d_rate, u)
    tangent = np.stack([np.cos(heading), np.sin(heading)], -1)
    normal = np.stack([-np.sin(heading), np.cos(heading)], -1)
    vel = u[:, None] * tangent + d_rate[:, None] * normal
    acc = np.gradient(vel, DT, axis=0)
    speed = np.linalg.norm(vel, axis=1)
    yaw_rate = np.gradient(np.unwrap(yaw), DT)
    kappa = path.curvature(s)
    lane_kappa = kappa / (1 - kappa * d)  # standing still: the curvature of the lane
    curvature = np.where(speed > MIN_SPEED_FOR_CURVATURE, yaw_rate / np.maximum(speed, 1e-6), lane_kappa)
    zeros = np.zeros((len(s), 1))
    t_us = start_us + np.arange(len(s), dtype=np.int64) * DT_US
    track = EgoTrack(t_us=t_us, xyz=np.concatenate([xy, zeros], 1), quat=yaw_to_quat(yaw),
                     velocity=np.concatenate([vel, zeros], 1), acceleration=np.concatenate([acc, zeros], 1),
                     curvature=curvature)
    return track, yaw


def _agent_tracks(world: World) -> _AgentTracks:
    path = world.layout.path
    ids, kinds, sizes, colors, k0, k1, xys, yaws = [], [], [], [], [], [], [], []
    for agent_id, track in world.tracks.items():
        rows = np.asarray(track.rows)
        xy, heading = path.pose(rows[:, 0], rows[:, 1])
        ids.append(agent_id)
        kinds.append(track.kind)
        sizes.append(tuple(float(v) for v in track.size))
        colors.append(track.color)
        k0.append(track.k0)
        k1.append(track.k0 + len(rows) - 1)
        xys.append(xy)
        yaws.append(heading + rows[:, 2])
    return _AgentTracks(ids, kinds, sizes, colors, np.array(k0, dtype=np.int64), np.array(k1, dtype=np.int64), xys, yaws)


def _drive_expert(route: Route, seed: int, n: int):
    """Step the expert and the world n-1 times: the ego's road coordinates per step, the decisions,
    scenario families and whether a vehicle ahead in the ego's lane (or the lane it changes to)
    is in view (within LEAD_VIEW_RANGE) per step, and the world at the end."""
    world = World(route.layout, route.leads, route.pedestrians, route.cruise_speed, seed)
    expert = Expert(route, seed)
    s, d, u, d_rate = (np.empty(n) for _ in range(4))
    decisions, families = [("clear_road", "cruise")] * n, [""] * n
    lead_in_view = np.zeros(n, dtype=bool)
    ego = expert.initial_state()
    world.start(ego.view)
    for k in range(n):
        s[k], d[k], u[k], d_rate[k] = ego.s, ego.d, ego.u, ego.d_rate
        families[k] = route.instance_at(ego.s).family
        lanes = (ego.d,) if ego.lane_change is None else (ego.d, ego.lane_change.d1)  # and the one it moves to
        leads = [world.leader(ego.s + EGO_FRONT, d) for d in lanes]
        lead_in_view[k] = any(lead is not None and lead[0] < LEAD_VIEW_RANGE for lead in leads)
        if k == n - 1:
            break
        ego, decision = expert.step(world, ego, DT)
        decisions[k] = (decision.cause, decision.phase)
        world.step(DT, ego.view)
    if n > 1:
        decisions[-1] = decisions[-2]
    return (s, d, u, d_rate), decisions, families, lead_in_view, world


def simulate_with_state(vehicle_id: str, seed: int, duration_s: float, start_us: int, night: bool | None = None,
                        families: Sequence[str] | None = None) -> tuple[Drive, DriveState]:
    """`simulate_drive`, also returning the simulation's state (for evaluation and tests)."""
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    route = plan_route(seed, MAX_CRUISE * duration_s + 100.0, families)
    if night is None:
        night = bool(np.random.default_rng([seed, 3]).random() < 0.5)
    n = int(round(duration_s * EGO_RATE_HZ)) + 1
    (s, d, u, d_rate), decisions, families_at, lead_in_view, world = _drive_expert(route, seed, n)
    track, yaw = _ego_track(route, start_us, s, d, u, d_rate)
    speed = np.linalg.norm(track.velocity[:, :2], axis=1)
    segments = build_segments(track.t_us, track.xyz, yaw, speed, d, decisions, families_at, seed, lead_in_view)
    static_map = build_static_map(route.layout, 0.0, min(float(s[-1]) + MAP_AHEAD, route.layout.path.length), seed)
    light_steps = {light.light_id: world.light_changes[light.light_id] for light in static_map.lights}
    meta = {
        "n_lanes": route.layout.n_lanes,
        "cruise_speed_mps": round(route.cruise_speed, 3),
        "instances": [{"family": i.family, "s_start": round(i.s_start, 2), "s_end": round(i.s_end, 2),
                       "cue_s": round(i.cue_s, 2)} for i in route.instances if i.s_start <= s[-1]],
        "light_timeline": {i: [[int(start_us + k * DT_US), state] for k, state in changes]
                           for i, changes in light_steps.items()},
    }
    drive = Drive(vehicle_id=vehicle_id, log_name=f"{vehicle_id}-{start_us // 1_000_000}", seed=seed, start_us=start_us,
                  night=night, ego=track, static_map=static_map, segments=segments,
                  snapshot=_Snapshots(track, _agent_tracks(world), light_steps, night), meta=meta)
    return drive, DriveState(route, s, d, speed, world)


def simulate_drive(vehicle_id: str, seed: int, duration_s: float, start_us: int, night: bool | None = None,
                   families: Sequence[str] | None = None) -> Drive:
    """One continuous drive of `duration_s` seconds: consecutive scenario instances drawn (seeded)
    from `families` (default: all), by day or by night (default: drawn from the seed).

    The ego track is at exactly 100 Hz from `start_us`; the same arguments give identical arrays."""
    return simulate_with_state(vehicle_id, seed, duration_s, start_us, night, families)[0]


def _ego_frame(drive: Drive, k: int, xy) -> np.ndarray:
    """World xy -> the ego frame at step k (x forward, y left)."""
    R = quat_to_matrix(drive.ego.quat[k])[:2, :2]
    return (np.asarray(xy) - drive.ego.xyz[k, :2]) @ R


def _agent_ahead(drive: Drive, run: DriveState, k: int, kind: str, ids: set[str] | None = None):
    """(agent_id, x ahead) of the nearest agent of `kind` 10-30 m ahead, within 2 m of the ego's
    lane (vehicles) or on the road (pedestrians)."""
    best = None
    for a in drive.snapshot(int(drive.ego.t_us[k])).agents:
        if a.kind != kind or (ids is not None and a.agent_id not in ids):
            continue
        x, y = _ego_frame(drive, k, a.xy)
        if 10.0 <= x <= 30.0 and abs(y) < (2.0 if kind == "vehicle" else run.route.layout.half_width):
            if best is None or x < best[1]:
                best = (a.agent_id, float(x))
    return best


def _cue(family: str, drive: Drive, run: DriveState, k: int) -> dict | None:
    """What of the family's cue is in view at step k (with "distance_m" ahead), or None."""
    inst = run.route.instances[0]
    lay = run.route.layout
    t = int(drive.ego.t_us[k])
    if family == "red_light":
        x = inst.intersection
        light = next(l for l in drive.static_map.lights if l.light_id == x.light_id)
        ahead = float(_ego_frame(drive, k, light.xy)[0])
        state = drive.snapshot(t).light_states[x.light_id]
        if 15.0 <= ahead <= 40.0 and state == "red" and run.speed[k] < 0.3:
            return {"light_id": x.light_id, "light_state": state, "distance_m": ahead}
    elif family in ("follow_lead", "lane_change_pass"):
        hit = _agent_ahead(drive, run, k, "vehicle")
        if hit is not None:
            return {"lead_agent_id": hit[0], "distance_m": hit[1]}
    elif family == "pedestrian":
        peds = {p.agent_id for p in run.route.pedestrians}
        on_road = {a.agent_id for a in drive.snapshot(t).agents
                   if a.agent_id in peds and abs(lay.path.project(a.xy)[1]) < lay.half_width}
        hit = _agent_ahead(drive, run, k, "pedestrian", on_road)
        if hit is not None:
            return {"pedestrian_agent_id": hit[0], "distance_m": hit[1]}
    elif family == "turn_only_lane":
        lane = inst.turn_only
        arrow_s = lane.stop_s - 6.0
        ahead = float(arrow_s - run.s[k])
        if 12.0 <= ahead <= 30.0:
            xy, _ = lay.path.pose(arrow_s, lay.lane_d(lane.lane))
            return {"turn_arrow_xy": (float(xy[0]), float(xy[1])), "turn_only_side": lane.side,
                    "turn_only_lane": lane.lane, "distance_m": ahead}
    elif family == "curve":
        entry = inst.curve[0]
        ahead = float(entry - run.s[k])
        if 15.0 <= ahead <= 30.0:
            kappa = float(lay.path.curvature(entry + 31.0))
            xy, _ = lay.path.pose(entry, 0.0)
            return {"curve_entry_xy": (float(xy[0]), float(xy[1])), "curvature": kappa,
                    "curve_direction": "left" if kappa > 0 else "right", "distance_m": ahead}
    elif family == "cruise" and k >= 5 * EGO_RATE_HZ and _agent_ahead(drive, run, k, "vehicle") is None:
        return {"road": "clear", "n_lanes": lay.n_lanes, "distance_m": 0.0}
    return None


SHOWCASE_DISTANCE = {"red_light": 25.0, "cruise": 0.0}  # preferred distance of the cue; default 20 m


def showcase(family: str, night: bool, seed: int = 0) -> tuple[Drive, int, dict]:
    """A short drive of one family and a time at which its visual cue is clearly ahead of the ego.

    The dict names what should be visible: {"light_id", "light_state"} (red_light, the ego
    waiting at it), {"lead_agent_id"} (follow_lead, lane_change_pass: the lead in the ego's lane),
    {"pedestrian_agent_id"} (pedestrian, on the crosswalk), {"turn_arrow_xy", "turn_only_side",
    "turn_only_lane"} (turn_only_lane), {"curve_entry_xy", "curvature", "curve_direction"} (curve),
    {"road": "clear"} (cruise); each with the cue's distance ahead of the ego in "distance_m"
    (10-40 m; the moment nearest to about 20 m is chosen)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {list(FAMILIES)}")
    drive, run = simulate_with_state(f"showcase-{family}", seed, 40.0, SHOWCASE_START_US, night, (family,))
    best = None
    for k in range(0, len(drive.ego.t_us), 10):
        cue = _cue(family, drive, run, k)
        if cue is not None:
            score = abs(cue["distance_m"] - SHOWCASE_DISTANCE.get(family, 20.0))
            if best is None or score < best[0]:
                best = (score, int(drive.ego.t_us[k]), cue)
    if best is None:
        raise RuntimeError(f"showcase {family!r} (seed {seed}) found no moment with its cue in view")
    return drive, best[1], best[2]
