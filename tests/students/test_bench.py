"""`coclabel distill` then `coclabel bench` end to end on a tiny dataset."""

import pyarrow.parquet as pq
import pytest
import torch

from models.teacher import save_weights
from models.tokenizer import Tokenizer
from models.vla import TinyVLA, VLAConfig
from pipelines.cli import main
from tests.students.helpers import TEXTS, write_student_dataset


@pytest.fixture(scope="module")
def benched(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("bench")
    write_student_dataset(root / "ds", 12, logs=4)  # log-0 and log-1 held out at 50 %
    tokenizer = Tokenizer.fit(TEXTS)
    torch.manual_seed(0)
    save_weights(TinyVLA(VLAConfig(vocab_size=len(tokenizer))), tokenizer, root / "teacher")
    assert main(["distill", "--labels", str(root / "ds"), "--student", "nano", "--out", str(root / "nano"), "--steps", "3",
                 "--batch-size", "4", "--heldout-percent", "50", "--threads", "1", "--runner=DirectRunner"]) == 0
    assert main(["bench", "--student", str(root / "nano"), "--labels", str(root / "ds"), "--teacher", f"tiny:{root / 'teacher'}",
                 "--iters", "3", "--batches", "1,2", "--out", str(root / "out")]) == 0
    return root / "out"


def test_bench_table_has_every_model_backend_and_path(benched):
    rows = pq.read_table(benched / "bench.parquet").to_pylist()
    keys = [(r["model"], r["backend"], r["path"]) for r in rows]
    assert keys == [("student-nano", "torch", "full"), ("student-nano", "torch", "trajectory"),
                    ("student-nano", "onnx", "trajectory"), ("student-nano", "onnx", "full"),
                    ("student-nano", "tensorrt", "trajectory"), ("teacher-tiny", "torch", "full")]
    by = {k: r for k, r in zip(keys, rows)}
    assert by[("student-nano", "torch", "full")]["clips"] == 6  # the 6 clips of log-0 and log-1
    assert "not run" in by[("student-nano", "tensorrt", "trajectory")]["note"]
    for r in rows[:4] + rows[5:]:
        assert r["latency_p50_ms"] > 0 and r["latency_p99_ms"] >= r["latency_p50_ms"] and r["best_batch"] in (1, 2)


def test_bench_accuracy_values(benched):
    rows = pq.read_table(benched / "bench.parquet").to_pylist()
    student, onnx, onnx_full, teacher = rows[0], rows[2], rows[3], rows[5]
    # the label samples are the true future: the teacher's minADE against it is zero, and comfortable
    assert teacher["min_ade_gt"] == pytest.approx(0.0, abs=1e-4) and teacher["comfort_violation"] == 0.0
    assert onnx["min_ade_gt"] == pytest.approx(student["min_ade_gt"], abs=1e-3)
    assert onnx["meta_agree"] == student["meta_agree"] and 0.0 <= student["meta_agree"] <= 1.0
    assert -1.0 <= student["reasoning_similarity"] <= 1.0
    # the exported full policy writes the same reasoning and trajectories as torch
    assert onnx_full["reasoning_similarity"] == pytest.approx(student["reasoning_similarity"], abs=1e-6)
    assert onnx_full["min_ade_gt"] == pytest.approx(student["min_ade_gt"], abs=1e-3)
    # every clip comes from an MCAP log (JPEG frames): the per-domain agreement is the overall one
    assert student["meta_agree_jpeg"] == student["meta_agree"] and student["clips_jpeg"] == 6
    assert "meta_agree_h264" not in student
    # every clip's 6 label samples keep speed: the teacher is unanimous everywhere
    assert student["teacher_unanimous"] == 1.0 and student["meta_agree_unanimous"] == student["meta_agree"]
    assert teacher["teacher_unanimous"] is None  # the teacher row is not scored against itself
    assert student["params"] < 1_000_000 < teacher["params"]
    md = (benched / "bench.md").read_text()
    assert len(md.splitlines()) == 2 + 6 and "minADE gt (m)" in md and "agree PAI/H.264" in md and "agree, teacher unanimous" in md  # header, rule, 6 rows
    assert (benched / "bench.png").stat().st_size > 1000


def test_evaluation_split_and_names():
    from pipelines.bench import display_names, evaluation_split

    assert evaluation_split([{"labels": "/d", "heldout_percent": 20}, {"labels": "/d/", "heldout_percent": 10}], "/d") == 10
    assert evaluation_split([{"labels": None, "source": {"from_sim": "0-9"}}], "/d") == 100  # no student saw /d
    assert display_names(["student-nano", "student-nano", "student-small"], ["a/x", "b/y", "c/z"]) == \
        ["student-nano@x", "student-nano@y", "student-small"]


def test_agreement_where_the_teacher_is_unanimous():
    import numpy as np

    from pipelines.bench import accuracy
    from tests.students.helpers import fake_clip

    class SameText:
        def similarity(self, a, b):
            return 1.0

    clips = [fake_clip(i) for i in range(2)]  # straight at 5 m/s: the student's samples keep speed
    future = np.stack([c["ego_future_xyz"] for c in clips])
    columns = {"clip_id": np.array([c["clip_id"] for c in clips]),
               "history_xyz": np.stack([c["ego_history_xyz"] for c in clips]),
               "future_xyz": future, "teacher_xyz": np.repeat(future[:, None], 6, 1),
               "teacher_yaw": np.zeros((2, 6, 64), np.float32), "teacher_text": np.full((2, 6), "Keep speed."),
               # clip 0: all 6 samples keep speed; clip 1: 4 decelerate, 2 keep speed
               "teacher_longitudinal": np.array([["keep_speed"] * 6, ["decelerate"] * 4 + ["keep_speed"] * 2]),
               "teacher_lateral": np.full((2, 6), "keep_lane")}
    preds = [(columns["teacher_xyz"][i], columns["teacher_yaw"][i], "Keep speed.") for i in range(2)]
    out = accuracy(columns, preds, SameText())
    assert out["meta_agree"] == 0.5 and out["teacher_unanimous"] == 0.5 and out["meta_agree_unanimous"] == 1.0
