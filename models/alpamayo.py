"""NVIDIA's Alpamayo-R1 (Alpamayo 1, 10B) as a coclabel teacher.

The inputs are built as NVIDIA's release builds them (REFERENCE.md section 1):
- 16 images as (3, H, W) uint8 tensors, camera-major in `TEACHER_CAMERAS` order, each camera's
  4 frames oldest first (t0-0.3 s ... t0), with no camera labels;
- chat messages: a system line, then a user turn of the 16 images followed by one text entry
  holding the ego-history placeholder (48 `<|traj_history|>` tokens between start/end tokens)
  and the instruction, then an assistant turn opened with `<|cot_start|>` that the model
  continues;
- the Qwen3-VL processor (min_pixels 163840, max_pixels 196608) with the model's tokenizer,
  called with `continue_final_message=True`;
- ego history as float32 tensors `ego_history_xyz` (B, 1, 16, 3) and `ego_history_rot`
  (B, 1, 16, 3, 3) in the t0 ego frame (the model swaps them in for the placeholder tokens).

`sample_trajectories_from_data_with_vlm_rollout` returns `pred_xyz` (B, 1, K, 64, 3),
`pred_rot` (B, 1, K, 64, 3, 3) and `extra["cot"]` (B, 1, K) strings, which become K samples
per clip. The release draws the K reasoning samples with `generate(num_return_sequences=K)`,
which encodes each clip's 16 images and prefills its prompt K times; the default rollout
`"shared_prefill"` (models/vlm_rollout.py) runs the release's method with one vision pass and
one prefill per clip whose KV cache the K samples share, and the same random draws; `"release"`
runs it untouched. Either way the release's expert integrates all B*K samples' flow in one
batch per Euler step. `alpamayo_r1` (installed from NVIDIA's GitHub repository, not on PyPI),
`transformers` and the 22 GB of weights are only touched when the teacher is constructed.

Determinism: the release samples text with top-p and the trajectory with flow matching on the
GPU. `predict` seeds torch once per call from the clips' seeds, so a batch of the same clips
gives the same labels on the same GPU and software; a clip's labels still depend on the other
clips of its batch (one random stream per batch) and on GPU kernels that are not bitwise
deterministic across hardware.
"""

import hashlib
import io
from collections.abc import Mapping
from contextlib import nullcontext
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.geometry import matrix_to_yaw
from models.vlm_rollout import shared_prefill
from schemas.contract import NUM_FRAMES, NUM_FUTURE, NUM_HISTORY, TEACHER_CAMERAS

MIN_PIXELS = 163_840
MAX_PIXELS = 196_608
BASE_PROCESSOR = "Qwen/Qwen3-VL-2B-Instruct"  # the release's processor (with the model's tokenizer)
NUM_HISTORY_TOKENS = 48
HISTORY_PLACEHOLDER = (
    "<|traj_history_start|>" + "<|traj_history|>" * NUM_HISTORY_TOKENS + "<|traj_history_end|>"
)
SYSTEM_PROMPT = "You are a driving assistant that generates safe and accurate actions."
INSTRUCTION = (
    "output the chain-of-thought reasoning of the driving process, then output the future trajectory."
)
COT_START = "<|cot_start|>"
TOP_P = 0.98
TEMPERATURE = 0.6
MAX_GENERATION_LENGTH = 256
ROLLOUTS = ("shared_prefill", "release")

_INSTALL_HINT = "pip install the alpamayo_r1 package from https://github.com/NVlabs/alpamayo"


class TeacherUnavailable(RuntimeError):
    """A teacher cannot run here: its package, weights or device is missing."""


def clip_frames(clip: dict) -> torch.Tensor:
    """The clip's 16 JPEG images decoded to (16, 3, H, W) uint8, camera-major in
    `TEACHER_CAMERAS` order, each camera's frames sorted by time (oldest first)."""
    names = list(clip["camera_names"])
    missing = [c for c in TEACHER_CAMERAS if c not in names]
    if missing:
        raise ValueError(f"clip {clip.get('clip_id')} lacks cameras {missing}")
    times = np.asarray(clip["frame_timestamps_us"], dtype=np.int64).reshape(len(names), NUM_FRAMES)
    images = list(clip["images"])
    if len(images) != len(names) * NUM_FRAMES:
        raise ValueError(f"clip {clip.get('clip_id')} has {len(images)} images, expected {len(names) * NUM_FRAMES}")
    frames = []
    for camera in TEACHER_CAMERAS:
        k = names.index(camera)
        for j in np.argsort(times[k], kind="stable"):
            rgb = np.asarray(Image.open(io.BytesIO(images[k * NUM_FRAMES + j])).convert("RGB"))
            frames.append(torch.from_numpy(rgb.copy()).permute(2, 0, 1))
    if len({tuple(f.shape) for f in frames}) != 1:
        raise ValueError(f"clip {clip.get('clip_id')} has images of different sizes")
    return torch.stack(frames)


def history_tensors(clips: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """`ego_history_xyz` (B, 1, 16, 3) and `ego_history_rot` (B, 1, 16, 3, 3), float32."""
    xyz = np.asarray([c["ego_history_xyz"] for c in clips], dtype=np.float32)
    rot = np.asarray([c["ego_history_rot"] for c in clips], dtype=np.float32)
    if xyz.shape != (len(clips), NUM_HISTORY, 3) or rot.shape != (len(clips), NUM_HISTORY, 9):
        raise ValueError(f"ego history must be 16x3 and 16x9 per clip, got {xyz.shape[1:]} and {rot.shape[1:]}")
    return (
        torch.from_numpy(xyz).reshape(len(clips), 1, NUM_HISTORY, 3),
        torch.from_numpy(rot).reshape(len(clips), 1, NUM_HISTORY, 3, 3),
    )


def chat_messages(frames: torch.Tensor) -> list[dict]:
    """The release's conversation for one clip: images, history placeholder, instruction."""
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {
            "role": "user",
            "content": [{"type": "image", "image": frame} for frame in frames]
            + [{"type": "text", "text": HISTORY_PLACEHOLDER + INSTRUCTION}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": COT_START}]},
    ]


def build_inputs(clips: list[dict], processor) -> dict:
    """The `data` argument of the release's rollout for a batch of clips (on the CPU).

    All clips of one batch must share one image size (their token sequences then have the same
    length and need no padding); a ValueError says so otherwise.
    """
    frames = [clip_frames(c) for c in clips]
    if len({tuple(f.shape) for f in frames}) != 1:
        raise ValueError("clips of one Alpamayo-R1 batch must share one image size")
    tokenized = processor.apply_chat_template(
        [chat_messages(f) for f in frames],
        tokenize=True,
        add_generation_prompt=False,
        continue_final_message=True,
        return_dict=True,
        return_tensors="pt",
        padding=True,
    )
    xyz, rot = history_tensors(clips)
    return {"tokenized_data": tokenized, "ego_history_xyz": xyz, "ego_history_rot": rot}


def outputs_to_samples(pred_xyz, pred_rot, cot) -> list[list[dict]]:
    """The rollout's outputs -> per clip, K samples {reasoning, traj_xyz (64,3), traj_yaw (64,)}."""
    xyz = _numpy(pred_xyz)
    rot = _numpy(pred_rot)
    texts = np.asarray(cot, dtype=object)
    if xyz.ndim != 5 or xyz.shape[1] != 1 or xyz.shape[3:] != (NUM_FUTURE, 3):
        raise ValueError(f"pred_xyz must be (B, 1, K, {NUM_FUTURE}, 3), got {xyz.shape}")
    if rot.shape != xyz.shape[:4] + (3, 3) or texts.shape != xyz.shape[:3]:
        raise ValueError(f"pred_rot {rot.shape} and cot {texts.shape} do not match pred_xyz {xyz.shape}")
    yaw = matrix_to_yaw(rot).astype(np.float32)
    return [
        [
            {"reasoning": str(texts[b, 0, k]), "traj_xyz": xyz[b, 0, k], "traj_yaw": yaw[b, 0, k]}
            for k in range(xyz.shape[2])
        ]
        for b in range(xyz.shape[0])
    ]


def batch_seed(seeds: list[int]) -> int:
    """One 63-bit torch seed from the per-clip seeds of a batch (order matters)."""
    state = np.random.SeedSequence([int(s) for s in seeds]).generate_state(1, dtype=np.uint64)
    return int(state[0]) & ((1 << 63) - 1)


def _to_device(data, device: str):
    """Tensors (in nested mappings) moved to `device`; mappings become dicts."""
    if isinstance(data, torch.Tensor):
        return data.to(device)
    if isinstance(data, Mapping):
        return {key: _to_device(value, device) for key, value in data.items()}
    return data


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def weights_digest(files: list[Path]) -> str:
    """sha256 over the files' names and bytes, in the given order (streamed, 16 MiB reads)."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\x00")
        with open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()


class AlpamayoR1Teacher:
    """The release model behind the coclabel teacher interface (see `models.teacher`).

    `path` is a local folder of the Hugging Face checkpoint `nvidia/Alpamayo-R1-10B`
    (config and `*.safetensors`); `processor` names the Qwen3-VL processor to load (default:
    the weights folder when it holds `preprocessor_config.json`, else `Qwen/Qwen3-VL-2B-Instruct`
    from the Hugging Face cache or Hub); `rollout` is one of `ROLLOUTS` (see the module
    docstring). Raises TeacherUnavailable when the package, the weights or CUDA is missing.
    Hashing the weights reads all 22 GB once.
    """

    name = "alpamayo-r1"

    def __init__(self, path: str, device: str = "cuda", processor: str | None = None,
                 rollout: str = "shared_prefill"):
        _check_rollout(rollout)
        try:
            from alpamayo_r1.models.alpamayo_r1 import AlpamayoR1
            from transformers import AutoProcessor
        except ImportError as error:
            raise TeacherUnavailable(
                f"The Alpamayo-R1 teacher needs the alpamayo_r1 and transformers packages "
                f"({_INSTALL_HINT}), but importing them failed: {error}."
            ) from None
        weights = Path(path)
        files = sorted(weights.glob("*.safetensors")) if weights.is_dir() else []
        if not files:
            raise TeacherUnavailable(
                f"No Alpamayo-R1 weights (*.safetensors) at {path!r}: download nvidia/Alpamayo-R1-10B there first."
            )
        if not str(device).startswith("cuda") or not torch.cuda.is_available():
            raise TeacherUnavailable(
                f"The Alpamayo-R1 teacher needs a CUDA GPU with >= 24 GB of memory, "
                f"but device={device!r} and torch.cuda.is_available() is {torch.cuda.is_available()}."
            )
        model = AlpamayoR1.from_pretrained(str(weights), dtype=torch.bfloat16, use_safetensors=True)
        model = model.to(device).eval()
        if processor is None:
            processor = str(weights) if (weights / "preprocessor_config.json").exists() else BASE_PROCESSOR
        qwen_processor = AutoProcessor.from_pretrained(processor, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
        qwen_processor.tokenizer = model.tokenizer
        self._bind(model, qwen_processor, device, weights_digest(files), _release_version(), rollout)

    @classmethod
    def wrap(cls, model, processor, device: str, weights_sha256: str, version: str,
             rollout: str = "shared_prefill") -> "AlpamayoR1Teacher":
        """A teacher over an already loaded release model and processor (e.g. one shared
        with a notebook); no checks are made but the rollout's name."""
        _check_rollout(rollout)
        teacher = cls.__new__(cls)
        teacher._bind(model, processor, device, weights_sha256, version, rollout)
        return teacher

    def _bind(self, model, processor, device, weights_sha256, version, rollout):
        self.model = model
        self.processor = processor
        self.device = str(device)
        self.weights_sha256 = weights_sha256
        self.version = version
        self.rollout = rollout

    def predict(self, clips: list[dict], num_samples: int, seeds: list[int]) -> list[list[dict]]:
        """K = `num_samples` samples per clip, in the order of `clips`."""
        if len(seeds) != len(clips):
            raise ValueError(f"{len(seeds)} seeds for {len(clips)} clips")
        data = _to_device(build_inputs(clips, self.processor), self.device)
        torch.manual_seed(batch_seed(seeds))
        device_type = torch.device(self.device).type
        rollout = shared_prefill(self.model.vlm) if self.rollout == "shared_prefill" else nullcontext()
        with torch.inference_mode(), torch.autocast(device_type, dtype=torch.bfloat16), rollout:
            pred_xyz, pred_rot, extra = self.model.sample_trajectories_from_data_with_vlm_rollout(
                data=data,
                top_p=TOP_P,
                temperature=TEMPERATURE,
                num_traj_samples=num_samples,
                max_generation_length=MAX_GENERATION_LENGTH,
                return_extra=True,
            )
        return outputs_to_samples(pred_xyz, pred_rot, extra["cot"])


def _check_rollout(rollout: str) -> None:
    if rollout not in ROLLOUTS:
        raise ValueError(f"rollout must be one of {ROLLOUTS}, got {rollout!r}")


def _release_version() -> str:
    try:
        return f"alpamayo_r1-{metadata.version('alpamayo_r1')}"
    except metadata.PackageNotFoundError:
        return "alpamayo_r1-source"
