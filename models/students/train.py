"""The distillation loop: a student learns the teacher's samples from training shards.

Losses per step (weights in `TrainConfig`): `set`, the min-over-K (Chamfer) distance between
the student's K few-step samples and the teacher's K samples (or their cheapest one-to-one
pairing, `set_match="assignment"`); `flow`, flow matching on the
teacher's samples (flow head only); `ce`, teacher-forced cross-entropy on one of the teacher's
reasoning texts per clip (sequence-level distillation); `gt`, min-over-K distance to the
ground-truth future where there is one (weight 0 by default).

Schedule: linear warm-up over 100 steps, then cosine decay to zero over `steps`, or over the
wall-clock budget `minutes` where that ends first (so a time-boxed run still ends annealed).

Determinism and resume: the batch order of epoch e comes from a generator seeded (seed, e) and
each step's noise from one seeded (seed, step), so a run resumed from its last checkpoint
(`train_state.safetensors`: weights, AdamW moments, step) continues exactly as an uninterrupted
run would (without a time budget, which makes the schedule depend on the clock). On CUDA the
training tensors are moved to the GPU once and bfloat16 autocast is used.
"""

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from models.action_space import speed_from_history, traj_to_actions
from models.geometry import matrix_to_yaw
from models.students.config import StudentConfig
from models.students.model import Student
from models.students.policy import load_student_model, save_student
from models.teacher import images_tensor
from models.tokenizer import Tokenizer, pieces

STATE_FILE = "train_state.safetensors"


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 32
    lr: float = 2e-3
    seed: int = 0
    ce_weight: float = 1.0
    set_weight: float = 1.0
    flow_weight: float = 0.5
    gt_weight: float = 0.0
    set_match: str = "chamfer"  # or "assignment" (models.students.model.set_loss)
    set_coverage: float = 1.0  # weight of the Chamfer's coverage term
    checkpoint_every: int = 200
    minutes: float | None = None  # wall-clock budget; the schedule ends with it (after a checkpoint)
    device: str = "cpu"


def _seeded(*key: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0] >> 1))


def training_tensors(columns: dict[str, np.ndarray], tokenizer: Tokenizer, max_text_len: int) -> dict[str, torch.Tensor]:
    """Shard columns -> tensors: images (uint8), history, v0, teacher actions (N, K, 64, 2),
    teacher texts (N, K, T) ids, ground-truth actions (N, 64, 2) and where they exist."""
    n, K = columns["teacher_xyz"].shape[:2]
    v0 = speed_from_history(columns["history_xyz"])
    teacher = traj_to_actions(columns["teacher_xyz"], columns["teacher_yaw"], v0[:, None])
    has_gt = np.isfinite(columns["future_xyz"]).all((1, 2)) & np.isfinite(columns["future_rot"]).all((1, 2))
    fut_xyz = np.nan_to_num(columns["future_xyz"])
    fut_rot = np.where(has_gt[:, None, None], columns["future_rot"], np.eye(3, dtype=np.float32).ravel())
    gt = traj_to_actions(fut_xyz, matrix_to_yaw(fut_rot.reshape(n, -1, 3, 3)), v0)
    text = np.zeros((n, K, max_text_len + 2), dtype=np.int64)
    for i in range(n):
        for k in range(K):
            ids = [tokenizer.bos_id] + tokenizer.encode(str(columns["teacher_text"][i, k]))[:max_text_len] + [tokenizer.eos_id]
            text[i, k, : len(ids)] = ids
    return {"images": torch.from_numpy(columns["images"]), "history_xyz": torch.from_numpy(columns["history_xyz"]).float(),
            "history_rot": torch.from_numpy(columns["history_rot"]).float(), "v0": torch.from_numpy(v0).float(),
            "teacher": torch.from_numpy(np.clip(teacher, -1.5, 1.5)).float(), "text": torch.from_numpy(text),
            "gt": torch.from_numpy(np.clip(gt, -1.5, 1.5)).float(), "has_gt": torch.from_numpy(has_gt)}


def save_state(path: Path, model: Student, opt: torch.optim.Optimizer, step: int) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for idx, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"opt.{idx}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, tmp, metadata={"step": str(step)})
    tmp.replace(path)


def load_state(path: Path, model: Student, opt: torch.optim.Optimizer) -> int:
    """Restore weights and optimizer moments; returns the step to continue from."""
    with safe_open(str(path), framework="pt") as f:
        step = int(f.metadata()["step"])
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
    return step


def unknown_words(texts, tokenizer: Tokenizer) -> list[str]:
    """The words of `texts` that `tokenizer` does not know (they would be encoded as <unk>)."""
    return sorted({p for text in texts for p in pieces(text) if p not in tokenizer.index})


def initial_student(student_cfg: StudentConfig, init: str | Path) -> tuple[Student, Tokenizer]:
    """The student folder `init`'s model and tokenizer, to continue from; its config must be `student_cfg`'s."""
    model, tokenizer = load_student_model(init)
    if model.student_cfg != student_cfg:
        raise ValueError(f"--init {init} holds student {model.student_cfg.name!r} with another configuration than "
                         f"{student_cfg.name!r}; continue from a folder of the same student")
    return model, tokenizer


def distill(columns: dict[str, np.ndarray], student_cfg: StudentConfig, out_dir: str | Path, cfg: TrainConfig,
            resume: bool = False, progress=None, info_extra: dict | None = None, init: str | Path | None = None) -> dict:
    """Train a student on the "train" rows of `columns` (models/students/data.py); writes the
    student folder (policy.py) into `out_dir` and returns the training summary.
    `init`: a student folder to continue from (its weights, action scale and tokenizer; words of
    the texts outside that tokenizer become <unk> and are listed in the summary).
    `progress(step, total, losses)` is called after every step."""
    if len(columns["clip_id"]) == 0:
        raise ValueError("no training clips (every clip is held out or none was labelled)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = sorted({str(t) for t in columns["teacher_text"].ravel()})
    torch.manual_seed(cfg.seed)
    if init is not None:
        model, tokenizer = initial_student(student_cfg, init)
    else:
        tokenizer = Tokenizer.fit(texts)
        model = Student(student_cfg, len(tokenizer))
    unknown = unknown_words(texts, tokenizer)
    data = training_tensors(columns, tokenizer, student_cfg.max_text_len)
    text_len = (data["text"] != 0).sum(-1)  # (N, K), on the CPU: batches are cut without waiting for the GPU
    cuda = cfg.device.startswith("cuda")
    if cuda:
        data = {k: v.to(cfg.device) for k, v in data.items()}
    n, K = data["teacher"].shape[:2]
    if init is None:
        model.action_scale.copy_(data["teacher"].flatten(0, 2).std(0).clamp(min=1e-3).cpu())
    model.to(cfg.device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01, fused=cuda)
    state_path = out_dir / STATE_FILE
    step = load_state(state_path, model, opt) if resume and state_path.exists() else 0
    batch = min(cfg.batch_size, n)
    per_epoch = max(1, n // batch)
    started, losses = time.perf_counter(), {}
    history = []
    model.train()
    while step < cfg.steps:
        epoch, b = divmod(step, per_epoch)
        order = torch.randperm(n, generator=_seeded(cfg.seed, 1, epoch))
        idx_cpu = order[b * batch : (b + 1) * batch]
        g = _seeded(cfg.seed, 2, step)
        pick = torch.randint(K, (len(idx_cpu),), generator=g)
        noise = torch.randn(len(idx_cpu), K, 64, 2, generator=g)
        idx = idx_cpu.to(cfg.device)
        text = data["text"][idx, pick.to(cfg.device)][:, : int(text_len[idx_cpu, pick].max())]
        frac = step / cfg.steps
        if cfg.minutes is not None:
            frac = max(frac, (time.perf_counter() - started) / (cfg.minutes * 60))
        lr = cfg.lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        for group in opt.param_groups:
            group["lr"] = lr
        dev = lambda t: t.to(cfg.device, non_blocking=True)  # noqa: E731
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            out = model.distill_loss(images_tensor(dev(data["images"][idx])), dev(data["history_xyz"][idx]),
                                     dev(data["history_rot"][idx]), dev(data["v0"][idx]), dev(text), dev(data["teacher"][idx]),
                                     dev(noise), _seeded(cfg.seed, 3, step) if not cuda else None,
                                     dev(data["gt"][idx]) if cfg.gt_weight else None, dev(data["has_gt"][idx]),
                                     set_match=cfg.set_match, set_coverage=cfg.set_coverage)
            loss = (cfg.ce_weight * out["ce"] + cfg.set_weight * out["set"] + cfg.flow_weight * out["flow"]
                    + cfg.gt_weight * out["gt"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        out_of_time = cfg.minutes is not None and time.perf_counter() - started > cfg.minutes * 60
        checkpoint = step % cfg.checkpoint_every == 0 or step == cfg.steps or out_of_time
        if not cuda or step % 10 == 0 or checkpoint:  # reading a loss waits for the GPU
            losses = {k: float(v.detach()) for k, v in out.items()}
        if progress:
            progress(step, cfg.steps, losses)
        if checkpoint:
            save_state(state_path, model, opt, step)
            history.append({"step": step, **losses, "seconds": round(time.perf_counter() - started, 1)})
        if out_of_time:
            break
    model.eval()
    info = {"train": asdict(cfg), "steps_done": step, "clips": n, "samples_per_clip": K, "vocabulary": len(tokenizer),
            "init": None if init is None else str(init), "unknown_words": unknown,
            "final_losses": losses, "log": history, **(info_extra or {})}
    save_student(model.cpu(), tokenizer, out_dir, info)
    return info
