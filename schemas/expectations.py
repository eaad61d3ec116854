"""Expectation suites for the dataset, as data. `transforms/quality.py` flattens each table to
the scalar columns named here (GX misjudges list columns) and runs the suites with Great
Expectations. Severity "critical" fails `coclabel report --fail-on critical`."""

from dataclasses import dataclass, field

from schemas.contract import (LATERAL_ACTIONS, LONGITUDINAL_ACTIONS, MAX_ACCEL, MAX_CURVATURE,
                              NUM_FRAMES, NUM_FUTURE, TEACHER_CAMERAS)
from schemas.reasons import Reason, Stage

CRITICAL, WARNING = "critical", "warning"


@dataclass(frozen=True)
class Expectation:
    type: str  # GX expectation class name, e.g. "ExpectColumnValuesToBeBetween"
    kwargs: dict = field(default_factory=dict)
    severity: str = CRITICAL
    why: str = ""


# Flattened columns of each table (built by transforms.quality):
# clips: clip_id, vehicle_id, date, t0_us, num_images, history_speed_mps, image_luma, future_complete
# labels (one row per clip): clip_id, vehicle_id, date, num_samples, min_ade_m, sample_spread_m
# samples (one row per teacher sample): clip_id, vehicle_id, date, sample_index, num_waypoints,
#   all_finite, speed_mps, max_abs_accel, max_abs_curvature, reasoning_chars, meta_longitudinal,
#   meta_lateral (kinematics recomputed from the trajectory, not read from the checks)
# quarantine: vehicle_id, date, stage, reason, has_detail
SUITES = {
    "clips": [
        Expectation("ExpectTableRowCountToBeBetween", {"min_value": 1}, CRITICAL, "the run produced clips"),
        Expectation("ExpectColumnValuesToNotBeNull", {"column": "clip_id"}, CRITICAL, "every clip has an id"),
        Expectation("ExpectColumnValuesToBeUnique", {"column": "clip_id"}, CRITICAL, "no duplicated clip"),
        Expectation("ExpectColumnValuesToNotBeNull", {"column": "vehicle_id"}, CRITICAL),
        Expectation("ExpectColumnValuesToBeBetween",
                    {"column": "num_images", "min_value": len(TEACHER_CAMERAS) * NUM_FRAMES,
                     "max_value": len(TEACHER_CAMERAS) * NUM_FRAMES}, CRITICAL, "16 images per clip"),
        Expectation("ExpectColumnValuesToBeBetween",
                    {"column": "history_speed_mps", "min_value": 0, "max_value": 70}, WARNING,
                    "ego speed at t0 is plausible"),
    ],
    "labels": [
        Expectation("ExpectTableRowCountToBeBetween", {"min_value": 1}, CRITICAL, "the run produced labels"),
        Expectation("ExpectColumnValuesToNotBeNull", {"column": "clip_id"}, CRITICAL),
        Expectation("ExpectColumnValuesToBeUnique", {"column": "clip_id"}, CRITICAL, "one label per clip"),
        Expectation("ExpectColumnValuesToBeBetween", {"column": "num_samples", "min_value": 1}, CRITICAL,
                    "every label has samples"),
        Expectation("ExpectColumnValuesToBeBetween",
                    {"column": "min_ade_m", "min_value": 0, "max_value": 20, "mostly": 0.95}, WARNING,
                    "the best sample is near the driven future"),
        Expectation("ExpectColumnValuesToBeBetween",
                    {"column": "sample_spread_m", "min_value": 0, "max_value": 30, "mostly": 0.95}, WARNING,
                    "samples mostly agree"),
    ],
    "samples": [
        Expectation("ExpectColumnValuesToBeInSet", {"column": "all_finite", "value_set": [True]}, CRITICAL,
                    "no NaN or inf in any trajectory"),
        Expectation("ExpectColumnValuesToBeBetween",
                    {"column": "num_waypoints", "min_value": NUM_FUTURE, "max_value": NUM_FUTURE}, CRITICAL,
                    "64 waypoints per sample"),
        Expectation("ExpectColumnValuesToBeBetween",
                    {"column": "max_abs_accel", "min_value": 0, "max_value": MAX_ACCEL + 0.01}, CRITICAL,
                    "acceleration within the action-space bound"),
        Expectation("ExpectColumnValuesToBeBetween",
                    {"column": "max_abs_curvature", "min_value": 0, "max_value": MAX_CURVATURE + 0.01},
                    CRITICAL, "curvature within the action-space bound"),
        Expectation("ExpectColumnValuesToBeBetween", {"column": "speed_mps", "min_value": 0, "max_value": 70},
                    WARNING, "plausible speeds"),
        Expectation("ExpectColumnValuesToBeBetween",
                    {"column": "reasoning_chars", "min_value": 8, "max_value": 400}, CRITICAL,
                    "every reasoning has a sensible length"),
        Expectation("ExpectColumnValuesToBeInSet",
                    {"column": "meta_longitudinal", "value_set": list(LONGITUDINAL_ACTIONS)}, CRITICAL),
        Expectation("ExpectColumnValuesToBeInSet",
                    {"column": "meta_lateral", "value_set": list(LATERAL_ACTIONS)}, CRITICAL),
    ],
    "quarantine": [
        Expectation("ExpectColumnValuesToBeInSet",
                    {"column": "reason", "value_set": [r.value for r in Reason]}, CRITICAL,
                    "reason codes come from the closed list"),
        Expectation("ExpectColumnValuesToBeInSet", {"column": "stage", "value_set": [s.value for s in Stage]},
                    CRITICAL),
        Expectation("ExpectColumnValuesToBeInSet", {"column": "has_detail", "value_set": [True]}, WARNING,
                    "every quarantine row says what failed"),
    ],
}


def freshness(max_age_days: int) -> Expectation:
    """Per-partition freshness: every partition at most `max_age_days` old (column `age_days`)."""
    return Expectation("ExpectColumnValuesToBeBetween",
                       {"column": "age_days", "min_value": 0, "max_value": max_age_days}, WARNING,
                       f"partitions are at most {max_age_days} days old")
