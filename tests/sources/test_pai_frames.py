"""PaiClipSource frames: converted to RGB only when used, scaled down to the clips' stored size
in swscale, exact where no scaling is needed."""

import dataclasses
import io
import pickle
import zipfile

import av
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from physical_ai_av import video

from schemas.contract import IMAGE_HEIGHT, IMAGE_WIDTH, TEACHER_CAMERAS
from sim.writers.pai import write_pai
from tests.fakes import analytic_drive
from transforms.clips import ClipAssembler, ImageError, teacher_jpeg
from transforms.sources import pai
from transforms.sources.base import CameraFrame
from transforms.sources.pai import DecodedFrame, PaiClipSource, list_pai_clips

CAMERA = "camera_front_wide_120fov"


def _pattern(snapshot, camera):
    """Smooth gradients, a moving bright bar and a checker block: detail for a scaler to get
    wrong, none that H.264 at these sizes mangles."""
    h, w = camera.height, camera.width
    y, x = np.mgrid[0:h, 0:w]
    image = np.empty((h, w, 3), np.uint8)
    image[..., 0] = 255 * x // w
    image[..., 1] = 255 * y // h
    image[..., 2] = 128
    bar = int(snapshot.t_us // 100_000 % 10) * w // 10
    image[:, bar : bar + w // 20] = 240
    checker = np.where((y // 16 + x // 16) % 2 == 0, 30, 220).astype(np.uint8)
    block = (slice(h // 4, h // 2), slice(w // 4, w // 2))
    image[block] = checker[block][..., None]
    return image


def _dataset(root, height, width, seconds=1.0, cameras=(CAMERA,)):
    write_pai([analytic_drive("circle", seconds=seconds)], str(root), _pattern, cameras=cameras,
              height=height, width=width, clip_seconds=seconds)
    return str(root), list_pai_clips(str(root))[0]


def _devkit_frames(root: str, clip: str) -> np.ndarray:
    """Every frame of the clip's video at its own size, decoded by the devkit."""
    with zipfile.ZipFile(f"{root}/camera/{CAMERA}/{CAMERA}.chunk_0000.zip") as zf:
        ts = pd.read_parquet(io.BytesIO(zf.read(f"{clip}.{CAMERA}.timestamps.parquet")))["timestamp"].to_numpy()
        reader = video.SeekVideoReader(video_data=io.BytesIO(zf.read(f"{clip}.{CAMERA}.mp4")), timestamps=ts)
    images, _ = reader.decode_images_from_timestamps(ts)
    return images


def _frames(source: PaiClipSource, *args) -> list[CameraFrame]:
    return [m for m in source.messages(*args) if isinstance(m, CameraFrame)]


@pytest.fixture(scope="module")
def teacher_size(tmp_path_factory):
    return _dataset(tmp_path_factory.mktemp("teacher-size"), IMAGE_HEIGHT, IMAGE_WIDTH)


@pytest.fixture(scope="module")
def twice_teacher_size(tmp_path_factory):
    return _dataset(tmp_path_factory.mktemp("twice"), 2 * IMAGE_HEIGHT, 2 * IMAGE_WIDTH)


def test_frames_at_the_stored_size_are_the_exact_decode(teacher_size):
    root, clip = teacher_size
    frames = _frames(PaiClipSource(root, clip, [CAMERA]))
    assert len(frames) == 10 and all(isinstance(f, DecodedFrame) for f in frames)
    np.testing.assert_array_equal(np.stack([f.pixels for f in frames]), _devkit_frames(root, clip))


def test_clip_images_at_the_stored_size_are_the_jpeg_of_the_exact_decode(teacher_size):
    """The teacher JPEG of each frame (what a clip stores) is that of the devkit's decode, byte
    for byte: converting lazily changes no clip value."""
    root, clip = teacher_size
    expected = _devkit_frames(root, clip)
    for frame, image in zip(_frames(PaiClipSource(root, clip, [CAMERA])), expected, strict=True):
        assert teacher_jpeg(frame) == teacher_jpeg(CameraFrame(CAMERA, frame.t_us, b"", "rgb", pixels=image))


def test_larger_frames_are_scaled_down_to_the_stored_size(twice_teacher_size):
    root, clip = twice_teacher_size
    full = _devkit_frames(root, clip)
    native = _frames(PaiClipSource(root, clip, [CAMERA], image_size=None))
    np.testing.assert_array_equal(np.stack([f.pixels for f in native]), full)
    scaled = _frames(PaiClipSource(root, clip, [CAMERA]))
    assert [f.pixels.shape for f in scaled] == [(IMAGE_HEIGHT, IMAGE_WIDTH, 3)] * 10
    for frame, image in zip(scaled, full, strict=True):  # as the clip assembler's resize of the full frame
        reference = np.asarray(Image.fromarray(image).resize((IMAGE_WIDTH, IMAGE_HEIGHT), Image.Resampling.BILINEAR))
        error = np.abs(frame.pixels.astype(int) - reference)
        assert error.mean() < 1.5 and np.percentile(error, 99) <= 12


@pytest.mark.parametrize("size, expected", [((48, 64), (48, 64)), ((40, 64), (40, 64)), ((24, 32), (24, 32)),
                                            ((64, 48), (48, 64)), ((20, 80), (48, 64)), (None, (48, 64))])
def test_only_frames_at_least_the_size_in_both_dimensions_are_scaled(tmp_path, size, expected):
    """A 48x64 video: scaled to `size` when `size` is no larger than it in both dimensions (and
    differs), else kept at 48x64."""
    root, clip = _dataset(tmp_path, 48, 64, seconds=0.2)
    frames = _frames(PaiClipSource(root, clip, [CAMERA], image_size=size))
    assert [f.pixels.shape for f in frames] == [(*expected, 3)] * 2


def test_only_the_frames_used_are_converted(teacher_size, monkeypatch):
    root, clip = teacher_size
    calls = []
    convert = pai.RgbConverter.__call__
    monkeypatch.setattr(pai.RgbConverter, "__call__", lambda self, frame: calls.append(1) or convert(self, frame))
    frames = _frames(PaiClipSource(root, clip, [CAMERA]))
    assert calls == []
    assert frames[3].pixels is frames[3].pixels and frames[7].pixels.shape == (IMAGE_HEIGHT, IMAGE_WIDTH, 3)
    assert len(calls) == 2  # each converted once, after the reader has finished, then kept


def test_a_clip_assembled_from_lazy_frames_converts_only_its_frames(tmp_path, monkeypatch):
    """A 3 s clip at 10 Hz has t0 windows at 2.0, 2.5 and 3.0 s: of the 4 x 30 frames decoded,
    they take 4 per camera each."""
    root, clip = _dataset(tmp_path, 48, 64, seconds=3.0, cameras=TEACHER_CAMERAS)
    calls = []
    convert = pai.RgbConverter.__call__
    monkeypatch.setattr(pai.RgbConverter, "__call__", lambda self, frame: calls.append(1) or convert(self, frame))
    source = PaiClipSource(root, clip)
    assembler = ClipAssembler(source.info())
    frames, rows = 0, []
    for message in source.messages():
        frames += isinstance(message, CameraFrame)
        rows += assembler.push(message)
    rows += assembler.finish()
    assert [(table, row["t0_us"]) for table, row in rows] == [("clips", t0) for t0 in (2_000_000, 2_500_000, 3_000_000)]
    assert (frames, len(calls)) == (120, 3 * 4 * 4)


def test_decoded_frames_pickle_as_plain_frames_and_replace_with_their_pixels(teacher_size):
    root, clip = teacher_size
    frame = _frames(PaiClipSource(root, clip, [CAMERA]), 0, 150_000)[0]
    copy = pickle.loads(pickle.dumps(frame))
    assert type(copy) is CameraFrame and (copy.camera, copy.t_us, copy.encoding) == (CAMERA, frame.t_us, "rgb")
    np.testing.assert_array_equal(copy.pixels, frame.pixels)
    moved = dataclasses.replace(frame, t_us=frame.t_us + 1)
    assert moved.t_us == frame.t_us + 1 and moved.pixels is frame.pixels


def test_decoder_threads_give_the_same_frames(teacher_size):
    root, clip = teacher_size
    one = _frames(PaiClipSource(root, clip, [CAMERA], decoder_threads=1))
    auto = _frames(PaiClipSource(root, clip, [CAMERA], decoder_threads=0))
    assert [f.t_us for f in one] == [f.t_us for f in auto]
    np.testing.assert_array_equal(np.stack([f.pixels for f in one]), np.stack([f.pixels for f in auto]))


def test_a_frame_that_cannot_be_converted_raises_value_error():
    """ValueError is what the clip assembler quarantines as IMAGE_CORRUPT."""
    def fails(decoded):
        raise av.FFmpegError(22, "Invalid argument")

    broken = DecodedFrame(CAMERA, 100_000, decoded=av.VideoFrame(64, 48, "yuv420p"), convert=fails)
    with pytest.raises(ValueError, match="no RGB conversion"):
        _ = broken.pixels
    with pytest.raises(ImageError, match="no RGB conversion"):
        teacher_jpeg(broken)
