"""`coclabel distill --from-sim`: shards straight from the simulator, labelled in-process."""

import numpy as np
import pytest
import torch

from models.meta_actions import classify
from models.students.data import load_shards, read_join_report, split_of
from models.students.simlabel import (
    build_sim_shards,
    domain_of,
    h264_clips,
    seeds_text,
    sim_label,
)
from models.teacher import load_teacher, save_weights
from models.tokenizer import Tokenizer
from models.vla import TinyVLA, VLAConfig
from pipelines.cli import build_parser
from pipelines.distill import choose_noise_scale
from schemas.ids import seed_of
from sim.dataset import build
from tests.students.helpers import TEXTS

SEED = 31000


@pytest.fixture(scope="module")
def sim_shards(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("sim")
    torch.manual_seed(0)
    tokenizer = Tokenizer.fit(TEXTS)
    cfg = VLAConfig(vocab_size=len(tokenizer), d_model=32, n_heads=2, n_decoder_layers=1, n_expert_layers=1, max_text_len=8)
    save_weights(TinyVLA(cfg), tokenizer, root / "teacher")
    kwargs = dict(minutes=0.2, stride_s=1.0, cache=root / "cache", samples=2, heldout_percent=50, n_shards=2, label_batch=4,
                  pai_percent=0)
    report = build_sim_shards([SEED], root / "a", f"tiny:{root / 'teacher'}", "cpu", 40, 72, **kwargs)
    again = build_sim_shards([SEED], root / "b", f"tiny:{root / 'teacher'}", "cpu", 40, 72, **kwargs)
    return root, report, again


def test_shards_hold_every_simulated_clip_with_its_truth_and_teacher_samples(sim_shards):
    root, report, _ = sim_shards
    clips = build([SEED], 0.2, 1.0, root / "cache")  # the cached drive: 12 s, t0 from 1.6 s to 5.6 s
    assert len(clips) == 5 and report["clips"] == 5 and report["unmatched"] == []
    assert report["domains"]["jpeg"] == {"drives": 1, "clips": 5, "quarantined_windows": 0}
    assert report["domains"]["h264"]["drives"] == 0
    assert report["source"]["from_sim"] == str(SEED) and report["source"]["samples"] == 2
    cols = load_shards(root / "a")
    order = np.argsort(clips.columns["clip_id"])
    assert list(cols["clip_id"]) == list(clips.columns["clip_id"][order])
    assert cols["images"].shape == (5, 16, 40, 72, 3) and cols["teacher_xyz"].shape == (5, 2, 64, 3)
    np.testing.assert_array_equal(cols["future_xyz"], clips.columns["ego_future_xyz"][order])
    np.testing.assert_array_equal(cols["history_xyz"], clips.columns["ego_history_xyz"][order])
    # the teacher's samples are those it gives the clips under their pipeline seeds
    teacher = load_teacher(f"tiny:{root / 'teacher'}")
    teacher.batch_size = 4
    first = clips.clip(int(order[0]))
    samples = teacher.predict([first], 2, [seed_of(str(first["clip_id"]))])[0]
    np.testing.assert_array_equal(cols["teacher_xyz"][0], np.stack([s["traj_xyz"] for s in samples]))
    assert list(cols["teacher_text"][0]) == [s["reasoning"] for s in samples]
    v0 = float(np.linalg.norm(first["ego_history_xyz"][-1, :2] - first["ego_history_xyz"][-2, :2]) / 0.1)
    assert (cols["teacher_longitudinal"][0, 0], cols["teacher_lateral"][0, 0]) == classify(samples[0]["traj_xyz"], samples[0]["traj_yaw"], v0)


def test_split_is_per_log_block_and_shards_are_deterministic(sim_shards):
    root, report, again = sim_shards
    cols = load_shards(root / "a")
    clips = build([SEED], 0.2, 1.0, root / "cache")
    split = {str(c): split_of(str(log), int(t0), 50)
             for c, log, t0 in zip(clips.columns["clip_id"], clips.columns["log_id"], clips.columns["t0_us"])}
    assert [split[str(c)] for c in cols["clip_id"]] == list(cols["split"])
    assert report["heldout"] == int((cols["split"] == "heldout").sum())
    assert report["shards"] == again["shards"] and read_join_report(root / "b")["source"] == report["source"]
    for path in sorted((root / "a").glob("shard-*.npz")):
        a, b = np.load(path), np.load(root / "b" / path.name)
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])


def test_video_domain_drives_are_read_back_through_the_pai_reader(sim_shards):
    """A drive in the h264 domain is one PAI clip (12 s < 20 s) read back by `coclabel clips`'s
    reader and assembler: t0 every second from 2 s (1.6 s of history) to the last ego pose."""
    root = sim_shards[0]
    clips, quarantined = h264_clips(SEED, 0.2, 1.0)
    assert quarantined == 0
    assert [c["t0_us"] for c in clips] == [s * 1_000_000 for s in range(2, 13)]
    assert len({c["log_id"] for c in clips}) == 1 and all(len(c["images"]) == 16 for c in clips)
    report = build_sim_shards([SEED], root / "v", f"tiny:{root / 'teacher'}", "cpu", 40, 72, minutes=0.2, stride_s=1.0,
                              cache=root / "cache", samples=2, heldout_percent=50, n_shards=2, label_batch=4, pai_percent=100)
    assert report["domains"]["h264"] == {"drives": 1, "clips": 11, "quarantined_windows": 0}
    assert report["source"]["pai_percent"] == 100
    cols = load_shards(root / "v")
    assert set(cols["domain"]) == {"h264"} and sorted(cols["clip_id"]) == sorted(c["clip_id"] for c in clips)
    jpeg = load_shards(root / "a")
    assert set(jpeg["domain"]) == {"jpeg"}
    assert cols["images"].dtype == np.uint8 and cols["images"].shape[1:] == (16, 40, 72, 3)


def test_drive_domains_follow_the_share():
    seeds = range(1000)
    assert all(domain_of(s, 0) == "jpeg" and domain_of(s, 100) == "h264" for s in seeds)
    share = sum(domain_of(s, 50) == "h264" for s in seeds)
    assert 450 <= share <= 550 and share == sum(domain_of(s, 50) == "h264" for s in seeds)


def test_non_finite_samples_leave_the_clip_out():
    clip = {"clip_id": "c", "ego_history_xyz": np.zeros((16, 3), np.float32)}
    good = {"reasoning": "Keep speed.", "traj_xyz": np.zeros((64, 3)), "traj_yaw": np.zeros(64)}
    bad = {**good, "traj_xyz": np.full((64, 3), np.nan)}
    assert sim_label(clip, [good, bad]) is None
    assert sim_label(clip, [good])["samples"][0]["meta_action"] == {"longitudinal": "stop", "lateral": "keep_lane"}


def test_seed_ranges_and_cli_sources():
    assert seeds_text([5, 0, 1, 2, 9, 10]) == "0-2,5,9-10"
    parser = build_parser("distill")
    args = parser.parse_args(["distill", "--from-sim", "0-3", "--out", "x"])
    assert args.from_sim == "0-3" and args.labels is None and args.workers == 1
    with pytest.raises(SystemExit):
        parser.parse_args(["distill", "--from-sim", "0-3", "--labels", "d", "--out", "x"])
    with pytest.raises(SystemExit):
        parser.parse_args(["distill", "--out", "x"])


def test_noise_scale_choice_keeps_the_ade_bound():
    def m(scale, agree, ratio):
        return {"noise_scale": scale, "student": {"meta_agree": agree}, "min_ade_gt_ratio": ratio}

    assert choose_noise_scale([m(1.0, 0.8, 1.2), m(0.8, 0.85, 1.25), m(0.6, 0.9, 1.4)], 1.3) == 0.8
    assert choose_noise_scale([m(1.0, 0.8, 1.2), m(0.8, 0.8, 1.25)], 1.3) == 1.0  # ties: the larger scale
    assert choose_noise_scale([m(1.0, 0.8, 1.5), m(0.6, 0.9, 1.4)], 1.3) == 1.0
