"""Label checks on analytic trajectories (transforms/validate.py)."""

import math

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas.ids import clip_id
from schemas.reasons import Reason
from transforms.validate import (
    CheckConfig,
    ValidateLabels,
    comfort_violations,
    comfort_violations_of_batch,
    contradiction,
    is_english,
    kinematics,
    label_row,
    physical_failures,
    physical_failures_of_batch,
    teacher_error_row,
)

T = (np.arange(64) + 1) * 0.1  # waypoint times after t0
TEACHER = {"name": "tiny", "version": "1", "weights_sha256": "ab" * 32, "extra": "ignored"}
KEEP = "Keep speed since the road ahead is clear."


def straight(v=10.0):
    return np.stack([v * T, np.zeros(64), np.zeros(64)], -1), np.zeros(64)


def accelerating(v0=5.0, a=2.0):
    return np.stack([v0 * T + 0.5 * a * T * T, np.zeros(64), np.zeros(64)], -1), np.zeros(64)


def circle(v, kappa):
    theta = v * kappa * T
    return np.stack([np.sin(theta) / kappa, (1 - np.cos(theta)) / kappa, np.zeros(64)], -1), theta


def make_clip(v=10.0, future=None, complete=True):
    future = straight(v)[0] if future is None else future
    rows = future.tolist()
    if not complete:
        rows[50:] = [None] * 14
    return {
        "clip_id": clip_id("log-a", 5_000_000),
        "vehicle_id": "veh-1",
        "log_id": "log-a",
        "t0_us": 5_000_000,
        "date": "2026-01-01",
        "source_uri": "memory://fleet/log-a.mcap",
        "ego_history_xyz": [[v * (i - 15) * 0.1, 0.0, 0.0] for i in range(16)],
        "ego_future_xyz": rows,
    }


def sample(traj, reasoning=KEEP):
    xyz, yaw = traj
    return {"reasoning": reasoning, "traj_xyz": xyz, "traj_yaw": yaw}


def only_quarantine(clip, samples, config=CheckConfig()):
    label, quarantined = label_row(clip, samples, TEACHER, config)
    assert label is None and len(quarantined) == 1
    return quarantined[0]


def test_straight_line_passes_with_exact_zeros():
    label, quarantined = label_row(make_clip(), [sample(straight())] * 3, TEACHER)
    assert quarantined == []
    assert label["min_ade_m"] == 0.0
    assert label["checks"]["sample_spread_m"] == 0.0
    assert label["checks"]["flags"] == []
    assert label["checks"]["max_abs_curvature"] == 0.0
    assert label["checks"]["max_abs_accel"] < 1e-3  # float32 rounding of the waypoints
    assert label["teacher"] == {"name": "tiny", "version": "1", "weights_sha256": "ab" * 32}
    assert [s["meta_action"] for s in label["samples"]] == [{"longitudinal": "keep_speed", "lateral": "keep_lane"}] * 3
    assert [s["ade_m"] for s in label["samples"]] == [0.0] * 3
    assert np.array_equal(label["samples"][0]["traj_xyz"], straight()[0].astype(np.float32))
    assert (label["clip_id"], label["log_id"], label["t0_us"], label["date"]) == (
        clip_id("log-a", 5_000_000), "log-a", 5_000_000, "2026-01-01")


def test_ade_and_spread_of_samples_at_other_speeds():
    label, _ = label_row(make_clip(v=10.0), [sample(straight(v)) for v in (10.0, 11.0, 13.0)], TEACHER)
    # ADE = |dv| * mean(t) = |dv| * 3.25 s; final points 6.4 s * dv apart.
    assert [s["ade_m"] for s in label["samples"]] == pytest.approx([0.0, 3.25, 9.75], rel=1e-6)
    assert label["min_ade_m"] == 0.0
    assert label["checks"]["sample_spread_m"] == pytest.approx((6.4 + 19.2 + 12.8) / 3, rel=1e-6)


def test_incomplete_future_gives_null_ade():
    label, _ = label_row(make_clip(complete=False), [sample(straight())], TEACHER)
    assert label["min_ade_m"] is None and label["samples"][0]["ade_m"] is None


def test_kinematics_of_a_circle_and_a_constant_acceleration():
    kin = kinematics(*circle(8.0, 0.05))
    assert np.allclose(kin.curvature, 0.05, rtol=1e-3)
    assert np.allclose(kin.lat_accel, 8.0**2 * 0.05, rtol=1e-3)
    assert np.allclose(kin.lon_accel, 0.0, atol=1e-9)
    assert np.allclose(kin.yaw_rate, 0.4) and np.allclose(kin.yaw_accel, 0.0, atol=1e-9)
    kin = kinematics(*accelerating(5.0, 2.0))
    assert np.allclose(kin.lon_accel, 2.0) and np.allclose(kin.jerk, 0.0, atol=1e-8)


def test_kinematics_of_a_batch_are_bit_for_bit_each_trajectorys_own():
    rng = np.random.default_rng(0)
    noisy = (rng.normal(size=(64, 3)).cumsum(0).astype(np.float32), rng.normal(size=64).cumsum().astype(np.float32))
    trajectories = [circle(8.0, 0.05), accelerating(5.0, 2.0), noisy, straight()]
    batch = kinematics(np.stack([t[0] for t in trajectories]), np.stack([t[1] for t in trajectories]))
    assert batch.lon_accel.shape == (4, 63) and batch.jerk.shape == (4, 62) and batch.yaw_rate.shape == (4, 64)
    for j, trajectory in enumerate(trajectories):
        one = kinematics(*trajectory)
        for name in ("lon_accel", "lat_accel", "curvature", "jerk", "lon_jerk", "yaw_rate", "yaw_accel"):
            assert np.array_equal(getattr(batch[j], name), getattr(one, name)), name


def test_bounds_of_a_batch_are_each_trajectorys_own():
    rng = np.random.default_rng(0)
    noisy = (rng.normal(size=(64, 3)).cumsum(0).astype(np.float32), rng.normal(size=64).cumsum().astype(np.float32))
    trajectories = [straight(), noisy, circle(10.0, 0.06), accelerating(5.0, 3.0)]
    batch = kinematics(np.stack([t[0] for t in trajectories]), np.stack([t[1] for t in trajectories]))
    physical, comfort = physical_failures_of_batch(batch), comfort_violations_of_batch(batch)
    assert physical == [physical_failures(kinematics(*t)) for t in trajectories]
    assert comfort == [comfort_violations(kinematics(*t)) for t in trajectories]
    assert physical[0] == [] and comfort[0] == {}  # a straight cruise keeps every bound
    assert len(physical[1]) == 2 and physical[1][0].startswith("longitudinal accel")  # the random walk breaks both
    assert list(comfort[2]) == ["lat_accel"] and list(comfort[3]) == ["lon_accel"]  # 6 m/s^2 sideways; 3 ahead


def test_nan_is_nonfinite_with_sample_index():
    xyz, yaw = straight()
    xyz = xyz.copy()
    xyz[10, 1] = np.nan
    row = only_quarantine(make_clip(), [sample(straight()), sample((xyz, yaw))])
    assert row["reason"] == Reason.NONFINITE.value and row["stage"] == "validate"
    assert row["detail"].startswith("sample 1: nonfinite:") and "[10]" in row["detail"]
    assert (row["clip_id"], row["source_uri"], row["t0_us"]) == (
        clip_id("log-a", 5_000_000), "memory://fleet/log-a.mcap", 5_000_000)


def test_63_points_is_bad_shape():
    xyz, yaw = straight()
    assert only_quarantine(make_clip(), [sample((xyz[:63], yaw))])["reason"] == Reason.BAD_SHAPE.value
    ragged = {"reasoning": KEEP, "traj_xyz": [[0.0, 1.0, 2.0], [1.0]], "traj_yaw": [0.0]}
    assert only_quarantine(make_clip(), [ragged])["reason"] == Reason.BAD_SHAPE.value


def test_curvature_half_is_physical_bounds():
    row = only_quarantine(make_clip(v=2.0), [sample(circle(2.0, 0.5), "Turn left since the road bends.")])
    assert row["reason"] == Reason.PHYSICAL_BOUNDS.value
    assert "curvature 0.50" in row["detail"]


def test_hard_braking_is_physical_bounds():
    t = np.minimum(T, 2.5)  # -12 m/s^2 from 30 m/s: stopped at 2.5 s
    xyz = np.stack([30.0 * t - 6.0 * t * t, np.zeros(64), np.zeros(64)], -1)
    row = only_quarantine(make_clip(v=30.0), [sample((xyz, np.zeros(64)), "Stop since a pedestrian is crossing.")])
    assert row["reason"] == Reason.PHYSICAL_BOUNDS.value and "longitudinal accel -12.0" in row["detail"]


def test_lateral_accel_6_is_a_comfort_flag_or_rejected():
    v = math.sqrt(6.0 / 0.1)  # v^2 kappa = 6 m/s^2 at kappa 0.1 (yaw rate 0.77 rad/s, jerk 4.6 m/s^3)
    traj = circle(v, 0.1)
    text = "Turn left since the route goes left at the intersection."
    label, quarantined = label_row(make_clip(v=v), [sample(traj, text)], TEACHER)
    assert quarantined == [] and label["checks"]["flags"] == ["comfort_lat_accel"]
    assert label["samples"][0]["meta_action"] == {"longitudinal": "keep_speed", "lateral": "turn_left"}
    # A chord-based curvature reads 1 / (R cos^2(theta / 2)): 0.15 % high at 0.077 rad per step.
    assert label["checks"]["max_abs_curvature"] == pytest.approx(0.1, rel=2e-3)
    assert label["min_ade_m"] > 0
    row = only_quarantine(make_clip(v=v), [sample(traj, text)], CheckConfig(reject_comfort=True))
    assert row["reason"] == Reason.COMFORT_BOUNDS.value and "lat_accel 5.997 outside (-4.89, 4.89)" in row["detail"]


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", Reason.REASONING_EMPTY),
        ("   \n", Reason.REASONING_EMPTY),
        (None, Reason.REASONING_EMPTY),
        ("Keep the speed. " * 30, Reason.REASONING_LENGTH),
        ("Go on.", Reason.REASONING_LENGTH),
        ("Geschwindigkeit halten, weil die Straße frei ist.", Reason.REASONING_LANGUAGE),
        ("保持车速，因为前方道路畅通。", Reason.REASONING_LANGUAGE),
    ],
)
def test_reasoning_checks(text, reason):
    assert only_quarantine(make_clip(), [sample(straight(), text)])["reason"] == reason.value


def test_language_check_can_be_disabled_and_length_configured():
    text = "Geschwindigkeit halten, weil die Straße frei ist."
    label, _ = label_row(make_clip(), [sample(straight(), text)], TEACHER, CheckConfig(language=None))
    assert label is not None
    row = only_quarantine(make_clip(), [sample(straight())], CheckConfig(max_reasoning_chars=20))
    assert row["reason"] == Reason.REASONING_LENGTH.value and "41 characters" in row["detail"]
    with pytest.raises(ValueError):
        CheckConfig(language="de")


def test_is_english():
    assert is_english("Stop at the stop line since the light is red.")
    assert is_english("Yield to the pedestrian.") and is_english("Decelerate for the cyclist ahead.")
    assert not is_english("Anhalten, weil die Ampel rot ist.")
    assert not is_english("Anhalten, weil die Ampel in der Kreuzung rot ist.")  # "in" alone is not enough
    assert not is_english("Arrêt car le feu est rouge.")
    assert not is_english("1234 !!")


def test_stop_text_with_accelerating_trajectory_is_inconsistent():
    clip = make_clip(v=5.0, future=accelerating(5.0, 2.0)[0])
    row = only_quarantine(clip, [sample(accelerating(5.0, 2.0), "Stop since the light is red.")])
    assert row["reason"] == Reason.REASONING_INCONSISTENT.value
    assert row["detail"] == "sample 0: text states 'stop', trajectory is 'accelerate'"


def test_minority_inconsistency_is_a_flag():
    clip = make_clip(v=5.0, future=accelerating(5.0, 2.0)[0])
    good = sample(accelerating(5.0, 2.0), "Accelerate since the light turned green.")
    bad = sample(accelerating(5.0, 2.0), "Stop since the light is red.")
    label, quarantined = label_row(clip, [good, good, bad], TEACHER)
    assert quarantined == [] and label["checks"]["flags"] == ["reasoning_inconsistent"]
    assert len(label["samples"]) == 3


def test_contradiction_rules():
    assert contradiction(("stop", None), ("decelerate", "keep_lane")) is None
    assert contradiction(("stop", None), ("keep_speed", "keep_lane")) is not None
    assert contradiction((None, "turn_left"), ("keep_speed", "lane_change_left")) is None
    assert contradiction((None, "turn_left"), ("keep_speed", "turn_right")) is not None
    assert contradiction((None, "keep_lane"), ("keep_speed", "turn_right")) is None
    assert contradiction((None, None), ("accelerate", "turn_right")) is None


def test_drop_sample_policy_keeps_the_good_samples():
    xyz, yaw = straight()
    broken = sample((xyz[:63], yaw))
    config = CheckConfig(on_sample_failure="drop_sample")
    label, quarantined = label_row(make_clip(), [sample(straight()), broken, sample(straight())], TEACHER, config)
    assert quarantined == [] and len(label["samples"]) == 2
    assert label["checks"]["flags"] == ["dropped_bad_shape"]
    row = only_quarantine(make_clip(), [broken, sample(straight(), "")], config)
    assert row["reason"] == Reason.BAD_SHAPE.value
    assert "sample 1: reasoning_empty" in row["detail"]


def test_teacher_error_rows():
    row = only_quarantine(make_clip(), [])
    assert (row["stage"], row["reason"]) == ("teacher", "teacher_error")
    assert teacher_error_row(make_clip(), "CUDA out of memory")["detail"] == "CUDA out of memory"


def test_dofn_splits_labels_and_quarantine():
    bad_clip = dict(make_clip(), clip_id="c2", t0_us=5_500_000)
    results = [
        {"clip": make_clip(), "teacher": TEACHER, "samples": [sample(straight())], "error": None},
        {"clip": bad_clip, "teacher": TEACHER, "samples": [sample(straight(), "")], "error": None},
        {"clip": bad_clip, "teacher": TEACHER, "samples": None,
         "error": {"stage": "teacher", "reason": "teacher_error", "detail": "RuntimeError: boom"}},
    ]
    with test_pipeline.TestPipeline(runner="BundleBasedDirectRunner") as p:
        out = p | beam.Create(results) | beam.ParDo(ValidateLabels()).with_outputs(ValidateLabels.QUARANTINE, main="labels")
        assert_that(out.labels | beam.Map(lambda r: r["clip_id"]), equal_to([make_clip()["clip_id"]]), label="labels")
        assert_that(out.quarantine | beam.Map(lambda r: (r["clip_id"], r["stage"], r["reason"], r["detail"])),
                    equal_to([("c2", "validate", "reasoning_empty", "sample 0: reasoning_empty: empty reasoning"),
                              ("c2", "teacher", "teacher_error", "RuntimeError: boom")]), label="quarantine")


def test_is_english_answers_a_repeated_text_from_its_cache():
    from transforms.validate import is_english

    is_english.cache_clear()
    text = "Stop at the stop line since the light is red."
    assert is_english(text) and is_english(text) and not is_english("Arrêtez-vous à la ligne d'arrêt.")
    assert (is_english.cache_info().hits, is_english.cache_info().misses) == (1, 2)
