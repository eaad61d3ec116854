"""Write a synthetic fleet: N vehicles driving M minutes each, as MCAP/ROS 2 logs or in the
PhysicalAI-AV layout, with a scene-truth sidecar per drive (never read by the label pipeline).

examples:
  coclabel synth --out /tmp/fleet-mcap --format mcap --vehicles 2 --minutes 1 --seed 0
  coclabel synth --out /tmp/fleet-pai --format pai --vehicles 2 --minutes 1 --night
"""

import argparse

DEFAULT_START = "2026-01-01T08:00:00Z"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder or fsspec URL (created)")
    parser.add_argument("--format", choices=("mcap", "pai"), default="mcap",
                        help="mcap: one ROS 2 MCAP file per vehicle drive; pai: NVIDIA PhysicalAI-AV layout (20 s clips)")
    parser.add_argument("--vehicles", type=int, default=2, help="number of vehicles (default 2)")
    parser.add_argument("--minutes", type=float, default=1.0, help="minutes driven per vehicle (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="fleet seed; the same seed writes byte-identical files")
    parser.add_argument("--night", choices=("mixed", "day", "night"), default="mixed",
                        help="lighting of the drives: mixed (alternating by vehicle), day or night")
    parser.add_argument("--cameras", default="teacher",
                        help="'teacher' (the 4 cameras the teacher reads), 'all' (7 Hyperion-8 cameras) or a comma list")
    parser.add_argument("--camera-hz", type=float, default=10.0, help="camera frame rate (default 10)")
    parser.add_argument("--resolution", default="320x576", help="camera image HEIGHTxWIDTH (default 320x576)")
    parser.add_argument("--start", default=DEFAULT_START, help=f"UTC start of the drives (default {DEFAULT_START})")
    parser.add_argument("--workers", type=int, default=0, help="processes rendering in parallel (default: CPU count)")


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from pipelines.progress import LineProgress
    from sim.synth import FleetSpec, synthesize

    spec = FleetSpec.from_args(args)
    progress = LineProgress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn())
    summary = synthesize(spec, progress)
    print(summary.describe())
    return 0
