"""An indexed MCAP file's messages in log-time order, as mcap's `SeekingReader.iter_messages`
(log_time_order=True, forward) yields them, for less of its per-message Python work.

The mcap library orders messages in a heap of objects compared in Python (two method calls a
comparison) and parses every record of a chunk through a stream, one read a field. Here the heap
holds tuples (log time, chunk offset, index of the record in its chunk), the library's own order,
and a chunk of message records only (what writers put in chunks) is parsed with one
`struct.unpack_from` a message, skipping other topics' messages before they become objects. A
chunk with any other record, or one that does not parse exactly (a damaged chunk), goes through
the library's `breakup_chunk`, which gives its records, or its error, as before.
"""

import heapq
import io
import itertools
import struct
from typing import IO, Iterable, Iterator

import zstandard
from mcap.opcode import Opcode
from mcap.reader import _chunks_matching_topics
from mcap.records import Channel, Chunk, ChunkIndex, Message, Schema
from mcap.data_stream import ReadDataStream
from mcap.stream_reader import breakup_chunk
from mcap.summary import Summary

# opcode, record length, channel id, sequence, log time, publish time
_MESSAGE_HEAD = struct.Struct("<BQHIQQ")
_HEAD_LENGTH = 22  # of a message record's fields before its data


def chunk_messages(chunk: Chunk) -> list[tuple[int, int, int, int, int, bytes | memoryview]]:
    """(index of the record in the chunk, channel id, log time, sequence, publish time, data) of
    each message record of `chunk`, as `breakup_chunk` (no CRC check) reads them; the data is a
    view into the chunk where the chunk parses here."""
    if chunk.compression == "zstd":
        messages = _messages(zstandard.decompress(chunk.data, chunk.uncompressed_size))
    else:
        messages = _messages(chunk.data) if chunk.compression == "" else None
    if messages is None:
        return [(i, r.channel_id, r.log_time, r.sequence, r.publish_time, r.data)
                for i, r in enumerate(breakup_chunk(chunk)) if isinstance(r, Message)]
    return messages


def _messages(data: bytes) -> list[tuple[int, int, int, int, int, memoryview]] | None:
    """`chunk_messages` of a chunk's records, or None unless every record is a whole message."""
    messages = []
    view, offset, end, unpack, size = memoryview(data), 0, len(data), _MESSAGE_HEAD.unpack_from, _MESSAGE_HEAD.size
    while offset < end:
        if end - offset < size:
            return None
        opcode, length, channel_id, sequence, log_time, publish_time = unpack(data, offset)
        stop = offset + 9 + length
        if opcode != Opcode.MESSAGE or length < _HEAD_LENGTH or stop > end:
            return None
        messages.append((len(messages), channel_id, log_time, sequence, publish_time, view[offset + size:stop]))
        offset = stop
    return messages


def indexed_messages(stream: IO[bytes], summary: Summary, topics: Iterable[str], starting_at: int | None,
                     ending_before: int | None) -> Iterator[tuple[Schema | None, Channel, Message]]:
    """(schema, channel, message) of `topics` with starting_at <= log_time < ending_before (None:
    unbounded) from the chunks of `summary`, in the order and with the errors of mcap's
    `SeekingReader(stream).iter_messages(topics, starting_at=..., ending_before=...)`."""
    topics = set(topics)
    count = itertools.count()
    heap: list[tuple] = [(index.message_start_time, index.chunk_start_offset, -1, next(count), index)
                         for index in _chunks_matching_topics(summary, topics, starting_at, ending_before)]
    heapq.heapify(heap)
    wanted: dict[int, Channel | None] = {}  # channel id -> its channel where its topic is wanted
    while heap:
        _, offset, _, _, item = heapq.heappop(heap)
        if not isinstance(item, ChunkIndex):
            yield item
            continue
        stream.seek(offset + 1 + 8, io.SEEK_SET)
        for index, channel_id, log_time, sequence, publish_time, data in chunk_messages(
                Chunk.read(ReadDataStream(stream))):
            if channel_id not in wanted:
                channel = summary.channels[channel_id]
                wanted[channel_id] = channel if channel.topic in topics else None
            channel = wanted[channel_id]
            if channel is None or (starting_at is not None and log_time < starting_at) \
                    or (ending_before is not None and log_time >= ending_before):
                continue
            schema = None if channel.schema_id == 0 else summary.schemas[channel.schema_id]
            message = Message(channel_id=channel_id, log_time=log_time, data=bytes(data), publish_time=publish_time,
                              sequence=sequence)
            heapq.heappush(heap, (log_time, offset, index, next(count), (schema, channel, message)))
