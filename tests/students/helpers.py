"""Clips and labels for student tests: synthetic JPEG clips with straight-line histories."""

import numpy as np
import torch

from models.students import Student, save_student, student_config
from models.tokenizer import Tokenizer
from schemas.ids import clip_id
from sim.dataset import jpeg_bytes

TEXTS = ["Keep speed since the road is clear.", "Slow down since the lead vehicle brakes.",
         "Stop at the stop line since the light is red."]


def fake_clip(i: int, speed: float = 5.0) -> dict:
    """A CLIPS-like dict: 16 small flat-colour JPEGs (decoded at any scale), ego driving straight
    at `speed` m/s, a future continuing at that speed."""
    rng = np.random.default_rng(i)
    images = [jpeg_bytes(np.full((320, 576, 3), rng.integers(0, 255, 3), np.uint8)) for _ in range(16)]
    t_hist = (np.arange(16) - 15) * 0.1
    t_fut = (np.arange(64) + 1) * 0.1
    hist = np.stack([speed * t_hist, np.zeros(16), np.zeros(16)], -1).astype(np.float32)
    fut = np.stack([speed * t_fut, np.zeros(64), np.zeros(64)], -1).astype(np.float32)
    eye = np.tile(np.eye(3, dtype=np.float32).ravel(), (16, 1))
    return {"clip_id": clip_id("log-a", 1_000_000 * i), "vehicle_id": "veh-000", "log_id": "log-a", "t0_us": 1_000_000 * i,
            "images": images, "ego_history_xyz": hist, "ego_history_rot": eye,
            "ego_future_xyz": fut, "ego_future_rot": np.tile(np.eye(3, dtype=np.float32).ravel(), (64, 1))}


def random_student(tmp_path, name: str = "nano", seed: int = 0):
    """An untrained student saved in tmp_path/name; returns the folder."""
    torch.manual_seed(seed)
    tokenizer = Tokenizer.fit(TEXTS)
    model = Student(student_config(name), len(tokenizer))
    out = tmp_path / name
    save_student(model, tokenizer, out)
    return out


def write_student_dataset(root, n: int, with_orphans: bool = True, logs: int = 2) -> list[dict]:
    """A dataset of `n` fake clips (over `logs` logs) with labels of 6 samples each (the true future at
    the history's speed, texts from TEXTS); plus, when `with_orphans`, one clip without a label
    and one label without a clip. Returns the labelled clips."""
    from tests.datasets import label_row, sample, write_dataset

    clips, labels = [], []
    for i in range(n + int(with_orphans)):
        c = fake_clip(i)
        c["log_id"] = f"log-{i % logs}"
        c["clip_id"] = clip_id(c["log_id"], c["t0_us"])
        c.update({"date": "2026-01-01", "camera_names": ["a", "b", "c", "d"], "frame_timestamps_us": [[0] * 4] * 4,
                  "source_uri": "/logs/x.mcap", "image_luma": 100.0})
        for k in ("ego_history_xyz", "ego_history_rot", "ego_future_xyz", "ego_future_rot"):
            c[k] = c[k].tolist()
        clips.append(c)
        if i < n:
            labels.append(label_row(c["log_id"], c["t0_us"], [sample(TEXTS[k % 3], 5.0, 0.0, "keep_speed") for k in range(6)]))
    if with_orphans:
        labels.append(label_row("log-9", 123, [sample(TEXTS[0], 5.0, 0.0, "keep_speed")] * 6))
    write_dataset(root, clips=clips, labels=labels)
    return clips[:n]
