"""The PAI writer's output, read back by the `physical_ai_av` devkit's own readers."""

import io
import json
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from physical_ai_av import calibration, egomotion, video
from physical_ai_av.dataset import PhysicalAIAVDatasetInterface

from models.geometry import to_ego_frame, yaw_to_matrix
from schemas.contract import TEACHER_CAMERAS
from sim.cameras import RIG, camera_phase_us
from sim.scene import Snapshot
from sim.writers.pai import CLIP_NAMESPACE, VEHICLE_DIMENSIONS, _encode_h264, write_pai
from tests.fakes import START_US, accel_pose, analytic_drive, circle_pose, solid_render

H, W = 64, 96
CLIP_S = 2.0


def _drives():
    return [analytic_drive("circle", seconds=4.5, vehicle_id="veh-a", log_name="a"),
            analytic_drive("accel", seconds=2.0, vehicle_id="veh-b", log_name="b")]


def _write(root, render=solid_render, **kw):
    args = dict(height=H, width=W, clip_seconds=CLIP_S, clips_per_chunk=2)
    return write_pai(_drives(), str(root), render, **{**args, **kw})


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("pai")
    return root, _write(root)


def _member(root: Path, feature: str, alias: str, clip_id: str) -> bytes:
    features = pd.read_csv(root / "features.csv", index_col="feature")
    chunk = int(pd.read_parquet(root / "clip_index.parquet").at[clip_id, "chunk"])
    member = json.loads(features.at[feature, "clip_files_in_zip"])[alias].format(clip_id=clip_id)
    with zipfile.ZipFile(root / features.at[feature, "chunk_path"].format(chunk_id=chunk)) as zf:
        return zf.read(member)


def _clips(fleet):
    """(clip_id, kind, anchor offset in s) in drive order: circle 4.5 s -> 2 + 2 (+0.5 s tail
    dropped), accel 2 s -> 1 clip."""
    _, result = fleet
    return list(zip(result["clip_ids"], ["circle", "circle", "accel"], [0.0, 2.0, 0.0]))


def test_clips_chunks_and_ids(fleet):
    root, result = fleet
    expected = [str(uuid.uuid5(CLIP_NAMESPACE, key)) for key in ("veh-a/a/0/0", "veh-a/a/0/1", "veh-b/b/0/0")]
    assert result["clip_ids"] == expected
    assert result["chunks"] == 2
    assert result["frames"] == 3 * 4 * 20  # 3 clips x 4 cameras x 2 s at 10 Hz
    index = pd.read_parquet(root / "clip_index.parquet")
    assert index.index.name == "clip_id"
    assert index["chunk"].to_dict() == {expected[0]: 0, expected[1]: 0, expected[2]: 1}
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == sorted(
        str(Path(f).relative_to(root)) for f in result["files"])


def test_layout_files_parse_as_the_reference_says(fleet):
    root, result = fleet
    features = pd.read_csv(root / "features.csv", index_col="feature")
    assert list(features.columns) == ["directory", "chunk_path", "clip_files_in_zip"]
    assert set(features.index) == {*TEACHER_CAMERAS, "egomotion", "camera_intrinsics",
                                   "sensor_extrinsics", "vehicle_dimensions"}
    cam = "camera_front_wide_120fov"
    assert features.at[cam, "chunk_path"].format(chunk_id=3) == f"camera/{cam}/{cam}.chunk_0003.zip"
    assert json.loads(features.at[cam, "clip_files_in_zip"]) == {
        "video": f"{{clip_id}}.{cam}.mp4", "frame_timestamps": f"{{clip_id}}.{cam}.timestamps.parquet"}
    assert features.at["egomotion", "chunk_path"].format(chunk_id=1) == "labels/egomotion/egomotion.chunk_0001.zip"
    assert pd.isna(features.at["camera_intrinsics", "clip_files_in_zip"])

    presence = pd.read_parquet(root / "metadata/feature_presence.parquet")
    assert set(presence.columns) == set(features.index) and presence.dtypes.eq(bool).all()
    assert presence.to_numpy().all() and list(presence.index) == result["clip_ids"]
    collection = pd.read_parquet(root / "metadata/data_collection.parquet")
    assert collection["vehicle_id"].tolist() == ["veh-a", "veh-a", "veh-b"]
    assert collection["date"].tolist() == ["2026-01-01"] * 3
    assert collection["start_us"].tolist() == [START_US, START_US + 2_000_000, START_US]
    split = pd.read_parquet(root / "splits/default.parquet")
    assert set(split["split"]) <= {"train", "val"} and list(split.index) == result["clip_ids"]

    with zipfile.ZipFile(root / f"camera/{cam}/{cam}.chunk_0000.zip") as zf:
        names = zf.namelist()
        assert names == sorted(names) and len(names) == 4
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())
    with zipfile.ZipFile(root / "labels/egomotion/egomotion.chunk_0001.zip") as zf:
        assert zf.namelist() == [f"{result['clip_ids'][2]}.egomotion.parquet"]


def _devkit_dataset(root: Path) -> PhysicalAIAVDatasetInterface:
    """The devkit's dataset interface over a local root, without the Hub (offline, every file
    'cached' under `root`): its own metadata loading, path templates and feature decoders."""
    dk = object.__new__(PhysicalAIAVDatasetInterface)
    dk.split_name, dk.is_offline_mode, dk.feature_sources, dk.repo_id = "default", True, {}, "local"
    dk.download_file = lambda name: str(root / name)
    dk.is_file_cached = lambda name: (root / name).exists()
    dk.open_file = lambda name, maybe_stream=False: open(root / name, "rb")
    dk._load_metadata()
    return dk


def test_devkit_dataset_interface_reads_the_layout(fleet):
    root, result = fleet
    dk = _devkit_dataset(root)
    assert dk.clip_index.index.tolist() == result["clip_ids"]
    assert dk.clip_index["chunk"].tolist() == [0, 0, 1]
    assert set(dk.clip_index["split"]) <= {"train", "val"}
    assert dk.features.CAMERA.ALL == set(TEACHER_CAMERAS)
    assert dk.features.LABELS.EGOMOTION == "egomotion"
    assert dk.chunk_feature_presence.to_numpy().all() and len(dk.chunk_feature_presence) == 2
    clip_id = result["clip_ids"][1]
    ego = dk.get_clip_feature(clip_id, "egomotion")
    xyz, _ = _expected_pose("circle", START_US + 2_000_000 + np.array([0, 123_456]), START_US + 2_000_000)
    np.testing.assert_allclose(ego(np.array([0, 123_456])).pose.translation, xyz, atol=1e-6)
    reader = dk.get_clip_feature(clip_id, dk.features.CAMERA.CAMERA_FRONT_TELE_30FOV)
    phase = camera_phase_us("camera_front_tele_30fov")
    images, frame_ts = reader.decode_images_from_timestamps(np.array([phase, phase + 1_899_999]))
    assert images.shape == (2, H, W, 3) and frame_ts.tolist() == [phase, phase + 1_800_000]
    assert set(dk.get_clip_feature(clip_id, "camera_intrinsics").camera_models) == set(TEACHER_CAMERAS)
    assert set(dk.get_clip_feature(clip_id, "sensor_extrinsics").sensor_poses) == set(TEACHER_CAMERAS)
    assert vars(dk.get_clip_feature(clip_id, "vehicle_dimensions")) == VEHICLE_DIMENSIONS


def test_frame_timestamps_are_asynchronous_and_increasing(fleet):
    root, _ = fleet
    clip_id = _clips(fleet)[0][0]
    for cam in TEACHER_CAMERAS:
        ts = pd.read_parquet(io.BytesIO(_member(root, cam, "frame_timestamps", clip_id)))["timestamp"]
        assert ts.dtype == np.int64
        assert ts.tolist() == [camera_phase_us(cam) + i * 100_000 for i in range(20)]
    assert len({camera_phase_us(cam) for cam in TEACHER_CAMERAS}) == 4


def test_devkit_video_reader_gives_the_rendered_frames(fleet):
    root, _ = fleet
    for clip_id, _, offset in _clips(fleet):
        anchor = START_US + int(offset * 1e6)
        for cam in TEACHER_CAMERAS:
            ts = pd.read_parquet(io.BytesIO(_member(root, cam, "frame_timestamps", clip_id)))["timestamp"].to_numpy()
            reader = video.SeekVideoReader(video_data=io.BytesIO(_member(root, cam, "video", clip_id)), timestamps=ts)
            requested = np.concatenate([ts, ts[:-1] + 50_000])  # at and between frames
            images, frame_ts = reader.decode_images_from_timestamps(requested)
            reader.close()
            assert images.shape == (len(requested), H, W, 3)
            np.testing.assert_array_equal(frame_ts, np.concatenate([ts, ts[:-1]]))
            spec = RIG[cam].with_resolution(H, W)
            for image, t in zip(images, frame_ts):
                expected = solid_render(_snapshot(anchor + int(t)), spec)
                error = np.abs(image.astype(int) - expected)  # yuv420p + H.264 rounding
                assert error.mean() <= 3 and error.max() <= 8


def _snapshot(t_us):
    return Snapshot(t_us=t_us, ego_xyz=np.zeros(3), ego_rot=np.eye(3), agents=[])


def _strided_render(snapshot, camera):
    """Consecutive frames differ by 32 levels in red: a one-frame shift cannot hide in codec noise."""
    image = solid_render(snapshot, camera)
    image[..., 0] = (snapshot.t_us // 100_000 % 8) * 32
    return image


def test_devkit_decodes_each_frame_at_its_own_timestamp(tmp_path):
    _write(tmp_path, render=_strided_render, cameras=["camera_front_tele_30fov"])
    clip_id = pd.read_parquet(tmp_path / "clip_index.parquet").index[1]  # the circle's 2nd clip
    cam = "camera_front_tele_30fov"
    ts = pd.read_parquet(io.BytesIO(_member(tmp_path, cam, "frame_timestamps", clip_id)))["timestamp"].to_numpy()
    reader = video.SeekVideoReader(video_data=io.BytesIO(_member(tmp_path, cam, "video", clip_id)), timestamps=ts)
    order = np.array([13, 2, 19, 0, 7, 7, 11])  # random access, repeats, across key frames
    images, _ = reader.decode_images_from_timestamps(ts[order])
    anchor = START_US + 2_000_000
    red = [(anchor + int(t)) // 100_000 % 8 * 32 for t in ts[order]]
    np.testing.assert_allclose(images[..., 0].mean(axis=(1, 2)), red, atol=4)


@pytest.mark.parametrize("camera_hz, count", [(30, 30), (12.5, 12)])  # frames at phase + i / hz <= 1 s
def test_other_camera_rates_keep_constant_frame_rate_videos(tmp_path, camera_hz, count):
    cam = "camera_front_wide_120fov"
    write_pai([analytic_drive("circle", seconds=1.0)], str(tmp_path), _strided_render, cameras=[cam],
              camera_hz=camera_hz, height=H, width=W, clip_seconds=1.0)
    clip_id = pd.read_parquet(tmp_path / "clip_index.parquet").index[0]
    ts = pd.read_parquet(io.BytesIO(_member(tmp_path, cam, "frame_timestamps", clip_id)))["timestamp"].to_numpy()
    phase = camera_phase_us(cam, camera_hz)
    np.testing.assert_array_equal(ts, phase + np.round(np.arange(count) * 1e6 / camera_hz).astype(np.int64))
    reader = video.SeekVideoReader(video_data=io.BytesIO(_member(tmp_path, cam, "video", clip_id)), timestamps=ts)
    images, frame_ts = reader.decode_images_from_timestamps(ts[::-1].copy())
    np.testing.assert_array_equal(frame_ts, ts[::-1])
    red = (START_US + frame_ts) // 100_000 % 8 * 32
    np.testing.assert_allclose(images[..., 0].mean(axis=(1, 2)), red, atol=4)


def _expected_pose(kind, t_abs_us, anchor_us):
    def world(t):
        t_s = (np.asarray(t) - START_US) / 1e6
        xyz, yaw = (circle_pose if kind == "circle" else accel_pose)(t_s)
        return xyz, yaw_to_matrix(yaw)

    xyz0, R0 = world([anchor_us])
    return to_ego_frame(*world(t_abs_us), xyz0[0], R0[0])


def test_devkit_egomotion_interpolator_matches_the_drive(fleet):
    root, _ = fleet
    for clip_id, kind, offset in _clips(fleet):
        anchor = START_US + int(offset * 1e6)
        df = pd.read_parquet(io.BytesIO(_member(root, "egomotion", "egomotion", clip_id)))
        assert list(df.columns) == ["timestamp", "qx", "qy", "qz", "qw", "x", "y", "z",
                                    "vx", "vy", "vz", "ax", "ay", "az", "curvature"]
        assert df["timestamp"].tolist() == list(range(0, 2_000_001, 10_000))  # 100 Hz, anchor = 0
        interp = egomotion.EgomotionState.from_egomotion_df(df).create_interpolator(df["timestamp"].to_numpy())
        query = np.array([0, 2_500, 17_345, 555_555, 1_000_000, 1_999_999, 2_000_000])
        state = interp(query)
        xyz, R = _expected_pose(kind, anchor + query, anchor)
        np.testing.assert_allclose(state.pose.translation, xyz, atol=1e-6)
        np.testing.assert_allclose(state.pose.rotation.as_matrix(), R, atol=1e-6)
        np.testing.assert_allclose(df[["x", "y", "z"]].iloc[0], 0.0, atol=1e-12)
        speed = 8.0 if kind == "circle" else 5.0 + offset
        np.testing.assert_allclose(np.hypot(df["vx"], df["vy"]).iloc[0], speed, atol=1e-9)
        np.testing.assert_allclose(df["vx"].iloc[0], speed, atol=1e-9)  # anchor frame: heading +x


def test_devkit_reads_the_calibration(fleet):
    root, result = fleet
    clip_id = result["clip_ids"][2]
    chunk = "chunk_0001"
    intr = pd.read_parquet(root / f"calibration/camera_intrinsics/camera_intrinsics.{chunk}.parquet").loc[clip_id]
    models = calibration.CameraIntrinsics.from_intrinsics_df(intr).camera_models
    extr = pd.read_parquet(root / f"calibration/sensor_extrinsics/sensor_extrinsics.{chunk}.parquet").loc[clip_id]
    poses = calibration.SensorExtrinsics.from_extrinsics_df(extr).sensor_poses
    assert set(models) == set(poses) == set(TEACHER_CAMERAS)
    for cam in TEACHER_CAMERAS:
        spec = RIG[cam].with_resolution(H, W)
        # f-theta fitted to the pinhole: a pixel's pinhole ray projects back near that pixel
        u, v = np.meshgrid(np.linspace(0, W, 9), np.linspace(0, H, 7))
        pixels = np.stack([u.ravel(), v.ravel()], -1)
        pixels = pixels[np.linalg.norm(pixels - [W / 2, H / 2], axis=-1) > 0]
        rays = np.concatenate([(pixels - [W / 2, H / 2]) / spec.focal_px, np.ones((len(pixels), 1))], -1)
        # px: a 4th-degree polynomial cannot follow tan() out to 63 deg (the 120 deg corners)
        tolerance = (0.005 if spec.hfov_deg > 90 else 0.0005) * W
        assert np.abs(models[cam].ray2pixel(rays) - pixels).max() < tolerance
        assert (models[cam].width, models[cam].height) == (W, H)
        np.testing.assert_allclose(poses[cam].rotation.as_matrix(), spec.rotation, atol=1e-12)
        np.testing.assert_allclose(poses[cam].translation, spec.xyz)
    dims = pd.read_parquet(root / f"calibration/vehicle_dimensions/vehicle_dimensions.{chunk}.parquet").loc[clip_id]
    assert vars(calibration.VehicleDimensions.from_dimensions_df(dims)) == VEHICLE_DIMENSIONS


def test_same_input_gives_byte_identical_files(fleet, tmp_path):
    root, _ = fleet
    _write(tmp_path)
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    for f in files:
        assert (root / f).read_bytes() == (tmp_path / f).read_bytes(), f


def test_h264_bitstream_is_repeatable_within_a_process():
    """libx264's mbtree gave different bitstreams for identical frames once other encodes and
    allocations had churned the heap (several variants in 60 tries at 48x64); the writer's
    options must not."""
    def clip(shift):
        frames = []
        for i in range(20):
            image = np.zeros((48, 64, 3), np.uint8)
            image[..., 0], image[..., 1], image[..., 2] = (shift + i) % 250, 120, 128
            image[12:24, 3 * i % 32 : 3 * i % 32 + 8] = 255
            frames.append(image)
        return frames

    rng = np.random.default_rng(1)
    heap, digests = [], set()
    for shift in range(40):
        heap = [*heap[-4:], rng.integers(0, 255, rng.integers(1_000, 3_000_000), dtype=np.uint8)]
        _encode_h264(iter(clip(shift + 1)), 10, 48, 64)
        digests.add(_encode_h264(iter(clip(0)), 10, 48, 64))
    assert len(digests) == 1


@pytest.mark.parametrize("fail_at, published", [(50, 0), (170, 8)])
def test_interrupted_writer_leaves_no_file_under_its_final_name(tmp_path, fail_at, published):
    """The first chunk holds 2 clips x 4 cameras x 20 frames = 160 renders: failing in it
    publishes nothing; failing in the second leaves only the complete first chunk (4 camera
    zips, the egomotion zip, 3 calibration files) and no root index."""
    calls = []

    def failing_render(snapshot, camera):
        calls.append(1)
        if len(calls) == fail_at:
            raise KeyboardInterrupt
        return solid_render(snapshot, camera)

    with pytest.raises(KeyboardInterrupt):
        _write(tmp_path, render=failing_render)
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert len(files) == published and all("chunk_0000" in f for f in files)
    for f in files:
        if f.endswith(".zip"):
            assert zipfile.ZipFile(tmp_path / f).testzip() is None


def test_rejects_odd_frame_sizes(tmp_path):
    with pytest.raises(ValueError, match="even"):
        _write(tmp_path, height=63)
    assert not any(tmp_path.iterdir())
