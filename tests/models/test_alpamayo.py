"""The Alpamayo-R1 adapter: input construction, output mapping and clear errors, with a fake
processor and a fake model standing in for the network."""

import hashlib
import sys
import types

import numpy as np
import pytest
import torch

from models import alpamayo
from models.alpamayo import (
    HISTORY_PLACEHOLDER,
    INSTRUCTION,
    AlpamayoR1Teacher,
    TeacherUnavailable,
    build_inputs,
    clip_frames,
    outputs_to_samples,
)
from models.geometry import yaw_to_matrix
from schemas.contract import NUM_FRAMES, TEACHER_CAMERAS
from tests.fakes import jpeg

H, W = 32, 48
T0 = 5_000_000


def _colour(k: int, j: int) -> tuple[int, int, int]:
    """The solid colour of camera k's frame j (j = 0 is t0-0.3 s)."""
    return 40 + 40 * k, 30 + 50 * j, 128


def _image(k: int, j: int) -> bytes:
    image = np.zeros((H, W, 3), dtype=np.uint8)
    image[...] = _colour(k, j)
    return jpeg(image, quality=100)


def make_clip(clip_id: str = "c0", offset: float = 0.0, cameras=TEACHER_CAMERAS, frame_order=range(NUM_FRAMES)):
    """A clip whose camera k / frame j is decodable from its colour; `cameras` and
    `frame_order` permute how they are stored."""
    ks = [TEACHER_CAMERAS.index(c) for c in cameras]
    return {
        "clip_id": clip_id,
        "camera_names": list(cameras),
        "frame_timestamps_us": [[T0 - (3 - j) * 100_000 for j in frame_order] for _ in ks],
        "images": [_image(k, j) for k in ks for j in frame_order],
        "ego_history_xyz": (np.arange(48, dtype=np.float32).reshape(16, 3) * 0.5 + offset).tolist(),
        "ego_history_rot": (np.arange(144, dtype=np.float32).reshape(16, 9) + offset).tolist(),
    }


def _decoded_colours(frames: torch.Tensor) -> list[tuple[int, int, int]]:
    means = frames.float().mean(dim=(2, 3)).round().int().tolist()
    return [tuple(m) for m in means]


class FakeProcessor:
    """Records what the adapter asks of the Qwen3-VL processor."""

    def __init__(self):
        self.calls = []

    def apply_chat_template(self, conversations, **kwargs):
        self.calls.append((conversations, kwargs))
        return {"input_ids": torch.zeros(len(conversations), 7, dtype=torch.long)}


class FakeModel:
    """Stands in for AlpamayoR1: random outputs of the release's shapes from torch's RNG;
    records whether the shared-prefill `generate` was installed on its `vlm` during each call."""

    def __init__(self):
        self.calls = []
        self.shared_prefill = []
        self.tokenizer = object()
        self.vlm = types.SimpleNamespace()

    def to(self, device):
        return self

    def eval(self):
        return self

    def sample_trajectories_from_data_with_vlm_rollout(self, data, **kwargs):
        self.calls.append((data, kwargs))
        self.shared_prefill.append("generate" in vars(self.vlm))
        b, k = data["ego_history_xyz"].shape[0], kwargs["num_traj_samples"]
        xyz = torch.rand(b, 1, k, 64, 3)
        rot = torch.from_numpy(yaw_to_matrix(torch.rand(b, 1, k, 64).numpy())).float()
        cot = np.array([[[f"clip {i} sample {s}" for s in range(k)]] for i in range(b)])
        return xyz, rot, {"cot": cot}


def test_frames_are_camera_major_in_teacher_order_oldest_first():
    frames = clip_frames(make_clip())
    assert frames.shape == (16, 3, H, W) and frames.dtype == torch.uint8
    expected = [_colour(k, j) for k in range(4) for j in range(4)]
    assert all(np.abs(np.subtract(got, want)).max() <= 2 for got, want in zip(_decoded_colours(frames), expected))


def test_frames_follow_teacher_camera_order_and_frame_times_whatever_the_stored_order():
    stored = make_clip(cameras=TEACHER_CAMERAS[::-1], frame_order=[2, 0, 3, 1])
    frames = clip_frames(stored)
    expected = [_colour(k, j) for k in range(4) for j in range(4)]
    assert all(np.abs(np.subtract(got, want)).max() <= 2 for got, want in zip(_decoded_colours(frames), expected))


def test_clip_without_a_teacher_camera_is_rejected():
    clip = make_clip()
    clip["camera_names"][3] = "camera_rear_tele_30fov"
    with pytest.raises(ValueError, match=r"lacks cameras \['camera_front_tele_30fov'\]"):
        clip_frames(clip)


def test_build_inputs_messages_history_and_processor_call():
    clips = [make_clip("a", 0.0), make_clip("b", 100.0)]
    processor = FakeProcessor()
    data = build_inputs(clips, processor)

    (conversations, kwargs), = processor.calls
    assert kwargs == {
        "tokenize": True,
        "add_generation_prompt": False,
        "continue_final_message": True,
        "return_dict": True,
        "return_tensors": "pt",
        "padding": True,
    }
    assert len(conversations) == 2
    for clip, messages in zip(clips, conversations):
        assert [m["role"] for m in messages] == ["system", "user", "assistant"]
        content = messages[1]["content"]
        assert [c["type"] for c in content] == ["image"] * 16 + ["text"]
        assert torch.equal(torch.stack([c["image"] for c in content[:16]]), clip_frames(clip))
        text = content[16]["text"]
        assert text == HISTORY_PLACEHOLDER + INSTRUCTION
        assert text.startswith("<|traj_history_start|>" + "<|traj_history|>" * 48 + "<|traj_history_end|>")
        assert text.endswith("then output the future trajectory.")
        assert messages[2]["content"] == [{"type": "text", "text": "<|cot_start|>"}]

    xyz, rot = data["ego_history_xyz"], data["ego_history_rot"]
    assert xyz.shape == (2, 1, 16, 3) and rot.shape == (2, 1, 16, 3, 3)
    assert xyz.dtype == torch.float32 and rot.dtype == torch.float32
    for b, clip in enumerate(clips):
        np.testing.assert_array_equal(xyz[b, 0].numpy(), np.asarray(clip["ego_history_xyz"], np.float32))
        np.testing.assert_array_equal(
            rot[b, 0].numpy(), np.asarray(clip["ego_history_rot"], np.float32).reshape(16, 3, 3)
        )
    assert rot[1, 0, 2, 1, 0].item() == 2 * 9 + 3 + 100.0  # row-major: element (1, 0) of pose 2
    assert data["tokenized_data"]["input_ids"].shape == (2, 7)


def test_build_inputs_rejects_a_batch_of_mixed_image_sizes():
    small = make_clip("a")
    big = make_clip("b")
    big["images"] = [jpeg(np.zeros((64, 64, 3), np.uint8))] * 16
    with pytest.raises(ValueError, match="share one image size"):
        build_inputs([small, big], FakeProcessor())


def test_outputs_to_samples_maps_yaw_samples_and_reasoning():
    b, k = 2, 3
    yaw = np.linspace(-3.0, 3.0, b * k * 64).reshape(b, 1, k, 64)
    xyz = torch.arange(b * k * 64 * 3, dtype=torch.bfloat16).reshape(b, 1, k, 64, 3)
    rot = torch.from_numpy(yaw_to_matrix(yaw)).float()
    cot = np.array([[[f"c{i}s{s}" for s in range(k)]] for i in range(b)])
    samples = outputs_to_samples(xyz, rot, cot)
    assert len(samples) == b and all(len(s) == k for s in samples)
    for i in range(b):
        for s in range(k):
            sample = samples[i][s]
            assert sample["reasoning"] == f"c{i}s{s}"
            assert sample["traj_xyz"].shape == (64, 3) and sample["traj_xyz"].dtype == np.float32
            assert sample["traj_yaw"].shape == (64,) and sample["traj_yaw"].dtype == np.float32
            np.testing.assert_allclose(sample["traj_yaw"], yaw[i, 0, s], atol=1e-6)
            np.testing.assert_array_equal(sample["traj_xyz"], xyz[i, 0, s].float().numpy())


def test_outputs_to_samples_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"pred_xyz must be \(B, 1, K, 64, 3\)"):
        outputs_to_samples(np.zeros((1, 1, 2, 32, 3)), np.zeros((1, 1, 2, 32, 3, 3)), [[["a", "b"]]])
    with pytest.raises(ValueError, match="do not match"):
        outputs_to_samples(np.zeros((1, 1, 2, 64, 3)), np.zeros((1, 1, 2, 64, 3, 3)), [[["a"]]])


def test_predict_calls_the_release_rollout_and_is_seeded():
    model = FakeModel()
    teacher = AlpamayoR1Teacher.wrap(model, FakeProcessor(), "cpu", "ab" * 32, "alpamayo_r1-0.1.0")
    clips = [make_clip("a"), make_clip("b", 1.0)]
    first = teacher.predict(clips, 4, [11, 12])
    (data, kwargs), = model.calls
    assert kwargs == {
        "top_p": 0.98,
        "temperature": 0.6,
        "num_traj_samples": 4,
        "max_generation_length": 256,
        "return_extra": True,
    }
    assert set(data) == {"tokenized_data", "ego_history_xyz", "ego_history_rot"}
    assert [len(s) for s in first] == [4, 4]
    assert first[1][3]["reasoning"] == "clip 1 sample 3"
    again = teacher.predict(clips, 4, [11, 12])
    other = teacher.predict(clips, 4, [11, 13])
    assert all(np.array_equal(a["traj_xyz"], b["traj_xyz"]) for x, y in zip(first, again) for a, b in zip(x, y))
    assert not np.array_equal(first[0][0]["traj_xyz"], other[0][0]["traj_xyz"])
    with pytest.raises(ValueError, match="1 seeds for 2 clips"):
        teacher.predict(clips, 4, [11])
    assert model.shared_prefill == [True] * 3 and "generate" not in vars(model.vlm)


def test_release_rollout_leaves_the_model_untouched_and_unknown_rollouts_are_rejected():
    model = FakeModel()
    teacher = AlpamayoR1Teacher.wrap(model, FakeProcessor(), "cpu", "ab" * 32, "v", rollout="release")
    teacher.predict([make_clip("a")], 2, [1])
    assert model.shared_prefill == [False] and teacher.rollout == "release"
    with pytest.raises(ValueError, match=r"rollout must be one of \('shared_prefill', 'release'\), got 'fast'"):
        AlpamayoR1Teacher.wrap(model, FakeProcessor(), "cpu", "ab" * 32, "v", rollout="fast")


def test_missing_package_gives_one_clear_sentence(tmp_path):
    with pytest.raises(TeacherUnavailable) as error:
        AlpamayoR1Teacher(str(tmp_path))
    assert str(error.value) == (
        "The Alpamayo-R1 teacher needs the alpamayo_r1 and transformers packages "
        "(pip install the alpamayo_r1 package from https://github.com/NVlabs/alpamayo), "
        "but importing them failed: No module named 'alpamayo_r1'."
    )


@pytest.fixture
def release(monkeypatch):
    """Fake `alpamayo_r1` and `transformers` modules that record how they are loaded."""
    loads = {}

    class AlpamayoR1:
        @staticmethod
        def from_pretrained(path, **kwargs):
            loads["model"] = (path, kwargs)
            return FakeModel()

    class AutoProcessor:
        @staticmethod
        def from_pretrained(name, **kwargs):
            loads["processor"] = (name, kwargs)
            return types.SimpleNamespace(tokenizer=None)

    modules = {
        "alpamayo_r1": types.ModuleType("alpamayo_r1"),
        "alpamayo_r1.models": types.ModuleType("alpamayo_r1.models"),
        "alpamayo_r1.models.alpamayo_r1": types.ModuleType("alpamayo_r1.models.alpamayo_r1"),
        "transformers": types.ModuleType("transformers"),
    }
    modules["alpamayo_r1.models.alpamayo_r1"].AlpamayoR1 = AlpamayoR1
    modules["transformers"].AutoProcessor = AutoProcessor
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return loads


def test_missing_weights_path_gives_one_clear_sentence(release, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(TeacherUnavailable) as error:
        AlpamayoR1Teacher(str(missing))
    assert str(error.value) == (
        f"No Alpamayo-R1 weights (*.safetensors) at {str(missing)!r}: "
        "download nvidia/Alpamayo-R1-10B there first."
    )
    assert release == {}


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_no_cuda_gives_one_clear_sentence(release, tmp_path, monkeypatch, device):
    (tmp_path / "model.safetensors").write_bytes(b"w")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(TeacherUnavailable) as error:
        AlpamayoR1Teacher(str(tmp_path), device=device)
    assert str(error.value) == (
        "The Alpamayo-R1 teacher needs a CUDA GPU with >= 24 GB of memory, "
        f"but device={device!r} and torch.cuda.is_available() is False."
    )
    assert release == {}


def test_loads_release_with_safetensors_bf16_and_pixel_bounds(release, tmp_path, monkeypatch):
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"second")
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"first")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    teacher = AlpamayoR1Teacher(str(tmp_path), device="cuda")
    assert release["model"] == (str(tmp_path), {"dtype": torch.bfloat16, "use_safetensors": True})
    assert release["processor"] == ("Qwen/Qwen3-VL-2B-Instruct", {"min_pixels": 163840, "max_pixels": 196608})
    assert teacher.processor.tokenizer is teacher.model.tokenizer
    expected = hashlib.sha256(
        b"model-00001-of-00002.safetensors\x00first" + b"model-00002-of-00002.safetensors\x00second"
    ).hexdigest()
    assert teacher.weights_sha256 == expected
    assert (teacher.name, teacher.device, teacher.version) == ("alpamayo-r1", "cuda", "alpamayo_r1-source")

    (tmp_path / "preprocessor_config.json").write_text("{}")
    AlpamayoR1Teacher(str(tmp_path), device="cuda")
    assert release["processor"][0] == str(tmp_path)


def test_batch_seed_depends_on_every_seed_and_their_order():
    seeds = {alpamayo.batch_seed(s) for s in ([1, 2], [2, 1], [1, 3], [1])}
    assert len(seeds) == 4
    assert alpamayo.batch_seed([1, 2]) == alpamayo.batch_seed([1, 2]) < 2**63


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_predict_on_cuda_moves_inputs_autocasts_and_is_seeded():
    seen = []

    class CudaModel(FakeModel):
        def sample_trajectories_from_data_with_vlm_rollout(self, data, **kwargs):
            seen.append(
                (
                    data["ego_history_xyz"].device.type,
                    data["tokenized_data"]["input_ids"].device.type,
                    torch.is_autocast_enabled("cuda"),
                    torch.get_autocast_dtype("cuda"),
                )
            )
            b, k = data["ego_history_xyz"].shape[0], kwargs["num_traj_samples"]
            xyz = torch.rand(b, 1, k, 64, 3, device="cuda")
            rot = torch.eye(3, device="cuda").expand(b, 1, k, 64, 3, 3)
            return xyz, rot, {"cot": np.full((b, 1, k), "go")}

    teacher = AlpamayoR1Teacher.wrap(CudaModel(), FakeProcessor(), "cuda", "0" * 64, "test")
    clips = [make_clip("a"), make_clip("b", 1.0)]
    first = teacher.predict(clips, 2, [5, 6])
    again = teacher.predict(clips, 2, [5, 6])
    assert seen[0] == ("cuda", "cuda", True, torch.bfloat16)
    assert np.array_equal(first[1][1]["traj_xyz"], again[1][1]["traj_xyz"])
    assert first[0][0]["traj_yaw"].tolist() == [0.0] * 64
