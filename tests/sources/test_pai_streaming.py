"""PaiClipSource streaming: each zip member is read from its archive once (spooled), and the
cameras decode in short runs ordered by their frame timestamps, never past the range read."""

import fsspec
import numpy as np
import pytest
from fsspec.implementations.memory import MemoryFile

from schemas.contract import TEACHER_CAMERAS
from sim.cameras import camera_phase_us
from sim.writers.pai import write_pai
from tests.fakes import analytic_drive, solid_render
from transforms.sources import pai
from transforms.sources.base import CameraFrame, EgoPose
from transforms.sources.pai import RUN_FRAMES, PaiClipSource, list_pai_clips

ROOT = "memory://pai-streaming/veh"


@pytest.fixture(scope="module")
def clip():
    """One 1 s clip of the 4 teacher cameras (10 frames each, 48x64) on memory://."""
    write_pai([analytic_drive("circle", seconds=1.0)], ROOT, solid_render, height=48, width=64, clip_seconds=1.0)
    yield list_pai_clips(ROOT)[0]
    fsspec.filesystem("memory").rm("/pai-streaming", recursive=True)


def _read(source: PaiClipSource, *args) -> list:
    """Every message, with each frame's pixels converted."""
    messages = list(source.messages(*args))
    for m in messages:
        if isinstance(m, CameraFrame):
            assert m.pixels.shape == (48, 64, 3)
    return messages


def _same(a: list, b: list) -> None:
    assert [(type(m), getattr(m, "camera", None), m.t_us) for m in a] == \
           [(type(m), getattr(m, "camera", None), m.t_us) for m in b]
    for x, y in zip(a, b):
        if isinstance(x, CameraFrame):
            np.testing.assert_array_equal(x.pixels, y.pixels)
        else:
            np.testing.assert_array_equal(np.r_[x.xyz, x.quat], np.r_[y.xyz, y.quat])


def test_each_member_is_read_from_its_archive_once(clip, monkeypatch):
    """PyAV and parquet seek back inside members; a zip member seeks back by reading again from
    its start (on gs://, another download). Spooled, each archive is read about once per member
    opened: its central directory and the member, not the video again and again."""
    read = {}
    original = MemoryFile.read

    def counting(self, *args):
        data = original(self, *args)
        read[self.path] = read.get(self.path, 0) + len(data)
        return data

    monkeypatch.setattr(MemoryFile, "read", counting)
    _read(PaiClipSource(ROOT, clip))
    fs = fsspec.filesystem("memory")
    for camera in TEACHER_CAMERAS:
        path = f"/pai-streaming/veh/camera/{camera}/{camera}.chunk_0000.zip"
        # two members opened (frame timestamps, video): the archive once plus one more directory read
        assert fs.size(path) <= read[path] < 1.2 * fs.size(path), camera
    egomotion = "/pai-streaming/veh/labels/egomotion/egomotion.chunk_0000.zip"
    assert read[egomotion] < 1.2 * fs.size(egomotion)


def test_members_larger_than_the_spool_limit_read_the_same(clip, monkeypatch):
    """A member over MEMBER_SPOOL_BYTES waits in a temporary file instead of memory."""
    in_memory = _read(PaiClipSource(ROOT, clip))
    monkeypatch.setattr(pai, "MEMBER_SPOOL_BYTES", 1024)
    _same(_read(PaiClipSource(ROOT, clip)), in_memory)


def test_cameras_decode_in_runs_and_messages_stay_in_time_order(clip, monkeypatch):
    """Each camera decodes RUN_FRAMES frames at a time, only when its next frame is the next
    message: at most RUN_FRAMES - 1 of its frames wait, and the merge is in time order."""
    created = []
    original = pai.DecodedFrame

    class Counted(original):
        def __init__(self, camera, t_us, *args, **kwargs):
            created.append((camera, t_us))
            super().__init__(camera, t_us, *args, **kwargs)

    monkeypatch.setattr(pai, "DecodedFrame", Counted)
    waiting, yielded, order = [], [], []
    for m in PaiClipSource(ROOT, clip).messages():
        order.append(m.t_us)
        if isinstance(m, CameraFrame):
            yielded.append((m.camera, m.t_us))
            waiting.append(max(sum(c == camera for c, _ in created) - sum(c == camera for c, _ in yielded)
                               for camera in TEACHER_CAMERAS))
    assert order == sorted(order) and len(yielded) == 40
    assert sorted(created) == sorted(yielded)
    assert max(waiting) == RUN_FRAMES - 1
    for camera in TEACHER_CAMERAS:  # runs of 4, 4 and 2 of each camera's 10 frames
        frames = [t for c, t in created if c == camera]
        assert frames == [camera_phase_us(camera) + 100_000 * i for i in range(10)]


def test_a_range_decodes_no_frame_after_its_end(clip, monkeypatch):
    """[0, 350 ms) holds the first 3 frames of each camera (taken 84-92 ms after the clip start,
    then every 100 ms): 3 are decoded per camera, not a run of 4."""
    created = []
    original = pai.DecodedFrame

    class Counted(original):
        def __init__(self, camera, t_us, *args, **kwargs):
            created.append(t_us)
            super().__init__(camera, t_us, *args, **kwargs)

    monkeypatch.setattr(pai, "DecodedFrame", Counted)
    messages = _read(PaiClipSource(ROOT, clip), 0, 350_000)
    frames = [m.t_us for m in messages if isinstance(m, CameraFrame)]
    assert len(frames) == 12 and sorted(created) == sorted(frames)
    assert sum(isinstance(m, EgoPose) for m in messages) == 35
