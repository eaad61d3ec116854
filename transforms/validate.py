"""Checks of the teacher's samples for one clip: the LABELS row, or a QUARANTINE row with a reason.

Kinematics are finite differences of the float32 trajectory at 10 Hz with the t0 ego pose (the
origin, yaw 0) prepended, so the first waypoint is checked against where the ego is at t0 (its
position; the speed at t0 is not imposed). Accelerations and curvatures sit on waypoints 0..62,
jerks between them; the physical acceleration bound applies to the longitudinal acceleration
(the unicycle's action), curvature is the path's (v x a / |v|^3, zero below 0.6 m/s).
`ade_m` is the mean xy distance to the ground-truth future over the 64 steps (null unless the
future is complete); `sample_spread_m` the mean pairwise xy distance of the samples' final points.

Policy (`CheckConfig`), chosen for a fleet team that wants clean labels and a reason for every
clip it loses:
- Hard checks (shape, finiteness, physical bounds, reasoning empty / length / language, and the
  comfort bounds when `reject_comfort`) fail a sample. With `on_sample_failure="quarantine_clip"`
  (default) one failing sample quarantines the clip; with `"drop_sample"` the failing samples are
  dropped, recorded as flags `dropped_<reason>`, and the clip is quarantined only when none is
  left. The quarantine row carries the first failure's reason and lists every failure (sample
  index, check, value) in `detail`.
- Comfort bounds (REFERENCE.md section 3) are flags such as `comfort_lat_accel` by default.
- A sample is inconsistent when its text states a meta-action its trajectory contradicts:
  longitudinal actions two or more steps apart on stop < decelerate < keep_speed < accelerate, or
  lateral actions to opposite sides. More than `max_inconsistent_share` of the kept samples
  inconsistent quarantines the clip (REASONING_INCONSISTENT); fewer give the flag
  `reasoning_inconsistent`.
A clip gives exactly one row: a label or a quarantine row.
"""

import dataclasses
import functools
import itertools
import re
from dataclasses import dataclass

import apache_beam as beam
import numpy as np

from models.meta_actions import classify_trajectories, stated
from schemas.contract import MAX_ACCEL, MAX_CURVATURE, MIN_SPEED_FOR_CURVATURE, NUM_FUTURE, STEP_US
from schemas.reasons import STAGE_OF, Reason

DT = STEP_US / 1e6

# Comfort bounds (nuPlan): name -> (low, high); a value passes when low < value < high
# (longitudinal acceleration: low <= value <= high).
COMFORT_BOUNDS = {
    "jerk": (-8.37, 8.37),  # |jerk vector|, m/s^3
    "lat_accel": (-4.89, 4.89),  # m/s^2
    "lon_accel": (-4.05, 2.40),  # m/s^2
    "lon_jerk": (-4.13, 4.13),  # m/s^3
    "yaw_accel": (-1.93, 1.93),  # rad/s^2
    "yaw_rate": (-0.95, 0.95),  # rad/s
}
# Twice differentiating float32 waypoints 200 m out gives up to about 6e-3 m/s^2 of rounding
# noise: the hard bounds allow this much.
BOUND_SLACK = 0.01

_LONGITUDINAL_ORDER = ("stop", "decelerate", "keep_speed", "accelerate")
# English function words plus the commonest driving words.
_ENGLISH_WORDS = frozenset(
    "the a an to of and or is are was be been being has have will so then than too now up down "
    "for since because as at in on into over through ahead due with from by behind before after "
    "it its there this that no not left right ego vehicle car lane road light traffic signal "
    "intersection crosswalk pedestrian stop speed keep turn".split()
)
_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class CheckConfig:
    """What the checks accept and what a failure costs (see the module docstring)."""

    min_reasoning_chars: int = 8
    max_reasoning_chars: int = 400
    language: str | None = "en"  # the only language with a check; None skips it
    min_ascii_letter_share: float = 0.9  # of the letters, for English
    min_english_word_share: float = 0.2  # of the words, common English words
    reject_comfort: bool = False  # comfort bounds fail samples (COMFORT_BOUNDS) instead of flagging
    max_inconsistent_share: float = 0.5  # of kept samples; above it the clip is quarantined
    on_sample_failure: str = "quarantine_clip"  # or "drop_sample"

    def __post_init__(self):
        if self.language not in (None, "en"):
            raise ValueError(f"no language check for {self.language!r}: use 'en' or None")
        if self.on_sample_failure not in ("quarantine_clip", "drop_sample"):
            raise ValueError(f"on_sample_failure must be 'quarantine_clip' or 'drop_sample', got {self.on_sample_failure!r}")
        if not 0 <= self.min_reasoning_chars <= self.max_reasoning_chars:
            raise ValueError("need 0 <= min_reasoning_chars <= max_reasoning_chars")


@dataclass(frozen=True)
class Kinematics:
    """Derived signals of a (64, 3) trajectory and (64,) yaw (see the module docstring); of a
    batch of trajectories, each field has the batch's leading axes."""

    lon_accel: np.ndarray  # (63,) on waypoints 0..62
    lat_accel: np.ndarray  # (63,)
    curvature: np.ndarray  # (63,)
    jerk: np.ndarray  # (62,) magnitude of the planar jerk
    lon_jerk: np.ndarray  # (62,)
    yaw_rate: np.ndarray  # (64,) between consecutive poses, from t0
    yaw_accel: np.ndarray  # (63,)

    def __getitem__(self, index) -> "Kinematics":
        """The kinematics of one trajectory of a batch."""
        return Kinematics(*(getattr(self, name)[index] for name in _KINEMATICS_FIELDS))


_KINEMATICS_FIELDS = tuple(f.name for f in dataclasses.fields(Kinematics))


def kinematics(traj_xyz: np.ndarray, traj_yaw: np.ndarray) -> Kinematics:
    """Kinematics of a (64, 3) trajectory and (64,) yaw, or of a batch ((..., 64, 3), (..., 64)):
    one set of array operations for all of a clip's samples, each row computed as on its own."""
    xyz = np.asarray(traj_xyz, dtype=np.float64)
    batch = xyz.shape[:-2]
    xy = np.concatenate([np.zeros((*batch, 1, 2)), xyz[..., :2]], axis=-2)
    velocity = np.diff(xy, axis=-2) / DT
    accel = np.diff(velocity, axis=-2) / DT
    yaw = np.unwrap(np.concatenate([np.zeros((*batch, 1)), np.asarray(traj_yaw, dtype=np.float64)], axis=-1))
    heading = np.stack([np.cos(yaw[..., 1:-1]), np.sin(yaw[..., 1:-1])], -1)
    normal = np.stack([-heading[..., 1], heading[..., 0]], -1)
    lon_accel = np.sum(accel * heading, axis=-1)
    central_velocity = (velocity[..., :-1, :] + velocity[..., 1:, :]) / 2
    speed = np.linalg.norm(central_velocity, axis=-1)
    cross = central_velocity[..., 0] * accel[..., 1] - central_velocity[..., 1] * accel[..., 0]
    moving = speed >= MIN_SPEED_FOR_CURVATURE
    curvature = np.where(moving, cross / np.where(moving, speed, 1.0) ** 3, 0.0)
    yaw_rate = np.diff(yaw) / DT
    return Kinematics(
        lon_accel=lon_accel,
        lat_accel=np.sum(accel * normal, axis=-1),
        curvature=curvature,
        jerk=np.linalg.norm(np.diff(accel, axis=-2) / DT, axis=-1),
        lon_jerk=np.diff(lon_accel) / DT,
        yaw_rate=yaw_rate,
        yaw_accel=np.diff(yaw_rate) / DT,
    )


def _peaks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per trajectory of a batch (leading axis): (signed value with the largest magnitude, its
    time in seconds after t0)."""
    i = np.abs(values).argmax(-1)
    return np.take_along_axis(values, i[:, None], -1)[:, 0], (i + 1) * DT


def physical_failures(kin: Kinematics) -> list[str]:
    """Messages for each hard physical bound the trajectory exceeds."""
    return physical_failures_of_batch(kin[None])[0]


def physical_failures_of_batch(kin: Kinematics) -> list[list[str]]:
    """`physical_failures` of each trajectory of a batch (leading axis)."""
    out = [[] for _ in range(len(kin.lon_accel))]
    for values, bound, what in ((kin.lon_accel, MAX_ACCEL, "longitudinal accel {:.3f} m/s^2"),
                                (kin.curvature, MAX_CURVATURE, "curvature {:.3f} 1/m")):
        peaks, times = _peaks(values)
        for i in np.flatnonzero(np.abs(peaks) > bound + BOUND_SLACK):
            out[i].append(f"{what.format(peaks[i])} at +{times[i]:.1f} s exceeds +-{bound}")
    return out


def comfort_violations(kin: Kinematics) -> dict[str, str]:
    """Comfort bound name -> message, for each bound the trajectory does not keep."""
    return comfort_violations_of_batch(kin[None])[0]


def comfort_violations_of_batch(kin: Kinematics) -> list[dict[str, str]]:
    """`comfort_violations` of each trajectory of a batch (leading axis), one reduction per bound."""
    out = [{} for _ in range(len(kin.lon_accel))]
    for name, (low, high) in COMFORT_BOUNDS.items():
        values = getattr(kin, name)
        los, his = values.min(-1), values.max(-1)
        inclusive = name == "lon_accel"
        bad = ((los < low) | (his > high)) if inclusive else ((los <= low) | (his >= high))
        for i in np.flatnonzero(bad):
            lo, hi = float(los[i]), float(his[i])
            worst = lo if (low - lo) > (hi - high) else hi
            out[i][name] = f"{name} {worst:.3f} outside ({low}, {high})"
    return out


@functools.lru_cache(maxsize=4096)  # a teacher's texts repeat
def is_english(text: str, min_ascii_letter_share: float = 0.9, min_word_share: float = 0.2) -> bool:
    """Cheap test: mostly ASCII letters, and enough of the words are common English words."""
    letters = [c for c in text if c.isalpha()]
    words = _WORD.findall(text.lower())
    if not letters or not words:
        return False
    ascii_share = sum(c.isascii() for c in letters) / len(letters)
    word_share = sum(w in _ENGLISH_WORDS for w in words) / len(words)
    return ascii_share >= min_ascii_letter_share and word_share >= min_word_share


def reasoning_failures(text: str, config: CheckConfig) -> list[tuple[Reason, str]]:
    stripped = text.strip()
    if not stripped:
        return [(Reason.REASONING_EMPTY, "empty reasoning")]
    out = []
    if not config.min_reasoning_chars <= len(stripped) <= config.max_reasoning_chars:
        out.append((Reason.REASONING_LENGTH, f"reasoning of {len(stripped)} characters outside "
                    f"[{config.min_reasoning_chars}, {config.max_reasoning_chars}]"))
    if config.language == "en" and not is_english(stripped, config.min_ascii_letter_share,
                                                         config.min_english_word_share):
        out.append((Reason.REASONING_LANGUAGE, f"reasoning not English: {stripped[:40]!r}"))
    return out


def contradiction(stated_action: tuple[str | None, str | None], trajectory_action: tuple[str, str]) -> str | None:
    """Why the stated meta-action contradicts the trajectory's, or None when it does not."""
    (said_lon, said_lat), (lon, lat) = stated_action, trajectory_action
    if said_lon is not None and abs(_LONGITUDINAL_ORDER.index(said_lon) - _LONGITUDINAL_ORDER.index(lon)) >= 2:
        return f"text states {said_lon!r}, trajectory is {lon!r}"
    sides = {_side(said_lat), _side(lat)}
    if said_lat is not None and sides == {"left", "right"}:
        return f"text states {said_lat!r}, trajectory is {lat!r}"
    return None


def _side(lateral: str | None) -> str | None:
    if lateral is None or lateral == "keep_lane":
        return None
    return "left" if lateral.endswith("left") else "right"


@dataclass
class _SampleResult:
    failures: list[tuple[Reason, str]]
    flags: set[str]
    inconsistency: str | None = None
    row: dict | None = None
    max_abs_accel: float = 0.0
    max_abs_curvature: float = 0.0
    final_xy: np.ndarray | None = None


def _trajectory(sample: dict) -> tuple[np.ndarray, np.ndarray] | tuple[Reason, str]:
    """The sample's (xyz, yaw) as stored (float32), or the failure of its shape or values."""
    try:
        xyz = np.asarray(sample.get("traj_xyz"), dtype=np.float64)
        yaw = np.asarray(sample.get("traj_yaw"), dtype=np.float64)
    except (TypeError, ValueError) as error:
        return Reason.BAD_SHAPE, f"trajectory is not numeric: {error}"
    if xyz.shape != (NUM_FUTURE, 3) or yaw.shape != (NUM_FUTURE,):
        return Reason.BAD_SHAPE, (f"traj_xyz {xyz.shape}, traj_yaw {yaw.shape}; "
                                  f"expected ({NUM_FUTURE}, 3) and ({NUM_FUTURE},)")
    # Check what is stored: float32 (a float64 beyond its range becomes inf).
    with np.errstate(over="ignore"):
        xyz, yaw = xyz.astype(np.float32), yaw.astype(np.float32)
    finite = np.isfinite(xyz).all(axis=1) & np.isfinite(yaw)
    if not finite.all():
        return Reason.NONFINITE, f"non-finite values at waypoints {np.flatnonzero(~finite)[:8].tolist()}"
    return xyz, yaw


def _check_samples(samples: list[dict], v0: float, truth: np.ndarray | None,
                   config: CheckConfig) -> list[_SampleResult]:
    """Each sample's checks; the kinematics, meta-actions and bounds of every well-formed
    trajectory in one batch."""
    trajectories = [_trajectory(sample) for sample in samples]
    formed = [k for k, t in enumerate(trajectories) if isinstance(t[0], np.ndarray)]
    row_of = {k: row for row, k in enumerate(formed)}  # sample -> its row in the batch
    if formed:
        formed_xyz = np.stack([trajectories[k][0] for k in formed])
        formed_yaw = np.stack([trajectories[k][1] for k in formed])
        batch = _BatchChecks(formed_xyz, formed_yaw, v0, truth)
    results = []
    for k, sample in enumerate(samples):
        text = sample.get("reasoning") or ""
        result = _SampleResult(failures=[], flags=set())
        if k in row_of:
            batch.check(row_of[k], result, text, config)
        else:
            result.failures.append(trajectories[k])
        result.failures += reasoning_failures(text, config)
        results.append(result)
    return results


class _BatchChecks:
    """The trajectory checks of a clip's well-formed samples, (S, 64, 3) xyz and (S, 64) yaw
    (float32 values), computed together; `check` fills in one sample's result."""

    def __init__(self, xyz: np.ndarray, yaw: np.ndarray, v0: float, truth: np.ndarray | None):
        kin = kinematics(xyz, yaw)
        self.xyz, self.yaw = xyz, yaw
        self.actions = classify_trajectories(xyz, yaw, v0)
        self.physical = physical_failures_of_batch(kin)
        self.comfort = comfort_violations_of_batch(kin)
        self.xy = xyz[..., :2].astype(np.float64)
        self.ade = None if truth is None else np.mean(np.linalg.norm(self.xy - truth, axis=-1), axis=-1)
        self.max_abs_accel = np.abs(kin.lon_accel).max(-1)
        self.max_abs_curvature = np.abs(kin.curvature).max(-1)

    def check(self, i: int, result: _SampleResult, text: str, config: CheckConfig) -> None:
        action = self.actions[i]
        result.failures += [(Reason.PHYSICAL_BOUNDS, m) for m in self.physical[i]]
        for name, message in self.comfort[i].items():
            if config.reject_comfort:
                result.failures.append((Reason.COMFORT_BOUNDS, message))
            else:
                result.flags.add(f"comfort_{name}")
        result.inconsistency = contradiction(stated(text), action)
        result.max_abs_accel = float(self.max_abs_accel[i])
        result.max_abs_curvature = float(self.max_abs_curvature[i])
        result.final_xy = self.xy[i, -1]
        result.row = {
            "reasoning": text,
            "traj_xyz": self.xyz[i].tolist(),
            "traj_yaw": self.yaw[i].tolist(),
            "meta_action": {"longitudinal": action[0], "lateral": action[1]},
            "ade_m": None if self.ade is None else float(self.ade[i]),
        }


def ego_speed(clip: dict) -> float:
    """Planar speed at t0 (m/s) from the last two ego-history poses."""
    history = np.asarray(clip["ego_history_xyz"], dtype=np.float64)
    return float(np.linalg.norm(history[-1, :2] - history[-2, :2]) / DT)


def future_xy(clip: dict) -> np.ndarray | None:
    """The (64, 2) ground-truth future in the t0 frame, or None where the log ends before 6.4 s."""
    rows = clip.get("ego_future_xyz")
    if rows is None or len(rows) != NUM_FUTURE or any(r is None for r in rows):
        return None
    xy = np.asarray([r[:2] for r in rows], dtype=np.float32).astype(np.float64)  # as stored
    return xy if np.isfinite(xy).all() else None


def sample_spread(final_xy: list[np.ndarray]) -> float:
    """Mean pairwise distance (m) between the samples' final points; 0 for a single sample."""
    pairs = list(itertools.combinations(final_xy, 2))
    return float(np.mean([np.linalg.norm(a - b) for a, b in pairs])) if pairs else 0.0


def quarantine_row(clip: dict, reason: Reason, detail: str) -> dict:
    return {
        "clip_id": clip["clip_id"],
        "source_uri": clip["source_uri"],
        "vehicle_id": clip["vehicle_id"],
        "log_id": clip["log_id"],
        "t0_us": clip["t0_us"],
        "date": clip["date"],
        "stage": STAGE_OF[reason].value,
        "reason": reason.value,
        "detail": detail,
    }


def teacher_error_row(clip: dict, detail: str) -> dict:
    """The quarantine row of a clip on which the teacher raised or returned nothing."""
    return quarantine_row(clip, Reason.TEACHER_ERROR, detail)


def label_row(clip: dict, samples: list[dict], teacher: dict,
              config: CheckConfig = CheckConfig()) -> tuple[dict | None, list[dict]]:
    """Check the teacher's K samples of `clip`: (LABELS row, []) or (None, [QUARANTINE row])."""
    if not samples:
        return None, [teacher_error_row(clip, "the teacher returned no samples")]
    v0 = ego_speed(clip)
    truth = future_xy(clip)
    results = _check_samples(samples, v0, truth, config)
    failed = [(k, r) for k, r in enumerate(results) if r.failures]
    kept = [(k, r) for k, r in enumerate(results) if not r.failures]
    if failed and (config.on_sample_failure == "quarantine_clip" or not kept):
        detail = "; ".join(f"sample {k}: {reason.value}: {message}" for k, r in failed for reason, message in r.failures)
        return None, [quarantine_row(clip, failed[0][1].failures[0][0], detail)]
    flags = set().union(*(r.flags for _, r in kept)) | {f"dropped_{r.failures[0][0].value}" for _, r in failed}
    inconsistent = [(k, r.inconsistency) for k, r in kept if r.inconsistency]
    if len(inconsistent) > config.max_inconsistent_share * len(kept):
        detail = "; ".join(f"sample {k}: {why}" for k, why in inconsistent)
        return None, [quarantine_row(clip, Reason.REASONING_INCONSISTENT, detail)]
    if inconsistent:
        flags.add("reasoning_inconsistent")
    ades = [r.row["ade_m"] for _, r in kept if r.row["ade_m"] is not None]
    return {
        "clip_id": clip["clip_id"],
        "vehicle_id": clip["vehicle_id"],
        "log_id": clip["log_id"],
        "t0_us": clip["t0_us"],
        "date": clip["date"],
        "teacher": {k: teacher[k] for k in ("name", "version", "weights_sha256")},
        "samples": [r.row for _, r in kept],
        "min_ade_m": min(ades) if ades else None,
        "checks": {
            "flags": sorted(flags),
            "sample_spread_m": sample_spread([r.final_xy for _, r in kept]),
            "max_abs_accel": max(r.max_abs_accel for _, r in kept),
            "max_abs_curvature": max(r.max_abs_curvature for _, r in kept),
        },
    }, []


class ValidateLabels(beam.DoFn):
    """Teacher results -> LABELS rows (main output) and QUARANTINE rows (output "quarantine").

    An element is what transforms.inference emits per clip: {"clip": clip row (images may be
    left out), "teacher": {name, version, weights_sha256}, "samples": K samples or None,
    "error": None or {"stage", "reason", "detail"} when the teacher raised (a TEACHER_ERROR row)}.
    Use: `results | beam.ParDo(ValidateLabels()).with_outputs("quarantine", main="labels")`.
    """

    QUARANTINE = "quarantine"

    def __init__(self, config: CheckConfig = CheckConfig()):
        self._config = config

    def process(self, result: dict):
        clip = result["clip"]
        if result.get("error"):
            label, quarantined = None, [teacher_error_row(clip, result["error"]["detail"])]
        else:
            label, quarantined = label_row(clip, result["samples"], result["teacher"], self._config)
        if label is not None:
            beam.metrics.Metrics.counter("validate", "labels").inc()
            yield label
        for row in quarantined:
            beam.metrics.Metrics.counter("validate", row["reason"]).inc()
            yield beam.pvalue.TaggedOutput(self.QUARANTINE, row)
