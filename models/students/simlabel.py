"""Training shards straight from the simulator, labelled in-process by a teacher: no labelled
dataset, Parquet or Beam needed (the path for a GPU host that cannot receive a dataset).

Clips come from sim/dataset.py (one simulated drive per seed, built as `coclabel clips` builds
clips, cached under `cache`), as for the teacher's own training. Worker processes each take
whole drives: simulate and render one, label its clips with their own copy of the teacher, decode
the images at the student's size, so that the simulator, JPEG decoding and the teacher's Python
run side by side. The teacher labels a drive's clips in batches, clip i's K samples seeded by `schemas.ids.seed_of(clip_id)` as in the labelling
pipeline (transforms/inference.py); each sample gets the meta-action of its trajectory
(`models.meta_actions.classify` at the speed of the last two history poses, as
transforms/validate.py computes it). Examples, their train/held-out split and the shards are
those of models/students/data.py, so training reads them exactly as it reads the Beam join's.

Not applied here: the label checks of transforms/validate.py (quarantine of samples outside
physical bounds or contradicting their reasoning), which need Beam. Every sample is kept, except
that a clip with a non-finite sample is left out and listed in the report.
"""

import multiprocessing as mp
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from models.action_space import speed_from_history
from models.meta_actions import classify
from models.students.data import shard_summary, training_example, write_join_report, write_shards
from schemas.ids import seed_of


def sim_label(clip: dict, samples: list[dict]) -> dict | None:
    """A LABELS-like row {"samples": [...with "meta_action"]} of the teacher's samples of `clip`,
    or None when a sample is not finite."""
    v0 = float(speed_from_history(clip["ego_history_xyz"]))
    rows = []
    for s in samples:
        xyz, yaw = np.asarray(s["traj_xyz"], np.float32), np.asarray(s["traj_yaw"], np.float32)
        if not (np.isfinite(xyz).all() and np.isfinite(yaw).all()):
            return None
        longitudinal, lateral = classify(xyz, yaw, v0)
        rows.append({"reasoning": s["reasoning"], "traj_xyz": xyz, "traj_yaw": yaw,
                     "meta_action": {"longitudinal": longitudinal, "lateral": lateral}})
    return {"clip_id": clip["clip_id"], "samples": rows}


def teacher_identity(teacher) -> dict:
    return {"name": teacher.name, "version": teacher.version, "weights_sha256": teacher.weights_sha256}


def load_labeller(teacher_spec: str, device: str, batch_size: int):
    """The teacher of `teacher_spec` (models.teacher.load_teacher) calling the model on
    `batch_size` clips at a time."""
    from models.teacher import load_teacher

    teacher = load_teacher(teacher_spec, device)
    teacher.batch_size = batch_size
    return teacher


def drive_examples(teacher, seed: int, minutes: float, stride_s: float, cache, samples: int, height: int, width: int,
                   heldout_percent: int) -> tuple[list[dict], list[str]]:
    """The examples of one simulated drive (cached in `cache`) labelled by `teacher`, and the
    ids of the clips left out (a non-finite sample)."""
    from sim.dataset import build

    data = build([seed], minutes, stride_s, cache)
    examples, dropped = [], []
    batch = getattr(teacher, "batch_size", 16)
    for start in range(0, len(data), batch):
        clips = []
        for i in range(start, min(start + batch, len(data))):
            clip = data.clip(i)
            clip["clip_id"], clip["log_id"], clip["t0_us"] = str(clip["clip_id"]), str(clip["log_id"]), int(clip["t0_us"])
            clips.append(clip)
        results = teacher.predict(clips, samples, [seed_of(c["clip_id"]) for c in clips])
        for clip, result in zip(clips, results):
            row = sim_label(clip, result)
            if row is None:
                dropped.append(clip["clip_id"])
            else:
                examples.append(training_example(clip, row, height, width, heldout_percent))
    return examples, dropped


_worker_teacher = None


def _init_worker(teacher_spec: str, device: str, batch_size: int) -> None:
    import torch

    global _worker_teacher
    torch.set_num_threads(1)
    _worker_teacher = load_labeller(teacher_spec, device, batch_size)


def _worker_drive(*args) -> tuple[list[dict], list[str]]:
    return drive_examples(_worker_teacher, *args)


def build_sim_shards(seeds: list[int], out_dir: str | Path, teacher_spec: str, device: str, height: int, width: int, *,
                     minutes: float = 2.0, stride_s: float = 1.0, cache: str | Path = "out/sim-clips", workers: int = 1,
                     samples: int = 6, heldout_percent: int = 10, n_shards: int = 4, label_batch: int = 64,
                     progress: Callable[[int, int], None] | None = None) -> dict:
    """Simulate the drive of each seed, label its clips with the teacher of `teacher_spec` on
    `device` (`label_batch` clips per model call), decode the images at height x width and write
    `out_dir`/shard-*.npz and `_join.json`; returns the report. With `workers` > 1, each of that
    many processes simulates, renders and labels whole drives with its own copy of the teacher
    (on a GPU they share it). `progress(drives_done, drives)` follows the drives."""
    started = time.perf_counter()
    teacher = load_labeller(teacher_spec, device, label_batch)
    jobs = [(seed, minutes, stride_s, str(cache), samples, height, width, heldout_percent) for seed in seeds]
    results = []
    if workers <= 1:
        for job in jobs:
            results.append(drive_examples(teacher, *job))
            if progress:
                progress(len(results), len(jobs))
    else:
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                 initargs=(teacher_spec, device, label_batch)) as pool:
            for result in pool.map(_worker_drive, *zip(*jobs)):
                results.append(result)
                if progress:
                    progress(len(results), len(jobs))
    labelled = time.perf_counter()
    write_shards([e for examples, _ in results for e in examples], out_dir, n_shards)
    shards = shard_summary(out_dir)
    dropped = sorted(c for _, ids in results for c in ids)
    report = {"source": sim_source(seeds, minutes, stride_s, samples, heldout_percent, teacher_identity(teacher)),
              "shards": shards, "clips": sum(s["clips"] for s in shards), "heldout": sum(s["heldout"] for s in shards),
              "unmatched": [{"clip_id": c, "missing": "bad input: non-finite teacher sample"} for c in dropped],
              "seconds": {"simulate_and_label": round(labelled - started, 1), "write": round(time.perf_counter() - labelled, 1)}}
    write_join_report(out_dir, report)
    return report


def sim_source(seeds: list[int], minutes: float, stride_s: float, samples: int, heldout_percent: int, teacher: dict) -> dict:
    """What determines simulated shards (compared before reusing them)."""
    from sim.dataset import SIM_VERSION

    return {"from_sim": seeds_text(seeds), "sim_version": SIM_VERSION, "drive_minutes": minutes, "stride_s": stride_s,
            "samples": samples, "heldout_percent": heldout_percent, "teacher": teacher}


def seeds_text(seeds: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5" (the form `--from-sim` takes)."""
    parts, seeds = [], sorted(seeds)
    start = prev = seeds[0]
    for s in seeds[1:] + [None]:
        if s is not None and s == prev + 1:
            prev = s
            continue
        parts.append(f"{start}-{prev}" if prev > start else str(start))
        if s is not None:
            start = prev = s
    return ",".join(parts)
