"""The teacher step: Beam RunInference over clips with the tiny teacher or Alpamayo-R1.

`TeacherModelHandler` turns a batch of clip rows (dicts with the columns of
`schemas.tables.CLIPS`) into one result per clip, in the order of the batch:

    {"clip": the clip row without "images",
     "teacher": {"name", "version", "weights_sha256"},
     "samples": K x {"reasoning", "traj_xyz" (64, 3), "traj_yaw" (64,)} or None,
     "error": None or {"stage": "teacher", "reason": "teacher_error", "detail": str}}

The images (and the decoded arrays `teacher_decoder` had the clip assembly attach, under
models.teacher.DECODED_IMAGES) are dropped because the clips table already holds them and
nothing after the teacher reads them; everything else (ids, partition keys, ego future for minADE, source_uri
for quarantine rows) travels on. Each clip's sampling seed is `schemas.ids.seed_of(clip_id)`.
A batch on which the teacher raises is retried clip by clip; a clip that still fails gets an
`error` (Reason.TEACHER_ERROR) for the quarantine and no samples, so one bad clip never stops a
run. Batching, model sharing and model copies are the runner's job (RunInference); the clips
must be in the global window first or every batch holds one clip (`TeacherInference` does it).
"""

import functools
import logging
import re
from typing import Any, Callable, Iterable, Optional, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, RunInference
from apache_beam.transforms.window import GlobalWindows

from models.heap import keep_freed_memory
from models.teacher import DECODED_IMAGES, decode_image, image_size, load_teacher
from schemas.contract import DEFAULT_NUM_SAMPLES
from schemas.ids import seed_of
from schemas.reasons import STAGE_OF, Reason

METRICS_NAMESPACE = "coclabel.teacher"
_log = logging.getLogger(__name__)
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_IMAGE_KEYS = ("images", DECODED_IMAGES)


def teacher_decoder(spec: str) -> Optional[Callable]:
    """The JPEG decoder of the teacher of `spec` (models.teacher.decode_image at its input size),
    for the clip assembly's decode check to decode each image once, for the teacher; None for a
    teacher that prepares its images itself."""
    size = image_size(spec)
    return None if size is None else functools.partial(decode_image, height=size[0], width=size[1])


def _load_teacher(spec: str, device: str):
    return load_teacher(spec, device=device)


class LoadedTeacher:
    """A loaded teacher behind method calls only: with `large_model` RunInference hands
    `run_inference` a cross-process proxy, which forwards methods but not attributes."""

    def __init__(self, teacher):
        self._teacher = teacher

    def identity(self) -> dict:
        t = self._teacher
        return {"name": t.name, "version": t.version, "weights_sha256": t.weights_sha256}

    def predict(self, clips: list[dict], num_samples: int, seeds: list[int]) -> list[list[dict]]:
        return self._teacher.predict(clips, num_samples, seeds)


class TeacherModelHandler(ModelHandler[dict, dict, Any]):
    """RunInference handler for any coclabel teacher (`teacher` spec as in `load_teacher`:
    "tiny" or "alpamayo-r1:PATH").

    `device` is "cpu" or "cuda[:N]"; asking for CUDA where there is none is an error when the
    model loads (on the worker, which may have a GPU that the launcher lacks), never a silent
    CPU run. `min_batch_size`, `max_batch_size` and `max_batch_duration_secs` (streaming) go to
    BatchElements; `large_model` shares one model across a worker's processes and
    `model_copies` loads that many. `loader(spec, device)` replaces `models.teacher.load_teacher`
    (tests, other teachers).
    """

    def __init__(
        self,
        teacher: str = "tiny",
        num_samples: int = DEFAULT_NUM_SAMPLES,
        device: str = "cpu",
        *,
        min_batch_size: Optional[int] = None,
        max_batch_size: Optional[int] = None,
        max_batch_duration_secs: Optional[int] = None,
        large_model: bool = False,
        model_copies: Optional[int] = None,
        loader: Optional[Callable[[str, str], Any]] = None,
    ):
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if device != "cpu" and not device.startswith("cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
        super().__init__(
            min_batch_size=min_batch_size,
            max_batch_size=max_batch_size,
            max_batch_duration_secs=max_batch_duration_secs,
            large_model=large_model,
            model_copies=model_copies,
        )
        self.teacher = teacher
        self.num_samples = num_samples
        self.device = device
        self._loader = loader or _load_teacher

    def __repr__(self) -> str:
        return f"TeacherModelHandler(teacher={self.teacher!r}, num_samples={self.num_samples}, device={self.device!r})"

    def load_model(self):
        keep_freed_memory()  # the teacher's per-batch temporaries stay in the heap (models/heap.py)
        if self.device.startswith("cuda"):
            import torch

            from models.alpamayo import TeacherUnavailable

            if not torch.cuda.is_available():
                raise TeacherUnavailable(
                    f"The teacher was asked to run on {self.device!r} but torch.cuda.is_available() "
                    "is False on this worker; use --device cpu or a worker with a GPU."
                )
        return LoadedTeacher(self._loader(self.teacher, self.device))

    def run_inference(
        self, batch: Sequence[dict], model, inference_args: Optional[dict[str, Any]] = None
    ) -> Iterable[dict]:
        clips = list(batch)
        seeds = [seed_of(clip["clip_id"]) for clip in clips]
        identity = model.identity()
        try:
            outcomes = self._predict(model, clips, seeds)
        except Exception as error:  # one bad clip must not cost the batch: retry clip by clip
            _log.warning("teacher failed on a batch of %d clips (%s); retrying clip by clip", len(clips), error)
            outcomes = []
            for clip, seed in zip(clips, seeds):
                try:
                    outcomes.append(self._predict(model, [clip], [seed])[0])
                except Exception as clip_error:
                    outcomes.append(clip_error)
        results = []
        for clip, outcome in zip(clips, outcomes):
            failed = isinstance(outcome, Exception)
            if failed:
                Metrics.counter(METRICS_NAMESPACE, "teacher_errors").inc()
            results.append(
                {
                    "clip": {key: value for key, value in clip.items() if key not in _IMAGE_KEYS},
                    "teacher": identity,
                    "samples": None if failed else outcome,
                    "error": _teacher_error(outcome) if failed else None,
                }
            )
        return results

    def _predict(self, model, clips: list[dict], seeds: list[int]) -> list[list[dict]]:
        samples = model.predict(clips, self.num_samples, seeds)
        if len(samples) != len(clips):
            raise ValueError(f"the teacher returned {len(samples)} results for {len(clips)} clips")
        return samples

    def get_num_bytes(self, batch: Sequence[dict]) -> int:
        """The image bytes of the batch, JPEGs and decoded arrays (cheaper than pickling it)."""
        return sum(sum(len(image) for image in clip.get("images", ())) + getattr(clip.get(DECODED_IMAGES), "nbytes", 0)
                   for clip in batch)


def _teacher_error(error: Exception) -> dict:
    """The error entry of a failed clip; object addresses ("at 0x7f...") are dropped from the
    detail so that a rerun writes the same quarantine row."""
    reason = Reason.TEACHER_ERROR
    detail = _ADDRESS.sub("", f"{type(error).__name__}: {error}")
    return {"stage": STAGE_OF[reason].value, "reason": reason.value, "detail": detail}


def teacher_run_inference(handler: TeacherModelHandler, accelerator: Optional[str] = None) -> RunInference:
    """RunInference with `handler`, hinted to run on `accelerator` when one is given (e.g.
    "type:nvidia-l4;count:1;install-nvidia-driver" on Dataflow)."""
    transform = RunInference(handler)
    return transform.with_resource_hints(accelerator=accelerator) if accelerator else transform


class TeacherInference(beam.PTransform):
    """Clips -> teacher results: re-windows into the global window (so that batches fill up)
    and runs `teacher_run_inference(handler, accelerator)`."""

    def __init__(self, handler: TeacherModelHandler, accelerator: Optional[str] = None):
        super().__init__()
        self._handler = handler
        self._accelerator = accelerator

    def expand(self, clips):
        return (
            clips
            | "GlobalWindow" >> beam.WindowInto(GlobalWindows())
            | "RunInference" >> teacher_run_inference(self._handler, self._accelerator)
        )
