"""Beam clip reading: batch blocks from real MCAP files, streaming == batch, failures, MCAP == PAI.

Runners are named explicitly: `DirectRunner` for batch and for TestStream pipelines; both run
offline here (checked on apache-beam 2.77; in streaming mode the Python DirectRunner runs the
pipeline on its own bundle-based runner).
"""

from collections import Counter
from dataclasses import replace

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing import test_stream
from apache_beam.testing.util import assert_that

from schemas.reasons import Reason
from sim.writers.mcap import write_mcap
from tests.fakes import analytic_drive, solid_render
from tests.transforms.clip_messages import drive_info, drive_messages, with_pose
from transforms.clips import ClipAssembler, t0_grid
from transforms.parquet import safe_name
from transforms.read_clips import (
    IDLE_US,
    BlockTask,
    ClipBlock,
    ClipBlockCoder,
    ReadClips,
    StreamClips,
    assemble_block,
    block_windows,
    plan_blocks,
    planned_windows,
    timestamped,
)
from transforms.sources.base import CameraFrame, EgoPose, LogReadError
from transforms.sources.discover import LogRef, find_logs, open_log
from transforms.sources.topic_map import TopicMap

S = 1_000_000
STAMPS = TopicMap(time="header_stamp")


def run_batch(uris, check, **kw):
    options = PipelineOptions(["--runner=DirectRunner"])
    with beam.Pipeline(options=options) as p:
        assert_that(p | ReadClips(uris, **kw), check)


def rows_of(blocks):
    clips = {r["t0_us"]: r for b in blocks for r in b.clips}
    quarantine = [r for b in blocks for r in b.quarantine]
    return clips, quarantine


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    drive = analytic_drive("accel", 20.0, start_us=0, vehicle_id="veh-007", log_name="drive-a")
    (root / "veh-007").mkdir()
    write_mcap(drive, str(root / "veh-007" / "drive-a.mcap"), solid_render)
    (root / "veh-008").mkdir()
    (root / "veh-008" / "broken.mcap").write_bytes(b"\x89MCAP0\r\n" + b"\x00" * 40)
    return root


def test_find_logs_searches_recursively(fleet, tmp_path):
    refs = find_logs(str(fleet))
    assert [(r.kind, r.log_id, r.vehicle_id) for r in refs] == [
        ("mcap", "drive-a", "veh-007"), ("mcap", "broken", "veh-008")]
    bag = tmp_path / "bags" / "run-1"
    bag.mkdir(parents=True)
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: {relative_file_paths: [run-1_0.mcap]}\n")
    (bag / "run-1_0.mcap").write_bytes(b"")
    assert [(r.log_id, r.uri) for r in find_logs(str(tmp_path))] == [("run-1", str(bag))]
    with pytest.raises(FileNotFoundError):
        find_logs(str(tmp_path / "nope"))


def test_batch_blocks_equal_the_whole_log_and_quarantine_broken_logs(fleet):
    ref = find_logs(str(fleet))[0]
    source = open_log(ref, STAMPS)
    info = source.info()
    whole = ClipAssembler(info).push_all(source.messages())
    expected = {o.row["t0_us"]: o.row for o in whole}
    assert Counter(o.table for o in whole) == {"clips": 37}

    def check(blocks):
        by_log = {}
        for b in blocks:
            by_log.setdefault(b.info.log_id, []).append(b)
        assert sorted(b.block_start_us for b in by_log["drive-a"]) == [0, 5 * S, 10 * S, 15 * S, 20 * S]
        clips, quarantine = rows_of(by_log["drive-a"])
        assert quarantine == [] and clips == expected
        assert sum(b.windows for b in by_log["drive-a"]) == 37
        (broken,) = by_log["broken"]
        assert broken.windows == 0 and broken.clips == []
        (row,) = broken.quarantine
        assert (row["clip_id"], row["t0_us"], row["reason"], row["stage"], row["date"], row["vehicle_id"]) == (
            None, None, "log_unreadable", "read", "1970-01-01", "veh-008")

    run_batch([str(fleet)], check, block_us=5 * S, topic_map=STAMPS)


def test_a_truncated_mcap_gives_the_windows_of_its_readable_part(fleet, tmp_path):
    data = (fleet / "veh-007" / "drive-a.mcap").read_bytes()
    cut = tmp_path / "veh-007" / "drive-a.mcap"
    cut.parent.mkdir()
    cut.write_bytes(data[: len(data) * 6 // 10])
    source = open_log(find_logs(str(cut))[0], STAMPS)
    info = source.info()
    assert 8 * S < info.end_us < 14 * S
    assembler = ClipAssembler(info)
    out = assembler.push_all(source.messages())
    assert [o.row["t0_us"] for o in out] == list(t0_grid(info))
    assert {o.table for o in out} == {"clips"}


class _FailingSource:
    """A reader that yields part of a log, then fails as a damaged MCAP does."""

    def __init__(self, messages, fail_at_us):
        self._messages = messages
        self._fail_at = fail_at_us

    def messages(self, start_us=None, end_us=None):
        for m in self._messages:
            if m.t_us >= self._fail_at:
                raise LogReadError(Reason.LOG_UNREADABLE, "damaged chunk at 12 s")
            if start_us <= m.t_us < end_us:
                yield m


def test_a_reader_failing_inside_a_block_quarantines_its_remaining_windows(monkeypatch):
    drive = analytic_drive("circle", 20.0, start_us=0)
    info = drive_info(drive)
    source = _FailingSource(drive_messages(drive), 12 * S)
    monkeypatch.setattr("transforms.read_clips.open_log", lambda ref, topic_map: source)
    ref = LogRef(info.uri, "mcap", info.log_id, info.vehicle_id)
    blocks = [assemble_block(BlockTask(ref, info, b), block_us=10 * S) for b in (0, 10 * S)]
    assert [b.windows for b in blocks] == [16, 20]  # t0 = 2.0 ... 9.5 s, 10.0 ... 19.5 s
    # Before the failure at 12 s, the windows with 6.4 s of future (t0 <= 5.5 s) were complete.
    assert [r["t0_us"] for r in blocks[0].clips] == [t * 500_000 for t in range(4, 12)]
    assert Counter(r["reason"] for r in blocks[0].quarantine) == {"log_unreadable": 8}
    assert Counter(r["reason"] for r in blocks[1].quarantine) == {"log_unreadable": 20}
    assert blocks[1].quarantine[0]["detail"] == "damaged chunk at 12 s"


def test_streaming_gives_the_same_rows_as_batch():
    drive = analytic_drive("circle", 12.0, start_us=0)
    info = drive_info(drive)
    messages = []
    for m in drive_messages(drive):  # a NaN pose, a duplicate pose and a corrupt frame
        if isinstance(m, EgoPose) and m.t_us == 5 * S:
            m = with_pose(m, xyz=[np.inf, 0, 0])
        if isinstance(m, EgoPose) and m.t_us == 7 * S:
            messages.append(m)
        if isinstance(m, CameraFrame) and m.t_us == 9_200_000:
            m = replace(m, data=b"\xff\xd8\xff")
        messages.append(m)
    batch = ClipAssembler(info).push_all(messages)
    assert Counter(o.row.get("reason") for o in batch) == {
        None: 12, "pose_nonfinite": 4, "time_backwards": 4, "image_corrupt": 1}

    stream = test_stream.TestStream().advance_watermark_to(0)
    for second in range(13):
        part = [m for m in messages if second * S <= m.t_us < (second + 1) * S]
        stream = stream.add_elements([timestamped(info.log_id, m) for m in part])
        stream = stream.advance_watermark_to((second + 1) * S / 1e6)
    # The log has ended once it is silent for IDLE_US; the rows come out before the input ends
    # (rows emitted after the watermark jumped to infinity would be late for assert_that).
    stream = stream.advance_watermark_to(12 + IDLE_US / S + 1).advance_watermark_to_infinity()

    def check(outputs):
        got = sorted(((table, row) for table, row in outputs), key=lambda o: o[1]["t0_us"])
        assert [o[1]["t0_us"] for o in got] == [o.row["t0_us"] for o in batch]
        assert got == [tuple(o) for o in batch]

    options = PipelineOptions(["--runner=DirectRunner"])
    options.view_as(StandardOptions).streaming = True
    with beam.Pipeline(options=options) as p:
        assert_that(p | stream | StreamClips({info.log_id: info}), check)


def test_streaming_rewrites_an_unsafe_vehicle_id_as_batch_does():
    drive = analytic_drive("circle", 9.0, start_us=0)
    info = replace(drive_info(drive), vehicle_id="../veh 7")
    messages = drive_messages(drive)
    safe = safe_name("../veh 7", "vehicle")
    assert safe.startswith("veh_7-") and "/" not in safe
    stream = test_stream.TestStream().advance_watermark_to(0)
    stream = stream.add_elements([timestamped(info.log_id, m) for m in messages])
    stream = stream.advance_watermark_to(9 + IDLE_US / S + 1).advance_watermark_to_infinity()

    def check(outputs):
        assert Counter(table for table, _ in outputs) == {"clips": 15}  # t0 = 2.0 ... 9.0 s
        assert {row["vehicle_id"] for _, row in outputs} == {safe}

    options = PipelineOptions(["--runner=DirectRunner"])
    options.view_as(StandardOptions).streaming = True
    with beam.Pipeline(options=options) as p:
        assert_that(p | stream | StreamClips({info.log_id: info}), check)


def test_read_clips_from_planned_tasks_gives_the_blocks_of_the_uris(fleet):
    tasks = plan_blocks([str(fleet)], STAMPS, block_us=5 * S)
    assert [(t.ref.log_id, t.block_start_us, t.done is None) for t in tasks] == [
        ("drive-a", 0, True), ("drive-a", 5 * S, True), ("drive-a", 10 * S, True), ("drive-a", 15 * S, True),
        ("drive-a", 20 * S, True), ("broken", 0, False)]
    assert planned_windows(tasks) == 37  # t0 = 2.0 ... 20.0 s; the broken log has none

    def summary(blocks):
        return sorted((b.info.log_id, b.block_start_us, b.windows, len(b.clips),
                       tuple(r["reason"] for r in b.quarantine)) for b in blocks)

    expected = [("broken", 0, 0, 0, ("log_unreadable",)), ("drive-a", 0, 6, 6, ()), ("drive-a", 5 * S, 10, 10, ()),
                ("drive-a", 10 * S, 10, 10, ()), ("drive-a", 15 * S, 10, 10, ()), ("drive-a", 20 * S, 1, 1, ())]
    for sources in ([str(fleet)], tasks):
        run_batch(sources, lambda blocks: summary(blocks) == expected or pytest.fail(str(summary(blocks))),
                  block_us=5 * S, topic_map=STAMPS)


def test_block_windows_counts_each_blocks_windows_before_reading_it(fleet):
    # the counts that assembling the blocks gives (test above); ReadClips deals blocks out largest first
    tasks = plan_blocks([str(fleet)], STAMPS, block_us=5 * S)
    assert [block_windows(t, 500_000, 5 * S) for t in tasks] == [6, 10, 10, 10, 1, 0]


def test_blocks_come_out_of_one_pardo_without_a_flatten(fleet):
    """The local runner materialises a Flatten's inputs: every block (images included) would be
    held in memory before its consumers run."""
    from apache_beam.portability import common_urns

    for sources in ([str(fleet)], plan_blocks([str(fleet)], STAMPS)):
        p = beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"]))
        _ = p | "ReadClips" >> ReadClips(sources, topic_map=STAMPS)
        transforms = p.to_runner_api().components.transforms.values()
        assert [t.unique_name for t in transforms if t.spec.urn == common_urns.primitives.FLATTEN.urn] == []
        assert any(t.unique_name == "ReadClips/AssembleBlocks" for t in transforms)


def test_blocks_have_a_coder_that_estimates_their_size_from_their_images(fleet):
    """Runners estimate the size of sampled elements; encoding a 60 s block for that is ~100 MB."""
    task = plan_blocks([str(fleet)], STAMPS, block_us=5 * S)[1]
    block = assemble_block(task, STAMPS, block_us=5 * S)
    coder = beam.coders.registry.get_coder(ClipBlock)
    assert isinstance(coder, ClipBlockCoder)
    assert coder.decode(coder.encode(block)) == block
    images = sum(len(image) for clip in block.clips for image in clip["images"])
    assert coder.get_impl().estimate_size(block) == images
    assert 0 < images <= len(coder.encode(block))


def test_mcap_and_pai_of_one_drive_give_the_same_clips(tmp_path):
    from sim.writers.pai import write_pai

    drive = analytic_drive("circle", 20.0, start_us=0)
    written = write_pai([drive], str(tmp_path / "pai"), solid_render)
    (clip,) = written["clip_ids"]
    write_mcap(drive, str(tmp_path / "mcap" / f"{clip}.mcap"), solid_render)
    refs = {r.kind: r for r in find_logs(str(tmp_path))}
    rows = {}
    for kind, ref in refs.items():
        source = open_log(ref, STAMPS)
        out = ClipAssembler(source.info()).push_all(source.messages())
        assert Counter(o.table for o in out) == {"clips": 37}
        rows[kind] = {o.row["clip_id"]: o.row for o in out}
    assert rows["mcap"].keys() == rows["pai"].keys()
    for cid, m in rows["mcap"].items():
        p = rows["pai"][cid]
        for column in ("ego_history_xyz", "ego_future_xyz"):
            a = np.array([v if v is not None else [np.nan] * 3 for v in m[column]], dtype=np.float64)
            b = np.array([v if v is not None else [np.nan] * 3 for v in p[column]], dtype=np.float64)
            np.testing.assert_allclose(a, b, atol=1e-4, rtol=0, equal_nan=True)
        assert m["frame_timestamps_us"] == p["frame_timestamps_us"]
        assert (m["t0_us"], m["log_id"], m["camera_names"]) == (p["t0_us"], p["log_id"], p["camera_names"])


def test_planned_windows_count_every_clip_of_a_pai_root(tmp_path):
    from sim.writers.pai import write_pai

    drives = [analytic_drive("circle", 20.0, start_us=0), analytic_drive("circle", 20.0, start_us=0, vehicle_id="veh-b", log_name="drive-001")]
    write_pai(drives, str(tmp_path / "pai"), solid_render)
    tasks = plan_blocks([str(tmp_path / "pai")], STAMPS)
    assert len({t.ref.clip_id for t in tasks}) == 2 and len({t.ref.uri for t in tasks}) == 1
    assert planned_windows(tasks) == 2 * 37


def test_the_clips_command_writes_every_window_once(fleet, tmp_path):
    from pipelines.cli import main
    from transforms.parquet import read_table

    topic_map = tmp_path / "topics.yaml"
    topic_map.write_text("time: header_stamp\n")
    out = tmp_path / "out"
    argv = ["clips", "--logs", str(fleet), "--out", str(out), "--block-s", "5", "--topic-map", str(topic_map),
            "--quiet", "--runner=DirectRunner"]
    for _ in range(2):  # a rerun replaces the same files
        assert main(argv) == 0
        clips = read_table(str(out), "clips", ["log_id", "t0_us", "vehicle_id", "date"])
        quarantine = read_table(str(out), "quarantine", ["log_id", "t0_us", "reason"])
        assert sorted(clips.column("t0_us").to_pylist()) == [2 * S + k * 500_000 for k in range(37)]
        assert quarantine.to_pylist() == [{"log_id": "broken", "t0_us": None, "reason": "log_unreadable"}]
    names = sorted(p.name for p in (out / "clips" / "date=1970-01-01" / "vehicle_id=veh-007").iterdir())
    assert names == [f"drive-a-{b}.parquet" for b in (0, 10000000, 15000000, 20000000, 5000000)]
    assert main(["clips", "--logs", str(fleet), "--out", str(out), "--stride-s", "0.4", "--block-s", "5"]) == 2
