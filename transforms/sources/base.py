"""What a log reader yields: time-ordered camera frames and ego poses, plus the log's identity.

A reader never loads a whole log's images: `messages()` is a generator in log-time order, and
it can be restricted to a time range so that Beam can split one log into ranges.
"""

from dataclasses import dataclass
from typing import Iterator, Protocol

import numpy as np


@dataclass(frozen=True)
class CameraFrame:
    camera: str  # Hyperion-8 camera name (after the topic map)
    t_us: int
    data: bytes  # encoded image (JPEG or PNG), or b"" when `pixels` is given
    encoding: str = "jpeg"  # "jpeg", "png" or "rgb" (decoded video frames)
    pixels: np.ndarray | None = None  # (H, W, 3) uint8 for decoded video


@dataclass(frozen=True)
class EgoPose:
    t_us: int
    xyz: np.ndarray  # (3,) float64, world/odom/anchor frame
    quat: np.ndarray  # (4,) float64 (x, y, z, w)


Message = CameraFrame | EgoPose


@dataclass(frozen=True)
class LogInfo:
    uri: str  # where the log is (fsspec URL or path)
    log_id: str  # the log's name without extension (PAI: the clip id)
    vehicle_id: str
    date: str  # YYYY-MM-DD (UTC) of the log start
    start_us: int  # first ego pose time
    end_us: int  # last ego pose time


class LogReadError(Exception):
    """A log that cannot be read at all; carries a schemas.reasons.Reason code."""

    def __init__(self, reason, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class LogSource(Protocol):
    """One log. `info()` is cheap (metadata, index); `messages()` streams in log-time order."""

    def info(self) -> LogInfo: ...

    def messages(self, start_us: int | None = None, end_us: int | None = None) -> Iterator[Message]:
        """Messages with start_us <= t < end_us (None = unbounded), in log-time order."""
        ...
