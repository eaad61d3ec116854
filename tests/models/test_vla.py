"""TinyVLA building blocks: tokenizer, flow matching, history tokens, nucleus sampling, shapes."""

import pytest
import torch

from models import flow
from models.tokenizer import Tokenizer, pieces
from models.vla import TinyVLA, VLAConfig, history_features, sample_top_p

TEXTS = ["Stop at the stop line since the straight traffic light is red.",
         "Change lanes to the left since the lead vehicle is slower, at 8.5 m/s."]


def test_tokenizer_round_trip_and_glue():
    tok = Tokenizer.fit(TEXTS)
    assert pieces("m/s.") == ["m", "##/", "##s", "##."]
    for text in TEXTS:
        assert tok.decode(tok.encode(text)) == text
    assert tok.decode([tok.bos_id] + tok.encode(TEXTS[0]) + [tok.eos_id] + tok.encode(TEXTS[1])) == TEXTS[0]
    assert tok.encode("zebra") == [tok.unk_id]


def test_tokenizer_save_load(tmp_path):
    tok = Tokenizer.fit(TEXTS)
    tok.save(tmp_path / "t.json")
    assert Tokenizer.load(tmp_path / "t.json").tokens == tok.tokens
    (tmp_path / "bad.json").write_text('{"tokens": []}')
    with pytest.raises(ValueError):
        Tokenizer.load(tmp_path / "bad.json")


def test_flow_pair_and_euler_are_exact_on_straight_paths():
    x, noise, t = torch.ones(2, 3), torch.zeros(2, 3), torch.tensor([0.25, 1.0])
    x_t, target = flow.training_pair(x, noise, t)
    assert torch.equal(x_t, torch.tensor([[0.25] * 3, [1.0] * 3]))
    assert torch.equal(target, torch.ones(2, 3))
    # the exact velocity of the straight path from noise to a fixed point reaches it in 10 steps
    goal = torch.tensor([[2.0, -1.0]])
    out = flow.euler_sample(lambda x, t: (goal - x) / (1 - t[:, None]), torch.zeros(1, 2))
    torch.testing.assert_close(out, goal)


def test_flow_time_is_beta_1p5_1():
    t = flow.sample_time(200_000, torch.Generator().manual_seed(0))
    assert 0 <= t.min() and t.max() <= 1
    assert t.mean().item() == pytest.approx(0.6, abs=0.005)  # mean of Beta(1.5, 1)
    assert (t < 0.25).float().mean().item() == pytest.approx(0.125, abs=0.005)  # CDF t^1.5


def test_history_deltas_are_clipped():
    xyz = torch.zeros(1, 16, 3)
    xyz[0, 8:, 0] = 10.0  # a 10 m jump in x between steps 7 and 8
    xyz[0, 8:, 2] = 12.0
    rot = torch.eye(3).reshape(1, 1, 9).expand(1, 16, 9)
    f = history_features(xyz, rot)
    assert f.shape == (1, 16, 12)
    assert f[0, 8, :3].tolist() == [2.0, 0.0, 5.0]  # clipped to 4 m and 10 m, then / 2
    assert f[0, 0, :3].tolist() == [0.0, 0.0, 0.0]
    assert torch.equal(f[0, :, 3:], rot[0])


def test_top_p_sampling():
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3]]))
    # inverse CDF over tokens ordered by probability: 1 (0.6), 2 (0.3), 0 (0.1)
    assert sample_top_p(logits, 1.0, 1.0, torch.tensor([0.5])).item() == 1
    assert sample_top_p(logits, 1.0, 1.0, torch.tensor([0.7])).item() == 2
    assert sample_top_p(logits, 1.0, 1.0, torch.tensor([0.95])).item() == 0
    # a nucleus of 0.5 keeps only the most likely token
    assert sample_top_p(logits, 1.0, 0.5, torch.tensor([0.99])).item() == 1
    assert sample_top_p(logits, 0.0, 1.0, torch.tensor([0.99])).item() == 1


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TinyVLA(VLAConfig(vocab_size=20, d_model=32, n_heads=2, n_decoder_layers=1, n_expert_layers=1, max_text_len=6)).eval()


def inputs(B: int):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(B, 16, 3, 80, 144, generator=g), torch.randn(B, 16, 3, generator=g),
            torch.randn(B, 16, 9, generator=g), torch.rand(B, generator=g) * 10)


def test_loss_is_finite_and_trains(model):
    images, xyz, rot, v0 = inputs(2)
    text = torch.tensor([[1, 5, 6, 2, 0], [1, 7, 2, 0, 0]])
    ce, fm = model.loss(images, xyz, rot, text, torch.randn(2, 64, 2) * 0.1, v0, torch.Generator().manual_seed(0))
    assert ce.ndim == 0 and fm.ndim == 0 and torch.isfinite(ce) and torch.isfinite(fm)
    (ce + fm).backward()
    assert model.expert.out.weight.grad.abs().sum() > 0
    assert model.vision.cnn[0].weight.grad.abs().sum() > 0
    model.zero_grad()


def test_sample_shapes_and_seeding(model):
    images, xyz, rot, v0 = inputs(2)
    gens = lambda seeds: [torch.Generator().manual_seed(s) for s in seeds]
    ids, actions = model.sample(images, xyz, rot, v0, 3, gens([5, 6]), temperature=1.0)
    assert ids.shape == (2, 3, 6) and actions.shape == (2, 3, 64, 2)
    ids2, actions2 = model.sample(images, xyz, rot, v0, 3, gens([5, 6]), temperature=1.0)
    assert torch.equal(ids, ids2) and torch.equal(actions, actions2)
    _, actions3 = model.sample(images, xyz, rot, v0, 3, gens([7, 6]), temperature=1.0)
    assert not torch.equal(actions3[0], actions[0])
    # samples of one clip differ from each other (each has its own noise)
    assert not torch.equal(actions[0, 0], actions[0, 1])


def test_parameter_budget():
    n = sum(p.numel() for p in TinyVLA(VLAConfig(vocab_size=200)).parameters())
    assert n * 4 <= 20e6  # float32 weights within 20 MB
