"""McapLogSource: round trips through the synthetic writer, topic maps, ranges, damaged logs."""

import json
import tracemalloc

import fsspec
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from schemas.contract import TEACHER_CAMERAS
from schemas.reasons import Reason
from sim.cameras import RIG
from sim.writers import mcap as mcap_writer
from sim.writers.mcap import write_mcap
from tests.fakes import START_US, analytic_drive, jpeg, solid_render
from transforms.sources.base import CameraFrame, EgoPose, LogReadError
from transforms.sources.mcap import McapLogSource
from transforms.sources.topic_map import TopicMap, TopicMapError, load_topic_map

SECONDS = 3
TF = TopicMap.from_dict({"ego_pose": {"type": "tf", "parent_frame": "odom", "child_frame": "base_link"}})
STAMP = TopicMap.from_dict({"time": "header_stamp"})


@pytest.fixture(scope="module")
def drive():
    return analytic_drive("circle", seconds=SECONDS)


@pytest.fixture(scope="module")
def log(drive, tmp_path_factory):
    path = tmp_path_factory.mktemp("veh-folder") / "drive-000.mcap"
    write_mcap(drive, str(path), solid_render)
    return path


def key(m):
    return (type(m).__name__, getattr(m, "camera", ""), m.t_us)


def poses(source):
    ego = [m for m in source.messages() if isinstance(m, EgoPose)]
    return (np.array([m.t_us for m in ego]), np.array([m.xyz for m in ego]), np.array([m.quat for m in ego]))


def test_info(log, drive):
    info = McapLogSource(str(log)).info()
    t, _, _ = poses(McapLogSource(str(log)))
    assert (info.log_id, info.vehicle_id, info.date, info.uri) == ("drive-000", "veh-000", "2026-01-01", str(log))
    assert (info.start_us, info.end_us) == (t[0], t[-1])
    stamped = McapLogSource(str(log), STAMP).info()
    assert (stamped.start_us, stamped.end_us) == (START_US, drive.end_us)


def test_poses_round_trip_in_both_ego_modes(log, drive):
    for topic_map in (STAMP, TopicMap.from_dict({"time": "header_stamp", "ego_pose": {"type": "tf"}})):
        t, xyz, quat = poses(McapLogSource(str(log), topic_map))
        np.testing.assert_array_equal(t, drive.ego.t_us)
        np.testing.assert_allclose(xyz, drive.ego.xyz, atol=1e-6)
        np.testing.assert_allclose(quat, drive.ego.quat, atol=1e-9)
    # By log time the two topics differ only in their transport latency (1-4 ms each).
    odometry, tf = poses(McapLogSource(str(log))), poses(McapLogSource(str(log), TF))
    assert np.all(np.abs(odometry[0] - tf[0]) < 3_000) and np.any(odometry[0] != tf[0])
    np.testing.assert_array_equal(odometry[1], tf[1])
    np.testing.assert_array_equal(odometry[2], tf[2])


def test_images_round_trip_as_recorded(log, drive):
    frames = [m for m in McapLogSource(str(log), STAMP).messages() if isinstance(m, CameraFrame)]
    for camera in TEACHER_CAMERAS:
        mine = [f for f in frames if f.camera == camera]
        phase = mcap_writer.camera_phase_us(camera)
        assert [f.t_us for f in mine] == list(range(START_US + phase, drive.end_us + 1, 100_000))
        spec = RIG[camera].with_resolution(320, 576)
        for f in mine[::7]:
            assert f.encoding == "jpeg" and f.pixels is None
            assert f.data == jpeg(solid_render(drive.snapshot(f.t_us), spec), 90)


def test_log_time_trails_header_stamp(log):
    by_log = list(McapLogSource(str(log)).messages())
    by_stamp = list(McapLogSource(str(log), STAMP).messages())
    lags = []
    for stream in ["", *TEACHER_CAMERAS]:  # "" = the ego poses
        a, b = ([m.t_us for m in ms if getattr(m, "camera", "") == stream] for ms in (by_log, by_stamp))
        assert len(a) == len(b) > 0
        lags += [x - y for x, y in zip(a, b)]
    assert all(1_000 <= lag < 4_000 for lag in lags) and len(set(lags)) > 100
    for messages in (by_log, by_stamp):
        assert [m.t_us for m in messages] == sorted(m.t_us for m in messages)
    assert key(by_stamp[0]) == ("EgoPose", "", START_US)
    for camera in TEACHER_CAMERAS:
        first = next(m for m in by_stamp if getattr(m, "camera", "") == camera)
        assert key(first) == ("CameraFrame", camera, START_US + mcap_writer.camera_phase_us(camera))


@pytest.mark.parametrize("topic_map", [None, STAMP], ids=["log_time", "header_stamp"])
def test_time_ranges_are_exact_and_partition_the_log(log, topic_map):
    source = McapLogSource(str(log), topic_map or TopicMap())
    everything = [key(m) for m in source.messages()]
    cuts = [START_US + 1_234_567, START_US + 1_500_000, START_US + 1_502_000, START_US + 2_000_001]
    for lo, hi in zip(cuts, cuts[1:]):
        assert [key(m) for m in source.messages(lo, hi)] == [k for k in everything if lo <= k[2] < hi]
    parts = [None, *cuts, None]
    pieces = [key(m) for lo, hi in zip(parts, parts[1:]) for m in source.messages(lo, hi)]
    assert sorted(pieces) == sorted(everything) and len(pieces) == 421


def test_topic_map_file_renames_topics_end_to_end(drive, tmp_path):
    renamed = {"cameras": {c: f"/veh/{i}/jpeg" for i, c in enumerate(TEACHER_CAMERAS)},
               "ego_pose": {"topic": "/localization/odometry", "type": "odometry"}, "time": "header_stamp"}
    (tmp_path / "map.json").write_text(json.dumps(renamed))
    (tmp_path / "map.yaml").write_text("cameras:\n" + "".join(f"  {c}: /veh/{i}/jpeg\n" for i, c in
                                       enumerate(TEACHER_CAMERAS)) + "ego_pose: {topic: /localization/odometry}\n"
                                       "time: header_stamp\n")
    topic_map = load_topic_map(str(tmp_path / "map.json"))
    assert load_topic_map(str(tmp_path / "map.yaml")) == topic_map
    path = tmp_path / "renamed.mcap"
    write_mcap(drive, str(path), solid_render, height=32, width=64, topic_map=topic_map)
    messages = list(McapLogSource(str(path), topic_map).messages())
    assert sum(isinstance(m, EgoPose) for m in messages) == 301
    assert {m.camera for m in messages if isinstance(m, CameraFrame)} == set(TEACHER_CAMERAS)
    with pytest.raises(LogReadError) as e:
        McapLogSource(str(path)).info()  # default topics are absent from this log
    assert e.value.reason == Reason.LOG_EMPTY


def test_topic_map_errors_name_the_bad_key(tmp_path):
    for text, bad in [('{"ego_pose": {"type": "pose"}}', "ego_pose.type"), ('{"tme": "log_time"}', "'tme'"),
                      ('{"cameras": {"camera_top": "/x"}}', "cameras.camera_top"),
                      ('{"time": "wall"}', "time must be")]:
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(TopicMapError, match=bad):
            load_topic_map(str(tmp_path / "bad.json"))


def test_memory_urls(drive):
    uri = "memory://logs/veh-007/short.mcap"
    write_mcap(drive, uri, solid_render, height=32, width=64)
    source = McapLogSource(uri)
    assert (source.info().log_id, source.info().vehicle_id) == ("short", "veh-000")
    assert sum(isinstance(m, EgoPose) for m in source.messages()) == 301
    fsspec.filesystem("memory").rm("/logs", recursive=True)


def multi_chunk_log(drive, path, monkeypatch, render=solid_render, height=96, width=160):
    monkeypatch.setattr(mcap_writer, "CHUNK_SIZE", 16 << 10)
    write_mcap(drive, str(path), render, height=height, width=width)
    return path


def test_truncated_tail_is_read_up_to_the_last_complete_chunk(drive, tmp_path, monkeypatch):
    def noisy(snapshot, camera):
        rng = np.random.default_rng([snapshot.t_us, len(camera.name)])
        return rng.integers(0, 255, (camera.height, camera.width, 3), dtype=np.uint8)

    full = multi_chunk_log(drive, tmp_path / "full.mcap", monkeypatch, noisy)
    everything = [key(m) for m in McapLogSource(str(full)).messages()]
    data = full.read_bytes()
    cut = tmp_path / "veh-9" / "cut.mcap"
    cut.parent.mkdir()
    cut.write_bytes(data[: len(data) // 2])
    source = McapLogSource(str(cut))
    recovered = [key(m) for m in source.messages()]
    assert 0 < len(recovered) < len(everything) and recovered == everything[: len(recovered)]
    assert source.info().vehicle_id == "veh-000" and source.info().end_us == max(
        k[2] for k in recovered if k[0] == "EgoPose")
    lo, hi = START_US + 300_000, START_US + 700_000
    assert [key(m) for m in source.messages(lo, hi)] == [k for k in recovered if lo <= k[2] < hi]
    cut.write_bytes(data[:200])  # header and schemas only: nothing complete to read
    with pytest.raises(LogReadError) as e:
        list(McapLogSource(str(cut)).messages())
    assert e.value.reason == Reason.LOG_UNREADABLE


@pytest.mark.parametrize("content", [b"", b"definitely not an mcap file\n" * 50, b"\x89MCAP0\r\n" + b"\0" * 5])
def test_unreadable_inputs_raise_typed_errors(tmp_path, content):
    path = tmp_path / "bad.mcap"
    path.write_bytes(content)
    for call in (lambda s: s.info(), lambda s: list(s.messages())):
        with pytest.raises(LogReadError) as e:
            call(McapLogSource(str(path)))
        assert e.value.reason == Reason.LOG_UNREADABLE


def test_missing_log_is_unreadable(tmp_path):
    with pytest.raises(LogReadError) as e:
        McapLogSource(str(tmp_path / "nope.mcap")).info()
    assert e.value.reason == Reason.LOG_UNREADABLE


def test_rosbag2_folder_of_split_files_is_one_log(tmp_path):
    bag = tmp_path / "veh-042" / "rosbag2_run"
    bag.mkdir(parents=True)
    first = analytic_drive("accel", seconds=1.0)
    second = analytic_drive("accel", seconds=1.0, start_us=START_US + 1_010_000)
    write_mcap(first, str(bag / "run_0.mcap"), solid_render, height=32, width=64)
    write_mcap(second, str(bag / "run_1.mcap"), solid_render, height=32, width=64)
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information:\n  version: 9\n  storage_identifier: mcap\n"
                                       "  relative_file_paths:\n  - run_0.mcap\n  - run_1.mcap\n")
    source = McapLogSource(str(bag), STAMP)
    info = source.info()
    assert (info.log_id, info.vehicle_id, info.start_us, info.end_us) == (
        "rosbag2_run", "veh-000", START_US, second.end_us)
    t, _, _ = poses(source)
    np.testing.assert_array_equal(t, np.concatenate([first.ego.t_us, second.ego.t_us]))
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information:\n  relative_file_paths: [../run_0.mcap]\n")
    with pytest.raises(LogReadError) as e:
        source.messages().__next__()
    assert e.value.reason == Reason.UNSAFE_PATH


def test_reads_a_rosbag2_folder_written_by_rosbags(tmp_path, drive):
    """An independent writer, no vehicle metadata: vehicle_id falls back to the parent folder."""
    typestore = get_typestore(Stores.ROS2_HUMBLE)
    types = typestore.types
    Time, Header = types["builtin_interfaces/msg/Time"], types["std_msgs/msg/Header"]
    bag = tmp_path / "veh-123" / "bag_a"
    image = jpeg(np.full((16, 16, 3), 7, np.uint8))
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        odom = writer.add_connection("/ego/odom", "nav_msgs/msg/Odometry", typestore=typestore)
        cam = writer.add_connection(TopicMap().cameras["camera_front_wide_120fov"],
                                    "sensor_msgs/msg/CompressedImage", typestore=typestore)
        for i, t_us in enumerate(drive.ego.t_us[:50]):
            t = int(t_us)
            header = Header(stamp=Time(sec=t // 10**6, nanosec=t % 10**6 * 1000), frame_id="odom")
            pose = types["geometry_msgs/msg/PoseWithCovariance"](
                pose=types["geometry_msgs/msg/Pose"](
                    position=types["geometry_msgs/msg/Point"](*drive.ego.xyz[i]),
                    orientation=types["geometry_msgs/msg/Quaternion"](*drive.ego.quat[i])),
                covariance=np.zeros(36))
            twist = types["geometry_msgs/msg/TwistWithCovariance"](
                twist=types["geometry_msgs/msg/Twist"](types["geometry_msgs/msg/Vector3"](0, 0, 0),
                                                       types["geometry_msgs/msg/Vector3"](0, 0, 0)),
                covariance=np.zeros(36))
            msg = types["nav_msgs/msg/Odometry"](header=header, child_frame_id="base_link", pose=pose, twist=twist)
            writer.write(odom, t * 1000, typestore.serialize_cdr(msg, "nav_msgs/msg/Odometry"))
            if i % 10 == 0:
                img = types["sensor_msgs/msg/CompressedImage"](header=header, format="rgb8; jpeg compressed bgr8",
                                                               data=np.frombuffer(image, np.uint8))
                writer.write(cam, t * 1000, typestore.serialize_cdr(img, "sensor_msgs/msg/CompressedImage"))
    source = McapLogSource(str(bag))
    info = source.info()
    assert (info.log_id, info.vehicle_id, info.start_us, info.end_us) == (
        "bag_a", "veh-123", START_US, int(drive.ego.t_us[49]))
    messages = list(source.messages())
    frames = [m for m in messages if isinstance(m, CameraFrame)]
    assert len(messages) == 55 and len(frames) == 5
    assert all(f.data == image and f.encoding == "jpeg" for f in frames)
    np.testing.assert_allclose([m.xyz for m in messages if isinstance(m, EgoPose)], drive.ego.xyz[:50], atol=1e-6)


def test_memory_stays_bounded_on_a_long_log(tmp_path):
    """Reading holds about one chunk (1 MiB by default), not the log: peak memory << file size."""
    def noisy(snapshot, camera):
        rng = np.random.default_rng([snapshot.t_us, len(camera.name)])
        return rng.integers(0, 255, (camera.height, camera.width, 3), dtype=np.uint8)

    drive = analytic_drive("circle", seconds=20)
    path = tmp_path / "long.mcap"
    write_mcap(drive, str(path), noisy, height=160, width=256)
    size = path.stat().st_size
    source = McapLogSource(str(path))
    tracemalloc.start()
    try:
        count = sum(1 for _ in source.messages())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 2001 + 4 * 200
    assert size > 25_000_000 and peak < 8_000_000, (size, peak)


def test_a_topic_with_the_wrong_message_type_is_unreadable(log):
    wrong = TopicMap.from_dict({"ego_pose": {"topic": "/tf", "type": "odometry"}})
    with pytest.raises(LogReadError, match="/tf carries tf2_msgs/msg/TFMessage, expected nav_msgs/msg/Odometry"):
        McapLogSource(str(log), wrong).info()
