"""Training shards straight from the simulator, labelled in-process by a teacher: no labelled
dataset, Parquet or Beam needed (the path for a GPU host that cannot receive a dataset).

Clips come in the two image domains of the fleet logs. A drive in the "jpeg" domain is
sim/dataset.py's (one simulated drive per seed, built as `coclabel clips` builds clips from an
MCAP log of JPEG frames; cached under `cache`), as for the teacher's own training. A drive in the
"h264" domain (`pai_percent` % of the seeds, chosen by a hash of the seed) is written in the
PhysicalAI-AV layout by the synth writer (sim/writers/pai.py: 20 s clips of H.264 video) into a
temporary folder and read back by the PAI reader and the clip assembler
(transforms/sources/pai.py, transforms/clips.py), exactly as `coclabel clips` reads such a
fleet: the frames the teacher labels have been through the video codec. Worker processes each take
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
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from models.action_space import speed_from_history
from models.meta_actions import classify
from models.students.data import (
    shard_summary,
    training_example,
    write_join_report,
    write_shards,
)
from schemas.ids import seed_of

DOMAINS = ("jpeg", "h264")


def domain_of(seed: int, pai_percent: int) -> str:
    """"h264" for about `pai_percent` % of the drive seeds (by a hash of the seed), else "jpeg"."""
    return "h264" if seed_of(f"sim-drive/{seed}", salt=13) % 100 < pai_percent else "jpeg"


def jpeg_clips(seed: int, minutes: float, stride_s: float, cache) -> tuple[list[dict], int]:
    """The clips of the drive of `seed` with JPEG frames (sim/dataset.py, cached), and 0 windows
    quarantined (that path builds only complete windows)."""
    from sim.dataset import build

    data = build([seed], minutes, stride_s, cache)
    clips = []
    for i in range(len(data)):
        clip = data.clip(i)
        clip["clip_id"], clip["log_id"], clip["t0_us"] = str(clip["clip_id"]), str(clip["log_id"]), int(clip["t0_us"])
        clips.append(clip)
    return clips, 0


def h264_clips(seed: int, minutes: float, stride_s: float) -> tuple[list[dict], int]:
    """The clips of the drive of `seed` written as PhysicalAI-AV clips (H.264 video) and read back
    as `coclabel clips` reads them, and the number of windows the assembler quarantined."""
    from schemas.contract import TEACHER_CAMERAS
    from sim.dataset import START_US
    from sim.fleet import simulate_drive
    from sim.render import Renderer
    from sim.writers.pai import write_pai
    from transforms.clips import ClipAssembler
    from transforms.sources.pai import PaiClipSource

    drive = simulate_drive(vehicle_id=f"sim-{seed:05d}", seed=seed, duration_s=minutes * 60, start_us=START_US)
    clips, quarantined = [], 0
    with tempfile.TemporaryDirectory(prefix=f"sim-pai-{seed}-") as root:
        written = write_pai([drive], root, Renderer(drive.static_map).render)
        for pai_clip in written["clip_ids"]:
            source = PaiClipSource(root, pai_clip, cameras=TEACHER_CAMERAS)
            for out in ClipAssembler(source.info(), round(stride_s * 1e6)).push_all(source.messages()):
                if out.table == "clips":
                    clips.append(out.row)
                else:
                    quarantined += 1
    return clips, quarantined


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


def drive_examples(teacher, seed: int, domain: str, minutes: float, stride_s: float, cache, samples: int, height: int,
                   width: int, heldout_percent: int) -> tuple[list[dict], list[str], int]:
    """The examples of one simulated drive in image `domain` ("jpeg" or "h264") labelled by
    `teacher`, the ids of the clips left out (a non-finite sample) and the number of windows
    quarantined while reading the drive back."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown image domain {domain!r}; choose from {DOMAINS}")
    clips, quarantined = jpeg_clips(seed, minutes, stride_s, cache) if domain == "jpeg" else h264_clips(seed, minutes, stride_s)
    examples, dropped = [], []
    batch = getattr(teacher, "batch_size", 16)
    for start in range(0, len(clips), batch):
        chunk = clips[start : start + batch]
        results = teacher.predict(chunk, samples, [seed_of(c["clip_id"]) for c in chunk])
        for clip, result in zip(chunk, results):
            row = sim_label(clip, result)
            if row is None:
                dropped.append(clip["clip_id"])
            else:
                examples.append(training_example(clip, row, height, width, heldout_percent))
    return examples, dropped, quarantined


_worker_teacher = None


def _init_worker(teacher_spec: str, device: str, batch_size: int) -> None:
    import torch

    global _worker_teacher
    torch.set_num_threads(1)
    _worker_teacher = load_labeller(teacher_spec, device, batch_size)


def _worker_drive(*args) -> tuple[list[dict], list[str], int]:
    return drive_examples(_worker_teacher, *args)


def build_sim_shards(seeds: list[int], out_dir: str | Path, teacher_spec: str, device: str, height: int, width: int, *,
                     minutes: float = 2.0, stride_s: float = 1.0, cache: str | Path = "out/sim-clips", workers: int = 1,
                     samples: int = 6, heldout_percent: int = 10, n_shards: int = 4, label_batch: int = 64,
                     pai_percent: int = 50, progress: Callable[[int, int], None] | None = None) -> dict:
    """Simulate the drive of each seed, label its clips with the teacher of `teacher_spec` on
    `device` (`label_batch` clips per model call), decode the images at height x width and write
    `out_dir`/shard-*.npz and `_join.json`; returns the report. With `workers` > 1, each of that
    many processes simulates, renders and labels whole drives with its own copy of the teacher
    (on a GPU they share it). `pai_percent` % of the drives are in the "h264" image domain
    (`domain_of`). `progress(drives_done, drives)` follows the drives."""
    started = time.perf_counter()
    teacher = load_labeller(teacher_spec, device, label_batch)
    domains = {seed: domain_of(seed, pai_percent) for seed in seeds}
    # the slower video drives first, so that no worker starts one last
    order = sorted(seeds, key=lambda seed: domains[seed] != "h264")  # stable: seed order within a domain
    jobs = [(seed, domains[seed], minutes, stride_s, str(cache), samples, height, width, heldout_percent) for seed in order]
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
    write_shards([e for examples, _, _ in results for e in examples], out_dir, n_shards)
    shards = shard_summary(out_dir)
    dropped = sorted(c for _, ids, _ in results for c in ids)
    by_domain = {d: {"drives": 0, "clips": 0, "quarantined_windows": 0} for d in DOMAINS}
    for job, (examples, _, quarantined) in zip(jobs, results):
        counts = by_domain[job[1]]
        counts["drives"] += 1
        counts["clips"] += len(examples)
        counts["quarantined_windows"] += quarantined
    report = {"source": sim_source(seeds, minutes, stride_s, samples, heldout_percent, teacher_identity(teacher), pai_percent),
              "shards": shards, "clips": sum(s["clips"] for s in shards), "heldout": sum(s["heldout"] for s in shards),
              "domains": by_domain,
              "unmatched": [{"clip_id": c, "missing": "bad input: non-finite teacher sample"} for c in dropped],
              "seconds": {"simulate_and_label": round(labelled - started, 1), "write": round(time.perf_counter() - labelled, 1)}}
    write_join_report(out_dir, report)
    return report


def sim_source(seeds: list[int], minutes: float, stride_s: float, samples: int, heldout_percent: int, teacher: dict,
               pai_percent: int = 50) -> dict:
    """What determines simulated shards (compared before reusing them)."""
    from sim.dataset import SIM_VERSION

    return {"from_sim": seeds_text(seeds), "sim_version": SIM_VERSION, "drive_minutes": minutes, "stride_s": stride_s,
            "samples": samples, "heldout_percent": heldout_percent, "pai_percent": pai_percent, "teacher": teacher}


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
