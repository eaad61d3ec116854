"""Train or evaluate the tiny teacher (models/vla.py) on clips simulated by the synthetic fleet.

Clips come straight from the simulator (sim/dataset.py): one drive per seed, a clip every
--stride-s seconds, cached as .npz under --cache (reused on reruns).

examples:
  # from scratch: 320 drives, 14,400 clips, 4 min on one GPU (the first stage of the bundled weights)
  coclabel teacher train --out out/tiny --seeds 0-319 --drive-minutes 2 --stride-s 2.5 \
      --workers 15 --device cuda --minutes 4 --batch-size 64
  # continue on fresh drives (same tokenizer and action scale; models/weights/MODEL_CARD.md)
  coclabel teacher train --out out/tiny-ft --init models/weights --seeds 10000-10399 --stride-s 2.5 \
      --workers 8 --device cuda --threads 3 --minutes 3.5 --batch-size 64 --lr 5e-4
  # on this laptop's CPU: fewer drives, a 20 minute budget
  coclabel teacher train --out out/tiny --seeds 0-23 --drive-minutes 2 --minutes 20 --workers 2
  coclabel teacher eval --weights out/tiny --seeds 1000-1003 --samples 6 --threads 1
"""

import argparse

DEFAULT_CACHE = "out/sim-clips"


def parse_seeds(text: str) -> list[int]:
    """"0-3,7" -> [0, 1, 2, 3, 7]."""
    seeds = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    if not seeds:
        raise argparse.ArgumentTypeError("no seeds")
    return seeds


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--seeds", type=parse_seeds, required=True,
                        help="drive seeds, one simulated drive each: a list and/or ranges, e.g. 0-47 or 3,5,9")
    common.add_argument("--drive-minutes", type=float, default=2.0, help="length of each simulated drive (default 2)")
    common.add_argument("--stride-s", type=float, default=0.5, help="seconds between clip t0s (default 0.5)")
    common.add_argument("--cache", default=DEFAULT_CACHE, help=f"folder of cached clip .npz files (default {DEFAULT_CACHE})")
    common.add_argument("--workers", type=int, default=1, help="processes simulating and rendering drives (default 1)")
    common.add_argument("--device", default="cpu", help="torch device (default cpu)")
    common.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")

    train = sub.add_parser("train", parents=[common], help="train the tiny teacher",
                           description="Train the tiny teacher; writes weights, tokenizer and training log to --out.",
                           epilog="examples: coclabel teacher train --out out/tiny --seeds 0-23 --drive-minutes 2 --minutes 20\n"
                                  "          coclabel teacher train --out out/tiny-ft --init models/weights --seeds 24-47 --lr 5e-4",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--out", required=True, help="folder for tiny_teacher.safetensors and its tokenizer")
    train.add_argument("--minutes", type=float, default=20.0, help="wall-clock budget of the optimisation (default 20)")
    train.add_argument("--epochs", type=int, default=200, help="at most this many passes over the clips (default 200)")
    train.add_argument("--batch-size", type=int, default=32, help="clips per step (default 32)")
    train.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate (default 1e-3)")
    train.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay (default 0.05)")
    train.add_argument("--seed", type=int, default=0, help="seed of initialisation and batching (default 0)")
    train.add_argument("--balance", type=float, default=0.0,
                       help="draw each epoch's clips with weights count(family)^-BALANCE: 0 = every clip once "
                            "(default), 1 = every scenario family equally often, 0.5 in between")
    train.add_argument("--init", default=None,
                       help="folder of trained weights to continue from (keeps their tokenizer and action scale; "
                            "texts with words outside that vocabulary are an error); default: a fresh model")

    ev = sub.add_parser("eval", parents=[common], help="evaluate teacher weights on held-out drives",
                        description="Evaluate on held-out drives; writes a metrics JSON (overall and per scenario family).",
                        epilog="example: coclabel teacher eval --weights out/tiny --seeds 1000-1003 --samples 6")
    ev.add_argument("--weights", default=None, help="folder of trained weights (default: the bundled models/weights/)")
    ev.add_argument("--samples", type=int, default=6, help="samples per clip, K (default 6)")
    ev.add_argument("--temperature", type=float, default=None,
                    help="reasoning sampling temperature (default: the teacher's, models.teacher.DEFAULT_TEMPERATURE)")
    ev.add_argument("--metrics", default=None, help="metrics JSON path (default WEIGHTS/tiny_teacher_metrics.json)")


def run(args, beam_args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    return train(args) if args.action == "train" else evaluate(args)


def load_clips(args):
    """The simulated clips of `args.seeds` (cached), with a progress bar over drives."""
    from pipelines.progress import LineProgress
    from sim.dataset import build

    with LineProgress() as progress:
        task = progress.add_task(f"simulate + render {len(args.seeds)} drives", total=len(args.seeds))
        return build(args.seeds, args.drive_minutes, args.stride_s, args.cache, args.workers,
                     lambda n: progress.advance(task, n))


DECODE_CHUNK = 256  # clips per decoding task


def _decode_chunk(jpeg, offsets, height: int, width: int):
    """Images concatenated in `jpeg` (uint8) at `offsets` -> (N, height, width, 3) uint8."""
    import numpy as np

    from models.teacher import decode_image

    return np.stack([decode_image(jpeg[a:b].tobytes(), height, width) for a, b in zip(offsets[:-1], offsets[1:])])


def decode_images(data, height: int, width: int, workers: int = 1):
    """(N, 16, height, width, 3) uint8: every clip's JPEGs decoded as the teacher decodes them, in
    chunks of DECODE_CHUNK clips over `workers` processes (decoding holds the GIL for long)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

    from models.vla import NUM_IMAGES

    n = len(data)
    off, jpeg = data.columns["jpeg_offsets"], data.columns["jpeg"]
    out = np.empty((n, NUM_IMAGES, height, width, 3), dtype=np.uint8)
    chunks = [(i, min(i + DECODE_CHUNK, n)) for i in range(0, n, DECODE_CHUNK)]

    def task(i, j):
        a, b = i * NUM_IMAGES, j * NUM_IMAGES
        return jpeg[off[a] : off[b]], off[a : b + 1] - off[a], height, width

    if workers <= 1:
        for i, j in chunks:
            out[i:j] = _decode_chunk(*task(i, j)).reshape(j - i, NUM_IMAGES, height, width, 3)
        return out
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [(i, j, pool.submit(_decode_chunk, *task(i, j))) for i, j in chunks]
        for i, j, future in futures:
            out[i:j] = future.result().reshape(j - i, NUM_IMAGES, height, width, 3)
    return out


def training_tensors(data, cfg, tokenizer, workers: int = 1) -> dict:
    """Model inputs and targets of every clip: decoded images (uint8), history, speed at t0,
    normalised unicycle actions of the true future, and <bos> reasoning <eos> token ids."""
    import numpy as np
    import torch

    from models.action_space import speed_from_history, traj_to_actions
    from models.geometry import matrix_to_yaw

    c = data.columns
    n = len(data)
    images = decode_images(data, cfg.image_height, cfg.image_width, workers)
    v0 = speed_from_history(c["ego_history_xyz"])
    yaw = matrix_to_yaw(c["ego_future_rot"].reshape(n, -1, 3, 3))
    actions = traj_to_actions(c["ego_future_xyz"], yaw, v0)
    text = np.zeros((n, cfg.max_text_len + 2), dtype=np.int64)
    for i, reasoning in enumerate(c["reasoning"]):
        ids = [tokenizer.bos_id] + tokenizer.encode(str(reasoning))[: cfg.max_text_len] + [tokenizer.eos_id]
        text[i, : len(ids)] = ids
    return {
        "images": torch.from_numpy(images),
        "history_xyz": torch.from_numpy(c["ego_history_xyz"]).float(),
        "history_rot": torch.from_numpy(c["ego_history_rot"]).float(),
        "v0": torch.from_numpy(v0).float(),
        "actions": torch.from_numpy(actions).float(),
        "text": torch.from_numpy(text),
    }


def family_weights(families, balance: float):
    """Per-clip sampling weights count(family)^-balance (float64 tensor)."""
    import numpy as np
    import torch

    _, inverse, counts = np.unique(np.asarray(families), return_inverse=True, return_counts=True)
    return torch.from_numpy(counts[inverse].astype(np.float64) ** -balance)


def train(args) -> int:
    import json
    import math
    import time
    from pathlib import Path

    import torch
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn

    from models.teacher import images_tensor, load_model, save_weights
    from models.tokenizer import Tokenizer, pieces
    from models.vla import TinyVLA, VLAConfig
    from pipelines.progress import LineProgress

    torch.manual_seed(args.seed)
    data = load_clips(args)
    texts = [str(t) for t in data.columns["reasoning"]]
    if args.init:
        model, tokenizer, _ = load_model(args.init, args.device)
        model.train()
        cfg = model.cfg
        unknown = sorted({p for text in texts for p in pieces(text) if p not in tokenizer.index})
        if unknown:
            raise ValueError(f"--init {args.init}: words outside its vocabulary: {unknown[:10]}")
        scale = model.action_scale
    else:
        tokenizer = Tokenizer.fit(texts)
        cfg = VLAConfig(vocab_size=len(tokenizer))
        model = TinyVLA(cfg).to(args.device)
    tensors = {k: v.to(args.device) for k, v in training_tensors(data, cfg, tokenizer, args.workers).items()}
    if not args.init:
        scale = tensors["actions"].flatten(0, 1).std(0).clamp(min=1e-3)
        model.action_scale.copy_(scale)
    n = len(data)
    steps_per_epoch = max(1, n // args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    budget_s = args.minutes * 60
    started = time.perf_counter()
    log, step = [], 0
    print(f"{n} clips, vocabulary {len(tokenizer)}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
          f"action scale {scale.tolist()}")
    columns = [TextColumn("[bold]train[/] epoch {task.fields[epoch]}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
               TextColumn("ce {task.fields[ce]:.3f} flow {task.fields[fm]:.3f}"), TimeElapsedColumn()]
    weights = family_weights(data.columns["family"], args.balance).to(args.device) if args.balance else None
    with LineProgress(*columns) as progress:
        task = progress.add_task("train", total=total_steps, epoch=0, ce=float("nan"), fm=float("nan"), budget_s=budget_s)
        for epoch in range(args.epochs):
            if weights is None:
                order = torch.randperm(n, generator=generator, device=args.device)
            else:
                order = torch.multinomial(weights, n, replacement=True, generator=generator)
            ce_sum = fm_sum = 0.0
            for b in range(steps_per_epoch):
                # cosine schedule over the step budget or the time budget, whichever ends first
                frac = max(step / total_steps, (time.perf_counter() - started) / budget_s)
                lr = args.lr * min(1.0, (step + 1) / 200) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
                for group in opt.param_groups:
                    group["lr"] = lr
                idx = order[b * args.batch_size : (b + 1) * args.batch_size]
                text = tensors["text"][idx]
                text = text[:, : int((text != 0).sum(1).max())]
                ce, fm = model.loss(images_tensor(tensors["images"][idx]),
                                    tensors["history_xyz"][idx], tensors["history_rot"][idx], text,
                                    tensors["actions"][idx], tensors["v0"][idx], generator)
                opt.zero_grad(set_to_none=True)
                (ce + fm).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                step += 1
                ce_sum, fm_sum = ce_sum + ce.item(), fm_sum + fm.item()
                progress.update(task, advance=1, epoch=epoch, ce=ce.item(), fm=fm.item())
                if frac >= 1.0:
                    break
            log.append({"epoch": epoch, "steps": step, "ce": ce_sum / (b + 1), "flow": fm_sum / (b + 1),
                        "seconds": round(time.perf_counter() - started, 1)})
            progress.console.print(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in log[-1].items()))
            if frac >= 1.0:
                break
    model.eval()
    path = save_weights(model.cpu(), tokenizer, args.out)
    info = {"clips": n, "seeds": args.seeds, "drive_minutes": args.drive_minutes, "stride_s": args.stride_s,
            "seed": args.seed, "init": args.init, "balance": args.balance, "batch_size": args.batch_size, "lr": args.lr, "weight_decay": args.weight_decay, "steps": step, "epochs": len(log),
            "seconds": round(time.perf_counter() - started, 1), "device": args.device, "log": log}
    Path(args.out, "tiny_teacher_training.json").write_text(json.dumps(info, indent=1))
    print(f"wrote {path} after {step} steps ({info['seconds']} s); final ce {log[-1]['ce']:.3f} flow {log[-1]['flow']:.3f}")
    return 0


def constant_velocity(history_xyz):
    """(N, 16, 3) history -> (N, 64, 2) future positions at the last step's velocity."""
    import numpy as np

    from models.action_space import DT

    velocity = (history_xyz[:, -1, :2] - history_xyz[:, -2, :2]) / DT
    steps = np.arange(1, 65) * DT
    return history_xyz[:, -1, None, :2] + velocity[:, None] * steps[None, :, None]


def reasoning_agrees(text: str, traj_xyz, traj_yaw, v0: float) -> bool:
    """Does the meta-action a reasoning text states match its trajectory's? An unstated
    longitudinal action is not compared; an unstated lateral one means keep_lane."""
    from models.meta_actions import classify, stated

    said_long, said_lat = stated(text)
    long, lat = classify(traj_xyz, traj_yaw, v0)
    return (said_long is None or said_long == long) and (said_lat or "keep_lane") == lat


def clip_metrics(clip: dict, samples: list[dict]) -> dict:
    """Per-clip metrics of K samples against the clip's truth."""
    import numpy as np

    from models.action_space import speed_from_history
    from models.geometry import matrix_to_yaw
    from models.meta_actions import classify
    from sim.reasoning import cause_of

    hist = np.asarray(clip["ego_history_xyz"], dtype=np.float64)[None]
    v0 = float(speed_from_history(hist)[0])
    future = np.asarray(clip["ego_future_xyz"], dtype=np.float64)
    future_yaw = matrix_to_yaw(np.asarray(clip["ego_future_rot"]).reshape(-1, 3, 3))
    ade = [float(np.linalg.norm(s["traj_xyz"][:, :2] - future[:, :2], axis=1).mean()) for s in samples]
    best = samples[int(np.argmin(ade))]
    expert = classify(future, future_yaw, v0)
    predicted = classify(best["traj_xyz"], best["traj_yaw"], v0)
    named = [cause_of(s["reasoning"]) == clip["cause"] for s in samples]
    return {
        "family": str(clip["family"]),
        "min_ade": min(ade),
        "cv_ade": float(np.linalg.norm(constant_velocity(hist)[0] - future[:, :2], axis=1).mean()),
        "longitudinal_agree": predicted[0] == expert[0],
        "lateral_agree": predicted[1] == expert[1],
        "expert_matches_truth": expert == (clip["longitudinal"], clip["lateral"]),
        "cause_named_best": named[int(np.argmin(ade))],
        "cause_named_all": float(np.mean(named)),
        "reasoning_trajectory_agree": float(np.mean([reasoning_agrees(s["reasoning"], s["traj_xyz"], s["traj_yaw"], v0) for s in samples])),
    }


def summarise(rows: list[dict]) -> dict:
    """Means of per-clip metrics, with minADE against constant velocity as a ratio."""
    import numpy as np

    keys = [k for k in rows[0] if k != "family"]
    out = {k: float(np.mean([float(r[k]) for r in rows])) for k in keys}
    out["min_ade_over_cv"] = out["min_ade"] / max(out["cv_ade"], 1e-9)
    out["clips"] = len(rows)
    return out


TARGETS = {"longitudinal_agree": 0.9, "lateral_agree": 0.9, "cause_named_all": 0.9, "reasoning_trajectory_agree": 0.9}
ADE_TARGET = 0.5  # minADE_6 <= 0.5 x constant velocity (overall and the stop, lane-change and curve families)


def evaluate(args) -> int:
    import json
    import time
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from models.teacher import WEIGHTS_DIR, TinyTeacher
    from pipelines.progress import LineProgress
    from schemas.ids import seed_of

    data = load_clips(args)
    weights = Path(args.weights) if args.weights else WEIGHTS_DIR
    teacher = TinyTeacher(weights, args.device, **({} if args.temperature is None else {"temperature": args.temperature}))
    rows = []
    started = time.perf_counter()
    batch = teacher.batch_size
    with LineProgress() as progress:
        task = progress.add_task(f"eval {len(data)} clips", total=len(data))
        for start in range(0, len(data), batch):
            clips = [data.clip(i) for i in range(start, min(start + batch, len(data)))]
            samples = teacher.predict(clips, args.samples, [seed_of(str(c["clip_id"])) for c in clips])
            rows += [clip_metrics(c, s) for c, s in zip(clips, samples)]
            progress.advance(task, len(clips))
    seconds = time.perf_counter() - started
    families = sorted({r["family"] for r in rows})
    metrics = {
        "teacher": {"name": teacher.name, "version": teacher.version, "weights_sha256": teacher.weights_sha256},
        "seeds": args.seeds, "drive_minutes": args.drive_minutes, "stride_s": args.stride_s, "samples": args.samples,
        "temperature": teacher.temperature, "device": args.device,
        "clips_per_s": len(rows) / seconds,
        "overall": summarise(rows),
        "per_family": {f: summarise([r for r in rows if r["family"] == f]) for f in families},
        "targets": {**TARGETS, "min_ade_over_cv": ADE_TARGET},
    }
    out = Path(args.metrics) if args.metrics else weights / "tiny_teacher_metrics.json"
    out.write_text(json.dumps(metrics, indent=1))
    table = Table(title=f"tiny teacher on seeds {args.seeds[0]}..{args.seeds[-1]} (K={args.samples})")
    cols = ["clips", "longitudinal_agree", "lateral_agree", "cause_named_all", "reasoning_trajectory_agree", "min_ade", "cv_ade", "min_ade_over_cv"]
    table.add_column("family")
    for c in cols:
        table.add_column(c.replace("_", " "))
    for name, m in [("overall", metrics["overall"])] + list(metrics["per_family"].items()):
        table.add_row(name, *[f"{m[c]:.3f}" if c != "clips" else str(m[c]) for c in cols])
    Console().print(table)
    print(f"wrote {out}")
    return 0
