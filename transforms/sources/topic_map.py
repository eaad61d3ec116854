"""Which MCAP / ROS 2 topics carry the teacher's cameras and the ego pose, and which clock to use.

Fleets name their topics differently, so the mapping is configuration (`--topic-map FILE`,
JSON or YAML). Keys left out of a file keep the defaults below (DESIGN.md); camera entries are
merged over the default camera map.
"""

import json
from dataclasses import asdict, dataclass, field

import fsspec
import yaml

from schemas.contract import HYPERION8_CAMERAS, TEACHER_CAMERAS

EGO_POSE_TYPES = ("odometry", "tf")
TIME_SOURCES = ("log_time", "header_stamp")


class TopicMapError(ValueError):
    """A topic map that does not validate; the message names the offending key."""


@dataclass(frozen=True)
class EgoPoseTopic:
    """Where the ego pose is: a nav_msgs/msg/Odometry topic, or a transform on a TF topic."""

    topic: str = "/ego/odom"
    type: str = "odometry"  # "odometry" or "tf"
    parent_frame: str = "odom"  # for "tf": the transform parent_frame -> child_frame is the pose
    child_frame: str = "base_link"


def _default_cameras() -> dict[str, str]:
    return {name: f"/cameras/{name}/image/compressed" for name in TEACHER_CAMERAS}


@dataclass(frozen=True)
class TopicMap:
    cameras: dict[str, str] = field(default_factory=_default_cameras)  # camera name -> topic
    ego_pose: EgoPoseTopic = field(default_factory=EgoPoseTopic)
    time: str = "log_time"  # "log_time" or "header_stamp": which clock gives t_us

    def __post_init__(self):
        _check(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "topic map") -> "TopicMap":
        """Build from the JSON/YAML form; missing keys keep their defaults."""
        if not isinstance(data, dict):
            raise TopicMapError(f"{where}: expected a mapping at the top level, got {type(data).__name__}")
        _no_unknown(data, ("cameras", "ego_pose", "time"), where, "")
        cameras = data.get("cameras", {})
        if not isinstance(cameras, dict):
            raise TopicMapError(f"{where}: 'cameras' must be a mapping of camera name -> topic")
        ego = data.get("ego_pose", {})
        if not isinstance(ego, dict):
            raise TopicMapError(f"{where}: 'ego_pose' must be a mapping")
        _no_unknown(ego, ("topic", "type", "parent_frame", "child_frame"), where, "ego_pose.")
        if ego.get("type") == "tf" and "topic" not in ego:
            ego = {**ego, "topic": "/tf"}
        try:
            return cls(cameras={**_default_cameras(), **cameras}, ego_pose=EgoPoseTopic(**ego),
                       time=data.get("time", "log_time"))
        except TopicMapError as e:
            raise TopicMapError(f"{where}: {e}") from None

    def to_dict(self) -> dict:
        return asdict(self)

    def topic_of(self, camera: str) -> str:
        try:
            return self.cameras[camera]
        except KeyError:
            raise TopicMapError(f"cameras.{camera}: no topic mapped for this camera") from None


def _no_unknown(data: dict, allowed: tuple, where: str, prefix: str) -> None:
    for key in data:
        if key not in allowed:
            raise TopicMapError(f"{where}: unknown key '{prefix}{key}' (allowed: {', '.join(allowed)})")


def _check(m: TopicMap) -> None:
    for camera, topic in m.cameras.items():
        if camera not in HYPERION8_CAMERAS:
            raise TopicMapError(f"cameras.{camera}: not a Hyperion-8 camera name "
                                f"(expected one of {', '.join(HYPERION8_CAMERAS)})")
        if not isinstance(topic, str) or not topic:
            raise TopicMapError(f"cameras.{camera}: the topic must be a non-empty string, got {topic!r}")
    if len(set(m.cameras.values())) != len(m.cameras):
        raise TopicMapError("cameras: two cameras are mapped to the same topic")
    ego = m.ego_pose
    if ego.type not in EGO_POSE_TYPES:
        raise TopicMapError(f"ego_pose.type must be one of {EGO_POSE_TYPES}, got {ego.type!r}")
    for key in ("topic", "parent_frame", "child_frame"):
        value = getattr(ego, key)
        if not isinstance(value, str) or not value:
            raise TopicMapError(f"ego_pose.{key} must be a non-empty string, got {value!r}")
    if ego.topic in m.cameras.values():
        raise TopicMapError(f"ego_pose.topic {ego.topic!r} is also a camera topic")
    if m.time not in TIME_SOURCES:
        raise TopicMapError(f"time must be one of {TIME_SOURCES}, got {m.time!r}")


DEFAULT = TopicMap()


def load_topic_map(path_or_uri: str) -> TopicMap:
    """Read a topic map from a JSON (.json) or YAML file on any fsspec URL."""
    with fsspec.open(path_or_uri, "rt", encoding="utf-8") as f:
        text = f.read()
    is_json = str(path_or_uri).endswith(".json")
    try:
        data = json.loads(text) if is_json else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise TopicMapError(f"{path_or_uri}: not valid {'JSON' if is_json else 'YAML'}: {e}") from None
    return TopicMap.from_dict(data if data is not None else {}, where=str(path_or_uri))
