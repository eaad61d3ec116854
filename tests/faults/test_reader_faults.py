"""Reader faults found by the fuzzers, pinned as plain regression tests."""

import pandas as pd
import pytest
from mcap.writer import CompressionType

from schemas.contract import TEACHER_CAMERAS
from schemas.reasons import Reason
from sim.writers.pai import write_pai
from tests.fakes import START_US, analytic_drive, solid_render
from tests.faults.logs import write_log
from tests.transforms.clip_messages import drive_messages
from transforms.sources.base import EgoPose, LogReadError
from transforms.sources.mcap import STAMP_SLACK_US, McapLogSource
from transforms.sources.pai import PaiClipSource
from transforms.sources.topic_map import TopicMap

STAMP = TopicMap.from_dict({"time": "header_stamp"})


def test_a_stamp_far_behind_its_log_time_is_yielded_in_stamp_order(tmp_path):
    """Header-stamp mode: the last pose logged 2 s after its stamp (more than the re-sort slack,
    after a silence) used to empty the re-sort buffer and raise IndexError; it now comes out."""
    messages = drive_messages(analytic_drive("circle", seconds=2.0))
    last = max(i for i, m in enumerate(messages) if isinstance(m, EgoPose))
    path = write_log(tmp_path / "veh-000" / "late.mcap", messages, log_lag_us={last: 2 * STAMP_SLACK_US})
    read = list(McapLogSource(str(path), STAMP).messages())
    assert sorted(m.t_us for m in read) == [m.t_us for m in read] == sorted(m.t_us for m in messages)
    assert read[-1].t_us == START_US + 2_000_000


@pytest.mark.parametrize("schema_text", [b"std^msgs/Header header\n", b"uint8Z] data\n", b"\xff\xfe"])
def test_a_damaged_schema_is_unreadable_not_a_crash(tmp_path, schema_text):
    """The ROS 2 schema parser raises many exception types on a damaged message definition."""
    messages = drive_messages(analytic_drive("circle", seconds=1.0))
    path = write_log(tmp_path / "veh-000" / "schema.mcap", messages, compression=CompressionType.NONE)
    field = b"std_msgs/Header header"  # the first line of both schemas, in every copy of them
    path.write_bytes(path.read_bytes().replace(field, schema_text.ljust(len(field), b" ")))
    with pytest.raises(LogReadError) as e:
        list(McapLogSource(str(path)).messages())
    assert e.value.reason == Reason.LOG_UNREADABLE


@pytest.mark.parametrize("column", ["directory", "chunk_path", "clip_files_in_zip"])
def test_a_features_index_without_a_column_is_unreadable(tmp_path, column):
    """A damaged features.csv used to raise KeyError/TypeError out of the reader."""
    root = tmp_path / "veh-000"
    clip = write_pai([analytic_drive("circle", seconds=1.0)], str(root), solid_render,
                     cameras=TEACHER_CAMERAS[:1], height=16, width=16, clip_seconds=1.0)["clip_ids"][0]
    features = pd.read_csv(root / "features.csv").drop(columns=[column])
    features.to_csv(root / "features.csv", index=False)
    with pytest.raises(LogReadError) as e:
        PaiClipSource(str(root), clip)
    assert e.value.reason == Reason.LOG_UNREADABLE and column in e.value.detail
