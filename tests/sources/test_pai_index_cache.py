"""The PAI dataset index (features.csv, clip_index.parquet, metadata/*.parquet) is parsed once per
process and version of each file, not once per clip."""

from collections import Counter

import pandas as pd
import pytest
from fsspec.implementations.local import LocalFileSystem

from schemas.contract import TEACHER_CAMERAS
from schemas.reasons import Reason
from sim.writers.pai import write_pai
from tests.fakes import analytic_drive, solid_render
from transforms.sources import pai
from transforms.sources.base import LogReadError
from transforms.sources.pai import PaiClipSource, list_pai_clips

INDEX_FILES = {"features.csv", "clip_index.parquet", "data_collection.parquet", "feature_presence.parquet"}


def _write(root, seconds=6.0):
    """Six 1 s clips of one camera."""
    write_pai([analytic_drive("circle", seconds=seconds)], str(root), solid_render, cameras=TEACHER_CAMERAS[:1],
              height=16, width=16, clip_seconds=1.0)
    return str(root)


@pytest.fixture
def opens(monkeypatch) -> Counter:
    """Files opened through fsspec's local filesystem, by name."""
    counts = Counter()
    original = LocalFileSystem._open

    def counting(self, path, *args, **kwargs):
        counts[path.rsplit("/", 1)[-1]] += 1
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(LocalFileSystem, "_open", counting)
    return counts


def _read_every_clip(root: str) -> int:
    n = 0
    for clip in list_pai_clips(root):
        source = PaiClipSource(root, clip)
        source.info()
        n += sum(1 for _ in source.messages(0, 300_000))
    return n


def test_the_index_is_read_once_for_many_clips(tmp_path, opens):
    root = _write(tmp_path / "fleet")
    assert len(list_pai_clips(root)) == 6
    opens.clear()
    assert _read_every_clip(root) == 6 * (30 + 3)  # per clip 30 poses and 3 frames in [0, 0.3 s)
    assert _read_every_clip(root) == 6 * 33
    assert {name: opens[name] for name in INDEX_FILES} == {  # clip_index.parquet: read by list_pai_clips above
        "clip_index.parquet": 0, "features.csv": 1, "data_collection.parquet": 1, "feature_presence.parquet": 1}
    camera_zip = f"{TEACHER_CAMERAS[0]}.chunk_0000.zip"
    assert opens[camera_zip] == 2 * 6 * 2  # the clip's members (video, frame timestamps), every time


def test_first_read_opens_each_index_file_once(tmp_path, opens):
    root = _write(tmp_path / "fleet")
    opens.clear()
    _read_every_clip(root)
    assert {name: opens[name] for name in INDEX_FILES} == dict.fromkeys(INDEX_FILES, 1)


def test_a_rewritten_index_is_read_again(tmp_path):
    root = _write(tmp_path / "fleet")
    clips = list_pai_clips(root)
    index = pd.read_parquet(tmp_path / "fleet" / "clip_index.parquet")
    index.iloc[1:].to_parquet(tmp_path / "fleet" / "clip_index.parquet")
    assert list_pai_clips(root) == clips[1:]
    with pytest.raises(LogReadError) as e:
        PaiClipSource(root, clips[0])
    assert e.value.reason == Reason.LOG_UNREADABLE and "not in" in e.value.detail


def test_a_missing_optional_file_appearing_later_is_read(tmp_path):
    root = _write(tmp_path / "fleet")
    clip = list_pai_clips(root)[0]
    collection = tmp_path / "fleet" / "metadata" / "data_collection.parquet"
    saved = collection.read_bytes()
    collection.unlink()
    assert PaiClipSource(root, clip).info().vehicle_id == "fleet"
    collection.write_bytes(saved)
    assert PaiClipSource(root, clip).info().vehicle_id == "veh-000"


def test_the_cache_is_bounded(tmp_path, opens, monkeypatch):
    monkeypatch.setattr(pai, "INDEX_CACHE_SIZE", 4)  # one dataset's 4 index files
    first, second = _write(tmp_path / "a", seconds=1.0), _write(tmp_path / "b", seconds=1.0)
    opens.clear()
    for root in (first, first, second, second, first):
        _read_every_clip(root)
    assert opens["features.csv"] == 3  # first, second, first again once second pushed it out
    assert len(pai._index_cache) <= 4


def test_a_damaged_index_is_not_cached(tmp_path):
    root = _write(tmp_path / "fleet", seconds=1.0)
    clip = list_pai_clips(root)[0]
    features = tmp_path / "fleet" / "features.csv"
    saved = features.read_text()
    features.write_text(saved.replace("directory", "folder"))
    with pytest.raises(LogReadError) as e:
        PaiClipSource(root, clip)
    assert e.value.reason == Reason.LOG_UNREADABLE and "directory" in e.value.detail
    features.write_text(saved)
    assert PaiClipSource(root, clip).cameras == [TEACHER_CAMERAS[0]]
