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
    assert student_config("nano-mixture").head == "regression" and student_config("nano-mixture").mode_scores
    with pytest.raises(ValueError, match="regression head"):
        StudentConfig("x", 64, 2, 1, 1, 40, 72, (1, 2), mode_scores=True)
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


def test_mixture_slots_draw_modes_in_proportion_likeliest_first():
    from models.students.model import mixture_slots

    probs = torch.tensor([[0.2, 0.0, 0.5, 0.3, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    logits = torch.log(probs + 1e-12)
    # quantiles 1/12, 3/12, ..., 11/12 against cumulative 0.5, 0.8, 1.0 (modes 2, 3, 0)
    assert mixture_slots(logits, 6).tolist() == [[2, 2, 2, 3, 3, 0], [5] * 6]
    assert mixture_slots(logits, 1).tolist() == [[2], [5]]
    assert mixture_slots(torch.zeros(1, 4), 8).tolist() == [[0, 0, 1, 1, 2, 2, 3, 3]]


def test_mixture_mode_loss_targets_the_share_of_teacher_samples_per_mode():
    torch.manual_seed(0)
    m = Student(student_config("nano-mixture"), 20).eval()
    torch.nn.init.normal_(m.expert.out.weight, std=0.5)  # modes apart (the output layer starts at zero)
    B, H, W = 1, m.cfg.image_height, m.cfg.image_width
    images, xyz, rot, v0 = torch.randn(B, 16, 3, H, W), torch.zeros(B, 16, 3), torch.zeros(B, 16, 9), torch.ones(B)
    with torch.no_grad():
        hidden = m.scene_hidden(images, xyz, rot)
        modes = m.mode_actions(hidden, v0)
    # the teacher's 6 samples: four on mode 1, two on mode 4 -> target shares 2/3 and 1/3
    teacher = modes[:, [1, 1, 1, 1, 4, 4]]
    text = torch.tensor([[1, 3, 2]])
    out = m.distill_loss(images, xyz, rot, v0, text, teacher, torch.randn(B, 6, NUM_FUTURE, 2))
    logp = m.mode_logits(hidden).log_softmax(-1)[0]
    assert out["mode"].item() == pytest.approx(-(2 / 3 * logp[1] + 1 / 3 * logp[4]).item(), rel=1e-5)
    assert Student(student_config("nano-regression"), 20).distill_loss(images, xyz, rot, v0, text, teacher,
                                                                       torch.randn(B, 6, NUM_FUTURE, 2))["mode"].item() == 0.0


def test_mixture_student_draws_any_number_of_samples_from_its_modes(tmp_path):
    from models.students.model import mixture_slots
    from models.teacher import images_tensor

    policy = StudentPolicy(random_student(tmp_path, "nano-mixture"))
    torch.manual_seed(1)
    torch.nn.init.normal_(policy.model.expert.out.weight, std=0.5)  # modes apart (the output layer starts at zero)
    clip = fake_clip(0)
    eight = policy.predict([clip], 8, [0])[0]
    images, xyz, rot = policy.inputs([clip])
    with torch.no_grad():
        hidden = policy.model.scene_hidden(images_tensor(images), torch.from_numpy(xyz).float(), torch.from_numpy(rot).float())
        slots = mixture_slots(policy.model.mode_logits(hidden), 8)[0].tolist()
    assert len(eight) == 8 and len(set(slots)) > 1
    for a in range(8):  # samples are identical exactly where their slots hold the same mode
        for b in range(8):
            assert np.array_equal(eight[a]["traj_xyz"], eight[b]["traj_xyz"]) == (slots[a] == slots[b])
    again = policy.predict([clip], 8, [99])[0]  # the draws do not depend on the seed
    assert all(np.array_equal(x["traj_xyz"], y["traj_xyz"]) for x, y in zip(eight, again))


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
