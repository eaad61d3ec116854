"""Clip assembly: a log's time-ordered camera frames and ego poses -> one row per t0 window.

The t0 grid holds the multiples of the stride (in log time) from the first one that leaves
MIN_HISTORY_US after the first ego pose to the last one at or before the last ego pose. Every
grid t0 is a window and ends as exactly one clips row or one quarantine row.

`ClipAssembler` is incremental and bounded: it keeps the frames of the next window (~0.35 s
per camera), the teacher JPEGs of the windows waiting for their future, and ~8 s of ego poses;
memory does not grow with the log. A window's cameras are chosen as soon as log time passes
t0; the window is emitted once an ego pose at or after t0 + 6.4 s has arrived, once log time
passes t0 + 6.4 s + EMIT_SLACK_US, or at `finish()`.

Checks, in this order (the first failing one is the window's reason):
- TIME_BACKWARDS: a decreasing or duplicate timestamp on the ego-pose stream within
  [t0 - 1.6 s, t0], or on a teacher camera's stream within [t0 - 0.3 s - tolerance, t0]
  (the out-of-order message itself is dropped);
- POSE_NONFINITE: a NaN/inf ego pose among those interpolated for the history;
- POSE_GAP: no ego pose in [t0 - 1.6 s - tolerance, t0 - 1.5 s], none at or after t0, or
  two consecutive history poses GAP_FACTOR x the expected period apart or more; the
  expected period is the median pose interval over [t0 - 1.6 s - tolerance, t0], local to
  the window so that a block of a log gives the same answer as the whole log;
- CAMERA_MISSING / CAMERA_STALE / IMAGE_CORRUPT, camera-major, earliest frame first: no
  frame at or before the requested time since t0 - 1.6 s / the closest one is older than the
  tolerance / it cannot be decoded.

The future is the ego-pose stream after t0 up to its first defect (a gap, a NaN/inf pose or a
decreasing/duplicate timestamp) or the end of the log; future steps after the last valid pose
are null rows. Only messages in [t0 - 1.6 s - tolerance, t0 + 6.4 s + EMIT_SLACK_US] decide
a window, so a log cut into blocks (`read_range`) gives the same rows as the whole log.
"""

import io
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import Callable, Iterable, NamedTuple

import numpy as np
from PIL import Image

from models.geometry import interpolate_poses, quat_to_matrix, to_ego_frame
from schemas.contract import (
    CAMERA_TOLERANCE_US,
    DEFAULT_STRIDE_US,
    FRAME_OFFSETS_US,
    FUTURE_OFFSETS_US,
    GAP_FACTOR,
    HISTORY_OFFSETS_US,
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    MIN_HISTORY_US,
    NUM_FRAMES,
    TEACHER_CAMERAS,
)
from schemas.ids import clip_id
from schemas.reasons import STAGE_OF, Reason
from transforms.redact import redact
from transforms.sources.base import CameraFrame, EgoPose, LogInfo, Message

HORIZON_US = FUTURE_OFFSETS_US[-1]  # 6.4 s
EMIT_SLACK_US = 1_000_000  # log time past t0 + 6.4 s after which a window no longer waits for a pose
DEFAULT_BLOCK_US = 60_000_000
JPEG_QUALITY = 90  # of re-encoded teacher images
EGO_STREAM = "ego_pose"
POSE_ROWS = 1024  # ego poses an assembler makes room for at first (10 s at 100 Hz)


class Output(NamedTuple):
    """One output row: `table` is "clips" or "quarantine"; `row` matches schemas.tables."""

    table: str
    row: dict


class ImageError(ValueError):
    """A camera frame that cannot be decoded."""


# What PIL raises on an image it cannot decode.
_UNDECODABLE = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _ceil_to(t: int, step: int) -> int:
    return -((-t) // step) * step


def t0_grid(info: LogInfo, stride_us: int = DEFAULT_STRIDE_US) -> range:
    """Every t0 of a log: multiples of the stride from start + MIN_HISTORY_US to the end."""
    first = _ceil_to(info.start_us + MIN_HISTORY_US, stride_us)
    return range(first, (info.end_us // stride_us) * stride_us + 1, stride_us)


def block_key(log_id: str, t0_us: int, block_us: int = DEFAULT_BLOCK_US) -> tuple[str, int]:
    """(log_id, start of the block holding t0): blocks are aligned to multiples of block_us."""
    return log_id, (t0_us // block_us) * block_us


def block_starts(info: LogInfo, stride_us: int = DEFAULT_STRIDE_US, block_us: int = DEFAULT_BLOCK_US) -> list[int]:
    """Starts of the blocks that hold at least one t0 of the log, ascending."""
    grid = t0_grid(info, stride_us)
    if not grid:
        return []
    starts = range(block_key(info.log_id, grid[0], block_us)[1], grid[-1] + 1, block_us)
    return [b for b in starts if _ceil_to(max(b, grid[0]), stride_us) < b + block_us]


def read_range(block_start_us: int, block_us: int = DEFAULT_BLOCK_US,
               tolerance_us: int = CAMERA_TOLERANCE_US) -> tuple[int, int]:
    """[start, end) of log time that decides every window of the block."""
    return (block_start_us - MIN_HISTORY_US - tolerance_us,
            block_start_us + block_us + HORIZON_US + EMIT_SLACK_US)


def teacher_jpeg(frame: CameraFrame) -> bytes:
    """The frame as a IMAGE_HEIGHT x IMAGE_WIDTH JPEG: an RGB JPEG of that size is passed
    through byte for byte once it decodes (checked at 1/8 scale); anything else is resized
    (bilinear, no crop) and encoded at JPEG_QUALITY. Raises ImageError when the frame cannot be
    decoded."""
    return _teacher_jpeg(frame, check=True)[0]


def teacher_pixels(frame: CameraFrame, decode: Callable[[bytes | Image.Image], np.ndarray]) -> tuple[bytes, np.ndarray]:
    """(`teacher_jpeg(frame)`, `decode` of it): decoding it for the teacher (`decode`: e.g.
    models.teacher.decode_image at its size) is the decode check. A JPEG passed through is handed
    to `decode` as PIL opened it for the pass-through test, so its header is parsed once. Raises
    ImageError when the frame or the JPEG cannot be decoded."""
    jpeg, opened = _teacher_jpeg(frame, check=False)
    try:
        return jpeg, decode(jpeg if opened is None else opened)
    except _UNDECODABLE as e:
        raise ImageError(str(e) or type(e).__name__) from None


def _teacher_jpeg(frame: CameraFrame, check: bool) -> tuple[bytes, Image.Image | None]:
    """(`teacher_jpeg(frame)`, the PIL image opened on it and not loaded where it was passed
    through unchecked); `check=False` leaves the decode check to the caller."""
    size = (IMAGE_WIDTH, IMAGE_HEIGHT)
    try:
        if frame.encoding == "rgb":
            pixels = frame.pixels
            if pixels is None or pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
                raise ImageError("rgb frame without (H, W, 3) uint8 pixels")
            image = Image.fromarray(pixels)
        else:
            image = Image.open(io.BytesIO(frame.data))
            if image.format == "JPEG" and image.size == size and image.mode == "RGB":
                if not check:
                    return frame.data, image
                # The decode check: at 1/8 scale every coefficient is still entropy-decoded (a
                # truncated or damaged stream fails the same way) at half the cost of a full decode.
                image.draft("RGB", (image.width // 8, image.height // 8))
                image.load()
                return frame.data, None
            image.draft("RGB", size)  # JPEG: decode at the smallest scale still >= size
            image = image.convert("RGB")
    except ImageError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageError(f"not a readable {frame.encoding} image ({len(frame.data)} bytes)") from None
    except _UNDECODABLE as e:
        raise ImageError(str(e) or type(e).__name__) from None
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue(), None


# The front wide camera's frame at t0 (images are camera-major, 4 frames per camera).
LUMA_IMAGE = TEACHER_CAMERAS.index("camera_front_wide_120fov") * NUM_FRAMES + NUM_FRAMES - 1


def image_luma(jpeg: bytes) -> float:
    """Mean luma (0-255) of a JPEG, decoded at 1/8 scale: low at night and in tunnels."""
    image = Image.open(io.BytesIO(jpeg))
    image.draft("L", (image.width // 8, image.height // 8))
    return float(np.asarray(image.convert("L"), dtype=np.float32).mean())


@dataclass
class _Frame:
    frame: CameraFrame
    jpeg: bytes | None = None  # cached teacher JPEG
    pixels: np.ndarray | None = None  # the JPEG decoded by the assembler's `decode`
    error: str | None = None


@dataclass
class _Window:
    t0_us: int
    frame_timestamps_us: list[list[int]] = field(default_factory=list)
    images: list[bytes] = field(default_factory=list)
    pixels: list[np.ndarray] = field(default_factory=list)
    camera_problem: tuple[Reason, str] | None = None


class ClipAssembler:
    """Turns one log's messages, pushed in log-time order, into clip and quarantine rows.

    `t0_range=(lo, hi)` keeps only t0 in [lo, hi) (a block); `open_ended=True` (streaming)
    ignores `info.end_us`: the grid then ends at the last ego pose pushed. With `decode` (the
    teacher's JPEG decoder, `models.teacher.decode_image` at its size) decoding each teacher JPEG
    is the decode check, and clip rows carry the 16 arrays under `models.teacher.DECODED_IMAGES`
    for the teacher, which then decodes nothing again.
    """

    def __init__(self, info: LogInfo, stride_us: int = DEFAULT_STRIDE_US,
                 tolerance_us: int = CAMERA_TOLERANCE_US, t0_range: tuple[int, int] | None = None,
                 open_ended: bool = False, decode: Callable[[bytes | Image.Image], np.ndarray] | None = None):
        self.info = info
        self._decode = decode
        if decode is not None:
            from models.teacher import DECODED_IMAGES  # only here: it imports torch

            self._decoded_key = DECODED_IMAGES
        self.stride_us = stride_us
        self.tolerance_us = tolerance_us
        self.open_ended = open_ended
        self._block = t0_range is not None
        grid = t0_grid(info, stride_us)
        self._log_has_windows = bool(grid) or open_ended
        lo, hi = t0_range if t0_range is not None else (grid.start, None)
        self._next_t0 = _ceil_to(max(lo, grid.start), stride_us)
        last = None if open_ended else (grid[-1] if grid else grid.start - stride_us)
        if hi is not None:
            hi_t0 = _ceil_to(hi, stride_us) - stride_us
            last = hi_t0 if last is None else min(last, hi_t0)
        self._last_t0 = last  # None: open-ended
        self._watermark: int | None = None
        self._last_t: dict[str, int] = {}
        self._events: list[tuple[str, int, int]] = []  # (stream, t, previous t) decreasing/duplicate
        self._pose_t: list[int] = []
        # xyz and quat of the poses of _pose_t, one row each; grows by doubling (a window's poses
        # are then a slice, not hundreds of small arrays to stack)
        self._pose_values = np.empty((POSE_ROWS, 7))
        self._frames: dict[str, list[_Frame]] = {c: [] for c in TEACHER_CAMERAS}
        self._dropped_t: dict[str, int | None] = {c: None for c in TEACHER_CAMERAS}
        self._pending: list[_Window] = []
        self.windows = 0  # windows created so far (each ends as one row)
        self._done = False

    # -- input ---------------------------------------------------------------------------

    def push(self, message: Message) -> list[Output]:
        """Add one message; return the rows of the windows it completes."""
        t = int(message.t_us)
        if isinstance(message, EgoPose):
            stream = EGO_STREAM
        elif message.camera in self._frames:
            stream = message.camera
        else:
            return []  # a camera the teacher does not read
        previous = self._last_t.get(stream)
        if previous is not None and t <= previous:
            self._events.append((stream, t, previous))
            return []
        self._last_t[stream] = t
        if stream == EGO_STREAM:
            n = len(self._pose_t)
            if n == len(self._pose_values):
                self._pose_values = np.concatenate([self._pose_values, np.empty_like(self._pose_values)])
            self._pose_values[n] = (*message.xyz, *message.quat)
            self._pose_t.append(t)
        else:
            self._frames[stream].append(_Frame(message))
        self._watermark = t if self._watermark is None else max(self._watermark, t)
        return self._advance(final=False)

    def push_all(self, messages: Iterable[Message]) -> list[Output]:
        """Push every message and finish: the log's (or block's) rows."""
        out = []
        for m in messages:
            out += self.push(m)
        return out + self.finish()

    def finish(self) -> list[Output]:
        """The log (or range) has ended: emit every remaining window, or LOG_EMPTY."""
        if self._done:
            return []
        out = self._advance(final=True)
        self._done = True
        if not self._log_has_windows or (self.open_ended and not self._block and self.windows == 0):
            out.append(self._log_row(Reason.LOG_EMPTY, self._empty_detail()))
        return out

    def abort(self, reason: Reason, detail: str) -> list[Output]:
        """The reader failed mid-log: quarantine every window not yet emitted with `reason`."""
        if self._done:
            return []
        self._done = True
        t0s = [w.t0_us for w in self._pending]
        if self._last_t0 is not None:
            t0s += list(range(self._next_t0, self._last_t0 + 1, self.stride_us))
        out = [self._quarantine(t0, reason, detail) for t0 in t0s]
        self.windows += len(t0s) - len(self._pending)
        self._pending = []
        if not out and self.windows == 0 and not self._block:
            out.append(self._log_row(reason, detail))
        return out

    # -- windows -------------------------------------------------------------------------

    def _advance(self, final: bool) -> list[Output]:
        wm, last_pose = self._watermark, self._last_t.get(EGO_STREAM)
        while self._last_t0 is None or self._next_t0 <= self._last_t0:
            t0 = self._next_t0
            if not final and (wm is None or wm <= t0):
                break  # frames at or before t0 may still come
            if self.open_ended and (last_pose is None or last_pose < t0):
                break  # the grid ends at the last ego pose
            self._pending.append(self._resolve_cameras(t0))
            self.windows += 1
            self._next_t0 += self.stride_us
        self._trim_frames()
        out = []
        while self._pending:
            t0 = self._pending[0].t0_us
            ready = final or (last_pose is not None and last_pose >= t0 + HORIZON_US) or (
                wm > t0 + HORIZON_US + EMIT_SLACK_US)
            if not ready:
                break
            out.append(self._emit(self._pending.pop(0)))
        self._trim_poses()
        return out

    def _resolve_cameras(self, t0: int) -> _Window:
        window = _Window(t0)
        for camera in TEACHER_CAMERAS:
            frames = self._frames[camera]
            times = [f.frame.t_us for f in frames]
            stamps = []
            for offset in FRAME_OFFSETS_US:
                wanted = t0 + offset
                i = bisect_right(times, wanted) - 1
                problem = None
                if i < 0:
                    older = self._dropped_t[camera]
                    if older is None or older < t0 - MIN_HISTORY_US:
                        problem = (Reason.CAMERA_MISSING,
                                   f"{camera}: no frame at or before {wanted} us (t0{offset / 1e6:+.1f} s) "
                                   f"since {t0 - MIN_HISTORY_US} us")
                    else:
                        problem = self._stale(camera, wanted, older)
                elif wanted - times[i] > self.tolerance_us:
                    problem = self._stale(camera, wanted, times[i])
                else:
                    jpeg = self._jpeg(frames[i])
                    if jpeg is None:
                        problem = (Reason.IMAGE_CORRUPT,
                                   f"{camera}: frame at {times[i]} us (for {wanted} us) cannot be decoded: "
                                   f"{frames[i].error}")
                if problem:
                    window.camera_problem = problem
                    window.images, window.pixels, window.frame_timestamps_us = [], [], []
                    return window
                stamps.append(times[i])
                window.images.append(frames[i].jpeg)
                if self._decode is not None:
                    window.pixels.append(frames[i].pixels)
            window.frame_timestamps_us.append(stamps)
        return window

    def _stale(self, camera: str, wanted: int, t: int) -> tuple[Reason, str]:
        return (Reason.CAMERA_STALE,
                f"{camera}: closest frame at or before {wanted} us is at {t} us, "
                f"{(wanted - t) / 1000:.1f} ms old (tolerance {self.tolerance_us / 1000:.0f} ms)")

    def _jpeg(self, f: _Frame) -> bytes | None:
        if f.jpeg is None and f.error is None:
            try:
                if self._decode is None:
                    f.jpeg = teacher_jpeg(f.frame)
                else:
                    f.jpeg, f.pixels = teacher_pixels(f.frame, self._decode)
            except ImageError as e:
                f.error = str(e)
        return f.jpeg

    def _trim_frames(self) -> None:
        cutoff = self._next_t0 + FRAME_OFFSETS_US[0] - self.tolerance_us
        for camera, frames in self._frames.items():
            k = bisect_left([f.frame.t_us for f in frames], cutoff)
            if k:
                self._dropped_t[camera] = frames[k - 1].frame.t_us
                del frames[:k]

    def _trim_poses(self) -> None:
        oldest = self._pending[0].t0_us if self._pending else self._next_t0
        cutoff = oldest - MIN_HISTORY_US - self.tolerance_us
        k = bisect_left(self._pose_t, cutoff)
        if k > 256 or (k and k == len(self._pose_t)):  # amortised
            del self._pose_t[:k]
            self._pose_values[:len(self._pose_t)] = self._pose_values[k:k + len(self._pose_t)]
        self._events = [e for e in self._events if max(e[1], e[2]) >= cutoff]

    # -- rows ------------------------------------------------------------------------------

    def _emit(self, window: _Window) -> Output:
        t0 = window.t0_us
        problem = self._time_problem(t0)
        poses = None
        if problem is None:
            poses = self._poses(t0)
            if isinstance(poses[0], Reason):
                problem, poses = poses, None
        problem = problem or window.camera_problem
        if problem is not None:
            return self._quarantine(t0, *problem)
        hist_xyz, hist_rot, fut_xyz, fut_rot = poses
        row = {
            "clip_id": clip_id(self.info.log_id, t0),
            "vehicle_id": self.info.vehicle_id,
            "log_id": self.info.log_id,
            "t0_us": t0,
            "date": self.info.date,
            "camera_names": list(TEACHER_CAMERAS),
            "frame_timestamps_us": window.frame_timestamps_us,
            "images": window.images,
            "ego_history_xyz": hist_xyz,
            "ego_history_rot": hist_rot,
            "ego_future_xyz": fut_xyz,
            "ego_future_rot": fut_rot,
            "source_uri": redact(self.info.uri),
            "image_luma": image_luma(window.images[LUMA_IMAGE]),
        }
        if self._decode is not None:
            row[self._decoded_key] = np.stack(window.pixels)
        return Output("clips", row)

    def _time_problem(self, t0: int) -> tuple[Reason, str] | None:
        for stream, t, previous in self._events:
            lo = t0 - MIN_HISTORY_US if stream == EGO_STREAM else t0 + FRAME_OFFSETS_US[0] - self.tolerance_us
            if t <= t0 and previous >= lo:
                kind = "duplicate" if t == previous else "decreasing"
                return Reason.TIME_BACKWARDS, f"{stream}: {kind} timestamp {t} us after {previous} us"
        return None

    def _poses(self, t0: int):
        """(history xyz, history rot, future xyz, future rot) as lists, or (reason, detail)."""
        lo_t = t0 - MIN_HISTORY_US - self.tolerance_us
        first = bisect_left(self._pose_t, lo_t)
        start_t = t0 + HISTORY_OFFSETS_US[0]
        i_lo = bisect_right(self._pose_t, start_t) - 1
        i_hi = bisect_left(self._pose_t, t0)
        if i_lo < first:
            return Reason.POSE_GAP, f"no ego pose between {lo_t} us and the history start {start_t} us"
        if i_hi >= len(self._pose_t):
            return Reason.POSE_GAP, f"no ego pose at or after t0 ({t0} us)"
        # Poses from `first` up to the first one at or after t0 + 6.4 s decide the window.
        end = min(bisect_left(self._pose_t, t0 + HORIZON_US), len(self._pose_t) - 1) + 1
        xyz = np.ascontiguousarray(self._pose_values[first:end, :3])
        quat = np.ascontiguousarray(self._pose_values[first:end, 3:])
        t = np.asarray(self._pose_t[first:end], dtype=np.int64)
        i_lo, i_hi, i_end = i_lo - first, i_hi - first, end - 1 - first
        finite = np.isfinite(xyz).all(axis=1) & np.isfinite(quat).all(axis=1) & (
            np.linalg.norm(np.nan_to_num(quat), axis=1) > 0)
        bad = np.flatnonzero(~finite[i_lo:i_hi + 1])
        if len(bad):
            return Reason.POSE_NONFINITE, f"ego pose at {t[i_lo + bad[0]]} us is not finite (history of t0 {t0} us)"
        period = float(np.median(np.diff(t[:i_hi + 1])))
        limit = GAP_FACTOR * period
        steps = np.diff(t[i_lo:i_hi + 1])
        gaps = np.flatnonzero(steps >= limit)
        if len(gaps):
            a, b = t[i_lo + gaps[0]], t[i_lo + gaps[0] + 1]
            return Reason.POSE_GAP, (f"ego poses at {a} us and {b} us are {(b - a) / 1000:.1f} ms apart, "
                                     f">= {GAP_FACTOR} x the median period {period / 1000:.1f} ms "
                                     f"(history of t0 {t0} us)")
        # The future: poses up to the first one at or after t0 + 6.4 s, cut at the first defect.
        cut = i_end + 1  # poses [i_lo, cut) are valid
        later = np.flatnonzero(~finite[i_hi:i_end + 1])
        if len(later):
            cut = min(cut, i_hi + int(later[0]))
        jumps = np.flatnonzero(np.diff(t[i_hi:i_end + 1]) >= limit)
        if len(jumps):
            cut = min(cut, i_hi + int(jumps[0]) + 1)
        for stream, t_new, _ in self._events:
            if stream == EGO_STREAM and t_new > t0:
                cut = min(cut, max(bisect_left(self._pose_t, t_new) - first, i_hi + 1))
        src = slice(i_lo, cut)
        hist_t = t0 + np.asarray(HISTORY_OFFSETS_US, dtype=np.int64)
        fut_t = t0 + np.asarray(FUTURE_OFFSETS_US, dtype=np.int64)
        n_future = int(np.searchsorted(fut_t, t[cut - 1], side="right"))
        query = np.concatenate([hist_t, fut_t[:n_future]])
        pos, q = interpolate_poses(t[src], xyz[src], quat[src], query)
        rot = quat_to_matrix(q)
        pos, rot = to_ego_frame(pos, rot, pos[len(hist_t) - 1], rot[len(hist_t) - 1])
        pos = pos.astype(np.float32).tolist()
        rot = rot.reshape(-1, 9).astype(np.float32).tolist()
        n = len(hist_t)
        pad = [None] * (len(fut_t) - n_future)
        return pos[:n], rot[:n], pos[n:] + pad, rot[n:] + pad

    def _quarantine(self, t0: int | None, reason: Reason, detail: str) -> Output:
        return Output("quarantine", quarantine_row(self.info, t0, reason, detail))

    def _log_row(self, reason: Reason, detail: str) -> Output:
        return self._quarantine(None, reason, detail)

    def _empty_detail(self) -> str:
        span = (self.info.end_us - self.info.start_us) / 1e6
        return (f"{self.info.uri}: no clip window: ego poses span {span:.2f} s "
                f"({self.info.start_us}..{self.info.end_us} us), a clip needs {MIN_HISTORY_US / 1e6:.1f} s "
                f"of history and a t0 on the {self.stride_us / 1e6:g} s grid")


def quarantine_row(info: LogInfo, t0_us: int | None, reason: Reason, detail: str) -> dict:
    """A quarantine row of the window at `t0_us`, or of the whole log when t0_us is None."""
    return {
        "clip_id": None if t0_us is None else clip_id(info.log_id, t0_us),
        "source_uri": redact(info.uri),
        "vehicle_id": info.vehicle_id,
        "log_id": info.log_id,
        "t0_us": t0_us,
        "date": info.date,
        "stage": STAGE_OF[reason].value,
        "reason": reason.value,
        "detail": detail,
    }
