"""In-memory log messages of the analytic drives (tests.fakes), for clip-assembly tests."""

from dataclasses import replace
from datetime import datetime, timezone
from functools import lru_cache

import numpy as np

from schemas.contract import IMAGE_HEIGHT, IMAGE_WIDTH, TEACHER_CAMERAS
from sim.drive import Drive
from tests.fakes import jpeg
from transforms.sources.base import CameraFrame, EgoPose, LogInfo

# Each camera's frames come this much before the 100 ms grid (asynchronous cameras).
PHASES_US = {camera: 7_000 * k for k, camera in enumerate(TEACHER_CAMERAS)}


@lru_cache(maxsize=None)
def frame_jpeg(camera: str, tick: int) -> bytes:
    """A 320x576 JPEG whose colour encodes the camera and the 100 ms tick."""
    image = np.zeros((IMAGE_HEIGHT, IMAGE_WIDTH, 3), dtype=np.uint8)
    image[..., 0] = tick % 250
    image[..., 1] = 40 * TEACHER_CAMERAS.index(camera)
    image[..., 2] = 128
    return jpeg(image)


def drive_messages(drive: Drive, phases: dict | None = None) -> list:
    """Ego poses at 100 Hz and 10 Hz JPEG frames of the 4 teacher cameras, in log-time order."""
    phases = PHASES_US if phases is None else phases
    messages = [EgoPose(int(t), drive.ego.xyz[i], drive.ego.quat[i]) for i, t in enumerate(drive.ego.t_us)]
    first, last = int(drive.ego.t_us[0]), int(drive.ego.t_us[-1])
    for camera in TEACHER_CAMERAS:
        for t in range(first + 100_000, last + 1, 100_000):
            t_frame = t - phases[camera]
            messages.append(CameraFrame(camera, t_frame, frame_jpeg(camera, t_frame // 100_000)))
    messages.sort(key=lambda m: (m.t_us, isinstance(m, CameraFrame)))
    return messages


def drive_info(drive: Drive, uri: str | None = None) -> LogInfo:
    start = int(drive.ego.t_us[0])
    return LogInfo(
        uri=uri or f"memory://{drive.log_name}.mcap",
        log_id=drive.log_name,
        vehicle_id=drive.vehicle_id,
        date=datetime.fromtimestamp(start / 1e6, tz=timezone.utc).strftime("%Y-%m-%d"),
        start_us=start,
        end_us=int(drive.ego.t_us[-1]),
    )


def with_pose(message: EgoPose, xyz=None, quat=None) -> EgoPose:
    return replace(message, xyz=message.xyz if xyz is None else np.asarray(xyz, dtype=np.float64),
                   quat=message.quat if quat is None else np.asarray(quat, dtype=np.float64))
