import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from models.students import StudentPolicy, student_config
from models.students.data import load_shards, select, split_of
from models.students.train import TrainConfig, distill
from pipelines.distill import build_shards
from schemas.ids import clip_id
from tests.students.helpers import write_student_dataset


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    clips = write_student_dataset(root, 8)
    out = root / "shards"
    report = build_shards(str(root), str(out), 80, 144, 0, 3, ["--runner=DirectRunner"])
    return clips, out, report


def test_join_writes_every_labelled_clip_once_and_lists_the_unmatched(shards):
    clips, out, report = shards
    assert report["clips"] == 8 and len(report["shards"]) <= 3
    missing = {u["clip_id"]: u["missing"] for u in report["unmatched"]}
    assert missing == {clip_id("log-0", 8_000_000): "label", clip_id("log-9", 123): "clip"}
    cols = load_shards(out)
    assert sorted(cols["clip_id"]) == sorted(c["clip_id"] for c in clips)
    assert cols["images"].shape == (8, 16, 80, 144, 3) and cols["teacher_xyz"].shape == (8, 6, 64, 3)
    assert cols["teacher_text"][0, 0] in {"Keep speed since the road is clear.", "Slow down since the lead vehicle brakes.",
                                         "Stop at the stop line since the light is red."}
    np.testing.assert_allclose(cols["teacher_xyz"][:, 0, 9, 0], 5.0, atol=1e-5)  # 5 m/s at t0+1 s
    assert json.loads((out / "_join.json").read_text())["clips"] == 8


def test_join_is_idempotent(shards, tmp_path):
    _, out, _ = shards
    root = out.parent
    again = tmp_path / "again"
    build_shards(str(root), str(again), 80, 144, 0, 3, ["--runner=DirectRunner"])
    for path in sorted(out.glob("shard-*.npz")):
        a, b = np.load(path), np.load(again / path.name)
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])


def test_split_is_per_log_block():
    assert split_of("log", 0, 0) == "train" and split_of("log", 0, 100) == "heldout"
    assert split_of("log", 1_000_000, 50) == split_of("log", 19_000_000, 50)


def test_resume_continues_exactly(shards, tmp_path):
    torch.set_num_threads(1)
    cols = select(load_shards(shards[1]), "train")
    cfg = dict(batch_size=4, checkpoint_every=2)
    full = distill(cols, student_config("nano"), tmp_path / "full", TrainConfig(steps=4, **cfg))

    def interrupt(step, total, losses):
        if step == 3:  # after the checkpoint at step 2
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill(cols, student_config("nano"), tmp_path / "part", TrainConfig(steps=4, **cfg), progress=interrupt)
    resumed = distill(cols, student_config("nano"), tmp_path / "part", TrainConfig(steps=4, **cfg), resume=True)
    assert full["steps_done"] == resumed["steps_done"] == 4
    a, b = load_file(tmp_path / "full" / "student.safetensors"), load_file(tmp_path / "part" / "student.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    policy = StudentPolicy(tmp_path / "full", batch_size=2)
    assert policy.name == "student-nano"


def test_init_continues_from_a_student_folder(shards, tmp_path):
    torch.set_num_threads(1)
    cols = select(load_shards(shards[1]), "train")
    cfg = TrainConfig(steps=2, batch_size=4, lr=0.0)  # lr 0: the weights must come through unchanged
    first = distill(cols, student_config("nano"), tmp_path / "first", TrainConfig(steps=2, batch_size=4))
    assert first["unknown_words"] == [] and first["init"] is None
    cols_new = {**cols, "teacher_text": np.where(np.arange(cols["teacher_text"].shape[1]) == 0,
                                                 "Keep speed since the road is empty.", cols["teacher_text"])}
    again = distill(cols_new, student_config("nano"), tmp_path / "again", cfg, init=tmp_path / "first")
    assert again["unknown_words"] == ["empty"] and again["vocabulary"] == first["vocabulary"]
    a, b = load_file(tmp_path / "first" / "student.safetensors"), load_file(tmp_path / "again" / "student.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert (tmp_path / "first" / "tokenizer.json").read_text() == (tmp_path / "again" / "tokenizer.json").read_text()
    with pytest.raises(ValueError, match="same student"):
        distill(cols, student_config("nano-regression"), tmp_path / "other", cfg, init=tmp_path / "first")


@pytest.mark.gpu
def test_mixed_precision_training_on_cuda(shards, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cols = select(load_shards(shards[1]), "train")
    info = distill(cols, student_config("nano"), tmp_path / "cuda", TrainConfig(steps=3, batch_size=4, device="cuda"))
    assert info["steps_done"] == 3 and all(np.isfinite(v) for v in info["final_losses"].values())
    assert StudentPolicy(tmp_path / "cuda").model.action_scale.dtype == torch.float32
