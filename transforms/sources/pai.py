"""Read one clip of a PhysicalAI-Autonomous-Vehicles dataset (REFERENCE.md section 2) as a log.

Member paths are resolved through `features.csv` and `clip_index.parquet`; zips are opened
through fsspec (local, memory://, gs://...) and each member used is read once, in order, into a
spool (memory up to MEMBER_SPOOL_BYTES, a local temporary file beyond): PyAV and parquet seek
back inside a member, and a zip member seeks back by reading again from its start (on gs://,
fetching it again). The dataset's index files are parsed once per process and version of each
file (a bounded cache), not once per clip.

Camera frames are decoded one at a time with PyAV, so memory does not grow with clip length.
The frame timestamps are known before decoding, so messages are merged in time order by them,
not by decoded frames: a camera decodes a short run of frames (RUN_FRAMES) only when its next
frame is the next message, so no camera decodes far ahead and the decoders take turns less
often. Every frame must be decoded (the codec needs it), but a frame becomes RGB only when its
pixels are first used (`DecodedFrame`): the clip assembler converts the 4 frames per camera a
clip needs, not every frame. Frames larger than the clip's stored image size (the teacher's
IMAGE_HEIGHT x IMAGE_WIDTH) are scaled down to it by swscale before the RGB conversion (two
steps, bilinear: the best of swscale's filters for speed and likeness to PIL's resize).
"""

import heapq
import json
import posixpath
import shutil
import tempfile
import threading
import zipfile
import zlib
from collections import OrderedDict, deque
from contextlib import ExitStack
from typing import Callable, Iterator, Sequence

import av
import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from av.video.reformatter import VideoReformatter

from schemas.contract import IMAGE_HEIGHT, IMAGE_WIDTH
from schemas.reasons import Reason
from transforms.sources.base import CameraFrame, EgoPose, LogInfo, LogReadError, Message

FALLBACK_DATE = "1970-01-01"
INDEX_CACHE_SIZE = 16  # parsed index files kept per process: 4 per dataset root
# Frames a camera decodes in one go before the merge moves on: its decoder's state stays in cache
# (at 1080p 4% less CPU than one frame per camera in turn); at most RUN_FRAMES decoded frames per
# camera wait for their turn.
RUN_FRAMES = 4
MEMBER_SPOOL_BYTES = 32 << 20  # a zip member is held in memory up to this size, else in a temporary file
# EOFError, zlib.error, RuntimeError: a truncated, corrupt, encrypted or oddly compressed zip member
_READ_ERRORS = (OSError, EOFError, RuntimeError, zlib.error, zipfile.BadZipFile, KeyError, ValueError,
                pa.ArrowException, av.FFmpegError)


def list_pai_clips(root: str) -> list[str]:
    """The clip ids of the dataset at `root`, in `clip_index.parquet` order."""
    return [str(c) for c in _index_file(_join(root, "clip_index.parquet"), _read_parquet).index]


def check_member_name(name: str) -> str:
    """`name` if it stays inside its archive; LogReadError(UNSAFE_PATH) if absolute or with ".."."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or (parts[0].endswith(":")):
        raise LogReadError(Reason.UNSAFE_PATH, f"unsafe path in archive: {name!r}")
    return name


class DecodedFrame(CameraFrame):
    """A CameraFrame of a decoded video frame: `pixels` are converted to RGB on first use, then
    kept (and the decoded frame released); a frame that cannot be converted raises ValueError
    there (the clip assembler's IMAGE_CORRUPT). `dataclasses.replace` gives a DecodedFrame with
    the pixels; pickling gives a plain CameraFrame with them."""

    def __init__(self, camera: str, t_us: int, data: bytes = b"", encoding: str = "rgb",
                 pixels: np.ndarray | None = None, *, decoded: av.VideoFrame | None = None,
                 convert: Callable[[av.VideoFrame], np.ndarray] | None = None):
        for name, value in (("camera", camera), ("t_us", t_us), ("data", data), ("encoding", encoding),
                            ("_pixels", pixels), ("_decoded", decoded), ("_convert", convert)):
            object.__setattr__(self, name, value)

    @property
    def pixels(self) -> np.ndarray | None:
        if self._pixels is None and self._decoded is not None:
            try:
                object.__setattr__(self, "_pixels", self._convert(self._decoded))
            except av.FFmpegError as e:
                raise ValueError(f"{self.camera} frame at {self.t_us} us: no RGB conversion: {e}") from e
            object.__setattr__(self, "_decoded", None)
        return self._pixels

    def __reduce__(self):
        return CameraFrame, (self.camera, self.t_us, self.data, self.encoding, self.pixels)


class RgbConverter:
    """Decoded frames of one video -> (H, W, 3) uint8 RGB arrays, one swscale thread.

    A frame at least `size` (height, width) in both dimensions and not equal to it is first
    scaled down to `size` in its own pixel format (bilinear, no crop), then converted; smaller
    or equal frames are converted at their size. Two steps: swscale's rgb24 output with scaling
    costs about twice the scaling alone plus a conversion at the small size. Thread-safe.
    """

    def __init__(self, size: tuple[int, int] | None):
        self.size = size
        self._scale, self._rgb = VideoReformatter(), VideoReformatter()  # each keeps its swscale context
        self._lock = threading.Lock()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        with self._lock:
            if self.size is not None:
                height, width = self.size
                if frame.height >= height and frame.width >= width and (frame.height, frame.width) != self.size:
                    frame = self._scale.reformat(frame, width=width, height=height, interpolation="BILINEAR",
                                                 threads=1)
            return _rgb_view(self._rgb.reformat(frame, format="rgb24", threads=1))


def _rgb_view(frame: av.VideoFrame) -> np.ndarray:
    """(H, W, 3) view of an rgb24 frame's plane, no copy (the array keeps the frame alive)."""
    plane = frame.planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)
    return rows[:, : 3 * frame.width].reshape(frame.height, frame.width, 3)


class PaiClipSource:
    """One PAI clip as a LogSource: egomotion as EgoPose, each camera's video as DecodedFrame
    ("rgb" pixels, converted on first use). Times are the dataset's (microseconds relative to
    the clip anchor).

    `cameras` restricts the cameras read (default: every camera feature of the dataset that is
    present for this clip). `image_size` (height, width): frames larger than it in both
    dimensions are scaled down to it (default: the clips' stored size, so the teacher's frames
    are never converted at full size; None: every frame at the video's size).
    `decoder_threads`: libavcodec threads per video; 1 (default) suits a worker that runs one
    reader per core; 0 picks libavcodec's automatic count for the CPUs this process may use,
    what the `ffmpeg` command does by default.
    """

    def __init__(self, root: str, clip_id: str, cameras: Sequence[str] | None = None,
                 image_size: tuple[int, int] | None = (IMAGE_HEIGHT, IMAGE_WIDTH), decoder_threads: int = 1):
        self.root = root.rstrip("/")
        self.clip_id = clip_id
        self.image_size = image_size
        self.decoder_threads = decoder_threads
        self._features = _index_file(_join(self.root, "features.csv"), _read_features)
        clip_index = _index_file(_join(self.root, "clip_index.parquet"), _read_parquet)
        if clip_id not in clip_index.index:
            raise LogReadError(Reason.LOG_UNREADABLE, f"clip {clip_id} is not in {self.root}/clip_index.parquet")
        self._chunk = int(clip_index.at[clip_id, "chunk"])
        available = [f for f, row in self._features.iterrows() if row["directory"] == "camera"]
        presence = self._presence()
        available = [c for c in available if presence.get(c, True)]
        if cameras is None:
            self.cameras = available
        else:
            missing = [c for c in cameras if c not in available]
            if missing:
                raise LogReadError(Reason.LOG_UNREADABLE, f"clip {clip_id} has no camera {missing}")
            self.cameras = list(cameras)

    def info(self) -> LogInfo:
        vehicle_id, date = posixpath.basename(self.root) or self.root, FALLBACK_DATE
        collection = self._optional_parquet("metadata/data_collection.parquet")
        if collection is not None and self.clip_id in collection.index:
            row = collection.loc[self.clip_id]
            vehicle_id = str(row.get("vehicle_id", vehicle_id))
            date = str(row.get("date", date))
        with ExitStack() as stack:
            try:
                t = _timestamps(self._member(stack, "egomotion", "egomotion"))
            except _READ_ERRORS as e:
                raise self._unreadable("egomotion", e) from e
        if len(t) == 0:
            raise LogReadError(Reason.LOG_EMPTY, f"clip {self.clip_id} has no egomotion rows")
        return LogInfo(uri=self.root, log_id=self.clip_id, vehicle_id=vehicle_id, date=date,
                       start_us=int(t[0]), end_us=int(t[-1]))

    def messages(self, start_us: int | None = None, end_us: int | None = None) -> Iterator[Message]:
        """EgoPose and CameraFrame with start_us <= t < end_us, merged in time order (at equal
        times: the pose first, then cameras in `self.cameras` order)."""
        lo = -(1 << 63) if start_us is None else int(start_us)
        hi = (1 << 63) - 1 if end_us is None else int(end_us)
        with ExitStack() as stack:
            poses = self._ego(lo, hi)
            stack.callback(poses.close)
            streams = [_Poses(poses), *(self._camera(stack, c, lo, hi) for c in self.cameras)]
            heads = [(t, rank) for rank, stream in enumerate(streams) if (t := stream.next_t()) is not None]
            heapq.heapify(heads)
            while heads:
                rank = heads[0][1]
                yield streams[rank].take()
                t = streams[rank].next_t()
                if t is None:
                    heapq.heappop(heads)
                else:
                    heapq.heapreplace(heads, (t, rank))

    def _ego(self, lo: int, hi: int) -> Iterator[EgoPose]:
        with ExitStack() as stack:
            try:
                parquet = pq.ParquetFile(self._member(stack, "egomotion", "egomotion"))
                batches = parquet.iter_batches(columns=["timestamp", "x", "y", "z", "qx", "qy", "qz", "qw"])
                for batch in batches:  # nulls become NaN: their windows are POSE_NONFINITE
                    cols = {name: batch.column(name).to_numpy(zero_copy_only=False) for name in batch.schema.names}
                    xyz = np.stack([cols["x"], cols["y"], cols["z"]], -1).astype(np.float64)
                    quat = np.stack([cols["qx"], cols["qy"], cols["qz"], cols["qw"]], -1).astype(np.float64)
                    for i, t in enumerate(cols["timestamp"]):
                        if lo <= t < hi:
                            yield EgoPose(t_us=int(t), xyz=xyz[i], quat=quat[i])
            except _READ_ERRORS as e:
                raise self._unreadable("egomotion", e) from e

    def _camera(self, stack: ExitStack, camera: str, lo: int, hi: int) -> "_CameraFrames":
        """The camera's frames in [lo, hi), its video opened (closed with `stack`), none decoded."""
        try:
            t = _timestamps(self._member(stack, camera, "frame_timestamps"))
            if len(t) > 1 and np.any(np.diff(t) <= 0):
                raise LogReadError(Reason.LOG_UNREADABLE, f"{camera}: frame timestamps not strictly increasing")
            container = stack.enter_context(av.open(self._member(stack, camera, "video"), "r"))
            if not container.streams.video:
                raise LogReadError(Reason.LOG_UNREADABLE, f"clip {self.clip_id} {camera}: no video stream")
            stream = container.streams.video[0]
            if self.decoder_threads == 1:
                stream.thread_type = "NONE"
            else:  # frame and slice threads, as libavcodec's (and the ffmpeg command's) default
                stream.thread_type = "AUTO"
                stream.codec_context.thread_count = self.decoder_threads
            if stream.frames and stream.frames != len(t):
                raise self._count_mismatch(camera, stream.frames, len(t))
        except _READ_ERRORS as e:
            raise self._unreadable(camera, e) from e
        first, stop = np.searchsorted(t, lo, "left"), np.searchsorted(t, hi, "left")
        return _CameraFrames(self, camera, t, int(first), int(stop), container.decode(stream),
                             RgbConverter(self.image_size))

    def _count_mismatch(self, camera: str, frames, timestamps: int) -> LogReadError:
        return LogReadError(Reason.LOG_UNREADABLE,
                            f"clip {self.clip_id} {camera}: the video has {frames} frames but the "
                            f"frame-timestamps member has {timestamps} timestamps")

    def _unreadable(self, feature: str, error: Exception) -> LogReadError:
        return LogReadError(Reason.LOG_UNREADABLE,
                            f"clip {self.clip_id} {feature}: {type(error).__name__}: {error}")

    def _member(self, stack: ExitStack, feature: str, alias: str):
        """A seekable file object holding one zip member's bytes (read once), closed with `stack`."""
        row = self._features.loc[feature]
        try:
            archive_path = row["chunk_path"].format(chunk_id=self._chunk)
            member = row["clip_files_in_zip"][alias].format(clip_id=self.clip_id)
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as e:
            raise LogReadError(Reason.LOG_UNREADABLE, f"{self.root}/features.csv: no usable path template "
                                                      f"for {feature} {alias} ({e!r})") from None
        check_member_name(archive_path)
        check_member_name(member)
        spool = stack.enter_context(tempfile.SpooledTemporaryFile(MEMBER_SPOOL_BYTES))
        with ExitStack() as reading:
            try:
                archive = reading.enter_context(zipfile.ZipFile(reading.enter_context(
                    fsspec.open(_join(self.root, archive_path), "rb").open())))
            except (OSError, zipfile.BadZipFile) as e:
                raise self._unreadable(feature, e) from e
            for name in archive.namelist():
                check_member_name(name)
            try:
                opened = reading.enter_context(archive.open(member))
            except KeyError as e:
                raise LogReadError(Reason.LOG_UNREADABLE, f"{archive_path} has no member {member}") from e
            shutil.copyfileobj(opened, spool, 1 << 20)  # checks the member's CRC at its end
        spool.seek(0)
        return spool

    def _presence(self) -> dict[str, bool]:
        presence = self._optional_parquet("metadata/feature_presence.parquet")
        if presence is None or self.clip_id not in presence.index:
            return {}
        return {k: bool(v) for k, v in presence.loc[self.clip_id].items()}

    def _optional_parquet(self, name: str) -> pd.DataFrame | None:
        return _index_file(_join(self.root, name), _read_parquet, optional=True)


class _Poses:
    """The ego poses of a range, one read ahead: its time orders the merge."""

    def __init__(self, poses: Iterator[EgoPose]):
        self._poses = poses
        self._next = next(poses, None)

    def next_t(self) -> int | None:
        return None if self._next is None else self._next.t_us

    def take(self) -> EgoPose:
        pose, self._next = self._next, next(self._poses, None)
        return pose


class _CameraFrames:
    """One camera's frames [first, stop) of its timestamps `t`: the i-th decoded frame has the
    i-th timestamp. `next_t` needs no decoding; `take` decodes a run of up to RUN_FRAMES frames
    when none is left (those before `first` are decoded and dropped). After the last frame of
    the video's timestamps, the video must end there."""

    def __init__(self, source: PaiClipSource, camera: str, t: np.ndarray, first: int, stop: int,
                 frames: Iterator[av.VideoFrame], convert: RgbConverter):
        self._source, self._camera, self._t = source, camera, t
        self._decoded, self._next, self._stop = 0, first, stop
        self._frames, self._convert = frames, convert
        self._run: deque[DecodedFrame] = deque()

    def next_t(self) -> int | None:
        if self._run:
            return self._run[0].t_us
        if self._next < self._stop:
            return int(self._t[self._next])
        if self._next == self._decoded == len(self._t) > 0 and self._decode() is not None:
            raise self._source._count_mismatch(self._camera, f"more than {len(self._t)}", len(self._t))
        return None

    def take(self) -> DecodedFrame:
        if not self._run:
            for _ in range(min(RUN_FRAMES, self._stop - self._next)):
                self._run.append(self._decode_next())
        return self._run.popleft()

    def _decode_next(self) -> DecodedFrame:
        while self._decoded <= self._next:
            frame = self._decode()
            if frame is None:
                raise self._source._count_mismatch(self._camera, self._decoded, len(self._t))
        self._next += 1
        return DecodedFrame(self._camera, int(self._t[self._next - 1]), decoded=frame, convert=self._convert)

    def _decode(self) -> av.VideoFrame | None:
        """The video's next frame, None at its end."""
        try:
            frame = next(self._frames, None)
        except _READ_ERRORS as e:
            raise self._source._unreadable(self._camera, e) from e
        self._decoded += frame is not None
        return frame


def _join(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}"


_index_cache: OrderedDict[tuple[str, str], object] = OrderedDict()  # (uri, version) -> parsed, LRU
_index_lock = threading.Lock()


def _index_file(uri: str, parse: Callable[[str], object], optional: bool = False):
    """`parse(uri)` of one of a dataset's index files, parsed once per version of the file and
    kept in a bounded cache (INDEX_CACHE_SIZE files). The version is fsspec's `ukey` (a hash of
    the file's metadata: size and modification time, or the object generation on GCS), so a
    rewritten file is parsed again. None when `optional` and the file does not exist. The
    parsed value is shared: callers must not modify it."""
    fs, path = fsspec.core.url_to_fs(uri)
    try:
        version = fs.ukey(path)
    except FileNotFoundError:
        if optional:
            return None
        return parse(uri)  # raises the file's LogReadError
    except OSError as e:
        raise LogReadError(Reason.LOG_UNREADABLE, f"{uri}: {e}") from e
    key = (uri, version)
    with _index_lock:
        if key in _index_cache:
            _index_cache.move_to_end(key)
            return _index_cache[key]
    parsed = parse(uri)  # outside the lock: a slow read does not hold up other threads
    with _index_lock:
        _index_cache[key] = parsed
        while len(_index_cache) > INDEX_CACHE_SIZE:
            _index_cache.popitem(last=False)
    return parsed


def _read_features(uri: str) -> pd.DataFrame:
    try:
        with fsspec.open(uri, "r") as f:
            features = pd.read_csv(f, index_col="feature")
        missing = sorted({"directory", "chunk_path", "clip_files_in_zip"} - set(features.columns))
        if missing:
            raise LogReadError(Reason.LOG_UNREADABLE, f"{uri} has no column {missing}")
        features["clip_files_in_zip"] = features["clip_files_in_zip"].map(json.loads, na_action="ignore")
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:  # pandas on a damaged CSV
        raise LogReadError(Reason.LOG_UNREADABLE, f"{uri}: {e}") from e
    if "egomotion" not in features.index:
        raise LogReadError(Reason.LOG_UNREADABLE, f"{uri} has no egomotion feature")
    zipped = (features["directory"] == "camera") | (features.index == "egomotion")
    unzipped = [f for f in features.index[zipped] if not isinstance(features.at[f, "clip_files_in_zip"], dict)]
    if unzipped:
        raise LogReadError(Reason.LOG_UNREADABLE, f"{uri}: no zip members for {unzipped}")
    return features


def _read_parquet(uri: str) -> pd.DataFrame:
    try:
        with fsspec.open(uri, "rb") as f:
            frame = pd.read_parquet(f)
        for values in (frame.index, *(frame[c] for c in frame.columns)):
            values.to_numpy()  # strings decode lazily: make damaged UTF-8 fail here, not at first use
        return frame
    # TypeError and KeyError: damaged pandas metadata in the file
    except (OSError, ValueError, TypeError, KeyError, pa.ArrowException) as e:
        raise LogReadError(Reason.LOG_UNREADABLE, f"{uri}: {e}") from e


def _timestamps(parquet_file) -> np.ndarray:
    """The int64 `timestamp` column of a parquet file object."""
    return pq.read_table(parquet_file, columns=["timestamp"]).column("timestamp").to_numpy().astype(np.int64)
