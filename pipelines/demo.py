"""The main job on the embedded defaults, on a laptop: write a synthetic fleet in both log
formats (MCAP/ROS 2 and PhysicalAI-AV), label it with the bundled tiny teacher, write the
quality report, run the example queries, then distil a nano student from the labels (a quick,
time-boxed CPU run) and benchmark it, beside the committed nano (models/weights/students/nano,
distilled on a GPU from simulated drives, models/weights/students/nano/CARD.md) where present,
against the teacher. Prints where everything is.

examples:
  coclabel demo                       # into out/demo
  coclabel demo --out /tmp/demo --vehicles 2 --minutes 2
"""

import argparse
import time


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    parser.add_argument("--vehicles", type=int, default=2, help="vehicles per log format (default 2)")
    parser.add_argument("--minutes", type=float, default=2.0, help="minutes driven per vehicle (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="fleet seed (default 0)")
    parser.add_argument("--distill-minutes", type=float, default=1.0,
                        help="wall-clock budget of the quick student's training on this machine (default 1)")


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from rich.console import Console

    from pipelines.cli import main

    from pathlib import Path

    console = Console()
    out = args.out.rstrip("/")
    logs, dataset, student = f"{out}/logs", f"{out}/dataset", f"{out}/student-nano"
    committed = Path(__file__).resolve().parents[1] / "models" / "weights" / "students" / "nano"
    students = f"{committed},{student}" if (committed / "student.safetensors").exists() else student
    fleet = ["--vehicles", str(args.vehicles), "--minutes", str(args.minutes)]
    steps = [
        ("synth MCAP fleet", ["synth", "--out", f"{logs}/mcap", "--format", "mcap", "--seed", str(args.seed), *fleet]),
        ("synth PhysicalAI-AV fleet", ["synth", "--out", f"{logs}/pai", "--format", "pai",
                                       "--seed", str(args.seed + 1), *fleet]),
        ("label with the tiny teacher", ["label", "--logs", logs, "--out", dataset, *beam_args]),
        ("quality report", ["report", dataset]),
        ("example queries", ["query", dataset, "--examples", "--limit", "5"]),
        ("distil a nano student", ["distill", "--labels", dataset, "--student", "nano", "--out", student,
                                   "--minutes", str(args.distill_minutes), "--reuse-shards"]),
        ("benchmark students vs teacher", ["bench", "--student", students, "--labels", dataset, "--out", f"{student}/bench",
                                           "--backends", "torch,onnx", "--max-clips", "60", "--iters", "10",
                                           "--episodes", "4", "--replan-s", "1.0"]),
    ]
    timings = []
    for title, argv in steps:
        console.rule(f"[bold]{title}[/]: coclabel {' '.join(argv)}")
        started = time.perf_counter()
        code = main(argv)
        timings.append((title, time.perf_counter() - started))
        if code:
            console.print(f"[bold red]{title} failed (exit {code})")
            return code
    console.rule("[bold]done")
    for title, seconds in timings:
        console.print(f"{title:32s} {seconds:7.1f} s")
    console.print(f"{'total':32s} {sum(s for _, s in timings):7.1f} s")
    console.print(f"\nlogs:     {logs}/mcap (MCAP/ROS 2), {logs}/pai (PhysicalAI-AV)\n"
                  f"dataset:  {dataset} (clips/, labels/, quarantine/, _manifest.json)\n"
                  f"report:   {dataset}/_quality/index.html\n"
                  f"student:  {student} (benchmark: {student}/bench/bench.md)\n"
                  f"query:    coclabel query {dataset} \"SELECT * FROM samples LIMIT 5\"")
    return 0
