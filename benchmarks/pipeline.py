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
  after one warm-up batch), clips/s, in a fresh child process of its own (as the pipeline runs in
  one) that holds one batch at a time: each batch's rows are read from the dataset's Parquet files
  and turned into clip dicts just before its timed call, outside the timed region (the JPEG decode
  stays inside it, as in the pipeline, where it is paid once in the clip assembly). Not all clips
  as Python objects at once in this process: that held ~600 MiB more at 8 vehicles, and the
  teacher's per-clip cost then depended on the fleet size and on what ran before in the process —
  through page faults, not the teacher's own work: glibc hands the teacher's large temporaries
  back to the kernel and faults them in again each batch, how often depending on the heap's
  layout (5,600-7,400 minor faults a clip with every clip held, 1,800-4,900 one batch at a time;
  ~16 a clip with malloc's trim and mmap thresholds fixed; the user CPU time is the same). Both
  sides now fix them (models/heap.py: the pipeline's TeacherModelHandler.load_model, and the bare
  teacher's child before it loads the teacher); the naive loop, a simple script, does not;
- ratio = pipeline / teacher (what the pipeline costs on top of the teacher), and the 1-minute
  load average before each side.
It prints the median ratio per scale, peak memory against the smallest fleet, seconds per clip
against the smallest fleet (linear time: 1.0), the marginal ratio (the clips a scale adds over the
previous one per pipeline second it adds, against the bare teacher: the ratio without the run's
fixed start-up and wind-down, which small fleets cannot amortise), and once, at scale 1, a naive loop: per clip,
open the log, read its 8 s, assemble, predict with batch 1 (what simple labelling scripts do).
Writes JSON with every repeat.
"""

import argparse
import json
import os
import statistics
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


def clip_batches(dataset: Path, batch: int):
    """The dataset's clip rows as lists of `batch` dicts (the last one shorter), read from its
    Parquet files batch by batch: only the batch at hand (and the reader's read-ahead) is held."""
    import pyarrow.dataset as ds

    from schemas.tables import TABLES
    from transforms.parquet import HIVE_PARTITIONING

    rows = ds.dataset(str(dataset / "clips"), schema=TABLES["clips"], format="parquet",
                      partitioning=HIVE_PARTITIONING)
    pending: list[dict] = []
    for record_batch in rows.to_batches(batch_size=batch):
        pending += record_batch.to_pylist()
        while len(pending) >= batch:
            yield pending[:batch]
            pending = pending[batch:]
    if pending:
        yield pending


def bare_teacher(dataset: Path, teacher_spec: str, batch: int, samples: int) -> float:
    """Clips/s of the teacher alone on the dataset's clips, in batches built (read, turned into
    dicts) just before each timed call; only the calls are timed."""
    from models.teacher import load_teacher
    from schemas.ids import seed_of

    teacher = load_teacher(teacher_spec)
    first = next(clip_batches(dataset, batch))
    teacher.predict(first, samples, [seed_of(c["clip_id"]) for c in first])  # warm-up
    del first
    clips, elapsed = 0, 0.0
    for chunk in clip_batches(dataset, batch):
        seeds = [seed_of(c["clip_id"]) for c in chunk]
        started = time.perf_counter()
        teacher.predict(chunk, samples, seeds)
        elapsed += time.perf_counter() - started
        clips += len(chunk)
    return clips / elapsed


# The bare teacher in a child of its own, as the pipeline: not in this process, whose heap holds
# what earlier scales and repeats left (argv: dataset, teacher spec, batch, samples, threads or 0).
# It prints clips/s, its minor page faults a clip (the whole child) and its peak RSS (VmHWM).
BARE_CHILD = """import json, resource, sys
from pathlib import Path
from benchmarks.clips import status_mib
from benchmarks.pipeline import bare_teacher
from models.heap import keep_freed_memory
keep_freed_memory()  # as the pipeline's TeacherModelHandler.load_model does
if int(sys.argv[5]):
    import torch
    torch.set_num_threads(int(sys.argv[5]))
rate = bare_teacher(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
print(json.dumps([rate, resource.getrusage(resource.RUSAGE_SELF).ru_minflt, status_mib("VmHWM")]))
"""


def bare_teacher_child(dataset: Path, teacher_spec: str, batch: int, samples: int,
                       threads: int | None) -> tuple[float, int, float]:
    """`bare_teacher` in a fresh child process (torch with `threads` intra-op threads, or its
    default): (clips/s, the child's minor page faults, its peak RSS in MiB)."""
    done = subprocess.run([sys.executable, "-c", BARE_CHILD, str(dataset), teacher_spec, str(batch), str(samples),
                           str(threads or 0)], check=True, capture_output=True, text=True)
    rate, faults, peak = json.loads(done.stdout.splitlines()[-1])
    return rate, faults, peak


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
    teacher, faults, teacher_peak = bare_teacher_child(result["dataset"], args.teacher, args.batch, args.samples,
                                                     args.threads)
    pipeline = result["clips"] / result["pipeline_s"]
    return {"scale": scale, "vehicles": args.vehicles * scale, "minutes": args.minutes,
            "windows": result["windows"], "clips": result["clips"], "pipeline_s": round(result["pipeline_s"], 2),
            "wall_s": round(result["wall_s"], 2), "pipeline_clips_per_s": round(pipeline, 3),
            "teacher_clips_per_s": round(teacher, 3), "ratio": round(pipeline / teacher, 3),
            "peak_rss_mib": round(result["peak_rss_mib"], 1), "teacher_peak_rss_mib": round(teacher_peak, 1),
            "teacher_minflt_per_clip": round(faults / result["clips"]), "load_pipeline": load_pipeline,
            "load_teacher": load_teacher}


def summarise(runs: list[dict], scales: list[int]) -> list[dict]:
    """One row per scale: medians over its repeats, peaks, ratios against the first scale, and
    from the second scale on the marginal ratio: the clips added over the previous scale per
    pipeline second they added, against the bare teacher (the mean of its two runs), i.e. the
    pipeline's cost per clip with its start-up (runner, load, first batch, shuffle) taken out;
    computed within each repeat (its runs follow one another) and the median taken."""
    rows = []
    for scale in scales:
        mine = [r for r in runs if r["scale"] == scale]
        rows.append({**mine[0], **{k: round(statistics.median(r[k] for r in mine), 3) for k in
                                   ("pipeline_s", "pipeline_clips_per_s", "teacher_clips_per_s", "ratio")},
                     "peak_rss_mib": max(r["peak_rss_mib"] for r in mine), "ratios": [r["ratio"] for r in mine],
                     "teacher_peak_rss_mib": max(r["teacher_peak_rss_mib"] for r in mine)})
    first = rows[0]
    for r in rows:
        r["memory_vs_first"] = round(r["peak_rss_mib"] / first["peak_rss_mib"], 3)
        r["s_per_clip_vs_first"] = round((r["pipeline_s"] / r["clips"]) / (first["pipeline_s"] / first["clips"]), 3)
    for previous, r in zip(rows, rows[1:]):
        ratios = []
        for repeat in sorted({run["repeat"] for run in runs}):
            a, b = ({run["scale"]: run for run in runs if run["repeat"] == repeat}[s]
                    for s in (previous["scale"], r["scale"]))
            rate = (b["clips"] - a["clips"]) / (b["pipeline_s"] - a["pipeline_s"])
            ratios.append(rate / ((a["teacher_clips_per_s"] + b["teacher_clips_per_s"]) / 2))
        r["marginal_ratios"] = [round(x, 3) for x in ratios]
        r["marginal_ratio"] = round(statistics.median(ratios), 3)
    return rows


def main(argv: list[str] | None = None) -> int:

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
    for repeat in range(args.repeats):
        for scale in scales:
            runs.append({**measure(scale, args), "repeat": repeat})
            print(json.dumps(runs[-1]), flush=True)
    rows = summarise(runs, scales)
    base = fleet(args.vehicles, args.minutes, seed=0)
    naive_rate = naive(base, args.teacher, args.samples, args.naive_clips)
    first = rows[0]
    summary = {"rows": rows, "runs": runs, "naive_clips_per_s": round(naive_rate, 3),
               "speedup_over_naive": round(first["pipeline_clips_per_s"] / naive_rate, 2),
               "cpus": os.cpu_count(), "threads": args.threads, "samples": args.samples, "batch": args.batch}
    print(f"\n{'scale':>5} {'windows':>8} {'pipeline s':>10} {'pipeline clips/s':>16} {'teacher clips/s':>15} "
          f"{'ratio':>6} {'ratios':>18} {'peak RSS MiB':>12} {'RSS vs 1st':>10} {'s/clip vs 1st':>13} "
          f"{'bare peak MiB':>13} {'marginal ratio':>14}")
    for r in rows:
        ratios = ",".join(f"{x:.2f}" for x in r["ratios"])
        print(f"{r['scale']:>5} {r['windows']:>8} {r['pipeline_s']:>10} {r['pipeline_clips_per_s']:>16} "
              f"{r['teacher_clips_per_s']:>15} {r['ratio']:>6} {ratios:>18} {r['peak_rss_mib']:>12} "
              f"{r['memory_vs_first']:>10} {r['s_per_clip_vs_first']:>13} {r['teacher_peak_rss_mib']:>13} "
              f"{r.get('marginal_ratio', ''):>14}")
    print(f"naive per-clip loop: {naive_rate:.3f} clips/s; pipeline speed-up {summary['speedup_over_naive']}x; "
          f"load average (1 min) during the runs: {min(r['load_pipeline'] for r in runs)}-"
          f"{max(max(r['load_pipeline'], r['load_teacher']) for r in runs)}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
