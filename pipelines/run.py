"""What every dataset-writing pipeline shares: Beam options with an offline local default
runner, the dataset's lifecycle (stale temp files cleared, `_SUCCESS` removed, manifest and
`_SUCCESS` written last) and a progress bar that works on any runner by watching the files
the pipeline publishes."""

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from transforms.redact import redact

# The FnApiRunner runs locally and never tries to download the Prism runner (DirectRunner does).
DEFAULT_RUNNER = "FnApiRunner"


def beam_options(beam_args: list[str], streaming: bool = False):
    """PipelineOptions from the command line's Beam arguments, defaulting to the local runner."""
    from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions

    args = list(beam_args)
    if not any(a == "--runner" or a.startswith("--runner=") for a in args):
        args.append(f"--runner={'BundleBasedDirectRunner' if streaming else DEFAULT_RUNNER}")
    options = PipelineOptions(args)
    options.view_as(SetupOptions).save_main_session = False
    options.view_as(StandardOptions).streaming = streaming or options.view_as(StandardOptions).streaming
    return options


@dataclass
class Stopwatch:
    """Named wall-clock timings (seconds) for the manifest."""

    timings_s: dict = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings_s[name] = round(self.timings_s.get(name, 0.0) + time.perf_counter() - started, 3)


class PublishedRows:
    """Counts rows in Parquet files published under `out_uri/<table>/` since it was created
    (file footers only), so that a progress bar can follow a run on any runner."""

    def __init__(self, out_uri: str, tables: tuple[str, ...]):
        import fsspec

        self._fs, self._root = fsspec.core.url_to_fs(out_uri)
        self._tables = tables
        self._since = time.time() - 1.0
        self._seen: dict[str, int] = {}

    def rows(self) -> int:
        import pyarrow.parquet as pq

        for table in self._tables:
            pattern = f"{self._root.rstrip('/')}/{table}/**/*.parquet"
            for path, info in self._fs.glob(pattern, detail=True).items():
                mtime = info.get("mtime") or info.get("updated") or info.get("created") or 0
                mtime = mtime.timestamp() if hasattr(mtime, "timestamp") else float(mtime)
                if path in self._seen or mtime < self._since:
                    continue
                try:
                    with self._fs.open(path, "rb") as f:
                        self._seen[path] = pq.ParquetFile(f).metadata.num_rows
                except (OSError, ValueError):
                    continue  # replaced while we looked; counted on the next poll
        return sum(self._seen.values())


@contextmanager
def progress_bar(description: str, total: int, out_uri: str, tables: tuple[str, ...], enabled: bool = True):
    """A progress bar (plain lines off a terminal: pipelines/progress.py) over `total` rows
    published to `tables` while the block runs."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from pipelines.progress import LineProgress

    if not enabled:
        yield
        return
    counter = PublishedRows(out_uri, tables)
    stop = threading.Event()
    with LineProgress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("windows"), TimeElapsedColumn()) as progress:
        task = progress.add_task(description, total=total)

        def poll():
            while not stop.wait(1.0):
                progress.update(task, completed=min(total, counter.rows()))

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            progress.update(task, completed=min(total, counter.rows()))


def _redacted(value):
    """A pipeline option with every string in it redacted (lists and dicts walked)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    return value


# Options that decide which rows and files a run writes: a rerun into the same dataset must
# agree on them, or old and new files would mix.
OUTPUT_OPTIONS = ("stride_s", "block_s", "teacher", "samples", "reject_comfort", "topic_map")


def execute(args, beam_args: list[str], build, tables: tuple[str, ...], title: str,
            imports: tuple[str, ...] = ()) -> int:
    """Run a dataset-writing pipeline (`build(p, args, tasks, topic_map)`, `tasks` the planned
    BlockTasks for `ReadClips`) end to end: plan (each log opened once, here), clear stale temp
    files, run with progress, then manifest and `_SUCCESS`; print a summary. `imports`: modules
    the transforms need, imported first as their own stage (torch's import is seconds), so that
    the "pipeline" timing is the run's own."""
    import gc
    import importlib
    import sys

    import apache_beam as beam

    from transforms.manifest import build_manifest, dataset_summary
    from transforms.parquet import clear_stale_temp, mark_complete, mark_incomplete
    from transforms.read_clips import plan_blocks, planned_windows
    from transforms.sources.topic_map import load_topic_map

    watch = Stopwatch()
    options = {k: _redacted(getattr(args, k)) for k in OUTPUT_OPTIONS if hasattr(args, k)}
    conflict = _option_conflict(args.out, options)
    if conflict:
        print(f"error: {redact(conflict)}", file=sys.stderr)
        return 2
    topic_map = load_topic_map(args.topic_map) if args.topic_map else None
    log_uris = [args.logs]
    stride_us = round(args.stride_s * 1e6)
    with watch.stage("plan"):
        try:
            tasks = plan_blocks(log_uris, topic_map, stride_us, round(args.block_s * 1e6))
        except FileNotFoundError:
            print(f"error: no such log or folder: {redact(args.logs)}", file=sys.stderr)
            return 2
        windows = planned_windows(tasks, stride_us)
    if not tasks:
        print(f"error: no logs (.mcap files, rosbag2 folders or PhysicalAI-AV roots) under {redact(args.logs)}",
              file=sys.stderr)
        return 2
    clear_stale_temp(args.out)
    mark_incomplete(args.out)
    with watch.stage("imports"):
        for module in imports:
            importlib.import_module(module)
    pipeline_options = beam_options(beam_args)
    # What is alive now (modules, the plan) lives to the end: out of the collector's reach, the
    # full collections that the run's many small objects trigger no longer walk it each time.
    gc.freeze()
    with watch.stage("pipeline"), progress_bar(title, windows, args.out, tables, enabled=not args.quiet):
        with beam.Pipeline(options=pipeline_options) as p:
            build(p, args, tasks, topic_map)
    with watch.stage("manifest"):
        counts, teachers = dataset_summary(args.out)
        manifest = build_manifest([redact(u) for u in log_uris], {**options, "beam": _redacted(beam_args)},
                                  _teacher_of(args, teachers), counts, watch.timings_s)
        mark_complete(args.out, manifest)
    print_summary(title, redact(args.out), counts, windows, watch.timings_s)
    if getattr(args, "report", False):
        import argparse

        from pipelines import report

        return report.run(argparse.Namespace(dataset=args.out, fail_on=args.fail_on, max_age_days=365), [])
    return 0


def _option_conflict(out_uri: str, options: dict) -> str | None:
    """Why `options` cannot write into an existing dataset at `out_uri` (None when they can)."""
    from transforms.manifest import read_manifest

    try:
        earlier = read_manifest(out_uri).get("options", {})
    except FileNotFoundError:
        return None
    differ = {k: (earlier.get(k), v) for k, v in options.items() if k in earlier and earlier[k] != v}
    if not differ:
        return None
    what = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in differ.items())
    return f"{out_uri} was written with other options ({what}); use a new --out or remove it first"


def _teacher_of(args, teachers: list[dict]) -> dict:
    """The teacher identity as written in the labels (`teachers`: the distinct ones; the driver
    never loads the teacher)."""
    if not hasattr(args, "teacher"):
        return {"name": "none", "version": "", "weights_sha256": ""}
    if len(teachers) == 1:
        return teachers[0]
    return {"name": args.teacher, "version": "", "weights_sha256": ""}


def print_summary(title: str, out_uri: str, counts: dict, planned: int, timings_s: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"coclabel {title}: {out_uri}")
    table.add_column("what")
    table.add_column("count", justify="right")
    for key in ("logs", "windows", "clips", "labels"):
        table.add_row(key, str(counts[key]))
    for stage, reasons in counts["quarantined"].items():
        for reason, n in reasons.items():
            table.add_row(f"quarantined: {stage}/{reason}", str(n))
    seconds = timings_s.get("pipeline", 0.0)
    table.add_row("pipeline time", f"{seconds:.1f} s")
    if seconds:
        table.add_row("windows per second", f"{counts['windows'] / seconds:.2f}")
    console = Console()
    console.print(table)
    if counts["windows"] != planned:
        console.print(f"[bold red]warning:[/] planned {planned} windows, the dataset holds {counts['windows']}")
