"""Scene truth: reasoning texts, segments and the sidecar file."""

import itertools
import json

import fsspec
import numpy as np
import pytest

from models.meta_actions import stated
from schemas.contract import LATERAL_ACTIONS, LONGITUDINAL_ACTIONS
from sim.drive import Segment
from sim.fleet import simulate_drive
from sim.reasoning import CAUSES, action_clauses, cause_clauses, cause_of, reasoning_text
from sim.truth import TRUTH_VERSION, build_segments, read_sidecar, segment_at, truth_record, write_sidecar
from tests.fakes import analytic_drive

START = 1_767_254_400_000_000

PHASES = {  # the (cause, phase) pairs the expert and the truth builder produce
    "red_light": ("approach", "hold", "far"),
    "green_light": ("go", "pending"),
    "lead_vehicle": ("follow", "far", "opening", "overtake", "passing"),
    "turn_only_lane": ("avoid", "straight"),
    "curve": ("approach", "far", "in", "exit"),
    "pedestrian": ("yield", "hold", "far", "pending", "cleared"),
    "clear_road": ("cruise", "return"),
}
KEYWORDS = {"red_light": "red", "green_light": "green", "turn_only_lane": "turn-only", "curve": "curv",
            "pedestrian": "pedestrian"}


@pytest.fixture(scope="module")
def drive():
    return simulate_drive("veh-003", 11, 90.0, START, night=True)


def test_every_cause_and_phase_has_three_phrasings_naming_the_cause():
    assert set(PHASES) == set(CAUSES)
    for cause, phases in PHASES.items():
        for phase in phases:
            clauses = cause_clauses(cause, phase)
            assert len(set(clauses)) >= 3
            for clause in clauses:
                assert cause_of(f"Keep speed since {clause}.") == cause, clause
                if cause in KEYWORDS:
                    assert KEYWORDS[cause] in clause
    with pytest.raises(ValueError, match="unknown cause"):
        cause_clauses("weather", "rain")


def test_action_clauses_state_their_meta_action():
    for cause, longitudinal, lateral, speed in itertools.product(
            CAUSES, LONGITUDINAL_ACTIONS, LATERAL_ACTIONS, (0.0, 1.0, 10.0)):
        options = action_clauses(cause, longitudinal, lateral, speed)
        assert len(set(options)) >= 3
        for action in options:
            got_long, got_lat = stated(action + ".")
            assert got_long == longitudinal, action
            assert got_lat in (None, lateral) if lateral == "keep_lane" else got_lat == lateral, action


def test_reasoning_text_is_deterministic_and_varied():
    texts = {reasoning_text("red_light", "approach", "stop", "keep_lane", 5.0, seed) for seed in range(40)}
    assert len(texts) >= 3
    assert reasoning_text("red_light", "approach", "stop", "keep_lane", 5.0, 7) == \
        reasoning_text("red_light", "approach", "stop", "keep_lane", 5.0, 7)
    for text in texts:
        assert cause_of(text) == "red_light" and stated(text)[0] == "stop"
    pending = reasoning_text("green_light", "pending", "accelerate", "keep_lane", 0.0, 1)
    assert " once " in pending and cause_of(pending) == "green_light" and stated(pending)[0] == "accelerate"


@pytest.mark.parametrize("text, cause", [
    ("Stop at the stop line since the traffic light is red.", "red_light"),
    ("Proceed through the intersection since the light turned green.", "green_light"),
    ("Slow down because a slower vehicle is ahead.", "lead_vehicle"),
    ("Change lanes to the left as the right lane is turn-only.", "turn_only_lane"),
    ("Decelerate since the road curves ahead.", "curve"),
    ("Stop before the crosswalk since a pedestrian is crossing.", "pedestrian"),
    ("Keep speed since there are no obstacles ahead.", "clear_road"),
    ("Accelerate once the pedestrian has crossed the red-brick plaza", "pedestrian"),
    ("Turn left at the next street.", None),
])
def test_cause_of(text, cause):
    assert cause_of(text) == cause


def test_segments_from_a_known_decision_log():
    """A straight drive at 10 m/s that stops at t = 10 s: decisions say clear road then red light."""
    n = 2001
    t_us = START + 10_000 * np.arange(n, dtype=np.int64)
    t = np.arange(n) * 0.01
    speed = np.where(t < 5.0, 10.0, np.maximum(10.0 - 2.0 * (t - 5.0), 0.0))
    x = np.concatenate([[0.0], np.cumsum(0.5 * (speed[1:] + speed[:-1]) * 0.01)])
    xyz = np.stack([x, np.zeros(n), np.zeros(n)], -1)
    decisions = [("clear_road", "cruise") if ti < 5.0 else (("red_light", "approach") if s > 0 else ("red_light", "hold"))
                 for ti, s in zip(t, speed)]
    segs = build_segments(t_us, xyz, np.zeros(n), speed, np.full(n, -1.75), decisions, ["red_light"] * n, seed=0)
    assert segs[0].t_start_us == START and segs[-1].t_end_us == int(t_us[-1])
    assert all(a.t_end_us == b.t_start_us for a, b in zip(segs, segs[1:]))
    assert all(s.t_start_us % 100_000 == START % 100_000 for s in segs)  # on the 10 Hz t0 grid
    # braking within the horizon from t0 = 0 on, explained by the red light the expert sees later
    assert (segs[0].cause, segs[0].longitudinal, segs[0].t_start_us) == ("red_light", "decelerate", START)
    # standing at the end of the horizon (mean speed of its last 0.5 s < 0.3 m/s) from t0 = 3.8 s
    assert [(s.t_start_us - START, s.longitudinal) for s in segs] == [
        (0, "decelerate"), (3_800_000, "stop"), (8_600_000, "stop"), (10_000_000, "stop")]
    assert all(s.cause == "red_light" and s.lateral == "keep_lane" for s in segs)
    assert stated(segs[-1].reasoning)[0] == "stop"
    assert any(w in segs[-1].reasoning for w in ("Stay stopped", "Remain stopped", "Wait"))  # standing still


def test_truth_record_contents(drive):
    record = truth_record(drive)
    assert record["truth_version"] == TRUTH_VERSION
    assert (record["vehicle_id"], record["seed"], record["night"], record["start_us"]) == ("veh-003", 11, True, START)
    ego = record["ego"]
    assert ego["rate_hz"] == 10 and len(ego["t_us"]) == 901 and ego["t_us"][1] - ego["t_us"][0] == 100_000
    np.testing.assert_allclose(ego["xyz"], drive.ego.xyz[::10], atol=1e-4)
    assert [Segment(**s) for s in record["segments"]] == drive.segments
    for light_id, changes in record["lights"].items():
        assert changes[0] == [START, "red"] or changes[0] == [START, "green"]
        assert all(a[0] < b[0] for a, b in zip(changes, changes[1:]))
    json.dumps(record)  # plain JSON types only


@pytest.mark.parametrize("scheme", ["file", "memory"])
def test_sidecar_round_trip(drive, tmp_path, scheme):
    uri = f"{tmp_path}/veh-003/log.truth.json" if scheme == "file" else "memory://truth/veh-003/log.truth.json"
    write_sidecar(drive, uri)
    record = read_sidecar(uri)
    assert record == json.loads(json.dumps(truth_record(drive)))
    fs, path = fsspec.core.url_to_fs(uri)
    assert [p.rsplit("/", 1)[-1] for p in fs.ls(path.rsplit("/", 1)[0], detail=False)] == ["log.truth.json"]
    for t in (drive.start_us, drive.start_us + 33_333_000, drive.end_us):
        assert segment_at(record, t) == segment_at(drive, t)


def test_segment_at_boundaries(drive):
    segs = drive.segments
    assert segment_at(drive, segs[1].t_start_us) == segs[1]
    assert segment_at(drive, segs[1].t_start_us - 1) == segs[0]
    assert segment_at(drive, drive.end_us) == segs[-1]
    with pytest.raises(ValueError):
        segment_at(drive, drive.start_us - 1)
    with pytest.raises(ValueError):
        segment_at(drive, drive.end_us + 1)


def test_read_sidecar_rejects_other_files(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="truth sidecar"):
        read_sidecar(str(path))


def test_sidecar_of_an_analytic_drive():
    record = truth_record(analytic_drive("circle", seconds=5.0))
    assert record["segments"][0]["cause"] == "clear_road"
    np.testing.assert_allclose(record["ego"]["speed"], 8.0, atol=1e-6)
    assert record["lights"] == {} and record["instances"] == []
