"""Scene truth: the drive's truth phases (segments) and the sidecar file written beside each log.

The label pipeline never reads the sidecar; evaluation and tests do. Segments are built on the
10 Hz t0 grid: the expert's decision at t0 gives the cause, the ego's actual 6.4 s future
(classified by `models.meta_actions`) gives the meta-action, so that each segment's reasoning
describes what the ego does over the next seconds.
"""

import dataclasses
import json
from typing import Sequence

import fsspec
import numpy as np

from models.geometry import quat_to_matrix
from models.meta_actions import LANE_CHANGE_OFFSET, classify
from schemas.contract import NUM_FUTURE, STEP_US
from sim.drive import Drive, Segment
from sim.reasoning import pace, reasoning_text
from transforms.publish import atomic_output

TRUTH_VERSION = 1
MIN_PHASE_S = 0.5  # shorter phases are merged into their predecessor
_LANE_CHANGE_PHASES = ("overtake", "avoid", "return")
_SLOWING_CAUSES = ("red_light", "pedestrian", "lead_vehicle", "curve")


def future_actions(t_us: np.ndarray, xyz: np.ndarray, yaw: np.ndarray, speed: np.ndarray, offset: np.ndarray,
                   step: int) -> list[tuple[str, str]]:
    """Meta-actions of the ego's 6.4 s future at every `step`-th sample (10 Hz for a 100 Hz track).

    Longitudinal: `models.meta_actions.classify` of the future in the t0 frame (beyond the end
    of the drive the last velocity is held). Lateral: from the lateral offset to the road's
    centre line, a lane change where it moves by LANE_CHANGE_OFFSET or more over the horizon
    (road curves are not lane changes, partial lane changes at the horizon's end are not either
    way)."""
    idx = np.arange(0, len(t_us), step)
    horizon = step * np.arange(1, NUM_FUTURE + 1)
    fut = idx[:, None] + horizon[None, :]
    last = len(t_us) - 1
    over = np.maximum(fut - last, 0) * (STEP_US / step / 1e6)  # seconds past the end
    fut = np.minimum(fut, last)
    v_last = speed[last] * np.array([np.cos(yaw[last]), np.sin(yaw[last])])
    fut_xy = xyz[fut, :2] + over[..., None] * v_last
    fut_yaw = yaw[fut]
    shift = offset[fut[:, -1]] - offset[idx]
    out = []
    for j, k in enumerate(idx):
        c, s = np.cos(yaw[k]), np.sin(yaw[k])
        rel = fut_xy[j] - xyz[k, :2]
        local = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], np.zeros(NUM_FUTURE)], -1)
        longitudinal, _ = classify(local, np.unwrap(fut_yaw[j] - yaw[k]), float(speed[k]))
        lateral = "keep_lane"
        if abs(shift[j]) >= LANE_CHANGE_OFFSET:
            lateral = "lane_change_left" if shift[j] > 0 else "lane_change_right"
        out.append((longitudinal, lateral))
    return out


def _explained(decisions, j: int, longitudinal: str, lateral: str, ego_pace: str, window: int,
               lead_in_view: bool = True):
    """The decision that explains the meta-action at sample j: the current one, or, where the
    action is due to an event a few seconds ahead (a lane change, a stop), that event's. A lead
    vehicle that is not in view at j (`lead_in_view`) cannot be that event."""
    cause, phase = decisions[j]
    ahead = [(c, p) for c, p in decisions[j : j + window] if lead_in_view or c != "lead_vehicle"]
    upcoming = None
    if lateral.startswith("lane_change") and phase not in _LANE_CHANGE_PHASES:
        upcoming = next(((c, p) for c, p in ahead if p in _LANE_CHANGE_PHASES), None)
    elif longitudinal in ("stop", "decelerate") and (cause in ("clear_road", "green_light") or phase == "opening"):
        upcoming = next(((c, p) for c, p in ahead if c in _SLOWING_CAUSES), None)
    if (upcoming or (cause, phase)) == ("lead_vehicle", "far") and longitudinal in ("stop", "decelerate"):
        return "lead_vehicle", "follow"  # the slower vehicle in view is what the ego slows down for
    if upcoming is not None:
        return upcoming
    far = (longitudinal == "keep_speed" and phase in ("approach", "yield") and ego_pace == "moving") or \
        (longitudinal == "accelerate" and (cause, phase) == ("curve", "approach"))
    if far:
        return cause, "far"  # the cue is in view but does not slow the ego yet
    if longitudinal == "accelerate":
        if cause == "red_light" or (cause, phase) in (("pedestrian", "yield"), ("pedestrian", "hold")):
            # still red / still crossing now, but it goes within the horizon
            return ("green_light" if cause == "red_light" else cause), "pending"
        if cause == "lead_vehicle" and phase == "follow":
            return "lead_vehicle", "opening"
        if cause == "curve" and phase == "in":  # speeding up toward the curve's end
            return "curve", "exit"
    return cause, phase


def build_segments(t_us: np.ndarray, xyz: np.ndarray, yaw: np.ndarray, speed: np.ndarray, offset: np.ndarray,
                   decisions: Sequence[tuple[str, str]], families: Sequence[str], seed: int,
                   lead_in_view: Sequence[bool] | None = None) -> list[Segment]:
    """Truth phases covering [t_us[0], t_us[-1]] without gaps or overlaps.

    `offset` (lateral offset to the road's centre line), `decisions` (cause, phase),
    `families` and `lead_in_view` (a vehicle ahead in the ego's lane is in view; default:
    always) are per sample of the 100 Hz track."""
    step = int(round(STEP_US / (t_us[1] - t_us[0]))) if len(t_us) > 1 else 1
    actions = future_actions(t_us, xyz, yaw, speed, offset, step)
    idx = np.arange(0, len(t_us), step)
    sampled = [decisions[k] for k in idx]
    keys = []
    for j, k in enumerate(idx):
        longitudinal, lateral = actions[j]
        ego_pace = pace(speed[k])
        in_view = True if lead_in_view is None else bool(lead_in_view[k])
        cause, phase = _explained(sampled, j, longitudinal, lateral, ego_pace, NUM_FUTURE, in_view)
        keys.append((families[k], cause, phase, longitudinal, lateral, ego_pace))
    runs = _merge_short([[keys[0], 0, 1]], keys, int(round(MIN_PHASE_S * 1e6 / STEP_US)))
    segments = []
    for n, (key, j0, j1) in enumerate(runs):
        family, cause, phase, longitudinal, lateral, _ = key
        end = int(t_us[idx[j1]]) if j1 < len(idx) else int(t_us[-1])
        text = reasoning_text(cause, phase, longitudinal, lateral, float(speed[idx[j0]]), seed * 100_003 + n)
        segments.append(Segment(int(t_us[idx[j0]]), end, family, cause, text, longitudinal, lateral))
    return segments


def _merge_short(runs, keys, min_len: int):
    """Runs of equal keys; a run shorter than `min_len` samples joins the run before it."""
    for j in range(1, len(keys)):
        if keys[j] == runs[-1][0]:
            runs[-1][2] = j + 1
        else:
            runs.append([keys[j], j, j + 1])
    merged = []
    for run in runs:
        if merged and run[2] - run[1] < min_len:
            merged[-1][2] = run[2]
        elif merged and merged[-1][0] == run[0]:
            merged[-1][2] = run[2]
        else:
            merged.append(list(run))
    if len(merged) > 1 and merged[0][2] - merged[0][1] < min_len:
        merged[1][1] = merged[0][1]
        merged.pop(0)
    return merged


# ---------------------------------------------------------------- sidecar


def truth_record(drive: Drive, rate_hz: int = 10) -> dict:
    """The sidecar content: identity, segments, the ego track at `rate_hz`, light timelines."""
    step = max(int(round(100 / rate_hz)), 1)
    ego = drive.ego
    yaw = np.arctan2(quat_to_matrix(ego.quat[::step])[:, 1, 0], quat_to_matrix(ego.quat[::step])[:, 0, 0])
    return {
        "truth_version": TRUTH_VERSION,
        "vehicle_id": drive.vehicle_id,
        "log_name": drive.log_name,
        "seed": drive.seed,
        "night": drive.night,
        "start_us": drive.start_us,
        "end_us": drive.end_us,
        "segments": [dataclasses.asdict(s) for s in drive.segments],
        "ego": {
            "rate_hz": rate_hz,
            "t_us": ego.t_us[::step].tolist(),
            "xyz": np.round(ego.xyz[::step], 4).tolist(),
            "yaw": np.round(yaw, 6).tolist(),
            "speed": np.round(np.linalg.norm(ego.velocity[::step, :2], axis=1), 4).tolist(),
            "curvature": np.round(ego.curvature[::step], 6).tolist(),
        },
        "lights": drive.meta.get("light_timeline", {}),
        "instances": drive.meta.get("instances", []),
    }


def write_sidecar(drive: Drive, uri: str) -> None:
    """Write `truth_record(drive)` as JSON to any fsspec URL, atomically."""
    with atomic_output(uri) as f:
        f.write(json.dumps(truth_record(drive), separators=(",", ":")).encode())


def read_sidecar(uri: str) -> dict:
    with fsspec.open(uri, "rb") as f:
        record = json.loads(f.read())
    if record.get("truth_version") != TRUTH_VERSION:
        raise ValueError(f"{uri}: not a truth sidecar of version {TRUTH_VERSION}")
    return record


def segment_at(source: Drive | dict, t_us: int) -> Segment:
    """The truth segment active at `t_us` (start <= t < end; the last one includes its end)."""
    segments = source.segments if isinstance(source, Drive) else [Segment(**s) for s in source["segments"]]
    starts = [s.t_start_us for s in segments]
    i = int(np.searchsorted(starts, t_us, side="right")) - 1
    if i < 0 or t_us > segments[-1].t_end_us:
        raise ValueError(f"t_us {t_us} outside the drive [{starts[0]}, {segments[-1].t_end_us}]")
    return segments[i]
