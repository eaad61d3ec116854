"""Meta-actions (REFERENCE.md section 3): what a 6.4 s trajectory does, and what a reasoning text says.

`classify` reads a trajectory in the t0 ego frame (x forward, y left) at 10 Hz:
- longitudinal: `stop` when the speed at the end of the horizon is within the deadband (0.3 m/s)
  of zero; otherwise the mean acceleration over the horizon against +-0.1 m/s^2 (and a speed
  change beyond the deadband), overridden by a strong early action (mean acceleration over the
  first 2 s beyond +-1.25 m/s^2).
- lateral: `turn_*` when the heading changes by >= 0.5 rad and somewhere the path bends
  tighter than a 25 m radius (intersection turns; road curves are `keep_lane`); otherwise
  `lane_change_*` when the ego moves >= 1.5 m (about half a lane) sideways relative to the road
  over the horizon, else `keep_lane`. A path bending one way only, tighter than a 60 m radius or
  by more than 0.2 rad, follows a road curve (`keep_lane`). Otherwise the road's heading, which
  is not seen, is estimated: where the ego's heading is steady over the first (last) 1.5 s only,
  the ego is taken to follow the road there and the road to be straight; where both ends or
  neither are steady, the road's heading is taken to turn uniformly from the start heading to
  the end heading. The sideways move is the integral of sin(travel - road heading) along the path.
`stated` finds the meta-action a Chain-of-Causation text states in its action clause (the part
before "since" / "because" / "as" / "due to").
"""

import functools
import re

import numpy as np

from schemas.contract import LATERAL_ACTIONS, LONGITUDINAL_ACTIONS, NUM_FUTURE, STEP_US

DT = STEP_US / 1e6
SPEED_DEADBAND = 0.3  # m/s
ACCEL_THRESHOLD = 0.1  # m/s^2, mean over the horizon
STRONG_ACCEL = 1.25  # m/s^2, mean over the first EARLY_S seconds
EARLY_S = 2.0
END_S = 0.5  # the end speed is the mean speed over the last 0.5 s
TURN_HEADING = 0.5  # rad
TURN_MAX_RADIUS = 25.0  # m
CURVATURE_WINDOW = 10  # steps (1 s) over which the peak curvature is measured
LANE_CHANGE_OFFSET = 1.5  # m
STEADY_HEADING = 0.01  # rad over STEADY_STEPS: the ego follows its lane there
STEADY_STEPS = 15
ROAD_CURVE_RADIUS = 60.0  # m; a one-way bend tighter than this is a road curve, not a lane change,
ROAD_CURVE_HEADING = 0.2  # rad; and so is one turning the heading by more than this
LANE_CHANGE_CURVATURE = 0.004  # 1/m; smaller curvature is noise for the one-way test
MIN_PATH_FOR_LATERAL = 2.0  # m; shorter paths keep their lane


def speeds(traj_xyz: np.ndarray) -> np.ndarray:
    """(..., 64) mean planar speed over each 0.1 s step, starting from the t0 origin, of a
    (..., 64, 3) trajectory or batch of them."""
    xyz = np.asarray(traj_xyz, dtype=np.float64)
    xy = np.concatenate([np.zeros((*xyz.shape[:-2], 1, 2)), xyz[..., :2]], axis=-2)
    return np.linalg.norm(np.diff(xy, axis=-2), axis=-1) / DT


def longitudinal(traj_xyz: np.ndarray, v0) -> list[str]:
    """The longitudinal meta-action of each trajectory of an (N, 64, 3) batch starting at speeds
    `v0` (N,), m/s."""
    v = speeds(traj_xyz)
    v0 = np.asarray(v0, dtype=np.float64)
    v_end = v[:, -round(END_S / DT):].mean(axis=-1)
    n_early = round(EARLY_S / DT)
    a_early = (v[:, n_early - 2 : n_early + 1].mean(axis=-1) - v0) / EARLY_S
    dv = v_end - v0
    a_mean = dv / (v.shape[-1] * DT)
    return np.select(
        [v_end < SPEED_DEADBAND, a_early <= -STRONG_ACCEL, a_early >= STRONG_ACCEL,
         (a_mean >= ACCEL_THRESHOLD) & (dv > SPEED_DEADBAND), (a_mean <= -ACCEL_THRESHOLD) & (dv < -SPEED_DEADBAND)],
        ["stop", "decelerate", "accelerate", "accelerate", "decelerate"], "keep_speed").tolist()


def lateral(traj_xyz: np.ndarray, traj_yaw: np.ndarray) -> list[str]:
    """The lateral meta-action of each trajectory of an (N, 64, 3) batch with yaws (N, 64)."""
    xyz = np.asarray(traj_xyz, dtype=np.float64)
    xy = np.concatenate([np.zeros((len(xyz), 1, 2)), xyz[..., :2]], axis=-2)
    step = np.diff(xy, axis=-2)
    ds = np.linalg.norm(step, axis=-1)
    length = np.cumsum(ds, axis=-1)
    yaw = np.unwrap(np.concatenate([np.zeros((len(xyz), 1)), np.asarray(traj_yaw, dtype=np.float64)], axis=-1))
    heading = yaw[:, -1]
    w = CURVATURE_WINDOW
    # one row at a time: np.convolve has no batch form, and a sum in another order rounds otherwise
    dist = np.stack([np.convolve(row, np.ones(w), mode="valid") for row in ds])
    dyaw = yaw[:, w:] - yaw[:, :-w]
    curvature = np.where(dist > 0.5, dyaw / np.maximum(dist, 1e-9), 0.0)
    peak = np.abs(curvature).max(axis=-1)
    left = heading > 0
    turn = (np.abs(heading) >= TURN_HEADING) & (peak >= 1.0 / TURN_MAX_RADIUS)
    # the ego's direction of travel on each step (its yaw where it hardly moves)
    travel = np.unwrap(np.where(ds > 0.05, np.arctan2(step[..., 1], step[..., 0]), yaw[:, 1:]))
    start_steady = np.abs(yaw[:, STEADY_STEPS]) < STEADY_HEADING
    end_steady = np.abs(yaw[:, -1] - yaw[:, -1 - STEADY_STEPS]) < STEADY_HEADING
    bending = np.abs(curvature) > LANE_CHANGE_CURVATURE
    one_way = np.all(~bending | (np.sign(curvature) == np.sign(heading)[:, None]), axis=-1)
    road_curve = one_way & ((peak >= 1.0 / ROAD_CURVE_RADIUS) | (np.abs(heading) >= ROAD_CURVE_HEADING))
    with np.errstate(divide="ignore", invalid="ignore"):  # paths shorter than MIN_PATH_FOR_LATERAL: unused
        uniform = heading[:, None] * length / length[:, -1:]
    road = np.where((start_steady == end_steady)[:, None], uniform,
                    np.where(start_steady[:, None], 0.0, heading[:, None]))
    shift = np.sum(ds * np.sin(travel - road), axis=-1)
    return np.select(
        [length[:, -1] < MIN_PATH_FOR_LATERAL, turn & left, turn, road_curve, np.abs(shift) >= LANE_CHANGE_OFFSET],
        ["keep_lane", "turn_left", "turn_right", "keep_lane", np.where(shift > 0, "lane_change_left",
                                                                       "lane_change_right")],
        "keep_lane").tolist()


def classify_trajectories(traj_xyz: np.ndarray, traj_yaw: np.ndarray, v0) -> list[tuple[str, str]]:
    """(longitudinal, lateral) meta-action of each trajectory of an (N, 64, 3) batch with yaws
    (N, 64) in the t0 frame, starting at speeds `v0` (N,) or one speed for all (m/s); each
    computed as `classify` computes it alone."""
    traj_xyz, traj_yaw = np.asarray(traj_xyz), np.asarray(traj_yaw)
    n = len(traj_xyz)
    if traj_xyz.shape != (n, NUM_FUTURE, 3) or traj_yaw.shape != (n, NUM_FUTURE):
        raise ValueError(f"expected (N, 64, 3) trajectories and (N, 64) yaws, got {traj_xyz.shape} and {traj_yaw.shape}")
    return list(zip(longitudinal(traj_xyz, np.broadcast_to(np.asarray(v0, dtype=np.float64), (n,))),
                    lateral(traj_xyz, traj_yaw)))


def classify(traj_xyz: np.ndarray, traj_yaw: np.ndarray, v0: float) -> tuple[str, str]:
    """(longitudinal, lateral) meta-action of a (64, 3) trajectory and (64,) yaw in the t0 frame,
    starting at speed `v0` (m/s)."""
    traj_xyz = np.asarray(traj_xyz)
    if traj_xyz.shape != (NUM_FUTURE, 3) or np.shape(traj_yaw) != (NUM_FUTURE,):
        raise ValueError(f"expected a (64, 3) trajectory and (64,) yaw, got {traj_xyz.shape} and {np.shape(traj_yaw)}")
    return classify_trajectories(traj_xyz[None], np.asarray(traj_yaw)[None], [float(v0)])[0]


# Phrasings of each meta-action, matched as whole words in the action clause; the earliest wins.
_LONGITUDINAL_PHRASES = {
    "stop": [r"stop(?! line)", r"come to a (?:complete |full )?(?:stop|halt)", r"remain stopped", r"stay stopped",
             r"wait", r"hold(?: position)?", r"yield and stop"],
    "decelerate": [r"decelerate", r"slow(?:s|ing)? down", r"slow", r"brake", r"reduce speed", r"ease off"],
    "keep_speed": [r"keep(?:ing)? (?:a |the )?(?:steady |current |constant )?speed", r"maintain(?:ing)? (?:a |the )?(?:steady |current |constant )?speed",
                   r"cruise", r"continue at (?:a |the )?(?:steady |current |constant )?speed", r"hold speed"],
    "accelerate": [r"accelerate", r"speed up", r"pick up speed", r"proceed from (?:the )?stop", r"start moving",
                   r"move off", r"pull away"],
}
_LATERAL_PHRASES = {
    "lane_change_left": [r"change lanes? (?:to the )?left", r"lane change (?:to the )?left", r"move (?:over )?(?:in)?to the left lane",
                         r"merge (?:in)?to the left", r"change to the left lane", r"shift (?:in)?to the left lane"],
    "lane_change_right": [r"change lanes? (?:to the )?right", r"lane change (?:to the )?right", r"move (?:over )?(?:in)?to the right lane",
                          r"merge (?:in)?to the right", r"change to the right lane", r"shift (?:in)?to the right lane"],
    "turn_left": [r"turn(?:ing)? left", r"make a left turn", r"left turn"],
    "turn_right": [r"turn(?:ing)? right", r"make a right turn", r"right turn"],
    "keep_lane": [r"keep(?:ing)? (?:in )?(?:the |its |our )?(?:current )?lane", r"stay(?:ing)? in (?:the |its |our )?(?:current )?lane",
                  r"follow(?:ing)? the (?:lane|curve|road)", r"remain in (?:the )?(?:current )?lane", r"go straight",
                  r"continue straight", r"lane keep"],
}
_CAUSE_SPLIT = re.compile(r"\b(?:since|because|as|due to|given that)\b", re.IGNORECASE)


def _compile(table: dict[str, list[str]]) -> list[tuple[re.Pattern, str]]:
    return [(re.compile(rf"\b{p}\b", re.IGNORECASE), action) for action, ps in table.items() for p in ps]


_LONGITUDINAL = _compile(_LONGITUDINAL_PHRASES)
_LATERAL = _compile(_LATERAL_PHRASES)
assert {a for _, a in _LONGITUDINAL} == set(LONGITUDINAL_ACTIONS)
assert {a for _, a in _LATERAL} == set(LATERAL_ACTIONS)


def _earliest(clause: str, patterns: list[tuple[re.Pattern, str]]) -> str | None:
    hits = [(m.start(), action) for pattern, action in patterns for m in [pattern.search(clause)] if m]
    return min(hits)[1] if hits else None


def action_clause(text: str) -> str:
    """The part of a reasoning text that states what the ego does (before its cause)."""
    return _CAUSE_SPLIT.split(text, maxsplit=1)[0]


@functools.lru_cache(maxsize=4096)  # a teacher's texts repeat: its K samples, its phrasings
def stated(text: str) -> tuple[str | None, str | None]:
    """(longitudinal, lateral) meta-action a reasoning text states; None where it states none."""
    clause = action_clause(text)
    return _earliest(clause, _LONGITUDINAL), _earliest(clause, _LATERAL)
