"""Read one clip of a PhysicalAI-Autonomous-Vehicles dataset (REFERENCE.md section 2) as a log.

Member paths are resolved through `features.csv` and `clip_index.parquet`; zips are opened
through fsspec (local, memory://, gs://...) and their members are streamed, never extracted.
Camera frames are decoded one at a time with PyAV, so memory does not grow with clip length.
"""

import heapq
import json
import posixpath
import zipfile
import zlib
from contextlib import ExitStack
from typing import Iterator, Sequence

import av
import fsspec
from av.video.reformatter import VideoReformatter
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.reasons import Reason
from transforms.sources.base import CameraFrame, EgoPose, LogInfo, LogReadError, Message

FALLBACK_DATE = "1970-01-01"
# EOFError, zlib.error, RuntimeError: a truncated, corrupt, encrypted or oddly compressed zip member
_READ_ERRORS = (OSError, EOFError, RuntimeError, zlib.error, zipfile.BadZipFile, KeyError, ValueError,
                pa.ArrowException, av.FFmpegError)


def list_pai_clips(root: str) -> list[str]:
    """The clip ids of the dataset at `root`, in `clip_index.parquet` order."""
    return [str(c) for c in _read_parquet(_join(root, "clip_index.parquet")).index]


def check_member_name(name: str) -> str:
    """`name` if it stays inside its archive; LogReadError(UNSAFE_PATH) if absolute or with ".."."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or (parts[0].endswith(":")):
        raise LogReadError(Reason.UNSAFE_PATH, f"unsafe path in archive: {name!r}")
    return name


class PaiClipSource:
    """One PAI clip as a LogSource: egomotion as EgoPose, each camera's video as CameraFrame
    ("rgb" pixels). Times are the dataset's (microseconds relative to the clip anchor).

    `cameras` restricts the cameras read (default: every camera feature of the dataset that is
    present for this clip).
    """

    def __init__(self, root: str, clip_id: str, cameras: Sequence[str] | None = None):
        self.root = root.rstrip("/")
        self.clip_id = clip_id
        self._features = self._read_features()
        clip_index = _read_parquet(_join(self.root, "clip_index.parquet"))
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
        streams = [self._ego(lo, hi), *(self._frames(c, lo, hi) for c in self.cameras)]
        try:
            yield from heapq.merge(*streams, key=lambda m: m.t_us)
        finally:
            for s in streams:
                s.close()

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

    def _frames(self, camera: str, lo: int, hi: int) -> Iterator[CameraFrame]:
        """Decode sequentially; the i-th decoded frame has the i-th timestamp. Frames before the
        range are decoded and skipped without conversion; decoding stops at the range end."""
        with ExitStack() as stack:
            try:
                t = _timestamps(self._member(stack, camera, "frame_timestamps"))
                if len(t) > 1 and np.any(np.diff(t) <= 0):
                    raise LogReadError(Reason.LOG_UNREADABLE, f"{camera}: frame timestamps not strictly increasing")
                first, stop = np.searchsorted(t, lo, "left"), np.searchsorted(t, hi, "left")
                container = stack.enter_context(av.open(self._member(stack, camera, "video")))
                if not container.streams.video:
                    raise LogReadError(Reason.LOG_UNREADABLE, f"clip {self.clip_id} {camera}: no video stream")
                stream = container.streams.video[0]
                # One thread per reader, as `ffmpeg -threads 1`: workers run a reader per core, and
                # PyAV's defaults (slice-threaded decoding, rgb conversion on every CPU since PyAV
                # 17) spend more CPU per frame on a many-core machine without decoding faster.
                stream.thread_type = "NONE"
                to_rgb = VideoReformatter()  # keeps its swscale context from frame to frame
                if stream.frames and stream.frames != len(t):
                    raise self._count_mismatch(camera, stream.frames, len(t))
                if first >= stop:
                    return
                i = -1
                for i, frame in enumerate(container.decode(stream)):
                    if i >= len(t):
                        raise self._count_mismatch(camera, f"more than {len(t)}", len(t))
                    if i >= stop:
                        return
                    if i >= first:
                        yield CameraFrame(camera=camera, t_us=int(t[i]), data=b"", encoding="rgb",
                                          pixels=to_rgb.reformat(frame, format="rgb24", threads=1).to_ndarray())
                if i + 1 != len(t):
                    raise self._count_mismatch(camera, i + 1, len(t))
            except _READ_ERRORS as e:
                raise self._unreadable(camera, e) from e

    def _count_mismatch(self, camera: str, frames, timestamps: int) -> LogReadError:
        return LogReadError(Reason.LOG_UNREADABLE,
                            f"clip {self.clip_id} {camera}: the video has {frames} frames but the "
                            f"frame-timestamps member has {timestamps} timestamps")

    def _unreadable(self, feature: str, error: Exception) -> LogReadError:
        return LogReadError(Reason.LOG_UNREADABLE,
                            f"clip {self.clip_id} {feature}: {type(error).__name__}: {error}")

    def _member(self, stack: ExitStack, feature: str, alias: str):
        """A seekable file object of one zip member, closed with `stack`."""
        row = self._features.loc[feature]
        try:
            archive_path = row["chunk_path"].format(chunk_id=self._chunk)
            member = row["clip_files_in_zip"][alias].format(clip_id=self.clip_id)
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as e:
            raise LogReadError(Reason.LOG_UNREADABLE, f"{self.root}/features.csv: no usable path template "
                                                      f"for {feature} {alias} ({e!r})") from None
        check_member_name(archive_path)
        check_member_name(member)
        try:
            archive = stack.enter_context(zipfile.ZipFile(stack.enter_context(
                fsspec.open(_join(self.root, archive_path), "rb").open())))
        except (OSError, zipfile.BadZipFile) as e:
            raise self._unreadable(feature, e) from e
        for name in archive.namelist():
            check_member_name(name)
        try:
            return stack.enter_context(archive.open(member))
        except KeyError as e:
            raise LogReadError(Reason.LOG_UNREADABLE, f"{archive_path} has no member {member}") from e

    def _read_features(self) -> pd.DataFrame:
        try:
            with fsspec.open(_join(self.root, "features.csv"), "r") as f:
                features = pd.read_csv(f, index_col="feature")
            missing = sorted({"directory", "chunk_path", "clip_files_in_zip"} - set(features.columns))
            if missing:
                raise LogReadError(Reason.LOG_UNREADABLE, f"{self.root}/features.csv has no column {missing}")
            features["clip_files_in_zip"] = features["clip_files_in_zip"].map(json.loads, na_action="ignore")
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:  # pandas on a damaged CSV
            raise LogReadError(Reason.LOG_UNREADABLE, f"{self.root}/features.csv: {e}") from e
        if "egomotion" not in features.index:
            raise LogReadError(Reason.LOG_UNREADABLE, f"{self.root}/features.csv has no egomotion feature")
        zipped = (features["directory"] == "camera") | (features.index == "egomotion")
        unzipped = [f for f in features.index[zipped] if not isinstance(features.at[f, "clip_files_in_zip"], dict)]
        if unzipped:
            raise LogReadError(Reason.LOG_UNREADABLE, f"{self.root}/features.csv: no zip members for {unzipped}")
        return features

    def _presence(self) -> dict[str, bool]:
        presence = self._optional_parquet("metadata/feature_presence.parquet")
        if presence is None or self.clip_id not in presence.index:
            return {}
        return {k: bool(v) for k, v in presence.loc[self.clip_id].items()}

    def _optional_parquet(self, name: str) -> pd.DataFrame | None:
        uri = _join(self.root, name)
        fs, path = fsspec.core.url_to_fs(uri)
        return _read_parquet(uri) if fs.exists(path) else None


def _join(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}"


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
