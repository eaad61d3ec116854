"""A trained student behind the teacher's interface (models/teacher.py):
`predict(clips, num_samples, seeds) -> per clip, K samples {"reasoning", "traj_xyz" (64, 3), "traj_yaw" (64,)}`.

The K trajectories come from K noise draws of `seeds[i]` (flow head), scaled by the sampling
noise scale (student.json's "sampling": {"noise_scale": s}, default 1; below 1 the samples keep
closer to the student's most likely behaviour), or the first K modes (regression head); the
reasoning is one greedy text per clip, shared by its K samples. Batches
are padded to `batch_size` clips, as the teacher's are, so a clip's outputs do not depend on the
clips that share its batch.

A student folder holds `student.safetensors` (weights; config, version and vocabulary size in
its metadata), `tokenizer.json` and `student.json` (config and training summary).
"""

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from models.action_space import actions_to_traj, speed_from_history
from models.students.config import StudentConfig
from models.students.model import Student
from models.teacher import clip_arrays, file_sha256, images_tensor
from models.tokenizer import Tokenizer
from schemas.contract import NUM_FUTURE

WEIGHTS_FILE = "student.safetensors"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "student.json"
VERSION = "student-1"


def save_student(model: Student, tokenizer: Tokenizer, out_dir: str | Path, info: dict | None = None) -> Path:
    """Write weights, tokenizer and config (+ `info`) into `out_dir`; returns the weights path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"config": json.dumps(model.student_cfg.to_dict()), "vocab_size": str(model.cfg.vocab_size), "version": VERSION}
    tmp = out_dir / (WEIGHTS_FILE + ".tmp")
    save_file(state, tmp, metadata=meta)
    tmp.replace(out_dir / WEIGHTS_FILE)
    tokenizer.save(out_dir / TOKENIZER_FILE)
    (out_dir / CONFIG_FILE).write_text(json.dumps({"config": model.student_cfg.to_dict(), "version": VERSION, **(info or {})}, indent=1))
    return out_dir / WEIGHTS_FILE


def load_student_model(student_dir: str | Path, device: str = "cpu") -> tuple[Student, Tokenizer]:
    """(model in eval mode, tokenizer) from a student folder; safetensors only."""
    path = Path(student_dir) / WEIGHTS_FILE
    if not path.exists():
        raise FileNotFoundError(f"no student weights at {path}; train one with `coclabel distill`")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    model = Student(StudentConfig.from_dict(json.loads(meta["config"])), int(meta["vocab_size"]))
    model.load_state_dict(load_file(str(path)))
    tokenizer = Tokenizer.load(Path(student_dir) / TOKENIZER_FILE)
    if len(tokenizer) != model.cfg.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens, student expects {model.cfg.vocab_size}")
    return model.to(device).eval(), tokenizer


def clip_noise(seeds: list[int], num_samples: int) -> torch.Tensor:
    """(B, K, 64, 2) standard normal noise, clip i's from a generator seeded with seeds[i]."""
    return torch.stack([torch.randn(num_samples, NUM_FUTURE, 2, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


def sampling_of(student_dir: str | Path) -> dict:
    """The sampling settings of a student folder (student.json's "sampling"), with defaults."""
    path = Path(student_dir) / CONFIG_FILE
    stored = json.loads(path.read_text()).get("sampling", {}) if path.exists() else {}
    return {"noise_scale": 1.0, **stored}


class StudentPolicy:
    def __init__(self, student_dir: str | Path, device: str = "cpu", batch_size: int = 16, noise_scale: float | None = None):
        self.device = device
        self.model, self.tokenizer = load_student_model(student_dir, device)
        self.noise_scale = sampling_of(student_dir)["noise_scale"] if noise_scale is None else noise_scale
        self.name = f"student-{self.model.student_cfg.name}"
        self.version = VERSION
        self.weights_sha256 = file_sha256(Path(student_dir) / WEIGHTS_FILE)
        self.batch_size = batch_size

    def noise(self, seeds: list[int], num_samples: int) -> torch.Tensor:
        """(B, K, 64, 2) the flow head's starting noise of each clip (`clip_noise` x noise scale)."""
        return clip_noise(seeds, num_samples) * self.noise_scale

    def inputs(self, clips: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decoded images (B, 16, H, W, 3) uint8, history xyz (B, 16, 3) and rot (B, 16, 9)."""
        cfg = self.model.cfg
        arrays = [clip_arrays(c, cfg.image_height, cfg.image_width) for c in clips]
        return tuple(np.stack([a[j] for a in arrays]) for j in range(3))

    def predict(self, clips: list[dict], num_samples: int, seeds: list[int]) -> list[list[dict]]:
        if len(clips) != len(seeds):
            raise ValueError(f"{len(clips)} clips but {len(seeds)} seeds")
        cfg = self.model.student_cfg
        if cfg.head == "regression" and num_samples > cfg.num_modes:
            raise ValueError(f"the regression student has {cfg.num_modes} modes; asked for {num_samples} samples")
        out = []
        for start in range(0, len(clips), self.batch_size):
            images, xyz, rot = self.inputs(clips[start : start + self.batch_size])
            out += self.predict_arrays(images, xyz, rot, num_samples, seeds[start : start + self.batch_size])
        return out

    @torch.no_grad()
    def predict_arrays(self, images: np.ndarray, xyz: np.ndarray, rot: np.ndarray, num_samples: int,
                       seeds: list[int]) -> list[list[dict]]:
        """`predict` on decoded inputs (one batch of at most `batch_size` clips)."""
        n = len(seeds)
        pad = self.batch_size - n
        images, xyz, rot = (np.concatenate([a, np.repeat(a[-1:], pad, 0)]) if pad else a for a in (images, xyz, rot))
        seeds = list(seeds) + [seeds[-1]] * pad
        v0 = speed_from_history(xyz)
        ids, hidden = self.model.reason(images_tensor(images).to(self.device), torch.from_numpy(xyz).float().to(self.device),
                                        torch.from_numpy(rot).float().to(self.device), self.tokenizer.bos_id, self.tokenizer.eos_id)
        actions = self.model.actions(hidden, torch.from_numpy(v0).float().to(self.device), self.noise(seeds, num_samples).to(self.device))
        ids, actions = ids[:n].cpu().numpy(), actions[:n, :num_samples].cpu().double().numpy()
        out = []
        for i in range(n):
            text = self.tokenizer.decode(ids[i])
            traj_xyz, traj_yaw = actions_to_traj(actions[i], v0[i], xyz[i, -1, 2])
            out.append([{"reasoning": text, "traj_xyz": traj_xyz[k].astype(np.float32), "traj_yaw": traj_yaw[k].astype(np.float32)}
                        for k in range(num_samples)])
        return out
