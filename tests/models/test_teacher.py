"""The Teacher interface of the tiny teacher: shapes, seeding, batch invariance, loading."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from models.teacher import (
    TOKENIZER_FILE,
    WEIGHTS_DIR,
    WEIGHTS_FILE,
    TinyTeacher,
    load_teacher,
    save_weights,
)
from models.tokenizer import Tokenizer
from models.vla import TinyVLA, VLAConfig
from tests.fakes import jpeg

TEXTS = ["Stop at the stop line since the traffic light is red.", "Keep speed since the road ahead is clear."]


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    torch.manual_seed(0)
    tok = Tokenizer.fit(TEXTS)
    model = TinyVLA(VLAConfig(vocab_size=len(tok), d_model=32, n_heads=2, n_decoder_layers=1, n_expert_layers=1, max_text_len=8))
    torch.nn.init.normal_(model.expert.out.weight, std=0.5)  # zero-initialised: make samples differ
    path = tmp_path_factory.mktemp("tiny")
    save_weights(model, tok, path)
    return path


@pytest.fixture(scope="module")
def teacher(weights_dir):
    return TinyTeacher(weights_dir, batch_size=4, temperature=1.0)


def make_clip(i: int) -> dict:
    image = np.zeros((320, 576, 3), np.uint8)
    image[:, :, 0] = np.arange(576) * (i + 1) % 256  # a cheap-to-decode gradient per clip
    image = jpeg(image)
    history = np.zeros((16, 3), np.float32)
    history[:, 0] = (np.arange(16) - 15) * 0.1 * (5.0 + i)
    return {"clip_id": f"clip-{i}", "images": [image] * 16, "ego_history_xyz": history.tolist(),
            "ego_history_rot": np.tile(np.eye(3).reshape(9), (16, 1)).tolist()}


def test_output_shapes(teacher):
    out = teacher.predict([make_clip(0), make_clip(1)], 3, [1, 2])
    assert len(out) == 2 and all(len(s) == 3 for s in out)
    sample = out[0][0]
    assert set(sample) == {"reasoning", "traj_xyz", "traj_yaw"}
    assert isinstance(sample["reasoning"], str)
    assert sample["traj_xyz"].shape == (64, 3) and sample["traj_xyz"].dtype == np.float32
    assert sample["traj_yaw"].shape == (64,) and sample["traj_yaw"].dtype == np.float32
    assert np.all(sample["traj_xyz"][:, 2] == 0.0)  # z held at the last history z


def same(a: list[dict], b: list[dict]) -> bool:
    return all(x["reasoning"] == y["reasoning"] and np.array_equal(x["traj_xyz"], y["traj_xyz"])
               and np.array_equal(x["traj_yaw"], y["traj_yaw"]) for x, y in zip(a, b, strict=True))


def test_deterministic_for_a_seed_and_different_across_seeds(teacher):
    clip = make_clip(3)
    a = teacher.predict([clip], 2, [42])[0]
    assert same(a, teacher.predict([clip], 2, [42])[0])
    b = teacher.predict([clip], 2, [43])[0]
    assert not np.array_equal(a[0]["traj_xyz"], b[0]["traj_xyz"])


def test_batch_invariance(teacher):
    clips = [make_clip(i) for i in range(5)]
    seeds = [11, 12, 13, 14, 15]
    batch = teacher.predict(clips, 2, seeds)
    for i in (0, 2, 4):
        assert same(teacher.predict([clips[i]], 2, [seeds[i]])[0], batch[i])
    # and after a batch boundary (batch_size 4): clip 0 as the 5th of 5
    shifted = teacher.predict(clips[1:] + clips[:1], 2, seeds[1:] + seeds[:1])
    assert same(shifted[4], batch[0]) and same(shifted[0], batch[1])


def test_identity_and_errors(teacher, weights_dir):
    assert teacher.name == "tiny" and teacher.device == "cpu"
    assert len(teacher.weights_sha256) == 64
    with pytest.raises(ValueError, match="seeds"):
        teacher.predict([make_clip(0)], 2, [1, 2])
    with pytest.raises(ValueError, match="16 images"):
        teacher.predict([{**make_clip(0), "images": []}], 2, [1])
    assert load_teacher(f"tiny:{weights_dir}").weights_sha256 == teacher.weights_sha256
    with pytest.raises(ValueError, match="unknown teacher"):
        load_teacher("huge")
    with pytest.raises(ValueError, match="checkpoint path"):
        load_teacher("alpamayo-r1")


def test_weights_are_safetensors_only(weights_dir):
    with safe_open(str(weights_dir / WEIGHTS_FILE), framework="pt") as f:
        cfg = VLAConfig.from_dict(json.loads(f.metadata()["config"]))
        keys = set(f.keys())
    assert keys == set(TinyVLA(cfg).state_dict())


def test_bundled_weights_load():
    assert (WEIGHTS_DIR / WEIGHTS_FILE).stat().st_size <= 20e6
    teacher = load_teacher("tiny")
    assert teacher.version and len(Tokenizer.load(WEIGHTS_DIR / TOKENIZER_FILE)) == teacher.model.cfg.vocab_size
    out = TinyTeacher(WEIGHTS_DIR, batch_size=1).predict([make_clip(0)], 2, [0])
    assert len(out[0]) == 2 and out[0][0]["reasoning"]
