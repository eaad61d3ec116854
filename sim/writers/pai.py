"""Write simulated drives in the PhysicalAI-Autonomous-Vehicles layout (REFERENCE.md section 2).

Each drive is cut into consecutive clips named by a deterministic UUID. Per chunk of clips:
one zip per camera (an H.264 mp4 and a frame-timestamps parquet per clip), one egomotion zip
and three calibration parquets; the root index files (`features.csv`, `clip_index.parquet`,
`metadata/`, `splits/`) are written last. Every file is published atomically, and the same
drives give byte-identical files.

Times in a clip are microseconds relative to its anchor (the clip's first ego sample); poses,
velocities and accelerations are expressed in the anchor frame (the rig at clip start). Each
camera has a small fixed phase offset, so sensors are asynchronous as on a real vehicle.
"""

import datetime
import io
import json
import uuid
import zipfile
from contextlib import ExitStack
from fractions import Fraction
from typing import Callable, Sequence

import av
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from models.geometry import quat_to_matrix, matrix_to_quat, to_ego_frame
from schemas.contract import TEACHER_CAMERAS
from sim.cameras import RIG, CameraSpec, camera_phase_us
from sim.drive import EGO_RATE_HZ, Drive
from sim.scene import Snapshot
from transforms.publish import atomic_output

CLIP_NAMESPACE = uuid.UUID("6f1c3f0e-6d0b-5c0a-9b7e-3c0c1abe1000")  # uuid5 namespace of clip ids
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed member timestamp (the zip epoch)
MIN_TAIL_US = 1_000_000  # a drive's remainder shorter than this is not made into a clip
# libx264, single thread, no B-frames, a key frame every second of video: output that the
# devkit's SeekVideoReader (constant frame rate, pts from 0) can seek in. mbtree is off because
# with it libx264 18.x builds gave different bitstreams for identical frames within one process.
X264_OPTIONS = {"preset": "veryfast", "crf": "20", "x264-params": "threads=1:bframes=0:scenecut=0:mbtree=0"}
# The synthetic ego vehicle (metres); the rig frame is the rear-axle centre on the ground.
VEHICLE_DIMENSIONS = {"length": 4.9, "width": 1.9, "height": 1.6, "rear_axle_to_bbox_center": 1.45,
                      "wheelbase": 2.9, "track_width": 1.6}
EGOMOTION_COLUMNS = ("timestamp", "qx", "qy", "qz", "qw", "x", "y", "z", "vx", "vy", "vz",
                     "ax", "ay", "az", "curvature")


def camera_chunk_path(camera: str) -> str:
    return f"camera/{camera}/{camera}.chunk_{{chunk_id:04d}}.zip"


EGOMOTION_CHUNK_PATH = "labels/egomotion/egomotion.chunk_{chunk_id:04d}.zip"
CALIBRATION_FEATURES = ("camera_intrinsics", "sensor_extrinsics", "vehicle_dimensions")


def calibration_chunk_path(feature: str) -> str:
    return f"calibration/{feature}/{feature}.chunk_{{chunk_id:04d}}.parquet"


def clip_uuid(drive: Drive, index: int) -> str:
    """The id of clip `index` of `drive`: the same for the same vehicle, log, seed and index."""
    return str(uuid.uuid5(CLIP_NAMESPACE, f"{drive.vehicle_id}/{drive.log_name}/{drive.seed}/{index}"))


def clip_bounds(drive: Drive, clip_seconds: float) -> list[tuple[int, int]]:
    """(first, last) ego sample indices of each clip, both inclusive; consecutive clips share
    their boundary sample. The remainder becomes a shorter last clip if it spans >= 1 s."""
    per_clip = int(round(clip_seconds * EGO_RATE_HZ))
    if per_clip < 1:
        raise ValueError(f"clip_seconds={clip_seconds} is shorter than one ego sample")
    last = len(drive.ego.t_us) - 1
    bounds = [(i, min(i + per_clip, last)) for i in range(0, last, per_clip)]
    if bounds and bounds[-1][1] - bounds[-1][0] < per_clip:
        first, end = bounds[-1]
        if drive.ego.t_us[end] - drive.ego.t_us[first] < MIN_TAIL_US:
            bounds.pop()
    return bounds


def ftheta_polynomials(camera: CameraSpec, degree: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Forward (angle -> radius px) and backward (radius px -> angle) f-theta polynomials, with
    zero constant term, fitted by least squares to the pinhole `camera` out to the image corner."""
    f = camera.focal_px
    r_max = float(np.hypot(camera.width / 2, camera.height / 2))
    theta = np.linspace(0.0, np.arctan(r_max / f), 256)
    radius = np.linspace(0.0, r_max, 256)
    powers = np.arange(1, degree + 1)
    fw = np.linalg.lstsq(theta[:, None] ** powers, f * np.tan(theta), rcond=None)[0]
    bw = np.linalg.lstsq(radius[:, None] ** powers, np.arctan(radius / f), rcond=None)[0]
    return np.concatenate([[0.0], fw]), np.concatenate([[0.0], bw])


def write_pai(
    drives: Sequence[Drive],
    root: str,
    render: Callable[[Snapshot, CameraSpec], np.ndarray],
    cameras: Sequence[str] = TEACHER_CAMERAS,
    camera_hz: float = 10,
    height: int = 320,
    width: int = 576,
    clip_seconds: float = 20,
    clips_per_chunk: int = 100,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Write `drives` under `root` (any fsspec URL) in the PhysicalAI-AV layout.

    `render(snapshot, camera_spec)` draws one HxWx3 uint8 frame. `progress(n)`, if given, is
    called with the number of frames written (an increment) after each camera video. Returns
    {"root", "clip_ids" (in drive order), "chunks", "frames", "files" (URIs written)}.
    """
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs an even frame size, got {height}x{width}")
    unknown = [c for c in cameras if c not in RIG]
    if unknown:
        raise ValueError(f"unknown cameras {unknown}; known: {list(RIG)}")
    root = root.rstrip("/")
    plan = [(clip_uuid(d, k), d, b) for d in drives for k, b in enumerate(clip_bounds(d, clip_seconds))]
    chunks = [plan[i : i + clips_per_chunk] for i in range(0, len(plan), clips_per_chunk)]
    specs = {c: RIG[c].with_resolution(height, width) for c in cameras}
    frames, files = 0, []
    for chunk_id, chunk in enumerate(chunks):
        chunk = sorted(chunk, key=lambda item: item[0])  # zip members in name order
        with ExitStack() as stack:
            zips = {}
            for feature, template in _zip_features(cameras).items():
                files.append(f"{root}/{template.format(chunk_id=chunk_id)}")
                zips[feature] = stack.enter_context(
                    zipfile.ZipFile(stack.enter_context(atomic_output(files[-1])), "w"))
            for clip_id, drive, (first, last) in chunk:
                anchor_us, end_us = int(drive.ego.t_us[first]), int(drive.ego.t_us[last])
                for camera in cameras:
                    times = _frame_times(anchor_us, end_us, camera, camera_hz)
                    mp4 = _encode_h264(
                        (render(drive.snapshot(int(t)), specs[camera]) for t in times), camera_hz, height, width)
                    _add_member(zips[camera], f"{clip_id}.{camera}.mp4", mp4)
                    _add_member(zips[camera], f"{clip_id}.{camera}.timestamps.parquet",
                                _parquet_bytes(pa.table({"timestamp": pa.array(times - anchor_us, pa.int64())})))
                    frames += len(times)
                    if progress is not None:
                        progress(len(times))
                _add_member(zips["egomotion"], f"{clip_id}.egomotion.parquet",
                            _parquet_bytes(_egomotion_table(drive, first, last)))
            for feature, table in _calibration_tables(chunk, specs).items():
                files.append(f"{root}/{calibration_chunk_path(feature).format(chunk_id=chunk_id)}")
                with atomic_output(files[-1]) as f:
                    pq.write_table(table, f)
    files += _write_index(root, chunks, cameras)
    return {"root": root, "clip_ids": [c for c, _, _ in plan], "chunks": len(chunks), "frames": frames,
            "files": files}


def _zip_features(cameras: Sequence[str]) -> dict[str, str]:
    return {**{c: camera_chunk_path(c) for c in cameras}, "egomotion": EGOMOTION_CHUNK_PATH}


def _frame_times(anchor_us: int, end_us: int, camera: str, camera_hz: float) -> np.ndarray:
    """Absolute frame times of one camera in [anchor, end]: phase + i / camera_hz."""
    period = 1e6 / camera_hz
    count = int(np.floor((end_us - anchor_us - camera_phase_us(camera, camera_hz)) / period)) + 1
    return anchor_us + camera_phase_us(camera, camera_hz) + np.round(np.arange(max(count, 0)) * period).astype(np.int64)


def _encode_h264(images, camera_hz: float, height: int, width: int) -> bytes:
    """Encode HxWx3 uint8 frames (any iterable, consumed one at a time) into an mp4."""
    buf = io.BytesIO()
    rate = Fraction(camera_hz).limit_denominator(1000)
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate, options=dict(X264_OPTIONS))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        stream.codec_context.gop_size = max(1, round(camera_hz))
        for i, image in enumerate(images):
            if image.shape != (height, width, 3) or image.dtype != np.uint8:
                raise ValueError(f"render gave {image.shape} {image.dtype}, expected ({height}, {width}, 3) uint8")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buf.getvalue()


def _add_member(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED  # mp4 and parquet are compressed already
    info.create_system = 3
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _egomotion_table(drive: Drive, first: int, last: int) -> pa.Table:
    """Ego samples first..last in the anchor frame (the rig at sample `first`)."""
    ego = drive.ego
    sl = slice(first, last + 1)
    R0 = quat_to_matrix(ego.quat[first])
    xyz, R = to_ego_frame(ego.xyz[sl], quat_to_matrix(ego.quat[sl]), ego.xyz[first], R0)
    quat = matrix_to_quat(R)
    velocity = ego.velocity[sl] @ R0
    acceleration = ego.acceleration[sl] @ R0
    columns = [ego.t_us[sl] - ego.t_us[first], *quat.T, *xyz.T, *velocity.T, *acceleration.T, ego.curvature[sl]]
    return pa.table({name: np.asarray(col, np.int64 if name == "timestamp" else np.float64)
                     for name, col in zip(EGOMOTION_COLUMNS, columns)})


def _calibration_tables(chunk, specs: dict[str, CameraSpec]) -> dict[str, pa.Table]:
    """One row per clip and camera (intrinsics, extrinsics) or per clip (vehicle dimensions)."""
    intrinsics, extrinsics, dimensions = [], [], []
    for clip_id, _, _ in chunk:
        for name, spec in specs.items():
            fw, bw = ftheta_polynomials(spec)
            intrinsics.append({"clip_id": clip_id, "camera_name": name, "width": spec.width,
                               "height": spec.height, "cx": spec.width / 2, "cy": spec.height / 2,
                               **{f"fw_poly_{i}": v for i, v in enumerate(fw)},
                               **{f"bw_poly_{i}": v for i, v in enumerate(bw)}})
            qx, qy, qz, qw = spec.quat
            x, y, z = spec.xyz
            extrinsics.append({"clip_id": clip_id, "sensor_name": name, "qx": qx, "qy": qy, "qz": qz,
                               "qw": qw, "x": x, "y": y, "z": z})
        dimensions.append({"clip_id": clip_id, **VEHICLE_DIMENSIONS})
    return {
        "camera_intrinsics": _indexed(intrinsics, ["clip_id", "camera_name"]),
        "sensor_extrinsics": _indexed(extrinsics, ["clip_id", "sensor_name"]),
        "vehicle_dimensions": _indexed(dimensions, ["clip_id"]),
    }


def _indexed(rows: list[dict], index: list[str]) -> pa.Table:
    return pa.Table.from_pandas(pd.DataFrame(rows).set_index(index))


def _write_index(root: str, chunks, cameras: Sequence[str]) -> list[str]:
    """The root files, written after every chunk so that the index never names a missing file."""
    features = pd.DataFrame(
        [
            *[{"feature": c, "directory": "camera", "chunk_path": camera_chunk_path(c),
               "clip_files_in_zip": json.dumps({"video": f"{{clip_id}}.{c}.mp4",
                                                "frame_timestamps": f"{{clip_id}}.{c}.timestamps.parquet"})}
              for c in cameras],
            {"feature": "egomotion", "directory": "labels", "chunk_path": EGOMOTION_CHUNK_PATH,
             "clip_files_in_zip": json.dumps({"egomotion": "{clip_id}.egomotion.parquet"})},
            *[{"feature": f, "directory": "calibration", "chunk_path": calibration_chunk_path(f),
               "clip_files_in_zip": None} for f in CALIBRATION_FEATURES],
        ]
    ).set_index("feature")
    with atomic_output(f"{root}/features.csv") as f:
        f.write(features.to_csv(lineterminator="\n").encode())

    rows = [(clip_id, chunk_id, drive, first) for chunk_id, chunk in enumerate(chunks)
            for clip_id, drive, (first, _) in chunk]
    clip_ids = [r[0] for r in rows]
    tables = {
        "clip_index.parquet": pd.DataFrame({"chunk": [r[1] for r in rows]}, index=clip_ids),
        "metadata/feature_presence.parquet": pd.DataFrame(
            {feature: True for feature in features.index}, index=clip_ids),
        "metadata/data_collection.parquet": pd.DataFrame(
            [_collection_row(drive, int(drive.ego.t_us[first])) for _, _, drive, first in rows], index=clip_ids),
        "splits/default.parquet": pd.DataFrame({"split": [_split(c) for c in clip_ids]}, index=clip_ids),
    }
    for name, df in tables.items():
        df.index.name = "clip_id"
        with atomic_output(f"{root}/{name}") as f:
            pq.write_table(pa.Table.from_pandas(df), f)
    return [f"{root}/features.csv", *(f"{root}/{name}" for name in tables)]


def _collection_row(drive: Drive, anchor_us: int) -> dict:
    """Devkit-style collection metadata, plus our `vehicle_id`, `log_name`, `date`, `start_us`."""
    start = datetime.datetime.fromtimestamp(anchor_us / 1e6, tz=datetime.timezone.utc)
    return {"country": "simulation", "month": start.month, "hour_of_day": start.hour,
            "platform_class": "hyperion_8_sim", "vehicle_id": drive.vehicle_id,
            "log_name": drive.log_name, "date": start.strftime("%Y-%m-%d"), "start_us": anchor_us}


def _split(clip_id: str) -> str:
    """A fixed 90/10 train/val split by clip id."""
    return "val" if int(clip_id.replace("-", "")[:8], 16) % 10 == 0 else "train"
