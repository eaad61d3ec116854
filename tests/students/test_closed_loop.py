import numpy as np
import pytest

from sim.closed_loop import Episode, rectangles_overlap, run_episodes, summarise


class ScriptedPolicy:
    """Drives a fixed trajectory in the ego frame (the clip's images must still be 16 JPEGs)."""

    def __init__(self, xyz):
        self.xyz = np.asarray(xyz, dtype=np.float32)
        self.clips = []

    def predict(self, clips, num_samples, seeds):
        self.clips += clips
        assert len(clips[0]["images"]) == 16 and clips[0]["ego_history_xyz"].shape == (16, 3)
        yaw = np.zeros(64, np.float32)
        return [[{"reasoning": "", "traj_xyz": self.xyz, "traj_yaw": yaw}] * num_samples for _ in clips]


def test_rectangles_overlap():
    assert rectangles_overlap((0, 0), 0.0, (2, 1), (3.9, 0), 0.0, (2, 1))
    assert not rectangles_overlap((0, 0), 0.0, (2, 1), (4.1, 0), 0.0, (2, 1))
    # rotated 90 degrees: its half length now extends along y
    assert rectangles_overlap((0, 0), 0.0, (2, 1), (0, 2.9), np.pi / 2, (2, 1))
    assert not rectangles_overlap((0, 0), 0.0, (2, 1), (0, 3.1), np.pi / 2, (2, 1))


def test_standing_still_makes_no_progress_and_history_is_in_the_ego_frame():
    policy = ScriptedPolicy(np.zeros((64, 3)))
    row = Episode(6, duration_s=1.0, replan_s=1.0, render_scale=0.25).run(policy)
    assert row["progress_m"] == pytest.approx(0.0, abs=1e-6) and row["progress"] == pytest.approx(0.0, abs=1e-6)
    assert not row["failed"] and row["expert_progress_m"] > 5.0 and row["seconds"] == pytest.approx(1.0)
    hist = policy.clips[0]["ego_history_xyz"]
    np.testing.assert_allclose(hist[-1], 0.0, atol=1e-5)
    assert (np.diff(hist[:, 0]) > 0).all()  # the expert drove forward before the hand-over


def test_swerving_off_the_road_fails_the_episode():
    t = (np.arange(64) + 1) * 0.1
    xyz = np.stack([10 * t, 8 * t, 0 * t], -1)  # 8 m/s to the left
    rows = run_episodes(ScriptedPolicy(xyz), [6], duration_s=3.0, replan_s=3.0, render_scale=0.25)
    assert rows[0]["offroad"] and rows[0]["failed"] and rows[0]["seconds"] < 3.0
    summary = summarise([{"policy": "swerve", **rows[0]}])
    assert summary == [{"policy": "swerve", "episodes": 1, "collision_rate": float(rows[0]["collision"]),
                        "offroad_rate": 1.0, "failure_rate": 1.0, "progress": rows[0]["progress"]}]


def test_episodes_are_deterministic():
    xyz = np.stack([(np.arange(64) + 1) * 1.0, np.zeros(64), np.zeros(64)], -1)
    a = Episode(3, duration_s=1.0, replan_s=0.5, render_scale=0.25).run(ScriptedPolicy(xyz))
    b = Episode(3, duration_s=1.0, replan_s=0.5, render_scale=0.25).run(ScriptedPolicy(xyz))
    assert a == b and a["family"] == "turn_only_lane"
