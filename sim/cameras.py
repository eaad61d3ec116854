"""The synthetic Hyperion-8 camera rig: pinhole cameras mounted on the ego body frame."""

import zlib
from dataclasses import dataclass

import numpy as np

from models.geometry import matrix_to_quat
from schemas.contract import HYPERION8_CAMERAS, IMAGE_HEIGHT, IMAGE_WIDTH


@dataclass(frozen=True)
class CameraSpec:
    """A pinhole camera. Mount `xyz` in the body frame (x fwd, y left, z up), looking along
    `yaw` (about body z, 0 = forward) tilted down by `pitch`; horizontal field of view `hfov_deg`."""

    name: str
    xyz: tuple[float, float, float]
    yaw: float
    pitch: float
    hfov_deg: float
    height: int = IMAGE_HEIGHT
    width: int = IMAGE_WIDTH

    @property
    def focal_px(self) -> float:
        return (self.width / 2) / np.tan(np.radians(self.hfov_deg) / 2)

    @property
    def intrinsics(self) -> np.ndarray:
        """3x3 pinhole matrix K."""
        f = self.focal_px
        return np.array([[f, 0, self.width / 2], [0, f, self.height / 2], [0, 0, 1.0]])

    @property
    def rotation(self) -> np.ndarray:
        """Optical frame (x right, y down, z forward) -> body frame."""
        cy, sy, cp, sp = np.cos(self.yaw), np.sin(self.yaw), np.cos(self.pitch), np.sin(self.pitch)
        forward = np.array([cp * cy, cp * sy, -sp])
        right = np.array([sy, -cy, 0.0])
        down = np.cross(forward, right)
        return np.stack([right, down, forward], axis=1)

    @property
    def quat(self) -> np.ndarray:
        """Extrinsic rotation (optical -> body) as (x, y, z, w)."""
        return matrix_to_quat(self.rotation)

    def with_resolution(self, height: int, width: int) -> "CameraSpec":
        return CameraSpec(self.name, self.xyz, self.yaw, self.pitch, self.hfov_deg, height, width)


_DEG = np.pi / 180
RIG = {
    c.name: c
    for c in (
        CameraSpec("camera_cross_left_120fov", (2.9, 0.9, 1.6), 70 * _DEG, 5 * _DEG, 120),
        CameraSpec("camera_front_wide_120fov", (1.8, 0.0, 1.5), 0.0, 3 * _DEG, 120),
        CameraSpec("camera_cross_right_120fov", (2.9, -0.9, 1.6), -70 * _DEG, 5 * _DEG, 120),
        CameraSpec("camera_front_tele_30fov", (1.8, 0.0, 1.5), 0.0, 0.0, 30),
        CameraSpec("camera_rear_left_70fov", (1.0, 1.0, 1.5), 150 * _DEG, 5 * _DEG, 70),
        CameraSpec("camera_rear_right_70fov", (1.0, -1.0, 1.5), -150 * _DEG, 5 * _DEG, 70),
        CameraSpec("camera_rear_tele_30fov", (-1.0, 0.0, 1.4), np.pi, 0.0, 30),
    )
}
assert tuple(RIG) == HYPERION8_CAMERAS


def camera_phase_us(camera: str, camera_hz: float = 10.0) -> int:
    """When a camera's frames are taken, after the start of a drive (then every period): one
    period less a fixed per-camera lead of 8-16 ms, so each frame is captured shortly before a
    10 Hz tick, as on a triggered rig. Cameras are asynchronous to each other."""
    period_us = round(1e6 / camera_hz)
    return period_us - (8_000 + zlib.crc32(camera.encode()) % 8_000)
