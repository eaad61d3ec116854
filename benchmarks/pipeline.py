"""End-to-end labelling throughput against the bare teacher, a naive per-clip loop, and the cost
curve over fleet sizes.

  python -m benchmarks.pipeline                       # 2 vehicles x 1 min, scales 1 and 2
  python -m benchmarks.pipeline --vehicles 2 --minutes 1 --scales 1,2,4 --repeats 2 --json out/bench/pipeline.json

For each scale (fleet = scale x the base fleet, more vehicles) and repeat it measures, on the same
clips and one right after the other (so both sides run under about the same machine load):
- pipeline: `coclabel label` (local runner) in a child process: the pipeline stage's wall time
  (from the manifest: runner start-up, teacher load, reading, teacher, checks, writes; not the
  module imports, timed apart as `imports`, as the bare teacher's torch import is not), clips/s,
  the command's whole wall time, and the child's own peak RSS (its VmHWM, so each scale's peak is
  its own, not the largest so far);
- teacher: the same teacher called in a loop on the same clips in pre-built batches (batch 16,
  after one warm-up batch), clips/s;
- ratio = pipeline / teacher (what the pipeline costs on top of the teacher), and the 1-minute
  load average before each side.
It prints the median ratio per scale, peak memory against the smallest fleet, seconds per clip
against the smallest fleet (linear time: 1.0), and once, at scale 1, a naive loop: per clip,
open the log, read its 8 s, assemble, predict with batch 1 (what simple labelling scripts do).
Writes JSON with every repeat.
"""

import argparse
import json
import os
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


# The child reports its own peak (VmHWM of its address space). Not ru_maxrss from wait4: Linux
# keeps that across execve, so a child forked from this (large) process reports our peak.
CHILD = """import sys
from benchmarks.clips import status_mib
from pipelines.cli import main
try:
    code = main(sys.argv[2:])
finally:
    open(sys.argv[1], "w").write(str(status_mib("VmHWM")))
sys.exit(code)
"""


def run_cli(argv: list[str], threads: int | None = None) -> tuple[float, float]:
    """Run `coclabel argv` in a child process (torch with `threads` intra-op threads; default:
    torch's own choice); (wall seconds, the child's peak RSS in MiB). Raises on failure."""
    import tempfile

    env = dict(os.environ, OMP_NUM_THREADS=str(threads)) if threads else None
    with tempfile.NamedTemporaryFile("r", suffix=".peak") as peak:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", CHILD, peak.name, *argv], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - started, float(peak.read())


def label(logs: Path, teacher: str, extra: list[str], threads: int | None) -> dict:
    """Label `logs` into a fresh dataset; pipeline seconds (from the manifest) and peak RSS."""
    import shutil

    out = CACHE / f"dataset-{logs.name}"
    shutil.rmtree(out, ignore_errors=True)
    wall, peak = run_cli(["label", "--logs", str(logs), "--out", str(out), "--quiet", "--teacher", teacher, *extra],
                         threads)
    manifest = json.loads((out / "_manifest.json").read_text())
    return {"dataset": out, "wall_s": wall, "pipeline_s": manifest["timings_s"]["pipeline"],
            "windows": manifest["counts"]["windows"], "clips": manifest["counts"]["clips"], "peak_rss_mib": peak}


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


def load() -> float:
    return round(os.getloadavg()[0], 2)


def measure(scale: int, args) -> dict:
    """One repeat at one scale: the pipeline, then the bare teacher on its clips."""
    logs = fleet(args.vehicles * scale, args.minutes, seed=0)
    load_pipeline = load()
    result = label(logs, args.teacher, args.beam, args.threads)
    load_teacher = load()
    teacher = bare_teacher(result["dataset"], args.teacher, args.batch, args.samples)
    pipeline = result["clips"] / result["pipeline_s"]
    return {"scale": scale, "vehicles": args.vehicles * scale, "minutes": args.minutes,
            "windows": result["windows"], "clips": result["clips"], "pipeline_s": round(result["pipeline_s"], 2),
            "wall_s": round(result["wall_s"], 2), "pipeline_clips_per_s": round(pipeline, 3),
            "teacher_clips_per_s": round(teacher, 3), "ratio": round(pipeline / teacher, 3),
            "peak_rss_mib": round(result["peak_rss_mib"], 1), "load_pipeline": load_pipeline,
            "load_teacher": load_teacher}


def main(argv: list[str] | None = None) -> int:
    import statistics

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vehicles", type=int, default=2, help="vehicles in the base fleet (default 2)")
    parser.add_argument("--minutes", type=float, default=1.0, help="minutes per vehicle (default 1)")
    parser.add_argument("--scales", default="1,2", help="fleet sizes as multiples of the base (default 1,2)")
    parser.add_argument("--repeats", type=int, default=1, help="measurements per scale, interleaved (default 1)")
    parser.add_argument("--teacher", default="tiny", help="teacher spec (default tiny)")
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--naive-clips", type=int, default=24, help="windows timed in the naive loop")
    parser.add_argument("--threads", type=int,
                        help="torch intra-op threads on both sides (the pipeline's OMP_NUM_THREADS and the bare "
                             "teacher's); default: torch's own choice on both sides (its physical cores)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("beam", nargs="*", help="extra options for `coclabel label` (after --)")
    args = parser.parse_args(argv)
    if args.threads:  # else torch's default, as in the pipeline's child (not os.cpu_count(): SMT siblings)
        import torch

        torch.set_num_threads(args.threads)
    scales = [int(s) for s in args.scales.split(",")]
    runs = []
    for _ in range(args.repeats):
        for scale in scales:
            runs.append(measure(scale, args))
            print(json.dumps(runs[-1]), flush=True)
    rows = []
    for scale in scales:
        mine = [r for r in runs if r["scale"] == scale]
        rows.append({**mine[0], **{k: round(statistics.median(r[k] for r in mine), 3) for k in
                                   ("pipeline_s", "pipeline_clips_per_s", "teacher_clips_per_s", "ratio")},
                     "peak_rss_mib": max(r["peak_rss_mib"] for r in mine), "ratios": [r["ratio"] for r in mine]})
    base = fleet(args.vehicles, args.minutes, seed=0)
    naive_rate = naive(base, args.teacher, args.samples, args.naive_clips)
    first = rows[0]
    for r in rows:
        r["memory_vs_first"] = round(r["peak_rss_mib"] / first["peak_rss_mib"], 3)
        r["s_per_clip_vs_first"] = round((r["pipeline_s"] / r["clips"]) / (first["pipeline_s"] / first["clips"]), 3)
    summary = {"rows": rows, "runs": runs, "naive_clips_per_s": round(naive_rate, 3),
               "speedup_over_naive": round(first["pipeline_clips_per_s"] / naive_rate, 2),
               "cpus": os.cpu_count(), "threads": args.threads, "samples": args.samples, "batch": args.batch}
    print(f"\n{'scale':>5} {'windows':>8} {'pipeline s':>10} {'pipeline clips/s':>16} {'teacher clips/s':>15} "
          f"{'ratio':>6} {'ratios':>18} {'peak RSS MiB':>12} {'RSS vs 1st':>10} {'s/clip vs 1st':>13}")
    for r in rows:
        ratios = ",".join(f"{x:.2f}" for x in r["ratios"])
        print(f"{r['scale']:>5} {r['windows']:>8} {r['pipeline_s']:>10} {r['pipeline_clips_per_s']:>16} "
              f"{r['teacher_clips_per_s']:>15} {r['ratio']:>6} {ratios:>18} {r['peak_rss_mib']:>12} "
              f"{r['memory_vs_first']:>10} {r['s_per_clip_vs_first']:>13}")
    print(f"naive per-clip loop: {naive_rate:.3f} clips/s; pipeline speed-up {summary['speedup_over_naive']}x; "
          f"load average (1 min) during the runs: {min(r['load_pipeline'] for r in runs)}-"
          f"{max(max(r['load_pipeline'], r['load_teacher']) for r in runs)}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
