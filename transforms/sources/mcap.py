"""Read one MCAP / ROS 2 log (an .mcap file or a rosbag2 folder) as a LogSource.

Indexed files are read from the chunk index in log-time order, one chunk at a time, so memory
does not grow with the log. A file without a summary (a recorder killed before it wrote the
tail) is read by a linear scan up to its last complete record; that scan keeps file order
(messages within a chunk are sorted by log time). Topic names, the ego-pose source and the
clock that gives `t_us` (log time or header stamp) come from the topic map; messages are
yielded in `t_us` order.
"""

import heapq
import logging
import posixpath
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import IO, Callable, Iterator

import fsspec
import numpy as np
import yaml
import zstandard
from mcap.exceptions import InvalidMagic, McapError
from mcap.reader import SeekingReader
from mcap.records import Channel, Chunk, Message, Metadata, Schema
from mcap.stream_reader import StreamReader, breakup_chunk
from mcap_ros2.decoder import DecoderFactory
from rosbags.typesys import Stores, get_typestore, get_types_from_msg

from schemas.reasons import Reason
from transforms.sources.base import CameraFrame, EgoPose, LogInfo, LogReadError
from transforms.sources.base import Message as LogMessage
from transforms.sources.mcap_index import indexed_messages
from transforms.sources.odometry_cdr import decode_odometry, is_standard_odometry
from transforms.sources.topic_map import DEFAULT, TopicMap

log = logging.getLogger(__name__)

ROSBAG2_METADATA = "metadata.yaml"
# In header_stamp mode a time range is first widened by this much of log time, then filtered
# on the stamps: a message logged more than this after (or before) its stamp falls outside
# range reads (a whole-log read still yields it).
STAMP_SLACK_US = 1_000_000
# Magic, header record (opcode and length) and magic: anything shorter is not an MCAP.
_MIN_SIZE = 8 + 9 + 8
# What a damaged file raises from the mcap library and its decompressors.
_DAMAGED = (McapError, struct.error, EOFError, ValueError, RuntimeError, OverflowError, KeyError, IndexError,
            zstandard.ZstdError)
# What the CDR decoder raises on a damaged message, and converting a message of a damaged schema
# that lacks a field, beyond _DAMAGED.
_UNDECODABLE = (*_DAMAGED, TypeError, AttributeError)


def _image_encoding(fmt: str, data: bytes) -> str:
    """ROS format strings vary ("jpeg", "rgb8; jpeg compressed bgr8", "png"): normalise them."""
    f = fmt.lower()
    if "jpeg" in f or "jpg" in f or data[:2] == b"\xff\xd8":
        return "jpeg"
    if "png" in f or data[:4] == b"\x89PNG":
        return "png"
    return f


_IMAGE, _ODOMETRY, _TF = "sensor_msgs/msg/CompressedImage", "nav_msgs/msg/Odometry", "tf2_msgs/msg/TFMessage"


def _check_type(path: str, topic: str, schema, expected: str) -> None:
    name = schema.name.replace("/msg/", "/") if schema is not None else None
    if name != expected.replace("/msg/", "/"):
        raise LogReadError(Reason.LOG_UNREADABLE, f"{path}: topic {topic} carries "
                           f"{schema.name if schema else 'no schema'}, expected {expected}")


@lru_cache(maxsize=64)
def _fast_decoder(type_name: str, definition: str) -> Callable[[bytes], object] | None:
    """rosbags' deserialiser for a ros2msg schema (the type and its dependencies, as MCAP stores
    them), or None where rosbags cannot parse the schema."""
    try:
        typestore = get_typestore(Stores.EMPTY)
        typestore.register(get_types_from_msg(definition, type_name))
    except Exception:  # the msg parser raises many kinds on a schema it cannot read
        return None
    return lambda data: typestore.deserialize_cdr(data, type_name)


class _Decoders:
    """ROS 2 CDR decoders per schema. mcap_ros2's is the reference: it parses the schema (a
    damaged one fails as it always did) and decodes what the fast path cannot. The fast path is
    rosbags' generated deserialiser, about 3x cheaper on nav_msgs/Odometry (mcap_ros2 reads its
    72 covariance doubles one call at a time); a message it fails on goes to mcap_ros2, so a
    damaged message gives mcap_ros2's value or error. A standard nav_msgs/Odometry is first read
    at fixed offsets (transforms.sources.odometry_cdr, 5x cheaper again); a message that is not
    exactly standard goes on to the others."""

    def __init__(self):
        self._reference = DecoderFactory()
        self._decoders: dict[int, Callable[[bytes], object] | None] = {}

    def decoder_for(self, message_encoding: str, schema) -> Callable[[bytes], object] | None:
        """The schema's decoder; None where the channel is not ROS 2 CDR with a ros2msg schema."""
        if schema is not None and schema.id in self._decoders:
            return self._decoders[schema.id]
        reference = self._reference.decoder_for(message_encoding, schema)
        decode = reference
        if reference is not None:
            fast = _fast_decoder(schema.name, schema.data.decode())
            if fast is not None:
                def decode(data, fast=fast, reference=reference):
                    try:
                        return fast(data)
                    except Exception:  # rosbags raises many kinds on a damaged message
                        return reference(data)
            if is_standard_odometry(schema.name, schema.data.decode()):
                def decode(data, general=decode):
                    return decode_odometry(data) or general(data)
        if schema is not None:
            self._decoders[schema.id] = decode
        return decode


def _stamp_us(header) -> int:
    return int(header.stamp.sec) * 1_000_000 + int(header.stamp.nanosec) // 1_000


def _frame(name: str) -> str:
    return name.lstrip("/")


@dataclass
class _File:
    """One .mcap file of a log: yields (log_time_ns, message) for the wanted topics."""

    fs: fsspec.AbstractFileSystem
    path: str
    topic_map: TopicMap

    def _open(self) -> tuple[IO[bytes], SeekingReader]:
        size = self.fs.size(self.path)
        if size == 0:
            raise LogReadError(Reason.LOG_UNREADABLE, f"{self.path}: zero bytes")
        if size < _MIN_SIZE:
            raise LogReadError(Reason.LOG_UNREADABLE, f"{self.path}: {size} bytes, too short for an MCAP file")
        # Readahead: the reader makes many small reads; gcsfs's default cache pays an event-loop
        # round trip for each (about 100x slower than this on a gs:// log).
        f = self.fs.open(self.path, "rb", cache_type="readahead")
        try:
            reader = SeekingReader(f)
        except (InvalidMagic, *_DAMAGED) as e:
            f.close()
            raise LogReadError(Reason.LOG_UNREADABLE, f"{self.path}: not an MCAP file ({e!r})") from None
        return f, reader

    @staticmethod
    def _summary(reader: SeekingReader):
        """The summary, or None where the tail is missing or damaged."""
        try:
            summary = reader.get_summary()
        except (*_DAMAGED, OSError):  # OSError: a file shorter than a footer
            return None
        return summary if summary is not None and summary.chunk_indexes else None

    def metadata(self, name: str) -> dict[str, str] | None:
        f, reader = self._open()
        with f:
            try:
                if self._summary(reader) is not None:
                    return next((m.metadata for m in reader.iter_metadata() if m.name == name), None)
                for record in self._scan_records(f):
                    if isinstance(record, Metadata) and record.name == name:
                        return record.metadata
            except _DAMAGED as e:
                raise LogReadError(Reason.LOG_UNREADABLE, f"{self.path}: damaged metadata ({e!r})") from None
        return None

    def messages(self, lo_ns: int | None, hi_ns: int | None, ego_only: bool = False,
                 reverse: bool = False) -> Iterator[tuple[int, LogMessage]]:
        """Messages with lo_ns <= log_time < hi_ns, converted to LogMessages."""
        tm = self.topic_map
        camera_of = {} if ego_only else {topic: camera for camera, topic in tm.cameras.items()}
        topics = [*camera_of, tm.ego_pose.topic]
        expected = {**{t: _IMAGE for t in camera_of}, tm.ego_pose.topic: _ODOMETRY if tm.ego_pose.type == "odometry"
                    else _TF}
        checked = set()
        f, reader = self._open()
        with f:
            summary = self._summary(reader)
            if summary is not None and not reverse:
                raw = indexed_messages(f, summary, topics, lo_ns, hi_ns)
            elif summary is not None:  # only to find the last ego pose
                raw = reader.iter_messages(topics, log_time_order=True, reverse=True,
                                           starting_at=lo_ns, ending_before=hi_ns)
            else:
                raw = self._scan_messages(f, set(topics), lo_ns, hi_ns)
                if reverse:  # only to find the last ego pose: a full scan, bounded memory
                    raw = _last(raw)
            decoders = _Decoders()
            try:
                for schema, channel, message in raw:
                    if channel.id not in checked:
                        _check_type(self.path, channel.topic, schema, expected[channel.topic])
                        checked.add(channel.id)
                    try:
                        decode = decoders.decoder_for(channel.message_encoding, schema)
                    except Exception as e:  # the schema parser raises many kinds on a damaged schema
                        raise LogReadError(Reason.LOG_UNREADABLE, f"{self.path}: the schema of topic "
                                           f"{channel.topic} cannot be parsed ({e!r})") from None
                    try:
                        if decode is None:
                            raise LogReadError(Reason.LOG_UNREADABLE, f"{self.path}: topic {channel.topic} is not "
                                               f"ROS 2 CDR with a ros2msg schema ({channel.message_encoding})")
                        converted = list(self._convert(channel.topic, camera_of, message, decode(message.data)))
                    except _UNDECODABLE as e:
                        raise LogReadError(Reason.LOG_UNREADABLE, f"{self.path}: topic {channel.topic}: message "
                                           f"at log time {message.log_time} ns cannot be decoded ({e!r})") from None
                    yield from ((message.log_time, m) for m in converted)
            except _DAMAGED as e:
                raise LogReadError(Reason.LOG_UNREADABLE, f"{self.path}: damaged ({e!r})") from None

    def _convert(self, topic: str, camera_of: dict, message: Message, msg) -> Iterator[LogMessage]:
        by_stamp = self.topic_map.time == "header_stamp"
        log_us = message.log_time // 1_000
        if topic in camera_of:
            data = bytes(msg.data)
            yield CameraFrame(camera_of[topic], _stamp_us(msg.header) if by_stamp else log_us, data,
                              _image_encoding(msg.format, data))
            return
        ego = self.topic_map.ego_pose
        if ego.type == "odometry":
            p, q = msg.pose.pose.position, msg.pose.pose.orientation
            yield EgoPose(_stamp_us(msg.header) if by_stamp else log_us, _vec(p.x, p.y, p.z),
                          _vec(q.x, q.y, q.z, q.w))
            return
        for tf in msg.transforms:
            if _frame(tf.header.frame_id) == ego.parent_frame and _frame(tf.child_frame_id) == ego.child_frame:
                p, q = tf.transform.translation, tf.transform.rotation
                yield EgoPose(_stamp_us(tf.header) if by_stamp else log_us, _vec(p.x, p.y, p.z),
                              _vec(q.x, q.y, q.z, q.w))

    def _scan_records(self, f: IO[bytes]) -> Iterator:
        """Records in file order up to the last complete one (chunks left whole)."""
        f.seek(0)
        complete = 0
        try:
            for record in StreamReader(f, skip_magic=False).records:
                complete += isinstance(record, (Chunk, Message))
                yield record
        except _DAMAGED as e:
            if complete == 0:
                raise LogReadError(Reason.LOG_UNREADABLE,
                                   f"{self.path}: truncated before the first complete chunk ({e!r})") from None
            log.warning("%s: no summary and truncated after %d complete chunks; reading those", self.path, complete)

    def _scan_messages(self, f: IO[bytes], topics: set, lo_ns, hi_ns):
        """(schema, channel, message) by linear scan, one chunk resident at a time."""
        schemas: dict[int, Schema] = {}
        channels: dict[int, Channel] = {}

        def wanted(records):
            for r in records:
                if isinstance(r, Schema):
                    schemas[r.id] = r
                elif isinstance(r, Channel):
                    channels[r.id] = r
                elif isinstance(r, Message) and r.channel_id in channels:
                    channel = channels[r.channel_id]
                    if channel.topic in topics and (lo_ns is None or r.log_time >= lo_ns) \
                            and (hi_ns is None or r.log_time < hi_ns):
                        yield schemas.get(channel.schema_id), channel, r

        for record in self._scan_records(f):
            if isinstance(record, Chunk):
                yield from sorted(wanted(breakup_chunk(record)), key=lambda t: t[2].log_time)
            else:
                yield from wanted([record])


def _vec(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


def _last(items):
    last = None
    for last in items:
        pass
    return [] if last is None else [last]


class McapLogSource:
    """One MCAP log: a .mcap file or a rosbag2 folder, on any fsspec URL."""

    def __init__(self, uri: str, topic_map: TopicMap = DEFAULT):
        self.uri = uri
        self.topic_map = topic_map
        self._info: LogInfo | None = None

    def _layout(self) -> tuple[fsspec.AbstractFileSystem, str, list[str]]:
        """The filesystem, the log's own path, and its .mcap files in recording order."""
        fs, path = fsspec.core.url_to_fs(self.uri)
        path = path.rstrip("/")
        if not fs.exists(path):
            raise LogReadError(Reason.LOG_UNREADABLE, f"{self.uri}: no such file or folder")
        if not fs.isdir(path):
            return fs, path, [path]
        meta_path = posixpath.join(path, ROSBAG2_METADATA)
        names = None
        if fs.exists(meta_path):
            try:
                meta = yaml.safe_load(fs.cat_file(meta_path)) or {}
                names = meta["rosbag2_bagfile_information"]["relative_file_paths"]
            except (yaml.YAMLError, KeyError, TypeError) as e:
                raise LogReadError(Reason.LOG_UNREADABLE, f"{meta_path}: not rosbag2 metadata ({e!r})") from None
            for name in names:
                if not isinstance(name, str) or name.startswith("/") or ".." in name.split("/"):
                    raise LogReadError(Reason.UNSAFE_PATH, f"{meta_path}: unsafe file path {name!r}")
        else:
            names = sorted(posixpath.basename(p) for p in fs.ls(path, detail=False) if p.endswith(".mcap"))
        if not names:
            raise LogReadError(Reason.LOG_UNREADABLE, f"{self.uri}: a folder without .mcap files")
        return fs, path, [posixpath.join(path, n) for n in names]

    def _files(self) -> tuple[bool, str, list[_File]]:
        """Whether the log is a folder, its path, and one reader per .mcap file."""
        fs, path, paths = self._layout()
        return len(paths) > 1 or paths[0] != path, path, [_File(fs, p, self.topic_map) for p in paths]

    def info(self) -> LogInfo:
        if self._info is not None:
            return self._info
        is_folder, path, files = self._files()
        first = next((m for f in files for _, m in f.messages(None, None, ego_only=True)), None)
        if first is None:
            ego = self.topic_map.ego_pose
            raise LogReadError(Reason.LOG_EMPTY, f"{self.uri}: no ego pose on {ego.topic} ({ego.type})")
        last = next(m for f in reversed(files) for _, m in f.messages(None, None, ego_only=True, reverse=True))
        vehicle = next((m["id"] for f in files if (m := f.metadata("vehicle")) and "id" in m), None)
        name = posixpath.basename(path)
        self._info = LogInfo(
            uri=self.uri,
            log_id=name if is_folder else name.rsplit(".", 1)[0],
            vehicle_id=vehicle or posixpath.basename(posixpath.dirname(path)),
            date=datetime.fromtimestamp(first.t_us / 1e6, tz=timezone.utc).strftime("%Y-%m-%d"),
            start_us=first.t_us,
            end_us=last.t_us,
        )
        return self._info

    def messages(self, start_us: int | None = None, end_us: int | None = None) -> Iterator[LogMessage]:
        """Camera frames and ego poses with start_us <= t_us < end_us, in t_us order.

        In header_stamp mode messages come off the file in log-time order and are re-sorted by
        stamp in a buffer spanning STAMP_SLACK_US of log time.
        """
        by_stamp = self.topic_map.time == "header_stamp"
        slack = STAMP_SLACK_US if by_stamp else 0
        lo = None if start_us is None else (start_us - slack) * 1_000
        hi = None if end_us is None else (end_us + slack) * 1_000
        streams = [f.messages(lo, hi) for f in self._files()[2]]
        merged = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=lambda pair: pair[0])
        for m in _sorted_by_stamp(merged) if by_stamp else (m for _, m in merged):
            if (start_us is None or m.t_us >= start_us) and (end_us is None or m.t_us < end_us):
                yield m


def _sorted_by_stamp(stream: Iterator[tuple[int, LogMessage]]) -> Iterator[LogMessage]:
    """Reorder a log-time ordered stream by t_us, holding STAMP_SLACK_US of log time."""
    heap: list = []
    for n, (log_ns, m) in enumerate(stream):
        heapq.heappush(heap, (m.t_us, n, m))
        while heap and heap[0][0] < log_ns // 1_000 - STAMP_SLACK_US:
            yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]
