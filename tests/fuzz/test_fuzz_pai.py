"""Fuzz the PhysicalAI-AV reader: damaged index files, zips and zip members (videos, frame
timestamps, egomotion) and unsafe member names give frames or a typed LogReadError, nothing else."""

import io
import zipfile

import fsspec
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from schemas.contract import TEACHER_CAMERAS
from schemas.reasons import Reason
from sim.writers.pai import write_pai
from tests.fakes import analytic_drive, solid_render
from tests.fuzz.budget import fuzz
from tests.fuzz.mutations import damaged
from transforms.sources.base import CameraFrame, EgoPose, LogReadError
from transforms.sources.pai import PaiClipSource, list_pai_clips

ROOT = "memory://fuzz-pai/veh-000"
READ_REASONS = {Reason.LOG_UNREADABLE, Reason.LOG_EMPTY, Reason.UNSAFE_PATH}


def _base() -> dict[str, bytes]:
    """Every file of a one-clip root (1 s, one camera, 48x64 video), by path under the root."""
    drive = analytic_drive("circle", seconds=1.0)
    base = "memory://fuzz-pai-base"
    write_pai([drive], base, solid_render, cameras=TEACHER_CAMERAS[:1], height=48, width=64, clip_seconds=1.0)
    fs = fsspec.filesystem("memory")
    files = {p.split("fuzz-pai-base/", 1)[1]: fs.cat_file(p) for p in fs.find("/fuzz-pai-base")}
    fs.rm("/fuzz-pai-base", recursive=True)
    return files


BASE = _base()
ZIPS = sorted(p for p in BASE if p.endswith(".zip"))
FILES = sorted(BASE)


def _members(path: str) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(BASE[path])) as zf:
        return zf.namelist()


MEMBERS = [(z, m) for z in ZIPS for m in _members(z)]


def _rezip(path: str, edit) -> bytes:
    """The zip at `path` with its members passed through edit(name, data) -> (name, data)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(BASE[path])) as src, zipfile.ZipFile(buf, "w") as dst:
        for name in src.namelist():
            dst.writestr(*edit(name, src.read(name)))
    return buf.getvalue()


@st.composite
def damaged_root(draw) -> dict[str, bytes]:
    """The base root with one file, one zip member or one member name damaged."""
    files = dict(BASE)
    kind = draw(st.sampled_from(["file", "member", "name"]))
    if kind == "file":
        path = draw(st.sampled_from(FILES))
        files[path] = draw(damaged(BASE[path]))
    else:
        path, member = draw(st.sampled_from(MEMBERS))
        if kind == "member":
            data = draw(damaged(zipfile.ZipFile(io.BytesIO(BASE[path])).read(member)))
            files[path] = _rezip(path, lambda n, d: (n, data if n == member else d))
        else:
            name = draw(st.sampled_from(["../", "/", "..\\", "C:/", "a/../../"])) + member
            files[path] = _rezip(path, lambda n, d: (name if n == member else n, d))
    return files


def read_everything(root: str) -> int:
    """Every clip's info and messages (whole and a range, with each frame's pixels); the number
    of messages read."""
    n = 0
    for clip in list_pai_clips(root):
        source = PaiClipSource(root, clip)
        source.info()
        for m in (*source.messages(), *source.messages(500_000, 900_000)):
            assert isinstance(m, (CameraFrame, EgoPose))
            if isinstance(m, CameraFrame):
                try:  # frames convert to RGB on first use; a bad one is that window's IMAGE_CORRUPT
                    assert m.pixels.ndim == 3 and m.pixels.shape[2] == 3 and m.pixels.dtype == np.uint8
                except ValueError as e:
                    assert "no RGB conversion" in str(e)
            n += 1
    return n


def _publish(files: dict[str, bytes]) -> None:
    fs = fsspec.filesystem("memory")
    if fs.exists("/fuzz-pai"):
        fs.rm("/fuzz-pai", recursive=True)
    for path, data in files.items():
        fs.pipe_file(f"{ROOT}/{path}", data)


@fuzz
@given(damaged_root())
def test_damaged_pai_root_reads_or_raises_a_typed_error(files):
    _publish(files)
    try:
        read_everything(ROOT)
    except LogReadError as e:
        assert e.reason in READ_REASONS and e.detail


def test_the_undamaged_base_reads_whole():
    _publish(BASE)
    # 101 poses and 10 frames over 1 s; the range read [0.5 s, 0.9 s) holds 40 poses and 4 frames
    assert read_everything(ROOT) == 101 + 10 + 40 + 4
