import numpy as np
import pytest
import torch

from models.students import CONFIGS, Student, StudentConfig, StudentPolicy, parameter_count, set_loss, student_config
from models.students.policy import load_student_model
from schemas.contract import NUM_FUTURE
from tests.students.helpers import fake_clip, random_student


def test_sizes_nano_cpu_small_tens_of_millions():
    assert parameter_count(Student(CONFIGS["nano"], 100)) < 1_000_000
    assert 10_000_000 < parameter_count(Student(CONFIGS["small"], 100)) < 100_000_000


def test_variants_and_bad_specs():
    assert student_config("nano-regression").head == "regression"
    assert student_config("small-flow1").flow_steps == 1
    with pytest.raises(ValueError, match="unknown student"):
        student_config("huge")
    with pytest.raises(ValueError, match="1 or 2 steps"):
        StudentConfig("x", 64, 2, 1, 1, 40, 72, (1, 2), flow_steps=10)


def test_production_template_names_a_local_backbone_and_is_not_built_here():
    cfg = CONFIGS["production"]
    assert cfg.backbone_path and cfg.d_model == 896
    with pytest.raises(ValueError, match="pretrained language model at /models/qwen2.5-0.5b"):
        Student(cfg, 100)


def test_set_loss_exact_values():
    a = torch.zeros(1, 2, NUM_FUTURE, 2)
    b = torch.zeros(1, 2, NUM_FUTURE, 2)
    b[:, 1] = 2.0  # target 1 is at squared distance 4 from both predictions
    # coverage: targets matched at 0 and 4 -> 2; predictions both nearest to target 0 -> 0
    # (a constant offset: the horizon weights have mean 1)
    assert set_loss(a, b).item() == pytest.approx(2.0)
    assert set_loss(a, b, symmetric=False).item() == pytest.approx(2.0)
    a[:, 1] = 2.0
    assert set_loss(a, b).item() == pytest.approx(0.0)
    mask = torch.tensor([False])
    assert set_loss(a, b + 1, mask).item() == 0.0


def test_trajectory_path_matches_predict_and_head_shapes():
    torch.manual_seed(0)
    for spec, k_out in (("nano", 3), ("nano-regression", 6), ("nano-flow1", 3)):
        m = Student(student_config(spec), 20).eval()
        B, H, W = 2, m.cfg.image_height, m.cfg.image_width
        out = m.trajectory_path(torch.randn(B, 16, 3, H, W), torch.zeros(B, 16, 3), torch.zeros(B, 16, 9),
                                torch.ones(B), torch.randn(B, 3, NUM_FUTURE, 2))
        assert out.shape == (B, k_out, NUM_FUTURE, 2)


def test_predict_deterministic_batch_independent_and_roundtrips(tmp_path):
    folder = random_student(tmp_path)
    policy = StudentPolicy(folder, batch_size=4)
    clips = [fake_clip(i) for i in range(3)]
    a = policy.predict(clips, 6, [11, 12, 13])
    b = policy.predict(clips[1:2], 6, [12])
    assert len(a) == 3 and len(a[0]) == 6
    assert a[0][0]["traj_xyz"].shape == (64, 3) and a[0][0]["traj_yaw"].shape == (64,)
    np.testing.assert_array_equal(a[1][3]["traj_xyz"], b[0][3]["traj_xyz"])
    assert a[1][0]["reasoning"] == b[0][0]["reasoning"]
    assert not np.array_equal(a[1][0]["traj_xyz"], a[1][1]["traj_xyz"])  # samples differ by noise
    # trajectories start from the history's speed (5 m/s -> first step 0.5 m +- accel bound)
    assert abs(float(a[0][0]["traj_xyz"][0, 0]) - 0.5) <= 9.8 * 0.01 + 1e-5
    model, tokenizer = load_student_model(folder)
    assert model.student_cfg == student_config("nano") and len(tokenizer) == model.cfg.vocab_size


def test_regression_student_refuses_more_samples_than_modes(tmp_path):
    policy = StudentPolicy(random_student(tmp_path, "nano-regression"))
    with pytest.raises(ValueError, match="6 modes"):
        policy.predict([fake_clip(0)], 7, [0])


def test_horizon_weights_favour_early_actions():
    from models.students.model import horizon_weights

    w = horizon_weights()
    assert w.shape == (NUM_FUTURE, 1) and w.mean().item() == pytest.approx(1.0)
    assert w[0, 0].item() == pytest.approx(64 / 32.5) and w[-1, 0].item() == pytest.approx(1 / 32.5)


def test_noise_scale_from_student_json_scales_the_flow_noise(tmp_path):
    import json

    folder = random_student(tmp_path)
    assert StudentPolicy(folder).noise_scale == 1.0
    info = json.loads((folder / "student.json").read_text())
    (folder / "student.json").write_text(json.dumps({**info, "sampling": {"noise_scale": 0.5}}))
    policy = StudentPolicy(folder)
    from models.students.policy import clip_noise

    assert policy.noise_scale == 0.5
    torch.testing.assert_close(policy.noise([3, 4], 6), 0.5 * clip_noise([3, 4], 6), rtol=0, atol=0)
    zero = StudentPolicy(folder, noise_scale=0.0).predict([fake_clip(0)], 3, [7])[0]
    np.testing.assert_array_equal(zero[0]["traj_xyz"], zero[2]["traj_xyz"])  # no noise: identical samples
