"""Analytic drives with closed-form poses, for tests of writers, readers and clip assembly."""

import io

import numpy as np
from PIL import Image

from models.geometry import yaw_to_quat
from schemas.contract import TEACHER_CAMERAS
from sim.drive import Drive, EgoTrack, Segment
from sim.scene import Snapshot, StaticMap

START_US = 1_767_254_400_000_000  # 2026-01-01T08:00:00Z


def circle_pose(t_s: np.ndarray, radius: float = 20.0, speed: float = 8.0):
    """Counter-clockwise circle about (0, radius), starting at the origin heading +x."""
    theta = speed * np.asarray(t_s, dtype=np.float64) / radius
    xyz = np.stack([radius * np.sin(theta), radius * (1 - np.cos(theta)), np.zeros_like(theta)], -1)
    return xyz, theta  # yaw == theta


def accel_pose(t_s: np.ndarray, v0: float = 5.0, accel: float = 1.0):
    """Straight line along +x with constant acceleration."""
    t = np.asarray(t_s, dtype=np.float64)
    x = v0 * t + 0.5 * accel * t * t
    return np.stack([x, np.zeros_like(t), np.zeros_like(t)], -1), np.zeros_like(t)


def analytic_drive(kind: str = "circle", seconds: float = 20.0, start_us: int = START_US,
                   vehicle_id: str = "veh-000", log_name: str = "drive-000") -> Drive:
    """A Drive at 100 Hz whose pose is `circle_pose` or `accel_pose` of (t - start)."""
    t_us = start_us + np.arange(int(seconds * 100) + 1, dtype=np.int64) * 10_000
    t_s = (t_us - start_us) / 1e6
    if kind == "circle":
        xyz, yaw = circle_pose(t_s)
        speed = np.full_like(t_s, 8.0)
        curvature = np.full_like(t_s, 1 / 20.0)
        accel_long = np.zeros_like(t_s)
    else:
        xyz, yaw = accel_pose(t_s)
        speed = 5.0 + t_s
        curvature = np.zeros_like(t_s)
        accel_long = np.ones_like(t_s)
    heading = np.stack([np.cos(yaw), np.sin(yaw), np.zeros_like(yaw)], -1)
    normal = np.stack([-np.sin(yaw), np.cos(yaw), np.zeros_like(yaw)], -1)
    ego = EgoTrack(
        t_us=t_us,
        xyz=xyz,
        quat=yaw_to_quat(yaw),
        velocity=heading * speed[:, None],
        acceleration=heading * accel_long[:, None] + normal * (speed**2 * curvature)[:, None],
        curvature=curvature,
    )

    def snapshot(t: int) -> Snapshot:
        i = int(np.clip(np.searchsorted(t_us, t), 0, len(t_us) - 1))
        c, s = np.cos(yaw[i]), np.sin(yaw[i])
        rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
        return Snapshot(t_us=int(t), ego_xyz=xyz[i], ego_rot=rot, agents=[])

    segment = Segment(int(t_us[0]), int(t_us[-1]), "cruise", "clear_road",
                      "Keep speed since the road ahead is clear.", "keep_speed", "keep_lane")
    return Drive(vehicle_id=vehicle_id, log_name=log_name, seed=0, start_us=start_us, night=False,
                 ego=ego, static_map=StaticMap([], [], []), segments=[segment], snapshot=snapshot)


def solid_render(snapshot: Snapshot, camera) -> np.ndarray:
    """A deterministic image whose colour encodes the time and camera (decodable in tests)."""
    k = TEACHER_CAMERAS.index(camera.name) if camera.name in TEACHER_CAMERAS else 4
    tick = (snapshot.t_us // 100_000) % 250
    image = np.zeros((camera.height, camera.width, 3), dtype=np.uint8)
    image[..., 0] = tick
    image[..., 1] = 40 * k
    image[..., 2] = 128
    return image


def jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
