"""`coclabel teacher train --init`: continue training from saved weights on cached clips."""

import argparse
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from models.teacher import TOKENIZER_FILE, WEIGHTS_FILE, save_weights
from models.tokenizer import Tokenizer
from models.vla import TinyVLA, VLAConfig
from pipelines import teacher as cli
from sim.dataset import ClipDataset, cache_path
from tests.fakes import jpeg

TEXTS = ["Keep speed since the road ahead is clear.", "Slow down since a slower vehicle is ahead."]


def cached_drive(cache, seed: int, texts: list[str]) -> None:
    """A cache file exactly where `sim.dataset.build` looks for seed `seed` (1 minute, 2.5 s)."""
    image = jpeg(np.full((320, 576, 3), 90, np.uint8))
    history = np.zeros((16, 3), np.float32)
    history[:, 0] = (np.arange(16) - 15) * 1.0
    future = np.zeros((64, 3), np.float32)
    future[:, 0] = np.arange(1, 65) * 1.0
    clips = [{"clip_id": f"c{seed}-{i}", "images": [image] * 16, "ego_history_xyz": history,
              "ego_history_rot": np.tile(np.eye(3, dtype=np.float32).reshape(9), (16, 1)),
              "ego_future_xyz": future, "ego_future_rot": np.tile(np.eye(3, dtype=np.float32).reshape(9), (64, 1)),
              "family": "cruise", "cause": "clear_road", "reasoning": text, "longitudinal": "keep_speed", "lateral": "keep_lane"}
             for i, text in enumerate(texts)]
    ClipDataset.from_clips(clips).save(cache_path(cache, seed, 1, 2.5))


@pytest.fixture()
def init_dir(tmp_path):
    torch.manual_seed(0)
    tok = Tokenizer.fit(TEXTS)
    model = TinyVLA(VLAConfig(vocab_size=len(tok), d_model=32, n_heads=2, n_decoder_layers=1, n_expert_layers=1, max_text_len=12))
    model.action_scale.copy_(torch.tensor([0.25, 0.5]))
    save_weights(model, tok, tmp_path / "init")
    return tmp_path / "init"


def train_args(tmp_path, init, seed: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    return parser.parse_args(["train", "--out", str(tmp_path / "out"), "--init", str(init), "--seeds", str(seed),
                              "--drive-minutes", "1", "--stride-s", "2.5", "--cache", str(tmp_path), "--epochs", "1",
                              "--batch-size", "2", "--lr", "1e-2", "--threads", "1"])


def test_init_keeps_tokenizer_and_action_scale_and_trains(tmp_path, init_dir):
    cached_drive(tmp_path, 7, TEXTS * 2)
    assert cli.train(train_args(tmp_path, init_dir, 7)) == 0
    out = tmp_path / "out"
    assert json.loads((out / TOKENIZER_FILE).read_text())["tokens"] == json.loads((init_dir / TOKENIZER_FILE).read_text())["tokens"]
    before, after = load_file(init_dir / WEIGHTS_FILE), load_file(out / WEIGHTS_FILE)
    assert after["action_scale"].tolist() == [0.25, 0.5]  # not re-estimated from the new clips
    assert set(after) == set(before)
    assert any(not torch.equal(before[k], after[k]) for k in before)  # two optimiser steps changed it
    info = json.loads((out / "tiny_teacher_training.json").read_text())
    assert (info["init"], info["steps"], info["clips"]) == (str(init_dir), 2, 4)


def test_init_rejects_words_outside_its_vocabulary(tmp_path, init_dir):
    cached_drive(tmp_path, 8, ["Turn left since the light turned green."])
    with pytest.raises(ValueError, match=r"outside its vocabulary: \['Turn', 'green', 'left', 'light', 'turned'\]"):
        cli.train(train_args(tmp_path, init_dir, 8))
