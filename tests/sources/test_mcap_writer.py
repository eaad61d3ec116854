"""The synthetic MCAP writer, checked with independent readers (rosbags, the mcap library)."""

import os
from pathlib import Path

import fsspec
import numpy as np
import pytest
from mcap.reader import make_reader
from rosbags.highlevel import AnyReader

from schemas.contract import TEACHER_CAMERAS
from sim.cameras import RIG
from transforms.publish import atomic_output
from sim.writers.mcap import camera_phase_us, optical_frame, write_mcap
from tests.fakes import START_US, analytic_drive, solid_render
from transforms.sources.topic_map import DEFAULT, TopicMap, TopicMapError

SECONDS = 3


@pytest.fixture(scope="module")
def drive():
    return analytic_drive("circle", seconds=SECONDS)


@pytest.fixture(scope="module")
def log(drive, tmp_path_factory):
    path = tmp_path_factory.mktemp("logs") / "drive-000.mcap"
    counts = write_mcap(drive, str(path), solid_render)
    return path, counts


def expected_frames(camera: str) -> int:
    return len(range(START_US + camera_phase_us(camera), START_US + SECONDS * 1_000_000 + 1, 100_000))


def read_all(path: Path):
    with AnyReader([path]) as reader:
        counts = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
        messages = [(c.topic, t, reader.deserialize(raw, c.msgtype)) for c, t, raw in reader.messages()]
    return counts, messages


def test_rosbags_reads_topics_types_and_counts(log):
    path, counts = log
    topics, messages = read_all(path)
    assert topics == {
        "/tf_static": ("tf2_msgs/msg/TFMessage", 1),
        "/ego/odom": ("nav_msgs/msg/Odometry", 301),
        "/tf": ("tf2_msgs/msg/TFMessage", 301),
        **{DEFAULT.cameras[c]: ("sensor_msgs/msg/CompressedImage", expected_frames(c)) for c in TEACHER_CAMERAS},
    }
    assert counts == {"frames": sum(expected_frames(c) for c in TEACHER_CAMERAS), "odometry": 301, "tf": 301,
                      "tf_static": 1, "messages": len(messages), "bytes": path.stat().st_size}


def test_odometry_matches_the_drive(log, drive):
    _, messages = read_all(log[0])
    odom = [m for topic, _, m in messages if topic == "/ego/odom"]
    xyz = np.array([[m.pose.pose.position.x, m.pose.pose.position.y, m.pose.pose.position.z] for m in odom])
    quat = np.array([[m.pose.pose.orientation.x, m.pose.pose.orientation.y, m.pose.pose.orientation.z,
                      m.pose.pose.orientation.w] for m in odom])
    stamps = np.array([m.header.stamp.sec * 1_000_000 + m.header.stamp.nanosec // 1000 for m in odom])
    np.testing.assert_allclose(xyz, drive.ego.xyz, atol=1e-6)
    np.testing.assert_allclose(quat, drive.ego.quat, atol=1e-9)
    np.testing.assert_array_equal(stamps, drive.ego.t_us)
    assert {(m.header.frame_id, m.child_frame_id) for m in odom} == {("odom", "base_link")}
    # Twist in the body frame: 8 m/s forward on a 20 m circle -> yaw rate 0.4 rad/s.
    twist = np.array([[m.twist.twist.linear.x, m.twist.twist.linear.y, m.twist.twist.angular.z] for m in odom])
    np.testing.assert_allclose(twist, np.tile([8.0, 0.0, 0.4], (301, 1)), atol=1e-9)


def test_tf_carries_the_same_poses_and_the_static_rig(log, drive):
    _, messages = read_all(log[0])
    tf = [m.transforms[0] for topic, _, m in messages if topic == "/tf"]
    assert {(t.header.frame_id, t.child_frame_id) for t in tf} == {("odom", "base_link")}
    xyz = np.array([[t.transform.translation.x, t.transform.translation.y, t.transform.translation.z] for t in tf])
    np.testing.assert_allclose(xyz, drive.ego.xyz, atol=1e-6)
    (static,) = [m for topic, _, m in messages if topic == "/tf_static"]
    assert [t.child_frame_id for t in static.transforms] == [optical_frame(c) for c in TEACHER_CAMERAS]
    for t, camera in zip(static.transforms, TEACHER_CAMERAS):
        assert t.header.frame_id == "base_link"
        r = t.transform.rotation
        np.testing.assert_allclose([t.transform.translation.x, t.transform.translation.y,
                                    t.transform.translation.z], RIG[camera].xyz)
        np.testing.assert_allclose([r.x, r.y, r.z, r.w], RIG[camera].quat)


def test_cameras_are_asynchronous_and_log_time_trails_the_stamp(log):
    _, messages = read_all(log[0])
    phases = {}
    for topic, log_time, m in messages:
        stamp_ns = m.header.stamp.sec * 10**9 + m.header.stamp.nanosec if hasattr(m, "header") \
            else m.transforms[0].header.stamp.sec * 10**9 + m.transforms[0].header.stamp.nanosec
        if topic != "/tf_static":
            assert 1_000_000 <= log_time - stamp_ns < 4_000_000, topic
        if topic.startswith("/cameras/"):
            assert m.format == "jpeg" and m.header.frame_id.endswith("_optical_frame")
            phases.setdefault(topic, (stamp_ns // 1000 - START_US) % 100_000)
            assert (stamp_ns // 1000 - START_US) % 100_000 == phases[topic]
    # captured 8-16 ms before each 10 Hz tick
    assert len(set(phases.values())) == 4 and all(84_000 < p <= 92_000 for p in phases.values())


def test_file_is_chunked_indexed_compressed_and_in_log_time_order(log):
    with open(log[0], "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary.chunk_indexes and {c.compression for c in summary.chunk_indexes} == {"zstd"}
        assert summary.statistics.message_count == log[1]["messages"]
        times = [m.log_time for _, _, m in reader.iter_messages(log_time_order=False)]
        assert times == sorted(times)
        assert [(m.name, m.metadata) for m in reader.iter_metadata()] == [("vehicle", {"id": "veh-000"})]


def test_same_drive_gives_byte_identical_files(drive, log, tmp_path):
    again = tmp_path / "again.mcap"
    write_mcap(drive, str(again), solid_render)
    assert again.read_bytes() == log[0].read_bytes()


def test_a_writer_killed_midway_leaves_no_file(drive, tmp_path):
    calls = []

    def failing_render(snapshot, camera):
        calls.append(1)
        if len(calls) > 10:
            raise KeyboardInterrupt
        return solid_render(snapshot, camera)

    target = tmp_path / "out" / "killed.mcap"
    with pytest.raises(KeyboardInterrupt):
        write_mcap(drive, str(target), failing_render)
    assert len(calls) == 11 and os.listdir(target.parent) == []


def test_writes_to_memory_urls_and_reports_progress(drive):
    ticks = []
    counts = write_mcap(drive, "memory://fleet/veh-000/drive.mcap", solid_render, cameras=TEACHER_CAMERAS[:2],
                        height=32, width=64, progress=ticks.append)
    fs = fsspec.filesystem("memory")
    assert fs.ls("/fleet/veh-000", detail=False) == ["/fleet/veh-000/drive.mcap"]
    assert fs.size("/fleet/veh-000/drive.mcap") == counts["bytes"]
    assert ticks == [1] * counts["frames"] and counts["frames"] == sum(expected_frames(c) for c in TEACHER_CAMERAS[:2])
    fs.rm("/fleet", recursive=True)


def test_a_camera_without_a_topic_is_refused(drive, tmp_path):
    with pytest.raises(TopicMapError, match="camera_rear_tele_30fov"):
        write_mcap(drive, str(tmp_path / "x.mcap"), solid_render, cameras=["camera_rear_tele_30fov"])
    assert not (tmp_path / "x.mcap").exists()


def test_topic_map_names_the_written_topics(drive, tmp_path):
    topic_map = TopicMap.from_dict({"cameras": {"camera_front_wide_120fov": "/front/jpeg"},
                                    "ego_pose": {"type": "tf", "topic": "/tf_ego", "parent_frame": "map",
                                                 "child_frame": "vehicle"}})
    path = tmp_path / "renamed.mcap"
    write_mcap(drive, str(path), solid_render, cameras=["camera_front_wide_120fov"], height=32, width=64,
               topic_map=topic_map)
    topics, messages = read_all(path)
    assert sorted(topics) == ["/ego/odom", "/front/jpeg", "/tf_ego", "/tf_static"]
    tf = [m.transforms[0] for topic, _, m in messages if topic == "/tf_ego"]
    assert {(t.header.frame_id, t.child_frame_id) for t in tf} == {("map", "vehicle")}


def test_atomic_output_replaces_only_on_success(tmp_path):
    target = tmp_path / "a" / "b.bin"
    with atomic_output(str(target)) as f:
        f.write(b"first")
    with pytest.raises(RuntimeError):
        with atomic_output(str(target)) as f:
            f.write(b"partial")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"first" and os.listdir(target.parent) == ["b.bin"]
    with atomic_output(str(target)) as f:
        f.write(b"second")
    assert target.read_bytes() == b"second" and os.listdir(target.parent) == ["b.bin"]
