"""The teacher interface the labelling pipeline calls, and the tiny teacher behind it.

A teacher has `name`, `version`, `weights_sha256`, `device` and
`predict(clips, num_samples, seeds) -> per clip, K samples {"reasoning", "traj_xyz" (64, 3), "traj_yaw" (64,)}`
where each clip is a dict with the CLIPS columns (schemas/tables.py) and `seeds[i]` (from
`schemas.ids.seed_of(clip_id)`) drives all randomness of clip i.
"""

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from models.action_space import actions_to_traj, speed_from_history
from models.tokenizer import Tokenizer
from models.vla import NUM_IMAGES, TinyVLA, VLAConfig
from schemas.contract import NUM_HISTORY

WEIGHTS_DIR = Path(__file__).parent / "weights"
WEIGHTS_FILE = "tiny_teacher.safetensors"
TOKENIZER_FILE = "tiny_teacher_tokenizer.json"
VERSION = "tiny-3"  # tiny-3: fine-tuned on the fleet whose expert reacts only to what has been in view for 6.4 s (sim.dataset SIM_VERSION 3)
IMAGE_MEAN, IMAGE_STD = 0.5, 0.25
DEFAULT_TEMPERATURE = 0.6  # reasoning sampling temperature (models/weights/MODEL_CARD.md: how it was chosen)


def decode_image(jpeg: bytes | Image.Image, height: int, width: int) -> np.ndarray:
    """JPEG bytes (or a JPEG PIL has opened and not loaded) -> (height, width, 3) uint8. Decodes
    at the largest DCT scale (1/2, 1/4, 1/8) that still covers the size, then resizes bilinearly
    if the size is not met exactly."""
    image = jpeg if isinstance(jpeg, Image.Image) else Image.open(io.BytesIO(jpeg))
    image.draft("RGB", (width, height))
    image = image.convert("RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
    return np.asarray(image)


def images_tensor(images) -> torch.Tensor:
    """(..., 16, H, W, 3) uint8 array or tensor (any device) -> (..., 16, 3, H, W) normalised float32."""
    x = torch.as_tensor(np.ascontiguousarray(images) if isinstance(images, np.ndarray) else images)
    return ((x.float() / 255.0 - IMAGE_MEAN) / IMAGE_STD).movedim(-1, -3)


# Optional clip key: the clip's images already decoded by `decode_image` at a teacher's size,
# (16, H, W, 3) uint8 (the label pipeline's JPEG check decodes them so, once); `clip_arrays` takes
# them where the size is its own instead of decoding `images` again. Never written to a table.
DECODED_IMAGES = "decoded_images"


def image_size(spec: str) -> tuple[int, int] | None:
    """(height, width) at which the teacher of `spec` decodes clip images (`decode_image`), read
    from its weights' metadata without loading them; None for a teacher that prepares its images
    itself (alpamayo-r1) or whose weights are missing (loading it reports that)."""
    from safetensors import safe_open

    kind, _, path = spec.partition(":")
    weights = Path(path or WEIGHTS_DIR) / WEIGHTS_FILE
    if kind != "tiny" or not weights.exists():
        return None
    with safe_open(str(weights), framework="pt") as f:
        config = (f.metadata() or {}).get("config")
    if config is None:
        return None
    cfg = VLAConfig.from_dict(json.loads(config))
    return cfg.image_height, cfg.image_width


def clip_arrays(clip: dict, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A CLIPS row -> (16 decoded images (16, H, W, 3) uint8, history xyz (16, 3), history rot (16, 9));
    the images of its DECODED_IMAGES where they have this size."""
    if len(clip["images"]) != NUM_IMAGES:
        raise ValueError(f"clip {clip.get('clip_id')}: expected {NUM_IMAGES} images, got {len(clip['images'])}")
    images = clip.get(DECODED_IMAGES)
    if images is None or images.shape != (NUM_IMAGES, height, width, 3):
        images = np.stack([decode_image(b, height, width) for b in clip["images"]])
    xyz = np.asarray(clip["ego_history_xyz"], dtype=np.float32).reshape(NUM_HISTORY, 3)
    rot = np.asarray(clip["ego_history_rot"], dtype=np.float32).reshape(NUM_HISTORY, 9)
    return images, xyz, rot


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_weights(model: TinyVLA, tokenizer: Tokenizer, out_dir: str | Path) -> Path:
    """Write the weights (safetensors, config in its metadata) and the tokenizer into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"config": json.dumps(model.cfg.to_dict()), "version": VERSION}
    save_file(state, out_dir / WEIGHTS_FILE, metadata=meta)
    tokenizer.save(out_dir / TOKENIZER_FILE)
    return out_dir / WEIGHTS_FILE


def load_model(weights_dir: str | Path, device: str = "cpu") -> tuple[TinyVLA, Tokenizer, str]:
    """(model in eval mode, tokenizer, version) from a weights folder; safetensors only."""
    from safetensors import safe_open

    path = Path(weights_dir) / WEIGHTS_FILE
    if not path.exists():
        raise FileNotFoundError(f"no tiny teacher weights at {path}; train them with `coclabel teacher train`")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    try:
        cfg = VLAConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path} is not a tiny teacher checkpoint: its metadata has no valid config ({e!r})") from None
    model = TinyVLA(cfg)
    model.load_state_dict(load_file(str(path)))
    tokenizer = Tokenizer.load(Path(weights_dir) / TOKENIZER_FILE)
    if len(tokenizer) != model.cfg.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens, model expects {model.cfg.vocab_size}")
    return model.to(device).eval(), tokenizer, meta.get("version", VERSION)


class TinyTeacher:
    """The tiny teacher (models/vla.py) with its bundled or trained weights.

    Batches are padded to `batch_size` clips (a copy of the last clip) so that every forward pass
    has the same shape: CPU kernels pick their blocking by shape, and a fixed shape keeps a clip's
    outputs bitwise identical whichever clips share its batch."""

    name = "tiny"

    def __init__(self, weights_dir: str | Path = WEIGHTS_DIR, device: str = "cpu", batch_size: int = 16,
                 temperature: float = DEFAULT_TEMPERATURE, top_p: float = 0.98):
        self.device = device
        self.model, self.tokenizer, self.version = load_model(weights_dir, device)
        self.weights_path = Path(weights_dir) / WEIGHTS_FILE
        self.weights_sha256 = file_sha256(self.weights_path)
        self.batch_size = batch_size
        self.temperature, self.top_p = temperature, top_p

    def predict(self, clips: list[dict], num_samples: int, seeds: list[int]) -> list[list[dict]]:
        if len(clips) != len(seeds):
            raise ValueError(f"{len(clips)} clips but {len(seeds)} seeds")
        cfg = self.model.cfg
        arrays = [clip_arrays(c, cfg.image_height, cfg.image_width) for c in clips]
        out = []
        for start in range(0, len(clips), self.batch_size):
            out += self._predict_batch(arrays[start : start + self.batch_size], num_samples, seeds[start : start + self.batch_size])
        return out

    def _predict_batch(self, arrays, num_samples: int, seeds: list[int]) -> list[list[dict]]:
        n = len(arrays)
        padded = arrays + [arrays[-1]] * (self.batch_size - n)
        seeds = list(seeds) + [seeds[-1]] * (self.batch_size - n)
        images = images_tensor(np.stack([a[0] for a in padded])).to(self.device)
        xyz = np.stack([a[1] for a in padded])
        rot = np.stack([a[2] for a in padded])
        v0 = speed_from_history(xyz)
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        ids, actions = self.model.sample(
            images, torch.from_numpy(xyz).to(self.device), torch.from_numpy(rot).to(self.device),
            torch.from_numpy(v0).float().to(self.device), num_samples, generators,
            self.temperature, self.top_p, self.tokenizer.bos_id, self.tokenizer.eos_id,
        )
        ids, actions = ids[:n].cpu().numpy(), actions[:n].cpu().double().numpy()
        out = []
        for i in range(n):
            # one clip at a time: numpy's vectorised sin/cos treat the tail of an array differently,
            # so integrating a whole batch would tie a clip's bits to its place in the batch
            traj_xyz, traj_yaw = actions_to_traj(actions[i], v0[i], xyz[i, -1, 2])
            out.append([
                {"reasoning": self.tokenizer.decode(ids[i, k]), "traj_xyz": traj_xyz[k].astype(np.float32),
                 "traj_yaw": traj_yaw[k].astype(np.float32)}
                for k in range(num_samples)
            ])
        return out


def load_teacher(spec: str, device: str = "cpu"):
    """A teacher from its spec: "tiny" (bundled weights), "tiny:DIR" (weights trained into DIR) or
    "alpamayo-r1:PATH" (NVIDIA's checkpoint at PATH, models/alpamayo.py)."""
    kind, _, path = spec.partition(":")
    if kind == "tiny":
        return TinyTeacher(path or WEIGHTS_DIR, device)
    if kind == "alpamayo-r1":
        if not path:
            raise ValueError("alpamayo-r1 needs a checkpoint path: --teacher alpamayo-r1:PATH")
        from models.alpamayo import AlpamayoR1Teacher

        return AlpamayoR1Teacher(path, device)
    raise ValueError(f"unknown teacher {spec!r}; expected 'tiny', 'tiny:DIR' or 'alpamayo-r1:PATH'")
