"""What the renderer draws: a static map of ground polygons and boxes, plus a dynamic snapshot.

World frame: x, y on the ground plane (metres), z up. Body frame of any vehicle: x forward,
y left, z up (ROS REP-103); the ego pose is that of the rear axle centre on the ground.
"""

from dataclasses import dataclass, field

import numpy as np

# Ground kinds in drawing order (later kinds are drawn over earlier ones).
GROUND_KINDS = ("grass", "sidewalk", "road", "marking_white", "marking_yellow", "crosswalk", "stop_line")
BOX_KINDS = ("vehicle", "pedestrian", "pole", "building", "tree", "light_head", "lamp")
LIGHT_STATES = ("red", "yellow", "green", "off")


@dataclass(frozen=True)
class GroundPolygon:
    """A flat polygon on z=0 (road surface, lane marking, crosswalk stripe, stop line...)."""

    xy: np.ndarray  # (K, 2), counter-clockwise
    kind: str  # one of GROUND_KINDS


@dataclass(frozen=True)
class Box:
    """An upright box: vehicles, pedestrians, poles, buildings, traffic-light heads."""

    center: tuple[float, float, float]  # centre of the box, world frame
    size: tuple[float, float, float]  # length (along yaw), width, height
    yaw: float
    color: tuple[int, int, int]
    kind: str  # one of BOX_KINDS
    emissive: bool = False  # lamps and lit lights keep their colour at night


@dataclass(frozen=True)
class TrafficLight:
    """A signal head facing traffic on `yaw` (the direction the controlled lanes travel)."""

    light_id: str
    xy: tuple[float, float]
    height: float  # of the head's centre
    yaw: float
    stop_line: tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class StaticMap:
    """Everything that does not move; built once per drive."""

    ground: list[GroundPolygon]
    boxes: list[Box]
    lights: list[TrafficLight]


@dataclass(frozen=True)
class Agent:
    """A moving road user at one instant."""

    agent_id: str
    kind: str  # "vehicle" or "pedestrian"
    xy: tuple[float, float]
    yaw: float
    size: tuple[float, float, float]  # length, width, height
    color: tuple[int, int, int]


@dataclass(frozen=True)
class Snapshot:
    """The dynamic state of the world at `t_us`, seen from the ego vehicle."""

    t_us: int
    ego_xyz: np.ndarray  # (3,)
    ego_rot: np.ndarray  # (3, 3) body -> world
    agents: list[Agent]
    light_states: dict[str, str] = field(default_factory=dict)  # light_id -> LIGHT_STATES
    night: bool = False
