"""The MCAP reader's CDR decoders against mcap_ros2's, on every message of a synthetic log."""

import struct
from types import SimpleNamespace

import pytest
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from sim.writers.mcap import write_mcap
from tests.fakes import analytic_drive, solid_render
from transforms.sources import mcap as mcap_source
from transforms.sources.mcap import _Decoders
from transforms.sources.odometry_cdr import ODOMETRY, decode_odometry, is_standard_odometry


@pytest.fixture(scope="module")
def messages(tmp_path_factory):
    path = tmp_path_factory.mktemp("veh-000") / "drive-000.mcap"
    write_mcap(analytic_drive("circle", seconds=2), str(path), solid_render)
    with open(path, "rb") as f:
        return list(make_reader(f).iter_messages())


def _fields(msg):
    """What the reader takes from each message type, as plain values."""
    if hasattr(msg, "transforms"):
        return [(t.header.stamp.sec, t.header.stamp.nanosec, t.header.frame_id, t.child_frame_id,
                 t.transform.translation.x, t.transform.translation.y, t.transform.translation.z,
                 t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z, t.transform.rotation.w)
                for t in msg.transforms]
    stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id)
    if hasattr(msg, "format"):
        return stamp, msg.format, bytes(msg.data)
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    return stamp, msg.child_frame_id, (p.x, p.y, p.z, q.x, q.y, q.z, q.w)


def test_every_message_decodes_as_mcap_ros2_does(messages):
    fast, reference = _Decoders(), DecoderFactory()
    types = set()
    for schema, channel, message in messages:
        types.add(schema.name)
        got = fast.decoder_for(channel.message_encoding, schema)(message.data)
        want = reference.decoder_for(channel.message_encoding, schema)(message.data)
        assert _fields(got) == _fields(want), (channel.topic, message.log_time)
        if schema.name == ODOMETRY:
            assert isinstance(got, SimpleNamespace)  # read at fixed offsets
        else:
            assert type(got).__module__.startswith("rosbags")  # the fast path decoded it
    assert types == {"nav_msgs/msg/Odometry", "tf2_msgs/msg/TFMessage", "sensor_msgs/msg/CompressedImage"}


def test_a_damaged_message_fails_as_with_mcap_ros2(messages):
    schema, channel, message = next(m for m in messages if m[1].topic == "/ego/odom")
    truncated = message.data[:40]
    with pytest.raises(Exception) as reference_error:
        DecoderFactory().decoder_for(channel.message_encoding, schema)(truncated)
    with pytest.raises(type(reference_error.value)):
        _Decoders().decoder_for(channel.message_encoding, schema)(truncated)


def test_what_the_fast_path_cannot_read_goes_to_mcap_ros2(messages, monkeypatch):
    def unreadable(data):
        raise ValueError("no")

    monkeypatch.setattr(mcap_source, "_fast_decoder", lambda name, definition: unreadable)
    monkeypatch.setattr(mcap_source, "decode_odometry", lambda data: None)
    schema, channel, message = next(m for m in messages if m[1].topic == "/ego/odom")
    got = _Decoders().decoder_for(channel.message_encoding, schema)(message.data)
    want = DecoderFactory().decoder_for(channel.message_encoding, schema)(message.data)
    assert type(got).__module__.startswith("mcap_ros2") and _fields(got) == _fields(want)


def _odometry(messages):
    return next(m for m in messages if m[1].topic == "/ego/odom")


def test_only_a_standard_odometry_schema_is_read_at_fixed_offsets(messages):
    schema = _odometry(messages)[0]
    definition = schema.data.decode()
    assert is_standard_odometry(schema.name, definition)
    assert not is_standard_odometry(schema.name, definition.replace("string child_frame_id", "string child_id"))
    assert not is_standard_odometry(schema.name, definition.replace("float64 x", "float32 x", 1))
    assert not is_standard_odometry(schema.name, definition.replace("string child_frame_id", "int32 child_frame_id"))
    assert not is_standard_odometry("my_msgs/msg/Odometry", definition)


def test_an_odometry_that_is_not_exactly_standard_goes_to_the_general_decoders(messages):
    data = _odometry(messages)[2].data
    assert decode_odometry(data) is not None
    n = struct.unpack_from("<I", data, 12)[0]
    bad_utf8 = data[:16] + b"\xff" + data[17:]
    inner_nul = data[:16] + b"\x00" + data[17:] if n > 2 else b""
    for message in (b"\x01\x01" + data[2:], data[:-1], data + b"\x00", data[:40], b"", bad_utf8, inner_nul,
                    data[:12] + struct.pack("<I", n + 4) + data[16:]):
        assert decode_odometry(message) is None
