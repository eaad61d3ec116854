"""Fuzz the MCAP reader: damaged files give messages or a typed LogReadError, nothing else."""

import tempfile
from pathlib import Path

import fsspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcap.writer import CompressionType

from schemas.reasons import Reason
from tests.fakes import START_US, analytic_drive
from tests.faults.logs import write_log
from tests.fuzz.budget import fuzz
from tests.fuzz.mutations import damaged
from tests.transforms.clip_messages import drive_messages
from transforms.sources.base import CameraFrame, EgoPose, LogReadError
from transforms.sources.mcap import McapLogSource
from transforms.sources.topic_map import TopicMap

READ_REASONS = {Reason.LOG_UNREADABLE, Reason.LOG_EMPTY, Reason.UNSAFE_PATH}
STAMP = TopicMap.from_dict({"time": "header_stamp"})


def _base(compression: CompressionType) -> bytes:
    messages = drive_messages(analytic_drive("circle", seconds=1.0))
    with tempfile.TemporaryDirectory() as tmp:
        return write_log(Path(tmp) / "log.mcap", messages, chunk_size=8 << 10, compression=compression).read_bytes()


BASES = {c: _base(c) for c in (CompressionType.ZSTD, CompressionType.NONE)}
URI = "memory://fuzz-mcap/veh-000/log.mcap"


def read_everything(uri: str, topic_map: TopicMap | None = None) -> list:
    """info(), a whole read and a range read; raises only LogReadError on damage."""
    source = McapLogSource(uri) if topic_map is None else McapLogSource(uri, topic_map)
    source.info()  # start > end is possible when stamps are damaged: then the log has no window
    everything = list(source.messages())
    assert all(isinstance(m, (CameraFrame, EgoPose)) for m in everything)
    lo, hi = START_US + 300_000, START_US + 600_000
    assert all(lo <= m.t_us < hi for m in source.messages(lo, hi))
    return everything


@fuzz
@given(st.sampled_from(sorted(BASES, key=lambda c: c.value)).flatmap(lambda c: damaged(BASES[c])),
       st.booleans())
def test_damaged_mcap_reads_or_raises_a_typed_error(data, by_stamp):
    fsspec.filesystem("memory").pipe_file(URI, data)
    try:
        read_everything(URI, STAMP if by_stamp else None)
    except LogReadError as e:
        assert e.reason in READ_REASONS and e.detail


def test_the_undamaged_bases_read_whole():
    for data in BASES.values():
        fsspec.filesystem("memory").pipe_file(URI, data)
        messages = read_everything(URI)
        assert sum(isinstance(m, EgoPose) for m in messages) == 101
        assert sum(isinstance(m, CameraFrame) for m in messages) == 4 * 10


@pytest.mark.parametrize("data", [b"", b"\x89MCAP0\r\n", b"\x89MCAP0\r\n" * 40, bytes(range(256)) * 4])
def test_short_and_magic_only_files_are_unreadable(data):
    fsspec.filesystem("memory").pipe_file(URI, data)
    with pytest.raises(LogReadError) as e:
        read_everything(URI)
    assert e.value.reason == Reason.LOG_UNREADABLE
