"""PaiClipSource: the same poses, frames and timestamps as the devkit, typed errors on bad input."""

import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest
from physical_ai_av import video

from models.geometry import to_ego_frame, yaw_to_matrix, matrix_to_quat
from schemas.contract import TEACHER_CAMERAS
from schemas.reasons import Reason
from sim.cameras import camera_phase_us
from sim.writers.pai import write_pai
from tests.fakes import START_US, analytic_drive, circle_pose, solid_render
from transforms.sources.base import CameraFrame, EgoPose, LogReadError
from transforms.sources.pai import PaiClipSource, check_member_name, list_pai_clips

H, W = 48, 64


def _write(root, seconds=4.0, clip_seconds=2.0, **kw):
    drive = analytic_drive("circle", seconds=seconds, vehicle_id="veh-7", log_name="run-7")
    return write_pai([drive], str(root), solid_render, height=H, width=W, clip_seconds=clip_seconds, **kw)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet") / "pai-root"
    return root, _write(root)["clip_ids"]


def _copy(dataset, tmp_path) -> Path:
    root, _ = dataset
    shutil.copytree(root, tmp_path / "copy")
    return tmp_path / "copy"


def _zip_path(root: Path, camera: str) -> Path:
    return root / f"camera/{camera}/{camera}.chunk_0000.zip"


def _rewrite_zip(path: Path, replace: dict[str, bytes]) -> None:
    """Rewrite a zip with some members' bytes replaced (or added)."""
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members.update(replace)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def test_lists_clips_and_info(dataset):
    root, clip_ids = dataset
    assert list_pai_clips(str(root)) == clip_ids and len(clip_ids) == 2
    info = PaiClipSource(str(root), clip_ids[1]).info()
    assert (info.log_id, info.vehicle_id, info.date) == (clip_ids[1], "veh-7", "2026-01-01")
    assert (info.start_us, info.end_us) == (0, 2_000_000)
    assert info.uri == str(root)


def test_info_falls_back_to_the_folder_name_without_collection_metadata(dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    (root / "metadata/data_collection.parquet").unlink()
    info = PaiClipSource(str(root), dataset[1][0]).info()
    assert (info.vehicle_id, info.date) == ("copy", "1970-01-01")


def test_poses_and_frame_times_match_the_drive(dataset):
    root, clip_ids = dataset
    source = PaiClipSource(str(root), clip_ids[1])
    assert source.cameras == list(TEACHER_CAMERAS)
    messages = list(source.messages())
    poses = [m for m in messages if isinstance(m, EgoPose)]
    t = np.array([p.t_us for p in poses])
    assert t.tolist() == list(range(0, 2_000_001, 10_000))
    anchor = START_US + 2_000_000
    xyz_w, yaw = circle_pose((anchor + t - START_US) / 1e6)
    xyz0, yaw0 = circle_pose(np.array([2.0]))
    xyz, R = to_ego_frame(xyz_w, yaw_to_matrix(yaw), xyz0[0], yaw_to_matrix(yaw0)[0])
    np.testing.assert_allclose(np.stack([p.xyz for p in poses]), xyz, atol=1e-6)
    np.testing.assert_allclose(np.stack([p.quat for p in poses]), matrix_to_quat(R), atol=1e-9)
    for cam in TEACHER_CAMERAS:
        frames = [m for m in messages if isinstance(m, CameraFrame) and m.camera == cam]
        assert [f.t_us for f in frames] == [camera_phase_us(cam) + i * 100_000 for i in range(20)]
        assert all(f.encoding == "rgb" and f.data == b"" and f.pixels.shape == (H, W, 3) for f in frames)
        assert all(f.pixels.dtype == np.uint8 for f in frames)
    keys = [m.t_us for m in messages]
    assert keys == sorted(keys)


def test_frames_equal_the_devkit_decode(dataset):
    root, clip_ids = dataset
    cam = "camera_cross_right_120fov"
    frames = [m for m in PaiClipSource(str(root), clip_ids[0], cameras=[cam]).messages()
              if isinstance(m, CameraFrame)]
    with zipfile.ZipFile(_zip_path(root, cam)) as zf:
        ts = pd.read_parquet(io.BytesIO(zf.read(f"{clip_ids[0]}.{cam}.timestamps.parquet")))["timestamp"].to_numpy()
        reader = video.SeekVideoReader(video_data=io.BytesIO(zf.read(f"{clip_ids[0]}.{cam}.mp4")), timestamps=ts)
    images, frame_ts = reader.decode_images_from_timestamps(ts)
    assert [f.t_us for f in frames] == frame_ts.tolist()
    np.testing.assert_array_equal(np.stack([f.pixels for f in frames]), images)
    for f in frames:  # and the rendered content, within codec rounding
        tick = (START_US + f.t_us) // 100_000 % 250
        np.testing.assert_allclose(f.pixels.reshape(-1, 3).mean(0), [tick, 40 * 2, 128], atol=3)


@pytest.mark.parametrize("start, end", [(0, 2_000_001), (500_000, 1_000_000), (102_500, 102_501),
                                        (None, 205_000), (1_900_000, None), (3_000_000, 4_000_000)])
def test_time_range_reads_are_exact(dataset, start, end):
    root, clip_ids = dataset
    source = PaiClipSource(str(root), clip_ids[0])
    everything = list(source.messages())
    lo = -np.inf if start is None else start
    hi = np.inf if end is None else end
    expected = [m for m in everything if lo <= m.t_us < hi]
    got = list(source.messages(start, end))
    assert [(type(m), getattr(m, "camera", None), m.t_us) for m in got] == \
           [(type(m), getattr(m, "camera", None), m.t_us) for m in expected]
    for a, b in zip(got, expected):
        if isinstance(a, CameraFrame):
            np.testing.assert_array_equal(a.pixels, b.pixels)


def test_member_names_escaping_the_archive_are_rejected():
    for bad in ("../evil", "a/../../b", "/etc/passwd", "..\\evil", "C:/x"):
        with pytest.raises(LogReadError) as e:
            check_member_name(bad)
        assert e.value.reason == Reason.UNSAFE_PATH
    assert check_member_name("abc.camera_front_wide_120fov.mp4") == "abc.camera_front_wide_120fov.mp4"


def test_zip_with_an_unsafe_member_gives_unsafe_path(dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    _rewrite_zip(_zip_path(root, TEACHER_CAMERAS[0]), {"../evil": b"x"})
    with pytest.raises(LogReadError) as e:
        list(PaiClipSource(str(root), dataset[1][0]).messages())
    assert e.value.reason == Reason.UNSAFE_PATH and "../evil" in e.value.detail


def test_features_template_escaping_the_root_gives_unsafe_path(dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    features = pd.read_csv(root / "features.csv", index_col="feature")
    features.at["egomotion", "clip_files_in_zip"] = json.dumps({"egomotion": "../{clip_id}.parquet"})
    features.to_csv(root / "features.csv")
    with pytest.raises(LogReadError) as e:
        PaiClipSource(str(root), dataset[1][0]).info()
    assert e.value.reason == Reason.UNSAFE_PATH


def test_frame_count_mismatch_is_a_typed_error(dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    clip_id, cam = dataset[1][0], TEACHER_CAMERAS[2]
    member = f"{clip_id}.{cam}.timestamps.parquet"
    short = io.BytesIO()
    pd.DataFrame({"timestamp": np.arange(19, dtype=np.int64) * 100_000}).to_parquet(short)
    _rewrite_zip(_zip_path(root, cam), {member: short.getvalue()})
    with pytest.raises(LogReadError) as e:
        list(PaiClipSource(str(root), clip_id).messages())
    assert e.value.reason == Reason.LOG_UNREADABLE
    assert "20 frames" in e.value.detail and "19 timestamps" in e.value.detail


def test_corrupt_zip_and_parquet_are_unreadable(dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    clip_id = dataset[1][0]
    _zip_path(root, TEACHER_CAMERAS[1]).write_bytes(b"not a zip at all")
    with pytest.raises(LogReadError) as e:
        list(PaiClipSource(str(root), clip_id).messages())
    assert e.value.reason == Reason.LOG_UNREADABLE

    _rewrite_zip(root / "labels/egomotion/egomotion.chunk_0000.zip", {f"{clip_id}.egomotion.parquet": b"PAR1junk"})
    with pytest.raises(LogReadError) as e:
        PaiClipSource(str(root), clip_id, cameras=[TEACHER_CAMERAS[0]]).info()
    assert e.value.reason == Reason.LOG_UNREADABLE

    (root / "clip_index.parquet").write_bytes(b"garbage")
    with pytest.raises(LogReadError) as e:
        list_pai_clips(str(root))
    assert e.value.reason == Reason.LOG_UNREADABLE


def test_unknown_clip_is_unreadable(dataset):
    with pytest.raises(LogReadError) as e:
        PaiClipSource(str(dataset[0]), "no-such-clip")
    assert e.value.reason == Reason.LOG_UNREADABLE


def test_memory_filesystem_round_trip():
    root = "memory://pai-reader-test/fleet"
    try:
        clip_ids = _write(root, seconds=2.0)["clip_ids"]
        assert list_pai_clips(root) == clip_ids
        source = PaiClipSource(root, clip_ids[0])
        assert source.info().vehicle_id == "veh-7"
        messages = list(source.messages(0, 300_000))
        assert sum(isinstance(m, EgoPose) for m in messages) == 30
        assert sum(isinstance(m, CameraFrame) for m in messages) == 4 * 3
    finally:
        fsspec.filesystem("memory").rm("/pai-reader-test", recursive=True)


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads the resident set size from /proc")
def test_memory_does_not_grow_with_clip_length(tmp_path):
    """Streaming a 12 s clip (120 frames of 320x576: 66 MB if held) grows the resident set by
    about one frame's worth, as a 1 s clip does."""
    cam = TEACHER_CAMERAS[1]
    for seconds in (1.0, 12.0):
        write_pai([analytic_drive("circle", seconds=seconds)], str(tmp_path / str(seconds)), solid_render,
                  cameras=[cam], clip_seconds=seconds)
    for seconds in (1.0, 12.0, 1.0, 12.0):  # the first passes warm up the decoder and allocator
        root = str(tmp_path / str(seconds))
        base = peak = _rss()
        for _ in PaiClipSource(root, list_pai_clips(root)[0], cameras=[cam]).messages():
            peak = max(peak, _rss())
    assert peak - base < 12_000_000
