import numpy as np
import pytest
import torch

from models.action_space import actions_to_traj
from models.export import (
    OnnxPolicy,
    OnnxRunner,
    TensorRTRunner,
    build_engine,
    example_inputs,
    export_onnx,
    export_policy_onnx,
    tensorrt_available,
)
from models.students import Student, student_config


@pytest.fixture(scope="module", params=["nano", "nano-regression"])
def exported(request, tmp_path_factory):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    student = Student(student_config(request.param), 30).eval()
    # perturb the zero-initialised output layer so that the path is not trivially zero
    torch.nn.init.normal_(student.expert.out.weight, std=0.5)
    path = export_onnx(student, tmp_path_factory.mktemp("onnx") / "student.onnx")
    return student, path


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_runtime_trajectories_match_torch_within_1mm(exported, batch):
    student, path = exported
    inputs = example_inputs(student, batch, 6, seed=batch)
    with torch.no_grad():
        ref = student.trajectory_path(*inputs).numpy()
    got = OnnxRunner(path, threads=1)(*[x.numpy() for x in inputs])
    assert got.shape == ref.shape and np.abs(ref).max() > 1e-3
    v0, z0 = inputs[3].numpy()[:, None], 0.0
    xyz_ref, _ = actions_to_traj(ref, v0, z0)
    xyz_got, _ = actions_to_traj(got, v0, z0)
    assert np.abs(xyz_ref - xyz_got).max() < 1e-3


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_full_policy_writes_torch_greedy_reasoning_and_trajectories(exported, batch, tmp_path):
    student, _ = exported
    bos, eos = 1, 2
    paths = export_policy_onnx(student, tmp_path, bos)
    policy = OnnxPolicy(*paths, eos, student.cfg.max_text_len, threads=1)
    inputs = example_inputs(student, batch, 6, seed=batch)
    with torch.no_grad():
        ids, hidden = student.reason(*inputs[:3], bos, eos)
        actions = student.actions(hidden, inputs[3], inputs[4]).numpy()
    got_ids, got_actions = policy(*[x.numpy() for x in inputs])
    assert got_ids.shape == (batch, student.cfg.max_text_len) and (got_ids != 0).sum() > batch
    np.testing.assert_array_equal(got_ids, ids.numpy())
    assert np.abs(got_actions - actions).max() < 1e-4 and np.abs(actions).max() > 1e-3


def test_int8_needs_calibration_and_precision_is_checked(exported):
    ok, reason = tensorrt_available()
    if not ok:
        pytest.skip(reason)
    with pytest.raises(ValueError, match="calibration"):
        build_engine(exported[1], exported[1].with_suffix(".plan"), "int8")


@pytest.mark.gpu
@pytest.mark.parametrize("precision,tolerance", [("fp16", 0.05), ("int8", 0.5)])
def test_tensorrt_engine_matches_torch(exported, precision, tolerance, tmp_path):
    ok, reason = tensorrt_available()
    if not ok:
        pytest.skip(reason)
    student, path = exported
    calibration = [tuple(x.numpy() for x in example_inputs(student, 4, 6, seed=s)) for s in range(4)]
    engine = build_engine(path, tmp_path / f"student-{precision}.plan", precision, calibration=calibration)
    inputs = example_inputs(student, 3, 6, seed=9)
    with torch.no_grad():
        ref = student.trajectory_path(*inputs).numpy()
    got = TensorRTRunner(engine)(*[x.numpy() for x in inputs])
    v0 = inputs[3].numpy()[:, None]
    assert np.abs(actions_to_traj(ref, v0)[0] - actions_to_traj(got, v0)[0]).max() < tolerance
