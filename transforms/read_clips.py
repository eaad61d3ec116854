"""Beam: logs -> clip and quarantine rows, in batch (`ReadClips`) and streaming (`StreamClips`).

Batch: log URIs -> LogRefs -> (log, block) tasks, small, the only elements shuffled -> one
`ClipBlock` per block, assembled next to the reader, so image bytes never cross a shuffle. A
driver that has planned the blocks already (`plan_blocks`, e.g. for a progress total) hands the
tasks to `ReadClips` instead of the URIs, and no log is opened twice for planning. The blocks
come out of a single ParDo (no Flatten: the local runner materialises a Flatten's inputs, which
would hold every block's images in memory): each block goes through its consumers (clip
writes, the teacher) before the next one is read. Blocks have their own coder
(`ClipBlockCoder`), whose size estimate counts their image bytes instead of encoding them.
Streaming: timestamped (log_id, message) elements -> a stateful DoFn per log that buffers
messages until the watermark passes them and feeds them in time order to the same
`ClipAssembler`.
"""

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
from PIL import Image

import apache_beam as beam
from apache_beam.coders import PickleCoder, VarIntCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp

from schemas.contract import CAMERA_TOLERANCE_US, DEFAULT_STRIDE_US
from schemas.reasons import Reason
from transforms.clips import (
    DEFAULT_BLOCK_US,
    ClipAssembler,
    Output,
    block_starts,
    quarantine_row,
    read_range,
    t0_grid,
)
from transforms.parquet import check_date, safe_name
from transforms.sources.base import CameraFrame, EgoPose, LogInfo, LogReadError
from transforms.sources.discover import LogRef, find_logs, open_log
from transforms.sources.topic_map import TopicMap

FALLBACK_DATE = "1970-01-01"  # the date of a log whose start could not be read
FLUSH_US = 1_000_000  # streaming: messages go to the assembler in steps of this much event time
IDLE_US = 10_000_000  # streaming: a log with no message for this long (event time) has ended


@dataclass
class ClipBlock:
    """The rows of one block of a log (or of a whole log that failed: block_start_us = first
    block, or 0 when the log could not be opened)."""

    info: LogInfo
    block_start_us: int
    clips: list[dict] = field(default_factory=list)
    quarantine: list[dict] = field(default_factory=list)

    @property
    def windows(self) -> int:
        """t0 windows of the block (log-level quarantine rows are not windows)."""
        return len(self.clips) + sum(q["t0_us"] is not None for q in self.quarantine)


class ClipBlockCoder(beam.coders.Coder):
    """Beam's PickleCoder (what a ClipBlock had without a coder of its own), with a size estimate
    from the bytes of its images (JPEGs and decoded arrays), which make up nearly all of it:
    runners estimate the size of sampled elements for their metrics, by default by encoding
    them, and a 60 s block is about 100 MB of pickle."""

    _pickled = beam.coders.PickleCoder()

    def encode(self, block: ClipBlock) -> bytes:
        return self._pickled.encode(block)

    def decode(self, encoded: bytes) -> ClipBlock:
        return self._pickled.decode(encoded)

    def estimate_size(self, block: ClipBlock) -> int:
        return sum(sum(map(len, clip["images"])) + sum(getattr(v, "nbytes", 0) for v in clip.values())
                   for clip in block.clips)

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self):
        return ClipBlock


beam.coders.registry.register_coder(ClipBlock, ClipBlockCoder)


@dataclass(frozen=True)
class BlockTask:
    """One block of a log to assemble; `done` holds the rows of a log that cannot be windowed
    (its log-level quarantine row, or LOG_EMPTY), which need no reading."""

    ref: LogRef
    info: LogInfo
    block_start_us: int
    done: ClipBlock | None = field(default=None, compare=False)


def _block(info: LogInfo, block_start_us: int, outputs: list[Output]) -> ClipBlock:
    block = ClipBlock(info, block_start_us)
    for table, row in outputs:
        (block.clips if table == "clips" else block.quarantine).append(row)
    return block


def _count(block: ClipBlock) -> None:
    beam.metrics.Metrics.counter("clips", "windows").inc(block.windows)
    beam.metrics.Metrics.counter("clips", "clips").inc(len(block.clips))
    for row in block.quarantine:
        beam.metrics.Metrics.counter("clips", f"quarantined_{row['reason']}").inc()


def _safe_vehicle(info: LogInfo) -> LogInfo:
    """`info` with a vehicle id usable as a partition folder (`safe_name`: a folder name with a
    space or a metadata id like "../x" is rewritten, never written as a path)."""
    return replace(info, vehicle_id=safe_name(info.vehicle_id, "vehicle"))


def _partitionable(info: LogInfo) -> LogInfo:
    """`_safe_vehicle(info)`; LogReadError when the log's date is not YYYY-MM-DD."""
    try:
        check_date(info.date)
    except ValueError:
        raise LogReadError(Reason.LOG_UNREADABLE, f"{info.uri}: log date {info.date!r} is not YYYY-MM-DD") from None
    return _safe_vehicle(info)


def plan_log(ref: LogRef, topic_map: TopicMap | None = None, stride_us: int = DEFAULT_STRIDE_US,
             block_us: int = DEFAULT_BLOCK_US) -> list[BlockTask]:
    """The log's BlockTasks, one per block holding a t0, from its metadata; a log that cannot be
    windowed gives one task with its rows `done`."""
    try:
        info = _partitionable(open_log(ref, topic_map).info())
    except LogReadError as e:
        info = LogInfo(ref.uri, ref.log_id, safe_name(ref.vehicle_id, "vehicle"), FALLBACK_DATE, 0, 0)
        return [BlockTask(ref, info, 0, ClipBlock(info, 0, quarantine=[quarantine_row(info, None, e.reason, e.detail)]))]
    starts = block_starts(info, stride_us, block_us)
    if not starts:
        start = (info.start_us // block_us) * block_us
        return [BlockTask(ref, info, start, _block(info, start, ClipAssembler(info, stride_us).finish()))]
    return [BlockTask(ref, info, start) for start in starts]


def plan_blocks(log_uris: list[str], topic_map: TopicMap | None = None, stride_us: int = DEFAULT_STRIDE_US,
                block_us: int = DEFAULT_BLOCK_US) -> list[BlockTask]:
    """Every BlockTask of the logs under `log_uris` (searched recursively), planned here (the
    driver), for `ReadClips(tasks)`. FileNotFoundError when a URI does not exist."""
    return [task for uri in log_uris for ref in find_logs(uri)
            for task in plan_log(ref, topic_map, stride_us, block_us)]


def planned_windows(tasks: list[BlockTask], stride_us: int = DEFAULT_STRIDE_US) -> int:
    """Clip windows of the planned logs (log-level quarantine rows are not windows). The clips of
    a PhysicalAI-AV root share its URI, so a log is its (URI, clip id)."""
    infos = {(t.ref.uri, t.ref.clip_id): t.info for t in tasks if t.done is None}
    return sum(len(t0_grid(info, stride_us)) for info in infos.values())


def block_windows(task: BlockTask, stride_us: int, block_us: int) -> int:
    """Clip windows with t0 in the task's block, counted from the plan (a task done at planning,
    an unreadable log or one without windows, has its clips already: none)."""
    if task.done is not None:
        return len(task.done.clips)
    grid = t0_grid(task.info, stride_us)  # multiples of the stride, as are block starts
    return len(range(max(grid.start, task.block_start_us), min(grid.stop, task.block_start_us + block_us), stride_us))


class PlanBlocks(beam.DoFn):
    """LogRef -> its BlockTasks (`plan_log`)."""

    def __init__(self, topic_map: TopicMap | None, stride_us: int, block_us: int):
        self._topic_map = topic_map
        self._stride_us = stride_us
        self._block_us = block_us

    def process(self, ref: LogRef):
        yield from plan_log(ref, self._topic_map, self._stride_us, self._block_us)


class AssembleBlock(beam.DoFn):
    """BlockTask -> ClipBlock: read the block's time range and run the assembler on it (a task
    with its rows `done` already is passed on)."""

    def __init__(self, topic_map: TopicMap | None, stride_us: int, block_us: int, tolerance_us: int,
                 decode: Callable[[bytes | Image.Image], np.ndarray] | None = None):
        self._topic_map = topic_map
        self._stride_us = stride_us
        self._block_us = block_us
        self._tolerance_us = tolerance_us
        self._decode = decode

    def process(self, task: BlockTask):
        if task.done is not None:
            block = task.done
        else:
            block = assemble_block(task, self._topic_map, self._stride_us, self._block_us, self._tolerance_us,
                                   self._decode)
        _count(block)
        yield block


def assemble_block(task: BlockTask, topic_map: TopicMap | None = None, stride_us: int = DEFAULT_STRIDE_US,
                   block_us: int = DEFAULT_BLOCK_US, tolerance_us: int = CAMERA_TOLERANCE_US,
                   decode: Callable[[bytes | Image.Image], np.ndarray] | None = None) -> ClipBlock:
    """The rows of one block (`decode`: as in ClipAssembler); a reader failing part-way
    quarantines the block's remaining windows."""
    start = task.block_start_us
    assembler = ClipAssembler(task.info, stride_us, tolerance_us, t0_range=(start, start + block_us), decode=decode)
    outputs: list[Output] = []
    try:
        for message in open_log(task.ref, topic_map).messages(*read_range(start, block_us, tolerance_us)):
            outputs += assembler.push(message)
        outputs += assembler.finish()
    except LogReadError as e:
        outputs += assembler.abort(e.reason, e.detail)
    return _block(task.info, start, outputs)


class ReadClips(beam.PTransform):
    """Logs -> ClipBlock per block. `sources`: log URIs (searched recursively; a list or a
    PCollection of str), or the BlockTasks of `plan_blocks` (planned by the driver already).
    `decode`: the teacher's JPEG decoder, so that the decode check decodes each image once for
    it (ClipAssembler); clip rows then carry the arrays, which are never written.

    Apply to the pipeline: `p | ReadClips(["/data/fleet"])`.
    """

    def __init__(self, sources, stride_us: int = DEFAULT_STRIDE_US, block_us: int = DEFAULT_BLOCK_US,
                 topic_map: TopicMap | None = None, tolerance_us: int = CAMERA_TOLERANCE_US,
                 decode: Callable[[bytes | Image.Image], np.ndarray] | None = None):
        super().__init__()
        if block_us % stride_us:
            raise ValueError(f"block_us ({block_us}) must be a multiple of stride_us ({stride_us})")
        self._sources = sources if isinstance(sources, beam.PCollection) else list(sources)
        self._stride_us = stride_us
        self._block_us = block_us
        self._topic_map = topic_map
        self._tolerance_us = tolerance_us
        self._decode = decode

    def expand(self, pbegin):
        sources = self._sources
        if isinstance(sources, list) and sources and all(isinstance(s, BlockTask) for s in sources):
            # Largest blocks first: a runner that deals the blocks out in turn (the local runner's
            # multi-processing mode does, round-robin) then gives every worker a like share of windows.
            sources = sorted(sources, key=lambda t: -block_windows(t, self._stride_us, self._block_us))
            tasks = pbegin | "Plans" >> beam.Create(sources, reshuffle=False)  # SpreadBlocks spreads them
        else:
            if not isinstance(sources, beam.PCollection):
                sources = pbegin | "LogUris" >> beam.Create(sources)
            tasks = (
                sources
                | "FindLogs" >> beam.FlatMap(find_logs)
                | "SpreadLogs" >> beam.Reshuffle()
                | "PlanBlocks" >> beam.ParDo(PlanBlocks(self._topic_map, self._stride_us, self._block_us))
            )
        return (
            tasks
            | "SpreadBlocks" >> beam.Reshuffle()
            | "AssembleBlocks" >> beam.ParDo(
                AssembleBlock(self._topic_map, self._stride_us, self._block_us, self._tolerance_us, self._decode)
            ).with_output_types(ClipBlock)
        )


def timestamped(log_id: str, message: CameraFrame | EgoPose) -> beam.window.TimestampedValue:
    """A streaming input element: (log_id, message) at the message's event time."""
    return beam.window.TimestampedValue((log_id, message), Timestamp(micros=int(message.t_us)))


def _order(message) -> tuple:
    return message.t_us, isinstance(message, CameraFrame), getattr(message, "camera", "")


class AssembleStream(beam.DoFn):
    """(log_id, message) elements at their event time -> Output rows, as the watermark advances.

    Messages wait in state until the watermark passes them (FLUSH_US steps) and are pushed in
    time order; a message behind the watermark reaches the assembler late and counts as a
    decreasing timestamp. A log ends when it has been silent for IDLE_US of event time (or at
    the end of a bounded input). The assembler itself is kept in state (pickled: it is ours).
    """

    BUFFER = BagStateSpec("buffer", PickleCoder())
    ASSEMBLER = ReadModifyWriteStateSpec("assembler", PickleCoder())
    FLUSH_AT = ReadModifyWriteStateSpec("flush_at", VarIntCoder())
    LAST_T = ReadModifyWriteStateSpec("last_t", VarIntCoder())
    FLUSH = TimerSpec("flush", TimeDomain.WATERMARK)
    IDLE = TimerSpec("idle", TimeDomain.WATERMARK)

    def __init__(self, infos: dict[str, LogInfo], stride_us: int = DEFAULT_STRIDE_US,
                 tolerance_us: int = CAMERA_TOLERANCE_US):
        self._infos = infos
        self._stride_us = stride_us
        self._tolerance_us = tolerance_us

    def process(self, element, buffer=beam.DoFn.StateParam(BUFFER), flush_at=beam.DoFn.StateParam(FLUSH_AT),
                last_t=beam.DoFn.StateParam(LAST_T), flush=beam.DoFn.TimerParam(FLUSH),
                idle=beam.DoFn.TimerParam(IDLE)):
        _, message = element
        t = int(message.t_us)
        buffer.add(message)
        due = (t // FLUSH_US + 1) * FLUSH_US
        if flush_at.read() is None or due < flush_at.read():
            flush_at.write(due)
            flush.set(Timestamp(micros=due))
        latest = max(t, last_t.read() or t)
        last_t.write(latest)
        idle.set(Timestamp(micros=latest + IDLE_US))

    @on_timer(FLUSH)
    def on_flush(self, key=beam.DoFn.KeyParam, ts=beam.DoFn.TimestampParam, buffer=beam.DoFn.StateParam(BUFFER),
                 assembler=beam.DoFn.StateParam(ASSEMBLER), flush_at=beam.DoFn.StateParam(FLUSH_AT),
                 flush=beam.DoFn.TimerParam(FLUSH)):
        now = ts.micros
        messages = list(buffer.read())
        ready = sorted((m for m in messages if m.t_us < now), key=_order)
        later = [m for m in messages if m.t_us >= now]
        buffer.clear()
        for m in later:
            buffer.add(m)
        flush_at.clear()
        if later:
            due = (min(m.t_us for m in later) // FLUSH_US + 1) * FLUSH_US
            flush_at.write(due)
            flush.set(Timestamp(micros=due))
        yield from self._push(key, ready, assembler, final=False)

    @on_timer(IDLE)
    def on_idle(self, key=beam.DoFn.KeyParam, ts=beam.DoFn.TimestampParam, buffer=beam.DoFn.StateParam(BUFFER),
                assembler=beam.DoFn.StateParam(ASSEMBLER), flush_at=beam.DoFn.StateParam(FLUSH_AT),
                last_t=beam.DoFn.StateParam(LAST_T)):
        if (last_t.read() or 0) + IDLE_US > ts.micros:
            return
        ready = sorted(buffer.read(), key=_order)
        buffer.clear()
        flush_at.clear()
        last_t.clear()
        yield from self._push(key, ready, assembler, final=True)

    def _push(self, log_id, messages, state, final: bool):
        current = state.read()
        if current is None:
            current = ClipAssembler(self._infos[log_id], self._stride_us, self._tolerance_us, open_ended=True)
        for m in messages:
            yield from current.push(m)
        if final:
            yield from current.finish()
            state.clear()
        else:
            state.write(current)


class StreamClips(beam.PTransform):
    """Timestamped (log_id, CameraFrame | EgoPose) -> Output(table, row) per window.

    `infos` maps each log id to its LogInfo (uri, vehicle, date, first ego pose time; `end_us`
    is not used: the grid ends at the last ego pose that arrives). As in batch, a vehicle id that
    is not a safe partition folder name is rewritten (`safe_name`). Rows carry the event time of
    the timer that emitted them; a log's last rows come IDLE_US after its last message, so a
    bounded input should advance the watermark past that before it ends (rows emitted once the
    watermark is at infinity are late for downstream windowed aggregations).
    """

    def __init__(self, infos: dict[str, LogInfo], stride_us: int = DEFAULT_STRIDE_US,
                 tolerance_us: int = CAMERA_TOLERANCE_US):
        super().__init__()
        safe = {log_id: _safe_vehicle(info) for log_id, info in infos.items()}
        self._fn = AssembleStream(safe, stride_us, tolerance_us)

    def expand(self, messages):
        return (
            messages
            | "Global" >> beam.WindowInto(beam.window.GlobalWindows())
            | "Assemble" >> beam.ParDo(self._fn).with_input_types(tuple[str, object])
        )
