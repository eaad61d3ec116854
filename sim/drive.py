"""A simulated vehicle drive: what the log writers need, and the scene truth for the sidecar.

Times are integer microseconds of log time: `start_us + offset` (offsets start at 0).
"""

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from sim.scene import Snapshot, StaticMap

EGO_RATE_HZ = 100


@dataclass(frozen=True)
class EgoTrack:
    """The ego rear-axle pose at 100 Hz in the world (odom) frame, with its derivatives."""

    t_us: np.ndarray  # (N,) int64, strictly increasing
    xyz: np.ndarray  # (N, 3) float64
    quat: np.ndarray  # (N, 4) float64 (x, y, z, w)
    velocity: np.ndarray  # (N, 3) world frame, m/s
    acceleration: np.ndarray  # (N, 3) world frame, m/s^2
    curvature: np.ndarray  # (N,) 1/m, signed (left positive)


@dataclass(frozen=True)
class Segment:
    """One scenario instance along the drive and its true Chain-of-Causation."""

    t_start_us: int
    t_end_us: int
    family: str  # sim.scenarios.FAMILIES
    cause: str  # the true cause, e.g. "red_light", "lead_vehicle", "pedestrian"
    reasoning: str  # one phrasing of the true CoC text
    longitudinal: str  # schemas.contract.LONGITUDINAL_ACTIONS
    lateral: str  # schemas.contract.LATERAL_ACTIONS


@dataclass
class Drive:
    """A whole drive of one vehicle; `snapshot(t_us)` gives the world state for rendering."""

    vehicle_id: str
    log_name: str
    seed: int
    start_us: int
    night: bool
    ego: EgoTrack
    static_map: StaticMap
    segments: list[Segment]
    snapshot: Callable[[int], Snapshot]
    meta: dict = field(default_factory=dict)

    @property
    def end_us(self) -> int:
        return int(self.ego.t_us[-1])
