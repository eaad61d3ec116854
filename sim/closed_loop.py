"""Closed loop (AlpaSim style): a policy drives the ego through sim scenario episodes.

An episode: a route of one scenario family (seeded); the expert drives until the family's cue
is `CUE_AHEAD_M` ahead (this also fills the 1.6 s of history a clip needs), then the policy takes
over for `duration_s`. Every `replan_s` the harness builds a clip exactly as `coclabel clips`
would (16 JPEG frames of the 4 teacher cameras at t-0.3 ... t, 16 history poses in the ego frame
at t) and calls `policy.predict([clip], 1, [seed])`; the ego then follows the first sample's
trajectory (waypoint j at t + 0.1 (j+1) s) until the next plan, while the world (agents, lights)
steps at 10 Hz around it. Any policy with the teacher interface drives: the teacher and students.

Metrics per episode: `collision` (the ego's footprint overlaps a vehicle's or pedestrian's),
`offroad` (a corner of the ego leaves the paved road), `failed` (either; the episode stops
there), `progress` (metres along the road driven by the policy over those the expert drives from
the same hand-over in the same time, capped at 1.5).
"""

import copy
from dataclasses import dataclass

import numpy as np

from models.geometry import quat_to_matrix, to_ego_frame, yaw_to_quat
from schemas.contract import FRAME_OFFSETS_US, HISTORY_OFFSETS_US, NUM_HISTORY, STEP_US, TEACHER_CAMERAS
from schemas.ids import seed_of
from sim.agents import EGO_FRONT, EGO_REAR
from sim.cameras import RIG
from sim.dataset import jpeg_bytes
from sim.expert import Expert
from sim.render import Renderer
from sim.scenarios import FAMILIES, plan_route
from sim.scene import Agent, Snapshot
from sim.world import EgoView, World, build_static_map

DT = STEP_US / 1e6  # policy ticks and world steps during the policy's control
EXPERT_DT = 0.01  # the expert's own rate
CUE_AHEAD_M = 70.0
MAX_LEAD_IN_S = 60.0
EGO_HALF_WIDTH = 0.95  # a 1.9 m wide car


@dataclass
class Pose:
    t: float
    xy: np.ndarray
    yaw: float


def rectangles_overlap(c1, yaw1, half1, c2, yaw2, half2) -> bool:
    """Whether two oriented rectangles (centre, yaw, (half length, half width)) overlap (separating axes)."""
    axes = [np.array([np.cos(a), np.sin(a)]) for a in (yaw1, yaw1 + np.pi / 2, yaw2, yaw2 + np.pi / 2)]
    d = np.asarray(c2, dtype=np.float64) - np.asarray(c1, dtype=np.float64)

    def radius(yaw, half, axis):
        u, v = np.array([np.cos(yaw), np.sin(yaw)]), np.array([-np.sin(yaw), np.cos(yaw)])
        return half[0] * abs(u @ axis) + half[1] * abs(v @ axis)

    return all(abs(d @ ax) <= radius(yaw1, half1, ax) + radius(yaw2, half2, ax) for ax in axes)


def world_agents(world: World) -> list[tuple]:
    """(agent_id, kind, xy, yaw, size, color) of every agent, in world coordinates."""
    path = world.layout.path
    out = []
    for kind, agents in (("vehicle", world.vehicles), ("vehicle", world.cross), ("pedestrian", world.pedestrians)):
        for a in agents:
            xy, heading = path.pose(a.s, a.d)
            out.append((a.agent_id, kind, (float(xy[0]), float(xy[1])), float(heading + a.yaw_rel), tuple(a.size), a.color))
    return out


def ego_footprint(pose: Pose) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Centre, yaw and half extents of the ego box (the pose is the rear axle)."""
    offset = (EGO_FRONT - EGO_REAR) / 2
    centre = pose.xy + offset * np.array([np.cos(pose.yaw), np.sin(pose.yaw)])
    return centre, pose.yaw, ((EGO_FRONT + EGO_REAR) / 2, EGO_HALF_WIDTH)


def collides(pose: Pose, agents: list[Agent]) -> bool:
    c, yaw, half = ego_footprint(pose)
    return any(np.hypot(*(np.asarray(a.xy) - c)) < 10.0
               and rectangles_overlap(c, yaw, half, a.xy, a.yaw, (a.size[0] / 2, a.size[1] / 2)) for a in agents)


def offroad(pose: Pose, world: World) -> bool:
    c, yaw, (hl, hw) = ego_footprint(pose)
    u, v = np.array([np.cos(yaw), np.sin(yaw)]), np.array([-np.sin(yaw), np.cos(yaw)])
    limit = world.layout.half_width
    return any(abs(world.layout.path.project(c + sx * hl * u + sy * hw * v)[1]) > limit
               for sx in (-1, 1) for sy in (-1, 1))


class Episode:
    """One closed-loop episode (see the module docstring)."""

    def __init__(self, index: int, duration_s: float = 8.0, replan_s: float = 0.5, render_scale: float = 1.0):
        self.index, self.duration_s, self.replan_s = index, duration_s, replan_s
        self.family = FAMILIES[index % len(FAMILIES)]
        self.seed = 10_000 + index
        route = plan_route(self.seed, 1500.0, (self.family,))
        self.route = route
        self.world = World(route.layout, route.leads, route.pedestrians, route.cruise_speed, self.seed)
        self.expert = Expert(route, self.seed)
        self.night = bool(np.random.default_rng([self.seed, 3]).random() < 0.5)
        self.static_map = build_static_map(route.layout, 0.0, route.layout.path.length, self.seed)
        self.renderer = Renderer(self.static_map)
        self.cameras = [RIG[c] if render_scale == 1.0 else RIG[c].with_resolution(int(RIG[c].height * render_scale),
                                                                                   int(RIG[c].width * render_scale))
                        for c in TEACHER_CAMERAS]
        self._lead_in()

    def _expert_pose(self, ego) -> Pose:
        xy, heading = self.route.layout.path.pose(ego.s, ego.d)
        return Pose(ego.t, np.asarray(xy, dtype=np.float64), float(heading + np.arctan2(ego.d_rate, max(ego.u, 1e-6))))

    def _lead_in(self) -> None:
        """Expert driving until the cue is CUE_AHEAD_M ahead (and at least the history length)."""
        cue = self.route.instances[0].cue_s
        ego = self.expert.initial_state()
        self.world.start(ego.view)
        self.poses, self.frames = [], []
        steps_per_tick = int(round(DT / EXPERT_DT))
        k = 0
        while True:
            if k % steps_per_tick == 0:
                self._record(self._expert_pose(ego))
                if (ego.s >= cue - CUE_AHEAD_M and len(self.poses) >= NUM_HISTORY) or ego.t >= MAX_LEAD_IN_S:
                    break
            ego, _ = self.expert.step(self.world, ego, EXPERT_DT)
            self.world.step(EXPERT_DT, ego.view)
            k += 1
        self.handover = (copy.deepcopy(self.world), copy.deepcopy(self.expert), ego)
        self.s0 = ego.s

    def _record(self, pose: Pose) -> None:
        """Keep the pose and the world state of this 10 Hz tick (rendered only when a plan needs it)."""
        self.poses.append(pose)
        agents = [Agent(*a) for a in world_agents(self.world)]
        self.frames.append((pose, agents, dict(self.world.light_state)))

    def _snapshot(self, i: int) -> Snapshot:
        pose, agents, lights = self.frames[i]
        R = quat_to_matrix(yaw_to_quat(pose.yaw))
        return Snapshot(int(round(pose.t * 1e6)), np.array([pose.xy[0], pose.xy[1], 0.0]), R, agents, lights, self.night)

    def clip(self) -> dict:
        """The clip at the latest tick (its t0), built as `coclabel clips` builds one."""
        n = len(self.poses)
        frame_ticks = [n - 1 + off // STEP_US for off in FRAME_OFFSETS_US]
        snaps = [self._snapshot(i) for i in frame_ticks]
        images = [jpeg_bytes(self.renderer.render(s, cam)) for cam in self.cameras for s in snaps]
        hist = [self.poses[n - 1 + off // STEP_US] for off in HISTORY_OFFSETS_US]
        xyz = np.array([[p.xy[0], p.xy[1], 0.0] for p in hist])
        rot = quat_to_matrix(yaw_to_quat(np.array([p.yaw for p in hist])))
        local_xyz, local_rot = to_ego_frame(xyz, rot, xyz[-1], rot[-1])
        t0_us = int(round(self.poses[-1].t * 1e6))
        return {"clip_id": f"closed-loop-{self.index}-{t0_us}", "t0_us": t0_us, "images": images,
                "ego_history_xyz": local_xyz.astype(np.float32), "ego_history_rot": local_rot.reshape(-1, 9).astype(np.float32)}

    def expert_progress(self) -> float:
        """Metres along the road the expert drives from the hand-over in `duration_s`."""
        world, expert, ego = (copy.deepcopy(x) for x in self.handover)
        for _ in range(int(round(self.duration_s / EXPERT_DT))):
            ego, _ = expert.step(world, ego, EXPERT_DT)
            world.step(EXPERT_DT, ego.view)
        return ego.s - self.s0

    def run(self, policy) -> dict:
        """Drive with `policy`; returns the episode's metrics."""
        path = self.route.layout.path
        ticks = int(round(self.duration_s / DT))
        per_plan = max(1, int(round(self.replan_s / DT)))
        plan, plan_tick = None, 0
        collision = off = False
        s = self.s0
        for tick in range(ticks):
            if tick % per_plan == 0:
                clip = self.clip()
                sample = policy.predict([clip], 1, [seed_of(clip["clip_id"])])[0][0]
                origin = self.poses[-1]
                plan, plan_tick = sample, tick
            j = tick - plan_tick
            c, sn = np.cos(origin.yaw), np.sin(origin.yaw)
            local = np.asarray(plan["traj_xyz"][j, :2], dtype=np.float64)
            xy = origin.xy + np.array([c * local[0] - sn * local[1], sn * local[0] + c * local[1]])
            prev = self.poses[-1]
            pose = Pose(prev.t + DT, xy, float(origin.yaw + plan["traj_yaw"][j]))
            speed = float(np.hypot(*(xy - prev.xy)) / DT)
            s, d = path.project(xy)
            self.world.step(DT, EgoView(s, d, speed))
            self._record(pose)
            collision = collides(pose, self.frames[-1][1])
            off = offroad(pose, self.world)
            if collision or off:
                break
        expert = self.expert_progress()
        return {"episode": self.index, "family": self.family, "seed": self.seed, "collision": collision, "offroad": off,
                "failed": collision or off, "seconds": round(float(self.poses[-1].t - self.handover[2].t), 2),
                "progress_m": float(s - self.s0), "expert_progress_m": float(expert),
                "progress": float(min(1.5, (s - self.s0) / max(expert, 1.0)))}


def run_episodes(policy, indices, duration_s: float = 8.0, replan_s: float = 0.5, render_scale: float = 1.0,
                 progress=None) -> list[dict]:
    """Metrics of `policy` on the episodes `indices` (the same episodes for every policy)."""
    rows = []
    for i in indices:
        rows.append(Episode(i, duration_s, replan_s, render_scale).run(policy))
        if progress:
            progress(rows[-1])
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Per policy: episodes, collision / off-road / failure rates, mean progress."""
    out = []
    for name in dict.fromkeys(r["policy"] for r in rows):
        mine = [r for r in rows if r["policy"] == name]
        out.append({"policy": name, "episodes": len(mine), "collision_rate": float(np.mean([r["collision"] for r in mine])),
                    "offroad_rate": float(np.mean([r["offroad"] for r in mine])),
                    "failure_rate": float(np.mean([r["failed"] for r in mine])),
                    "progress": float(np.mean([r["progress"] for r in mine]))})
    return out
