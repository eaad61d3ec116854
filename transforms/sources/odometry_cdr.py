"""nav_msgs/msg/Odometry from ROS 2 CDR, read at fixed offsets: the header stamp and the pose,
all that a log's ego poses need (about a fifth of the cost of rosbags' generated deserialiser,
which builds every field, the 72 covariance doubles included).

It reads only what it can read exactly: a schema that defines the standard Odometry and its
dependencies field for field, little-endian CDR, frame ids that are NUL-terminated UTF-8, and a
message of exactly the standard length. Anything else gives None, for the general decoders
(transforms.sources.mcap), so that any other message decodes, or fails, as it did before.
"""

import struct
from functools import lru_cache
from types import SimpleNamespace

from rosbags.typesys import Stores, get_typestore, get_types_from_msg

ODOMETRY = "nav_msgs/msg/Odometry"
_CDR_LE = b"\x00\x01"  # encapsulation kind; the next two bytes are options
_HEAD = struct.Struct("<iII")  # stamp sec, stamp nanosec, frame_id length
_LENGTH = struct.Struct("<I")
_POSE = struct.Struct("<7d")  # position xyz, orientation xyzw
_REST = (36 + 6 + 36) * 8  # pose covariance, twist, twist covariance


def _standard_types() -> dict:
    """The field definitions of Odometry and every type it uses, as ROS 2 defines them."""
    standard = get_typestore(Stores.ROS2_HUMBLE).fielddefs
    found, todo = {}, [ODOMETRY]
    while todo:
        name = todo.pop()
        if name not in found:
            found[name] = standard[name]
            todo += [node[1] for _, node in found[name][1] if isinstance(node[1], str) and node[1] in standard]
    return found


@lru_cache(maxsize=64)
def is_standard_odometry(type_name: str, definition: str) -> bool:
    """Whether a ros2msg schema defines the standard nav_msgs/msg/Odometry, field for field."""
    if type_name.replace("/msg/", "/") != "nav_msgs/Odometry":
        return False
    try:
        types = get_types_from_msg(definition, ODOMETRY)
    except Exception:  # the msg parser raises many kinds on a schema it cannot read
        return False
    return types == _standard_types()


def _string(raw: bytes) -> str | None:
    """A CDR string's text; None unless it is NUL-terminated UTF-8 without another NUL."""
    if raw[-1:] != b"\x00" or b"\x00" in raw[:-1]:
        return None
    try:
        return raw[:-1].decode()
    except UnicodeDecodeError:
        return None


def decode_odometry(data: bytes) -> SimpleNamespace | None:
    """The message's `header` (stamp sec and nanosec, frame_id), `child_frame_id` and `pose.pose`
    (position, orientation), as attributes like a full decoder's (no covariances, no twist);
    None where the message is not exactly a standard one."""
    if data[:2] != _CDR_LE:
        return None
    try:
        sec, nanosec, n = _HEAD.unpack_from(data, 4)
        at = 16 + n
        frame_id = data[16:at]
        at += -(at - 4) % 4
        (n,) = _LENGTH.unpack_from(data, at)
        child_frame_id = data[at + 4:at + 4 + n]
        at += 4 + n
        at += -(at - 4) % 8
        frame_id, child_frame_id = _string(frame_id), _string(child_frame_id)
        if at + _POSE.size + _REST != len(data) or frame_id is None or child_frame_id is None:
            return None
        x, y, z, qx, qy, qz, qw = _POSE.unpack_from(data, at)
    except struct.error:
        return None
    pose = SimpleNamespace(position=SimpleNamespace(x=x, y=y, z=z), orientation=SimpleNamespace(x=qx, y=qy, z=qz, w=qw))
    header = SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec), frame_id=frame_id)
    return SimpleNamespace(header=header, child_frame_id=child_frame_id, pose=SimpleNamespace(pose=pose))
