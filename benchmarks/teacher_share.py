"""The teacher's share of a `coclabel label` run, and whether other work could run beside it.

  python -m benchmarks.teacher_share                  # 2 vehicles x 1 min (benchmarks.pipeline's fleet)
  python -m benchmarks.teacher_share --vehicles 8 --json out/bench/teacher-share.json

Runs the label command in this process with the teacher's `predict` timed (wall and CPU
seconds, clips) and prints it against
the pipeline stage's time from the manifest: what the teacher costs inside the pipeline (its
images decoded beforehand by the clip assembly) and how many cores it keeps busy. Then times
`predict` on 16 clips alone and beside a busy Python process: whether a core is left for work
beside the teacher.
"""

import argparse
import json
import multiprocessing as mp
import shutil
import time

from benchmarks.pipeline import CACHE, fleet


def timed_label(logs, out) -> dict:
    """`coclabel label` with the teacher's `predict` timed."""
    import models.teacher as teacher_module
    from pipelines.cli import main

    calls = {"wall_s": 0.0, "cpu_s": 0.0, "clips": 0}
    predict = teacher_module.TinyTeacher.predict

    def timed(self, clips, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return predict(self, clips, *args, **kwargs)
        finally:
            calls["wall_s"] += time.perf_counter() - wall
            calls["cpu_s"] += time.process_time() - cpu
            calls["clips"] += len(clips)

    teacher_module.TinyTeacher.predict = timed
    try:
        shutil.rmtree(out, ignore_errors=True)
        if main(["label", "--logs", str(logs), "--out", str(out), "--quiet"]) != 0:
            raise SystemExit("coclabel label failed")
    finally:
        teacher_module.TinyTeacher.predict = predict
    manifest = json.loads((out / "_manifest.json").read_text())
    pipeline_s = manifest["timings_s"]["pipeline"]
    return {"windows": manifest["counts"]["windows"], "predicted_clips": calls["clips"], "pipeline_s": pipeline_s,
            "predict_s": round(calls["wall_s"], 2),
            "predict_cpu_s": round(calls["cpu_s"], 2), "predict_ms_per_clip": round(1000 * calls["wall_s"] / calls["clips"], 1),
            "predict_share": round(calls["wall_s"] / pipeline_s, 3), "predict_cores": round(calls["cpu_s"] / calls["wall_s"], 2),
            "outside_predict_ms_per_clip": round(1000 * (pipeline_s - calls["wall_s"]) / calls["clips"], 1)}


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def predict_ms(teacher, clips: list[dict], beside_busy: bool, rounds: int = 4) -> float:
    """Median ms a clip of `teacher.predict` on `clips` (K=6), alone or beside a busy process."""
    import statistics

    busy = mp.get_context("spawn").Process(target=_spin, args=(600,)) if beside_busy else None
    if busy:
        busy.start()
    try:
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            teacher.predict(clips, 6, list(range(len(clips))))
            times.append(1000 * (time.perf_counter() - started) / len(clips))
    finally:
        if busy:
            busy.terminate()
    return round(statistics.median(times), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vehicles", type=int, default=2, help="vehicles of the synthetic MCAP fleet (default 2)")
    parser.add_argument("--minutes", type=float, default=1.0, help="minutes per vehicle (default 1)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)

    from models.heap import keep_freed_memory
    from models.teacher import load_teacher
    from tests.students.helpers import fake_clip

    keep_freed_memory()  # as the label pipeline's model handler does
    logs = fleet(args.vehicles, args.minutes, 0)
    label = timed_label(logs, CACHE / f"share-{logs.name}")
    teacher, clips = load_teacher("tiny", "cpu"), [fake_clip(i) for i in range(16)]
    teacher.predict(clips, 6, list(range(16)))  # warm-up
    result = {"label": label, "predict_ms_alone": predict_ms(teacher, clips, False),
              "predict_ms_beside_busy_process": predict_ms(teacher, clips, True)}
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
