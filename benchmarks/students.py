"""Student benchmarks.

`latency`: a student at batch 1 on one device: torch eager, torch.compile, ONNX Runtime (every
execution provider this host has; on the CPU also the exported full policy, reasoning included),
TensorRT FP16 where `tensorrt` imports; plus the tiny
teacher's full sampling for reference. Weights are random: latency does not depend on them.
Prints one Markdown table and writes JSON (--json).

`dataset`: a labelled dataset (clips/ + labels/, the published layout) straight from simulated
drives (sim/dataset.py) and a teacher, for `coclabel distill` and `coclabel bench` where no
`coclabel label` output is at hand; writes a JSON summary beside it.

  python benchmarks/students.py latency --student small --device cuda --json out/students-latency.json
  python benchmarks/students.py dataset --teacher tiny:out/tiny --seeds 5000-5011 --out out/students/dataset
"""

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from models.export import (
    OnnxPolicy,
    OnnxRunner,
    TensorRTRunner,
    build_engine,
    example_inputs,
    export_onnx,
    export_policy_onnx,
    tensorrt_available,
)
from models.students import Student, parameter_count, student_config
from models.vla import TinyVLA, VLAConfig
from pipelines.bench import time_calls
from schemas.contract import FRAME_OFFSETS_US as FRAMES
from schemas.contract import TEACHER_CAMERAS as CAMERAS

VOCAB = 120  # about the tiny teacher's vocabulary


def stats(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    lat = sub.add_parser("latency", help="batch-1 latency of a student per runtime")
    lat.add_argument("--student", default="small", help="student configuration (default small)")
    lat.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    lat.add_argument("--samples", type=int, default=6, help="trajectories per clip (default 6)")
    lat.add_argument("--iters", type=int, default=100, help="timed calls per row (default 100)")
    lat.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    lat.add_argument("--json", default=None, help="write the rows here")
    ds = sub.add_parser("dataset", help="a labelled dataset from simulated drives and a teacher")
    ds.add_argument("--teacher", default="tiny", help="teacher spec (default tiny)")
    ds.add_argument("--seeds", required=True, help="drive seeds, e.g. 5000-5011")
    ds.add_argument("--minutes", type=float, default=1.0, help="minutes per drive (default 1)")
    ds.add_argument("--stride-s", type=float, default=0.5, help="seconds between clips (default 0.5)")
    ds.add_argument("--cache", default="out/sim-clips", help="clip cache folder (default out/sim-clips)")
    ds.add_argument("--samples", type=int, default=6, help="teacher samples per clip (default 6)")
    ds.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    ds.add_argument("--out", required=True, help="dataset root to write")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return latency(args) if args.action == "latency" else dataset(args)


def dataset(args) -> int:
    """Simulated clips -> teacher samples -> checks (transforms/validate.py) -> Parquet partitions."""
    import datetime
    import time

    from models.teacher import load_teacher
    from pipelines.progress import LineProgress
    from pipelines.teacher import parse_seeds
    from schemas.ids import seed_of
    from sim.dataset import build
    from transforms.parquet import write_partition_file
    from transforms.validate import label_row

    teacher = load_teacher(args.teacher)
    info = {"name": teacher.name, "version": teacher.version, "weights_sha256": teacher.weights_sha256}
    seeds = parse_seeds(args.seeds)
    started = time.perf_counter()
    data = build(seeds, args.minutes, args.stride_s, args.cache)
    counts = {"clips": len(data), "labels": 0, "quarantined": 0}
    by_log: dict[str, list[int]] = {}
    for i, log in enumerate(data.columns["log_id"]):
        by_log.setdefault(str(log), []).append(i)
    with LineProgress() as progress:
        task = progress.add_task("teacher", total=len(data))
        for log, rows in by_log.items():
            clips, labels = [], []
            for i in rows:
                c = data.clip(i)
                date = datetime.datetime.fromtimestamp(int(c["t0_us"]) / 1e6, datetime.UTC).strftime("%Y-%m-%d")
                clip = {"clip_id": str(c["clip_id"]), "vehicle_id": str(c["vehicle_id"]), "log_id": log, "t0_us": int(c["t0_us"]),
                        "date": date, "camera_names": list(CAMERAS), "frame_timestamps_us": [[int(c["t0_us"]) + o for o in FRAMES]] * 4,
                        "images": c["images"], "ego_history_xyz": c["ego_history_xyz"].tolist(),
                        "ego_history_rot": c["ego_history_rot"].tolist(), "ego_future_xyz": c["ego_future_xyz"].tolist(),
                        "ego_future_rot": c["ego_future_rot"].tolist(), "source_uri": f"sim://{log}"}
                clips.append(clip)
            for start in range(0, len(clips), 16):
                batch = clips[start : start + 16]
                results = teacher.predict(batch, args.samples, [seed_of(c["clip_id"]) for c in batch])
                for clip, samples in zip(batch, results):
                    row, _ = label_row(clip, samples, info)
                    if row is None:
                        counts["quarantined"] += 1
                    else:
                        labels.append(row)
                progress.advance(task, len(batch))
            first = clips[0]
            write_partition_file(args.out, "clips", clips, first["date"], first["vehicle_id"], log)
            if labels:
                write_partition_file(args.out, "labels", labels, first["date"], first["vehicle_id"], log)
            counts["labels"] += len(labels)
    summary = {"teacher": info, "seeds": seeds, "minutes": args.minutes, "stride_s": args.stride_s, **counts,
               "seconds": round(time.perf_counter() - started, 1)}
    Path(args.out, "_students_dataset.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    return 0


def latency(args) -> int:
    dev = args.device
    torch.manual_seed(0)
    student = Student(student_config(args.student), VOCAB).eval()
    cpu_inputs = example_inputs(student, 1, args.samples)
    inputs = tuple(x.to(dev) for x in cpu_inputs)
    rows = []

    def add(name, fn, note=""):
        rows.append({"model": f"student-{args.student}", "runtime": name, **stats(time_calls(fn, args.iters, dev, warmup=10)),
                     "note": note})
        print(rows[-1], file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(student, Path(tmp) / "student.onnx", args.samples)
        student.to(dev)
        with torch.no_grad():
            add("torch eager, trajectory path", lambda: student.trajectory_path(*inputs))
            add("torch eager, reasoning + trajectory",
                lambda: student.actions(student.reason(*inputs[:3], 1, 2)[1], inputs[3], inputs[4]),
                "greedy text of up to 40 words, untrained weights (no early <eos>)")
            compiled = torch.compile(student.trajectory_path)
            add("torch.compile, trajectory path", lambda: compiled(*inputs))
            if dev.startswith("cuda"):
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    add("torch eager bf16 autocast, trajectory path", lambda: student.trajectory_path(*inputs))
        import onnxruntime as ort

        numpy_inputs = [x.numpy() for x in cpu_inputs]
        for provider in ort.get_available_providers():
            if provider in ("CUDAExecutionProvider", "CPUExecutionProvider"):
                runner = OnnxRunner(onnx_path, [provider], threads=args.threads)
                add(f"ONNX Runtime {provider}, trajectory path", lambda: runner(*numpy_inputs),
                    "host inputs, copies included" if provider != "CPUExecutionProvider" else f"{args.threads} threads")
        prefix, step = export_policy_onnx(student.cpu(), Path(tmp) / "policy", 1, args.samples)
        full = OnnxPolicy(prefix, step, 2, student.cfg.max_text_len, threads=args.threads)
        add("ONNX Runtime CPUExecutionProvider, reasoning + trajectory", lambda: full(*numpy_inputs),
            f"{args.threads} threads; greedy text of up to 40 words, untrained weights (no early <eos>)")
        ok, reason = tensorrt_available()
        if ok:
            engine = TensorRTRunner(build_engine(onnx_path, Path(tmp) / "student.plan", "fp16"))
            add("TensorRT FP16, trajectory path", lambda: engine(*numpy_inputs), "host inputs, copies included")
        else:
            rows.append({"model": f"student-{args.student}", "runtime": "TensorRT FP16", "note": f"not run: {reason}"})
    teacher = TinyVLA(VLAConfig(vocab_size=VOCAB)).to(dev).eval()
    t_in = example_inputs(teacher, 1, args.samples)
    t_in = tuple(x.to(dev) for x in t_in[:4])
    gens = [torch.Generator().manual_seed(0)]
    add_teacher = lambda: teacher.sample(*t_in, args.samples, gens)  # noqa: E731
    rows.append({"model": "teacher-tiny", "runtime": "torch eager, reasoning + 10-step flow",
                 **stats(time_calls(add_teacher, max(10, args.iters // 5), dev, warmup=3)), "note": f"K={args.samples}"})
    device_name = torch.cuda.get_device_name() if dev.startswith("cuda") else platform.processor() or "cpu"
    params = {"student": parameter_count(student), "teacher": parameter_count(teacher)}
    print(f"device: {device_name}; torch {torch.__version__}; parameters {params}; batch 1, K={args.samples}\n")
    print("| model | runtime | p50 (ms) | p99 (ms) | note |\n|---|---|---|---|---|")
    for r in rows:
        p50 = f"{r['p50_ms']:.2f}" if "p50_ms" in r else ""
        p99 = f"{r['p99_ms']:.2f}" if "p99_ms" in r else ""
        print(f"| {r['model']} | {r['runtime']} | {p50} | {p99} | {r['note']} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"device": device_name, "torch": torch.__version__, "parameters": params,
                                               "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
