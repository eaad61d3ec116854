"""Write one simulated drive as a ROS 2 MCAP log, the way a fleet vehicle records it.

Topics (names from the topic map): one sensor_msgs/msg/CompressedImage topic per camera
(JPEG), nav_msgs/msg/Odometry at 100 Hz, tf2_msgs/msg/TFMessage on /tf at 100 Hz
(odom -> base_link) and once on /tf_static (base_link -> each camera's optical frame).
Cameras are asynchronous: each runs at `camera_hz` with its own fixed phase of a few ms, and
every message is logged a small deterministic transport latency after its header stamp, so
log time and header stamp differ. No wall clock is read: the same drive gives the same bytes.
"""

import io
import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from mcap_ros2.writer import Writer
from PIL import Image
from rosbags.typesys import Stores, get_typestore

from models.geometry import quat_to_matrix
from schemas.contract import TEACHER_CAMERAS
from sim.cameras import RIG, CameraSpec, camera_phase_us
from sim.drive import Drive
from sim.scene import Snapshot
from transforms.publish import atomic_output
from transforms.sources.topic_map import DEFAULT, TopicMap

ODOMETRY_TOPIC = "/ego/odom"  # used when the topic map reads the ego pose from TF
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
CHUNK_SIZE = 1 << 20

_IMAGE, _ODOMETRY, _TF = "sensor_msgs/msg/CompressedImage", "nav_msgs/msg/Odometry", "tf2_msgs/msg/TFMessage"
_ZERO_COVARIANCE = [0.0] * 36


def optical_frame(camera: str) -> str:
    return f"{camera}_optical_frame"


def transport_latency_us(topic: str, seq: int) -> int:
    """Log time minus header stamp of one message: 1-4 ms, fixed per (topic, sequence)."""
    return 1_000 + zlib.crc32(f"{topic}#{seq}".encode()) % 3_000


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _stamp(t_us: int) -> dict:
    return {"sec": t_us // 1_000_000, "nanosec": (t_us % 1_000_000) * 1_000}


def _xyz(v) -> dict:
    return {"x": float(v[0]), "y": float(v[1]), "z": float(v[2])}


def _quat(q) -> dict:
    return {"x": float(q[0]), "y": float(q[1]), "z": float(q[2]), "w": float(q[3])}


def _transform(t_us: int, parent: str, child: str, xyz, quat) -> dict:
    return {"header": {"stamp": _stamp(t_us), "frame_id": parent}, "child_frame_id": child,
            "transform": {"translation": _xyz(xyz), "rotation": _quat(quat)}}


@dataclass(frozen=True, order=True)
class _Event:
    """One message to write; sorting events gives the log-time order of the file."""

    log_time_us: int
    topic: str
    seq: int
    stamp_us: int
    index: int  # ego sample index, or frame number of a camera


def _schedule(drive: Drive, cameras: Sequence[str], topics: dict[str, str], camera_hz: float,
              odometry_topic: str, tf_topic: str) -> list[_Event]:
    events = [_Event(drive.start_us, TF_STATIC_TOPIC, 0, drive.start_us, 0)]
    for topic in (odometry_topic, tf_topic):
        events += [_Event(int(t) + transport_latency_us(topic, i), topic, i, int(t), i)
                   for i, t in enumerate(drive.ego.t_us)]
    period_us = round(1e6 / camera_hz)
    for camera in cameras:
        topic = topics[camera]
        stamps = range(drive.start_us + camera_phase_us(camera, camera_hz), drive.end_us + 1, period_us)
        events += [_Event(t + transport_latency_us(topic, k), topic, k, t, k) for k, t in enumerate(stamps)]
    events.sort()
    return events


def write_mcap(drive: Drive, uri: str, render: Callable[[Snapshot, CameraSpec], np.ndarray],
               cameras: Sequence[str] = TEACHER_CAMERAS, camera_hz: float = 10, height: int = 320,
               width: int = 576, jpeg_quality: int = 90, topic_map: TopicMap = DEFAULT,
               progress: Callable[[int], None] | None = None) -> dict:
    """Render and write `drive` to `uri` (any fsspec URL) atomically; return message counts.

    `progress`, if given, is called with 1 after each camera frame (an increment).
    Returns {"frames", "odometry", "tf", "tf_static", "messages", "bytes"}.
    """
    topics = {camera: topic_map.topic_of(camera) for camera in cameras}
    specs = {camera: RIG[camera].with_resolution(height, width) for camera in cameras}
    camera_of = {topic: camera for camera, topic in topics.items()}
    ego_cfg = topic_map.ego_pose
    odometry_topic = ego_cfg.topic if ego_cfg.type == "odometry" else ODOMETRY_TOPIC
    tf_topic = ego_cfg.topic if ego_cfg.type == "tf" else TF_TOPIC
    odom, base = ego_cfg.parent_frame, ego_cfg.child_frame

    ego = drive.ego
    rot = quat_to_matrix(ego.quat)
    v_body = np.einsum("nji,nj->ni", rot, ego.velocity)  # R^T v: twist in the child frame
    yaw_rate = ego.curvature * v_body[:, 0]

    typestore = get_typestore(Stores.ROS2_HUMBLE)
    counts = {"frames": 0, "odometry": 0, "tf": 0, "tf_static": 0}
    with atomic_output(uri) as f:
        writer = Writer(f, chunk_size=CHUNK_SIZE)
        schemas = {name: writer.register_msgdef(name, typestore.generate_msgdef(name, ros_version=2)[0])
                   for name in (_IMAGE, _ODOMETRY, _TF)}
        writer.add_metadata("vehicle", {"id": drive.vehicle_id})
        for e in _schedule(drive, cameras, topics, camera_hz, odometry_topic, tf_topic):
            log_time_ns = e.log_time_us * 1_000
            if e.topic in camera_of:
                camera = camera_of[e.topic]
                image = render(drive.snapshot(e.stamp_us), specs[camera])
                message = {"header": {"stamp": _stamp(e.stamp_us), "frame_id": optical_frame(camera)},
                           "format": "jpeg", "data": encode_jpeg(image, jpeg_quality)}
                writer.write_message(e.topic, schemas[_IMAGE], message, log_time_ns, log_time_ns, e.seq)
                counts["frames"] += 1
                if progress is not None:
                    progress(1)
            elif e.topic == odometry_topic:
                i = e.index
                message = {
                    "header": {"stamp": _stamp(e.stamp_us), "frame_id": odom}, "child_frame_id": base,
                    "pose": {"pose": {"position": _xyz(ego.xyz[i]), "orientation": _quat(ego.quat[i])},
                             "covariance": _ZERO_COVARIANCE},
                    "twist": {"twist": {"linear": _xyz(v_body[i]), "angular": _xyz((0.0, 0.0, yaw_rate[i]))},
                              "covariance": _ZERO_COVARIANCE},
                }
                writer.write_message(e.topic, schemas[_ODOMETRY], message, log_time_ns, log_time_ns, e.seq)
                counts["odometry"] += 1
            elif e.topic == tf_topic:
                i = e.index
                message = {"transforms": [_transform(e.stamp_us, odom, base, ego.xyz[i], ego.quat[i])]}
                writer.write_message(e.topic, schemas[_TF], message, log_time_ns, log_time_ns, e.seq)
                counts["tf"] += 1
            else:
                message = {"transforms": [_transform(e.stamp_us, base, optical_frame(c), specs[c].xyz, specs[c].quat)
                                          for c in cameras]}
                writer.write_message(e.topic, schemas[_TF], message, log_time_ns, log_time_ns, e.seq)
                counts["tf_static"] += 1
        writer.finish()
        counts["bytes"] = f.tell()
    counts["messages"] = counts["frames"] + counts["odometry"] + counts["tf"] + counts["tf_static"]
    return counts
