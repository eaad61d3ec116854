"""The indexed MCAP reading: the mcap library's messages, order and chunk records, with less work."""

import pytest
import zstandard
from mcap.data_stream import RecordBuilder
from mcap.reader import SeekingReader
from mcap.records import Channel, Chunk, Message
from mcap.stream_reader import breakup_chunk
from mcap.writer import CompressionType, Writer

from sim.writers import mcap as mcap_writer
from sim.writers.mcap import write_mcap
from tests.fakes import START_US, analytic_drive, solid_render
from transforms.sources.mcap_index import chunk_messages, indexed_messages


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    path = tmp_path_factory.mktemp("veh-000") / "drive-000.mcap"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mcap_writer, "CHUNK_SIZE", 64 << 10)  # many chunks
        write_mcap(analytic_drive("circle", seconds=3), str(path), solid_render)
    return path


def fields(schema, channel, message):
    return (schema and schema.id, channel.id, message.channel_id, message.log_time, message.sequence,
            message.publish_time, message.data)


@pytest.mark.parametrize("span", [(None, None), (1_234_567, 1_502_000), (0, 2_000_001), (2_500_000, None)])
def test_indexed_messages_are_the_librarys_in_its_order(log, span):
    lo, hi = (None if t is None else (START_US + t) * 1_000 for t in span)
    with open(log, "rb") as f:
        reader = SeekingReader(f)
        summary = reader.get_summary()
        topics = sorted({c.topic for c in summary.channels.values()})
        assert len(summary.chunk_indexes) > 2
        for wanted in (topics, topics[::3]):
            expected = [fields(*m) for m in reader.iter_messages(wanted, starting_at=lo, ending_before=hi)]
            got = [fields(*m) for m in indexed_messages(f, summary, wanted, lo, hi)]
            assert got == expected and len(got) > 0
            assert all(type(m[-1]) is bytes for m in got)


def records(*messages_and_channels) -> bytes:
    builder = RecordBuilder()
    for record in messages_and_channels:
        record.write(builder)
    return builder.end()


def chunk(data: bytes, compression: str = "") -> Chunk:
    stored = zstandard.compress(data) if compression == "zstd" else data
    return Chunk(compression=compression, data=stored, message_start_time=3, message_end_time=5,
                 uncompressed_crc=0, uncompressed_size=len(data))


def library(c: Chunk) -> list[tuple]:
    return [(i, r.channel_id, r.log_time, r.sequence, r.publish_time, r.data)
            for i, r in enumerate(breakup_chunk(c)) if isinstance(r, Message)]


def test_chunk_messages_parse_message_records_as_the_library():
    a = Message(channel_id=1, log_time=5, data=b"abc", publish_time=6, sequence=7)
    b = Message(channel_id=2, log_time=3, data=b"", publish_time=4, sequence=8)
    for compression in ("", "zstd"):
        got = chunk_messages(chunk(records(a, b), compression))
        assert [(*m[:5], bytes(m[5])) for m in got] == [(0, 1, 5, 7, 6, b"abc"), (1, 2, 3, 8, 4, b"")]
        assert [(*m[:5], bytes(m[5])) for m in got] == library(chunk(records(a, b), compression))


def test_chunks_with_other_records_or_damage_are_the_librarys():
    a = Message(channel_id=1, log_time=5, data=b"abc", publish_time=6, sequence=7)
    channel = Channel(id=1, schema_id=0, topic="/t", message_encoding="cdr", metadata={})
    mixed = chunk(records(channel, a, a))
    assert chunk_messages(mixed) == library(mixed) == [(1, 1, 5, 7, 6, b"abc"), (2, 1, 5, 7, 6, b"abc")]
    cut = chunk(records(a, a)[:-2])  # the last message's data cut short: the library reads what is there
    assert chunk_messages(cut) == library(cut) == [(0, 1, 5, 7, 6, b"abc"), (1, 1, 5, 7, 6, b"a")]
    with pytest.raises(Exception) as expected:
        library(chunk(b"\x05\x01"))
    with pytest.raises(type(expected.value)):
        chunk_messages(chunk(b"\x05\x01"))


def test_an_unknown_channel_raises_as_in_the_library(log):
    with open(log, "rb") as f:
        reader = SeekingReader(f)
        summary = reader.get_summary()  # the reader keeps it: both read the damaged one
        del summary.channels[min(summary.channels)]
        topics = [c.topic for c in summary.channels.values()]
        with pytest.raises(KeyError) as expected:
            list(reader.iter_messages(topics))
        with pytest.raises(KeyError) as got:
            list(indexed_messages(f, summary, topics, None, None))
        assert got.value.args == expected.value.args == (min(summary.channels) - 1,)


def test_overlapping_chunks_and_equal_log_times_come_in_the_librarys_order(tmp_path):
    path = tmp_path / "overlap.mcap"
    with open(path, "wb") as f:
        writer = Writer(f, chunk_size=200, compression=CompressionType.NONE)
        writer.start()
        schema = writer.register_schema("s", "jsonschema", b"{}")
        channels = [writer.register_channel(f"/t{k}", "json", schema) for k in range(3)]
        for n, log_time in enumerate([30, 10, 20, 10, 50, 20, 40, 30, 10, 60, 20, 30, 50, 40, 10]):
            writer.add_message(channels[n % 3], log_time, b"x" * n, log_time, sequence=n)
        writer.finish()
    with open(path, "rb") as f:
        reader = SeekingReader(f)
        summary = reader.get_summary()
        spans = sorted((c.message_start_time, c.message_end_time) for c in summary.chunk_indexes)
        assert len(spans) > 3 and any(a[1] > b[0] for a, b in zip(spans, spans[1:]))
        for topics, lo, hi in ((["/t0", "/t1", "/t2"], None, None), (["/t0", "/t2"], 20, 50)):
            expected = [fields(*m) for m in reader.iter_messages(topics, starting_at=lo, ending_before=hi)]
            assert [fields(*m) for m in indexed_messages(f, summary, topics, lo, hi)] == expected
            assert [m[3] for m in expected] == sorted(m[3] for m in expected)
