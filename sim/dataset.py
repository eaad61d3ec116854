"""Clips straight from the simulator, with their truth, for training and evaluating the tiny teacher.

A clip is built exactly as `coclabel clips` builds one from a log (REFERENCE.md section 1): at
t0 on a grid, the 16 frames at t0 + FRAME_OFFSETS_US of the 4 teacher cameras (sim.cameras.RIG,
320x576, JPEG quality 90), the 16 history and 64 future poses in the t0 ego frame; the truth
(family, cause, reasoning, meta-actions) is that of the drive segment active at t0.

A dataset is cached as one .npz (no pickles): text columns as unicode arrays, the JPEGs
concatenated into one byte array with offsets.
"""

import io
import multiprocessing as mp
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from models.geometry import interpolate_poses, quat_to_matrix, to_ego_frame
from schemas.contract import (
    FRAME_OFFSETS_US,
    FUTURE_OFFSETS_US,
    HISTORY_OFFSETS_US,
    MIN_HISTORY_US,
    TEACHER_CAMERAS,
)
from schemas.ids import clip_id as make_clip_id

JPEG_QUALITY = 90
# bumped whenever the simulator's drives or truth change, so that stale caches are not reused
# (2: leads come into view earlier; the truth names no vehicle before it is in view;
#  3: the expert brakes for a lead or a pedestrian only after 6.4 s in view, pedestrians come
#  into view earlier, a return after an overtake is explained by the clear right lane, a slower
#  vehicle is named from when it comes into view;
#  4: signal heads are rendered out to 250 m and lit lamps do not fade, so that a red light the
#  expert starts braking for, up to ~240 m ahead with the truth's 6.4 s look-ahead, is in view)
SIM_VERSION = 4
START_US = 1_767_254_400_000_000  # 2026-01-01T08:00:00Z
TRUTH_COLUMNS = ("family", "cause", "reasoning", "longitudinal", "lateral")


def jpeg_bytes(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def poses_in_t0_frame(drive, t0_us: int, offsets_us) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) positions and (N, 9) row-major rotations at t0 + offsets, in the ego frame at t0."""
    times = t0_us + np.asarray(offsets_us, dtype=np.int64)
    xyz, quat = interpolate_poses(drive.ego.t_us, drive.ego.xyz, drive.ego.quat, np.append(times, t0_us))
    rot = quat_to_matrix(quat)
    local_xyz, local_rot = to_ego_frame(xyz[:-1], rot[:-1], xyz[-1], rot[-1])
    return local_xyz.astype(np.float32), local_rot.reshape(-1, 9).astype(np.float32)


def clip_times(drive, stride_us: int) -> np.ndarray:
    """t0 grid of a drive: every `stride_us` from the first t0 with 1.6 s of history to the last
    with a full 6.4 s future."""
    first = drive.start_us + MIN_HISTORY_US
    last = drive.end_us - FUTURE_OFFSETS_US[-1]
    return np.arange(first, last + 1, stride_us, dtype=np.int64)


def segment_at(drive, t_us: int):
    for seg in drive.segments:
        if seg.t_start_us <= t_us < seg.t_end_us:
            return seg
    raise ValueError(f"{drive.log_name}: no segment covers t={t_us}")


def drive_clips(drive, stride_us: int, render: Callable) -> Iterator[dict]:
    """Clips of one drive with their truth; `render(snapshot, camera) -> (H, W, 3) uint8`."""
    from sim.cameras import RIG

    for t0 in clip_times(drive, stride_us):
        t0 = int(t0)
        seg = segment_at(drive, t0)
        hist_xyz, hist_rot = poses_in_t0_frame(drive, t0, HISTORY_OFFSETS_US)
        fut_xyz, fut_rot = poses_in_t0_frame(drive, t0, FUTURE_OFFSETS_US)
        snapshots = [drive.snapshot(t0 + off) for off in FRAME_OFFSETS_US]
        images = [jpeg_bytes(render(snap, RIG[cam])) for cam in TEACHER_CAMERAS for snap in snapshots]
        yield {
            "clip_id": make_clip_id(drive.log_name, t0), "vehicle_id": drive.vehicle_id, "log_id": drive.log_name,
            "t0_us": t0, "night": drive.night, "images": images,
            "ego_history_xyz": hist_xyz, "ego_history_rot": hist_rot,
            "ego_future_xyz": fut_xyz, "ego_future_rot": fut_rot,
            **{c: getattr(seg, c) for c in TRUTH_COLUMNS},
        }


def simulate_clips(seed: int, minutes: float, stride_us: int) -> list[dict]:
    """All clips of the drive simulated with `seed` (one vehicle per seed)."""
    from sim.fleet import simulate_drive
    from sim.render import Renderer

    drive = simulate_drive(vehicle_id=f"sim-{seed:05d}", seed=seed, duration_s=minutes * 60, start_us=START_US)
    return list(drive_clips(drive, stride_us, Renderer(drive.static_map).render))


@dataclass
class ClipDataset:
    """Clips with truth as columns; `clip(i)` gives back a CLIPS-like dict."""

    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.columns["clip_id"])

    def images(self, i: int) -> list[bytes]:
        off, data = self.columns["jpeg_offsets"], self.columns["jpeg"]
        n = len(TEACHER_CAMERAS) * len(FRAME_OFFSETS_US)
        return [data[off[j] : off[j + 1]].tobytes() for j in range(i * n, (i + 1) * n)]

    def clip(self, i: int) -> dict:
        row = {k: v[i] for k, v in self.columns.items() if k not in ("jpeg", "jpeg_offsets")}
        row["images"] = self.images(i)
        return row

    @classmethod
    def from_clips(cls, clips: list[dict]) -> "ClipDataset":
        if not clips:
            raise ValueError("no clips")
        blobs = [b for c in clips for b in c["images"]]
        offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
        columns = {"jpeg": np.frombuffer(b"".join(blobs), dtype=np.uint8), "jpeg_offsets": offsets}
        for key in clips[0]:
            if key != "images":
                columns[key] = np.asarray([c[key] for c in clips])
        return cls(columns)

    @classmethod
    def concat(cls, parts: list["ClipDataset"]) -> "ClipDataset":
        columns = {k: np.concatenate([p.columns[k] for p in parts]) for k in parts[0].columns if k != "jpeg_offsets"}
        offsets, base = [np.zeros(1, np.int64)], 0
        for p in parts:
            offsets.append(p.columns["jpeg_offsets"][1:] + base)
            base += len(p.columns["jpeg"])
        columns["jpeg_offsets"] = np.concatenate(offsets)
        return cls(columns)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **self.columns)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ClipDataset":
        with np.load(path, allow_pickle=False) as data:
            return cls({k: data[k] for k in data.files})


def cache_drive(seed: int, minutes: float, stride_us: int, path: str | Path) -> int:
    """Simulate, render and cache the clips of one drive as `path`; returns the clip count."""
    dataset = ClipDataset.from_clips(simulate_clips(seed, minutes, stride_us))
    dataset.save(path)
    return len(dataset)


def cache_path(cache_dir: str | Path, seed: int, minutes: float, stride_s: float) -> Path:
    """Where `build` caches the clips of seed `seed`."""
    return Path(cache_dir) / f"sim-{seed:05d}-{minutes:g}m-{stride_s:g}s-v{SIM_VERSION}.npz"


def build(seeds: list[int], minutes: float, stride_s: float, cache_dir: str | Path, workers: int = 1,
          progress: Callable[[int], None] | None = None) -> ClipDataset:
    """Clips of one drive per seed, each cached at `cache_path(...)` (reused when present);
    drives are simulated and rendered in `workers` processes."""
    stride_us = round(stride_s * 1e6)
    paths = {s: cache_path(cache_dir, s, minutes, stride_s) for s in seeds}
    todo = [s for s in seeds if not paths[s].exists()]
    if progress:
        progress(len(seeds) - len(todo))
    if workers <= 1:
        for s in todo:
            cache_drive(s, minutes, stride_us, paths[s])
            if progress:
                progress(1)
    elif todo:
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=mp.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(cache_drive, s, minutes, stride_us, paths[s]) for s in todo]):
                future.result()
                if progress:
                    progress(1)
    return ClipDataset.concat([ClipDataset.load(paths[s]) for s in seeds])
