"""End-to-end labelling throughput against the bare teacher, a naive per-clip loop, and the cost
curve over fleet sizes.

  python -m benchmarks.pipeline                       # 2 vehicles x 1 min, scales 1 and 2
  python -m benchmarks.pipeline --minutes 2 --scales 1,2,4 --json out/bench/pipeline.json

For each scale (fleet = scale x the base fleet, more vehicles) it measures, on the same clips:
- pipeline: `coclabel label` (local runner) wall time of the pipeline stage, clips/s and peak RSS;
- teacher: the bundled teacher called in a loop on pre-built batches (batch 16), clips/s;
- ratio = pipeline / teacher (what the pipeline costs on top of the teacher);
and once, at scale 1, a naive loop: per clip, open the log, read its 8 s, assemble, predict with
batch 1 (what simple labelling scripts do). Prints one table and writes JSON.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path(os.environ.get("COCLABEL_BENCH_CACHE", "/tmp/coclabel-bench-pipeline"))


def fleet(vehicles: int, minutes: float, seed: int) -> Path:
    out = CACHE / f"fleet-v{vehicles}-m{minutes:g}-s{seed}"
    if not (out / ".done").exists():
        run_cli(["synth", "--out", str(out), "--format", "mcap", "--vehicles", str(vehicles),
                 "--minutes", str(minutes), "--seed", str(seed)])
        (out / ".done").touch()
    return out


def run_cli(argv: list[str]) -> float:
    """Run `coclabel argv` in a child process; returns its wall time. Raises on failure."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipelines.cli", *argv], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def label(logs: Path, teacher: str, extra: list[str]) -> dict:
    """Label `logs` into a fresh dataset; pipeline seconds (from the manifest) and peak RSS."""
    import shutil

    out = CACHE / f"dataset-{logs.name}"
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    wall = run_cli(["label", "--logs", str(logs), "--out", str(out), "--quiet", "--teacher", teacher, *extra])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    manifest = json.loads((out / "_manifest.json").read_text())
    return {"dataset": out, "wall_s": wall, "pipeline_s": manifest["timings_s"]["pipeline"],
            "windows": manifest["counts"]["windows"], "clips": manifest["counts"]["clips"],
            "peak_rss_mib": max(peak, before) / 1024}


def bare_teacher(dataset: Path, teacher_spec: str, batch: int, samples: int) -> float:
    """Clips/s of the teacher alone on the dataset's clips, in pre-built batches."""
    from models.teacher import load_teacher
    from schemas.ids import seed_of
    from transforms.parquet import read_table

    clips = read_table(str(dataset), "clips").to_pylist()
    teacher = load_teacher(teacher_spec)
    teacher.predict(clips[:batch], samples, [seed_of(c["clip_id"]) for c in clips[:batch]])  # warm-up
    started = time.perf_counter()
    for i in range(0, len(clips), batch):
        chunk = clips[i:i + batch]
        teacher.predict(chunk, samples, [seed_of(c["clip_id"]) for c in chunk])
    return len(clips) / (time.perf_counter() - started)


def naive(logs: Path, teacher_spec: str, samples: int, limit: int) -> float:
    """Clips/s of a per-clip script: open the log, read the clip's time range, assemble, predict
    with batch 1 — for the first `limit` windows."""
    from models.teacher import load_teacher
    from schemas.contract import FUTURE_OFFSETS_US, MIN_HISTORY_US
    from schemas.ids import seed_of
    from transforms.clips import ClipAssembler, t0_grid
    from transforms.sources.discover import find_logs, open_log

    teacher = load_teacher(teacher_spec)
    done = 0
    started = time.perf_counter()
    for ref in find_logs(str(logs)):
        info = open_log(ref).info()
        for t0 in t0_grid(info):
            if done == limit:
                break
            source = open_log(ref)
            assembler = ClipAssembler(info, t0_range=(t0, t0 + 1))
            lo, hi = t0 - MIN_HISTORY_US - 100_000, t0 + FUTURE_OFFSETS_US[-1] + 1_100_000
            outputs = assembler.push_all(source.messages(lo, hi)) + assembler.finish()
            for table, row in outputs:
                if table == "clips":
                    teacher.predict([row], samples, [seed_of(row["clip_id"])])
            done += 1
    return done / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vehicles", type=int, default=2, help="vehicles in the base fleet (default 2)")
    parser.add_argument("--minutes", type=float, default=1.0, help="minutes per vehicle (default 1)")
    parser.add_argument("--scales", default="1,2", help="fleet sizes as multiples of the base (default 1,2)")
    parser.add_argument("--teacher", default="tiny", help="teacher spec (default tiny)")
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--naive-clips", type=int, default=24, help="windows timed in the naive loop")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("beam", nargs="*", help="extra options for `coclabel label` (after --)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rows = []
    for scale in (int(s) for s in args.scales.split(",")):
        logs = fleet(args.vehicles * scale, args.minutes, seed=0)
        result = label(logs, args.teacher, args.beam)
        pipeline = result["clips"] / result["pipeline_s"]
        teacher = bare_teacher(result["dataset"], args.teacher, args.batch, args.samples)
        rows.append({"scale": scale, "vehicles": args.vehicles * scale, "minutes": args.minutes,
                     "windows": result["windows"], "clips": result["clips"], "pipeline_s": round(result["pipeline_s"], 2),
                     "pipeline_clips_per_s": round(pipeline, 3), "teacher_clips_per_s": round(teacher, 3),
                     "ratio": round(pipeline / teacher, 3), "peak_rss_mib": round(result["peak_rss_mib"], 1)})
        print(json.dumps(rows[-1]), flush=True)
    base = fleet(args.vehicles, args.minutes, seed=0)
    naive_rate = naive(base, args.teacher, args.samples, args.naive_clips)
    summary = {"rows": rows, "naive_clips_per_s": round(naive_rate, 3),
               "speedup_over_naive": round(rows[0]["pipeline_clips_per_s"] / naive_rate, 2),
               "cpus": os.cpu_count(), "samples": args.samples, "batch": args.batch}
    print(f"\n{'scale':>5} {'windows':>8} {'pipeline s':>10} {'pipeline clips/s':>16} {'teacher clips/s':>15} "
          f"{'ratio':>6} {'peak RSS MiB':>12}")
    for r in rows:
        print(f"{r['scale']:>5} {r['windows']:>8} {r['pipeline_s']:>10} {r['pipeline_clips_per_s']:>16} "
              f"{r['teacher_clips_per_s']:>15} {r['ratio']:>6} {r['peak_rss_mib']:>12}")
    print(f"naive per-clip loop: {naive_rate:.3f} clips/s; pipeline speed-up {summary['speedup_over_naive']}x")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
