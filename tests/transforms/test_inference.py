"""The teacher RunInference handler on Beam's local (bundle-based direct) runner, with a fake
teacher that follows the coclabel teacher interface and records the batches it sees."""

import functools
import json

import apache_beam as beam
import numpy as np
import pytest
import torch
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.transforms import window

from models.alpamayo import TeacherUnavailable
from schemas.ids import clip_id as make_clip_id
from schemas.ids import seed_of
from transforms.inference import TeacherInference, TeacherModelHandler, teacher_run_inference

K = 3


class FakeTeacher:
    """Seeded samples per clip; raises on any batch holding a clip of log "bad"; appends each
    batch it is given (clip ids, seeds) to `log` as a JSON line."""

    name = "fake-teacher"
    version = "0.0.1"
    weights_sha256 = "f" * 64

    def __init__(self, spec: str, device: str, log: str):
        self.spec, self.device, self.log = spec, device, log

    def predict(self, clips, num_samples, seeds):
        with open(self.log, "a") as f:
            f.write(json.dumps({"clip_ids": [c["clip_id"] for c in clips], "seeds": seeds, "spec": self.spec}) + "\n")
        if any(c["log_id"] == "bad" for c in clips):
            raise RuntimeError("cannot read this clip")
        out = []
        for clip, seed in zip(clips, seeds):
            rng = np.random.default_rng(seed)
            out.append(
                [
                    {
                        "reasoning": f"sample {k} of {clip['log_id']}",
                        "traj_xyz": rng.normal(size=(64, 3)).astype(np.float32),
                        "traj_yaw": rng.normal(size=64).astype(np.float32),
                    }
                    for k in range(num_samples)
                ]
            )
        return out


def fake_loader(spec, device, log):
    return FakeTeacher(spec, device, log)


def make_clips(n: int, bad: tuple[int, ...] = ()) -> list[dict]:
    clips = []
    for i in range(n):
        log_id = "bad" if i in bad else "log-a"
        t0 = 2_000_000 + i * 500_000
        clips.append(
            {
                "clip_id": make_clip_id(log_id, t0),
                "vehicle_id": "veh-001",
                "log_id": log_id,
                "t0_us": t0,
                "date": "2026-01-01",
                "images": [bytes([i]) * 100] * 16,
                "ego_future_xyz": [[0.1 * j, 0.0, 0.0] for j in range(64)],
                "source_uri": f"/logs/{log_id}.mcap",
            }
        )
    return clips


def _summary(result: dict) -> dict:
    return {
        "clip": result["clip"],
        "teacher": result["teacher"],
        "error": result["error"],
        "samples": None
        if result["samples"] is None
        else [
            {"reasoning": s["reasoning"], "traj_xyz": s["traj_xyz"].tolist(), "traj_yaw": s["traj_yaw"].tolist()}
            for s in result["samples"]
        ],
    }


def _write(results: list[dict], path: str) -> None:
    with open(path, "w") as f:
        json.dump(sorted(results, key=lambda r: r["clip"]["clip_id"]), f)


def run_pipeline(clips, handler, out_path, windowed: bool = True, accelerator=None) -> list[dict]:
    """Runs clips (each in its own 1 s fixed window when `windowed`) through TeacherInference."""
    with beam.Pipeline(runner=BundleBasedDirectRunner()) as p:
        pcoll = p | beam.Create(clips)
        if windowed:
            pcoll = (
                pcoll
                | beam.Map(lambda c: window.TimestampedValue(c, c["t0_us"] / 1e6))
                | beam.WindowInto(window.FixedWindows(0.5))
            )
        _ = (
            pcoll
            | TeacherInference(handler, accelerator)
            | beam.Map(_summary)
            | beam.combiners.ToList()
            | beam.Map(_write, str(out_path))
        )
    return json.loads(out_path.read_text())


def _batches(log) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def _handler(log, **kwargs) -> TeacherModelHandler:
    return TeacherModelHandler("tiny", num_samples=K, loader=functools.partial(fake_loader, log=str(log)), **kwargs)


def test_batches_have_the_configured_size_and_results_match_clips(tmp_path):
    clips = make_clips(10)
    log = tmp_path / "batches.jsonl"
    results = run_pipeline(clips, _handler(log, min_batch_size=4, max_batch_size=4), tmp_path / "out.json")

    batches = _batches(log)
    assert sorted(len(b["clip_ids"]) for b in batches) == [2, 4, 4]
    assert all(b["spec"] == "tiny" for b in batches)
    seen = {cid: seed for b in batches for cid, seed in zip(b["clip_ids"], b["seeds"])}
    assert seen == {c["clip_id"]: seed_of(c["clip_id"]) for c in clips}

    assert [r["clip"]["clip_id"] for r in results] == sorted(c["clip_id"] for c in clips)
    by_id = {c["clip_id"]: c for c in clips}
    for r in results:
        clip = by_id[r["clip"]["clip_id"]]
        assert r["clip"] == {k: v for k, v in clip.items() if k != "images"}
        assert r["teacher"] == {"name": "fake-teacher", "version": "0.0.1", "weights_sha256": "f" * 64}
        assert r["error"] is None
        assert [s["reasoning"] for s in r["samples"]] == [f"sample {k} of log-a" for k in range(K)]
        expected = np.random.default_rng(seed_of(clip["clip_id"])).normal(size=(64, 3)).astype(np.float32)
        np.testing.assert_array_equal(np.asarray(r["samples"][0]["traj_xyz"], np.float32), expected)


def test_a_second_run_gives_identical_outputs(tmp_path):  # also: the local runner ignores the GPU hint
    clips = make_clips(7)
    first = run_pipeline(clips, _handler(tmp_path / "a.jsonl", max_batch_size=3), tmp_path / "a.json")
    second = run_pipeline(
        clips[::-1], _handler(tmp_path / "b.jsonl", max_batch_size=5), tmp_path / "b.json", accelerator="type:nvidia-l4;count:1"
    )
    assert len(first) == 7
    assert first == second


def test_a_failing_clip_becomes_a_teacher_error_and_the_others_are_labelled(tmp_path):
    clips = make_clips(6, bad=(2,))
    log = tmp_path / "batches.jsonl"
    results = run_pipeline(clips, _handler(log, min_batch_size=6, max_batch_size=6), tmp_path / "out.json")

    batches = [len(b["clip_ids"]) for b in _batches(log)]
    assert batches == [6, 1, 1, 1, 1, 1, 1]  # the batch, then each clip on its own
    assert len(results) == 6
    failed = [r for r in results if r["error"] is not None]
    assert [r["clip"]["clip_id"] for r in failed] == [clips[2]["clip_id"]]
    assert failed[0]["error"] == {
        "stage": "teacher",
        "reason": "teacher_error",
        "detail": "RuntimeError: cannot read this clip",
    }
    assert failed[0]["samples"] is None
    assert failed[0]["clip"]["source_uri"] == "/logs/bad.mcap"
    good = [r for r in results if r["error"] is None]
    assert len(good) == 5 and all(len(r["samples"]) == K for r in good)


def test_a_teacher_returning_too_few_results_is_retried_clip_by_clip():
    class Short(FakeTeacher):
        def predict(self, clips, num_samples, seeds):
            return super().predict(clips, num_samples, seeds)[:1]

    handler = TeacherModelHandler("tiny", num_samples=2)
    model = handler_model(Short("tiny", "cpu", "/dev/null"))
    results = handler.run_inference(make_clips(3), model)
    assert [r["error"] for r in results] == [None, None, None]
    assert [len(r["samples"]) for r in results] == [2, 2, 2]


def handler_model(teacher):
    from transforms.inference import LoadedTeacher

    return LoadedTeacher(teacher)


def test_cuda_without_cuda_is_a_clear_error_never_a_cpu_run(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    log = tmp_path / "batches.jsonl"
    handler = _handler(log, device="cuda")
    message = (
        "The teacher was asked to run on 'cuda' but torch.cuda.is_available() is False on this worker; "
        "use --device cpu or a worker with a GPU."
    )
    with pytest.raises(TeacherUnavailable) as error:
        handler.load_model()
    assert str(error.value) == message
    with pytest.raises(Exception, match="torch.cuda.is_available\\(\\) is False on this worker"):
        run_pipeline(make_clips(2), handler, tmp_path / "out.json", windowed=False)
    assert not log.exists()


def test_constructor_rejects_bad_options():
    with pytest.raises(ValueError, match="num_samples must be >= 1, got 0"):
        TeacherModelHandler("tiny", num_samples=0)
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda\\[:N\\]', got 'gpu'"):
        TeacherModelHandler("tiny", device="gpu")


def test_batching_and_sharing_options_reach_run_inference():
    handler = TeacherModelHandler("alpamayo-r1:/w", min_batch_size=2, max_batch_size=8, large_model=True, model_copies=2)
    assert handler.batch_elements_kwargs() == {"min_batch_size": 2, "max_batch_size": 8}
    assert handler.share_model_across_processes() and handler.model_copies() == 2
    plain = TeacherModelHandler()
    assert plain.batch_elements_kwargs() == {} and not plain.share_model_across_processes()
    assert (plain.teacher, plain.num_samples, plain.device) == ("tiny", 6, "cpu")
    assert plain.get_num_bytes(make_clips(2)) == 2 * 16 * 100


def test_accelerator_hint_is_set_only_when_given():
    handler = TeacherModelHandler()
    hinted = teacher_run_inference(handler, "type:nvidia-l4;count:1;install-nvidia-driver")
    assert hinted.get_resource_hints() == {"beam:resources:accelerator:v1": b"type:nvidia-l4;count:1;install-nvidia-driver"}
    assert teacher_run_inference(handler).get_resource_hints() == {}


def test_a_model_shared_across_processes_gives_the_same_results(tmp_path):
    clips = make_clips(5, bad=(1,))
    shared = run_pipeline(clips, _handler(tmp_path / "a.jsonl", max_batch_size=5, large_model=True), tmp_path / "a.json")
    local = run_pipeline(clips, _handler(tmp_path / "b.jsonl", max_batch_size=5), tmp_path / "b.json")
    assert shared == local
    assert sum(r["error"] is not None for r in shared) == 1


def test_default_loader_reaches_the_alpamayo_adapter_with_its_clear_error():
    handler = TeacherModelHandler("alpamayo-r1:/no/such/checkpoint")
    with pytest.raises(TeacherUnavailable, match="needs the alpamayo_r1 and transformers packages"):
        handler.load_model()


def _tiny_teacher_dir(path):
    """A randomly initialised, small tiny teacher saved as `coclabel teacher train` would."""
    from models.teacher import save_weights
    from models.tokenizer import Tokenizer
    from models.vla import TinyVLA, VLAConfig

    torch.manual_seed(0)
    tokenizer = Tokenizer.fit(["keep speed since the road ahead is clear", "stop at the red light"])
    model = TinyVLA(VLAConfig(vocab_size=len(tokenizer), d_model=32, n_heads=2, n_decoder_layers=1, n_expert_layers=1))
    save_weights(model, tokenizer, path)
    return path


def _real_clips(n: int, corrupt: int) -> list[dict]:
    from tests.fakes import jpeg

    clips = make_clips(n)
    for i, clip in enumerate(clips):
        image = np.full((80, 144, 3), 20 * i, dtype=np.uint8)
        clip["images"] = [jpeg(image)] * 16
        clip["ego_history_xyz"] = [[0.5 * (j - 15), 0.0, 0.0] for j in range(16)]
        clip["ego_history_rot"] = [[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]] * 16
    clips[corrupt]["images"][5] = b"not a jpeg"
    return clips


def test_the_tiny_teacher_runs_through_the_handler(tmp_path):
    torch.set_num_threads(1)
    spec = f"tiny:{_tiny_teacher_dir(tmp_path / 'weights')}"
    clips = _real_clips(5, corrupt=3)
    first = run_pipeline(clips, TeacherModelHandler(spec, num_samples=2, max_batch_size=5, min_batch_size=5), tmp_path / "a.json")
    second = run_pipeline(clips, TeacherModelHandler(spec, num_samples=2, max_batch_size=2), tmp_path / "b.json")
    assert first == second
    errors = {r["clip"]["clip_id"]: r["error"] for r in first}
    assert [cid for cid, e in errors.items() if e] == [clips[3]["clip_id"]]
    assert errors[clips[3]["clip_id"]] == {
        "stage": "teacher",
        "reason": "teacher_error",
        "detail": "UnidentifiedImageError: cannot identify image file <_io.BytesIO object>",
    }
    for r in first:
        assert r["teacher"]["name"] == "tiny" and len(r["teacher"]["weights_sha256"]) == 64
        if r["error"] is None:
            assert len(r["samples"]) == 2
            assert np.asarray(r["samples"][0]["traj_xyz"]).shape == (64, 3)
            assert np.asarray(r["samples"][0]["traj_yaw"]).shape == (64,)
