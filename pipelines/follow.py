"""`coclabel label --follow`: label logs continuously as they land under --logs.

The command keeps watching the --logs prefix (any fsspec URL). A log (an .mcap file, a rosbag2
folder or a PhysicalAI-AV root) has landed once it is found and its size is the same on two
polls in a row; each landed log is then labelled once, by the same batch label pipeline on the
chosen runner (local, FlinkRunner, DataflowRunner), into the same --out dataset layout.
`_SUCCESS` is removed while a log is being labelled and written again, with the manifest, after
it. Ctrl-C or SIGTERM stops cleanly: the log being labelled is finished first (a second
Ctrl-C interrupts it; a rerun rewrites the same files).

Why not a streaming job (fileio.MatchContinuously): on Beam 2.77 it fails on the local streaming
runner, emits nothing on the FnApiRunner, and missed files on Flink 1.19, while one batch job per
landed log runs unchanged on every runner (docs/ENGINES.md).

examples:
  coclabel label --follow --logs /data/incoming --out /data/labelled
  coclabel label --follow --logs gs://bucket/incoming --out gs://bucket/labelled --poll-s 30
  coclabel label --follow --follow-for 3600 --logs /data/incoming --out /data/labelled --runner FlinkRunner ...
"""

import argparse
import math


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--follow", action="store_true",
                        help="keep watching --logs and label each new log once as it lands (see --poll-s)")
    parser.add_argument("--poll-s", type=float, default=10.0,
                        help="with --follow: seconds between looks at --logs; a log has landed when its "
                             "size is unchanged for one poll (default 10)")
    parser.add_argument("--follow-for", type=float,
                        help="with --follow: stop after this many seconds (default: until Ctrl-C or SIGTERM)")


def _size(uri: str) -> int:
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    return fs.du(path, total=True)


class LandedLogs:
    """The logs under `prefix` that have landed (size unchanged since the previous poll) and
    are not done yet."""

    def __init__(self, prefix: str):
        self._prefix = prefix
        self._sizes: dict[str, int] = {}
        self._done: set[str] = set()

    def poll(self) -> list[str]:
        """Log URIs that landed since they were last seen, sorted; the first poll returns none."""
        from transforms.sources.discover import find_logs

        try:
            uris = sorted({ref.uri for ref in find_logs(self._prefix)} - self._done)
        except FileNotFoundError:
            return []
        landed = []
        for uri in uris:
            try:
                size = _size(uri)
            except FileNotFoundError:
                continue  # moved away while we looked
            if self._sizes.get(uri) == size:
                landed.append(uri)
            self._sizes[uri] = size
        return landed

    def done(self, uri: str) -> None:
        self._done.add(uri)
        self._sizes.pop(uri, None)


class StopSignal:
    """While in use (a context manager), SIGINT and SIGTERM set `requested`; a second SIGINT
    interrupts as usual. The previous handlers come back on exit."""

    def __init__(self):
        import threading

        self.requested = threading.Event()
        self._previous = {}

    def __enter__(self):
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        import signal

        self.requested.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    import sys

    if args.poll_s <= 0:
        print(f"error: --poll-s must be positive, got {args.poll_s}", file=sys.stderr)
        return 2
    with StopSignal() as stop:
        return follow(args, beam_args, stop.requested)


def follow(args: argparse.Namespace, beam_args: list[str], stop) -> int:
    """Label logs as they land until `stop` (a threading.Event) is set or --follow-for has
    passed; returns the exit status (a failed run's, at once)."""
    import time

    from pipelines.label import build
    from pipelines.run import execute
    from transforms.redact import redact

    deadline = time.monotonic() + (args.follow_for if args.follow_for is not None else math.inf)
    landed = LandedLogs(args.logs)
    labelled = 0
    print(f"follow: watching {redact(args.logs)} every {args.poll_s:g} s; Ctrl-C stops", flush=True)
    while not stop.is_set() and time.monotonic() < deadline:
        for uri in landed.poll():
            print(f"follow: labelling {redact(uri)}", flush=True)
            rc = execute(argparse.Namespace(**{**vars(args), "logs": uri}), beam_args, build,
                         tables=("labels", "quarantine"), title="label")
            if rc:
                return rc
            landed.done(uri)
            labelled += 1
            if stop.is_set() or time.monotonic() >= deadline:
                break
        stop.wait(max(0.0, min(args.poll_s, deadline - time.monotonic())))
    print(f"follow: stopped; {labelled} log(s) labelled", flush=True)
    return 0
