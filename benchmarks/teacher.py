"""Tiny-teacher throughput on CPU: clips/s of `TinyTeacher.predict` at batch 16 with K=6.

Clips are simulated and rendered like the training clips (sim/dataset.py, cached under
out/sim-clips); the time covers everything `predict` does (JPEG decoding, the model, the
unicycle integration). Prints one table and writes JSON.

    .venv/bin/python -m benchmarks.teacher --threads 2 --out out/bench/teacher.json
"""

import argparse
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--batch", type=int, default=16, help="clips per predict call (default 16)")
    parser.add_argument("--samples", type=int, default=6, help="samples per clip, K (default 6)")
    parser.add_argument("--repeats", type=int, default=5, help="timed predict calls (default 5)")
    parser.add_argument("--seed", type=int, default=2000, help="drive seed of the clips (default 2000)")
    parser.add_argument("--cache", default="out/sim-clips", help="clip cache folder (default out/sim-clips)")
    parser.add_argument("--out", default="out/bench/teacher.json", help="JSON output (default out/bench/teacher.json)")
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from rich.console import Console
    from rich.table import Table

    from models.heap import keep_freed_memory
    from models.teacher import load_teacher
    from schemas.ids import seed_of
    from sim.dataset import build

    torch.set_num_threads(args.threads)
    data = build([args.seed], 0.5, 0.5, args.cache)
    clips = [data.clip(i % len(data)) for i in range(args.batch)]
    seeds = [seed_of(str(c["clip_id"])) for c in clips]
    keep_freed_memory()  # as the label pipeline's TeacherModelHandler.load_model does
    teacher = load_teacher("tiny")
    teacher.predict(clips, args.samples, seeds)  # warm-up
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        teacher.predict(clips, args.samples, seeds)
        times.append(time.perf_counter() - started)
    median = float(np.median(times))
    result = {
        "teacher": {"name": teacher.name, "version": teacher.version, "weights_sha256": teacher.weights_sha256},
        "threads": args.threads, "batch": args.batch, "samples": args.samples, "repeats": args.repeats,
        "seconds_per_batch": times, "median_clips_per_s": args.batch / median,
        "best_clips_per_s": args.batch / min(times),
        "weights_mb": teacher.weights_path.stat().st_size / 1e6,
        "parameters": sum(p.numel() for p in teacher.model.parameters()),
    }
    table = Table(title="tiny teacher, CPU predict")
    for column in ("threads", "batch", "K", "median s/batch", "median clips/s", "best clips/s", "parameters"):
        table.add_column(column)
    table.add_row(str(args.threads), str(args.batch), str(args.samples), f"{median:.3f}",
                  f"{result['median_clips_per_s']:.1f}", f"{result['best_clips_per_s']:.1f}", f"{result['parameters']:,}")
    Console().print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
