"""The shared-prefill rollout against K-fold `generate`, on a miniature of the release's model.

`ReleaseShaped` has AlpamayoR1's attributes (`vlm` a Qwen3-VL model, `expert` a Qwen3-VL text
model reading the VLM's KV cache, `action_in_proj`, `action_out_proj`, `diffusion`,
`action_space`, `tokenizer`, `config`, `fuse_traj_tokens`) with tiny random weights, and its
`sample_trajectories_from_data_with_vlm_rollout` takes the release's steps in order: fuse the
history tokens, `self.vlm.generate` with `num_return_sequences=K` and an after-EOS stop, expert
positions and mask from each sample's end of reasoning, Euler steps of the whole B*K batch
against the generated cache (cropped after every step), actions to trajectories, reshape to
(B, 1, K, ...), decoded reasoning. It runs in float32 whatever autocast says, so that the two
rollouts can be compared to float rounding (autocast is the adapter's, tested in
test_alpamayo.py)."""

import copy
import importlib.util
import types

import numpy as np
import pytest
import torch
from torch import nn

from models.alpamayo import AlpamayoR1Teacher
from models.geometry import yaw_to_matrix
from models.vlm_rollout import expand_samples, shared_prefill, shared_prefill_generate
from tests.models.test_alpamayo import make_clip

pytestmark = pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                                reason="the miniature is built on transformers' Qwen3-VL")
torch.set_num_threads(2)

EOS = 505  # <traj_future_start> of the miniature's vocabulary
TRAJ_TOKENS = (400, 50)  # (first id, count) of the discrete trajectory tokens masked out of the reasoning
ACTION_TOKENS, FLOW_STEPS = 64, 3


def stock_encodes_images_once() -> bool:
    """transformers 5 encodes images before `generate` repeats the inputs; 4.x repeats them first."""
    from importlib.metadata import version
    return int(version("transformers").split(".")[0]) >= 5


STOCK_ENCODES_ONCE = importlib.util.find_spec("transformers") is not None and stock_encodes_images_once()


def smoke():
    from benchmarks.teacher_scale import SMOKE
    return SMOKE


class Recorder:
    """Images each vision pass encodes and the (rows, tokens) of each language-model pass."""

    def __init__(self, vlm):
        self.images, self.passes = [], []
        vlm.model.visual.register_forward_hook(
            lambda m, args, kwargs, out: self.images.append(int(kwargs.get("grid_thw", args[-1]).shape[0])),
            with_kwargs=True)
        vlm.model.language_model.register_forward_hook(
            lambda m, args, kwargs, out: self.passes.append(tuple(kwargs["inputs_embeds"].shape[:2])),
            with_kwargs=True)


class CountingEuler:
    """Flow matching by Euler steps from N(0, I) noise, recording the batch of each step."""

    def __init__(self, x_dims):
        self.x_dims, self.step_rows = x_dims, []

    def sample(self, batch_size, step_fn, device, return_all_steps=False):
        x = torch.randn(batch_size, *self.x_dims, device=device)
        for i in range(FLOW_STEPS):
            self.step_rows.append(x.shape[0])
            x = x + step_fn(x=x, t=torch.full((batch_size, 1, 1), i / FLOW_STEPS)) / FLOW_STEPS
        return x


class ActionIn(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.x, self.t = nn.Linear(2, hidden), nn.Linear(1, hidden)

    def forward(self, x, t):
        return self.x(x) + self.t(t.expand(*x.shape[:2], 1))


class ActionSpace:
    """(acceleration, yaw rate)-like actions -> xyz and rotations after the last history pose."""

    def get_action_space_dims(self):
        return (ACTION_TOKENS, 2)

    def action_to_traj(self, actions, last_xyz, last_rot):
        steps = actions.cumsum(1)
        xyz = torch.cat([steps, torch.zeros_like(steps[..., :1])], -1) + last_xyz[:, None]
        rot = torch.from_numpy(yaw_to_matrix(steps[..., 1].double().numpy())).float()
        return xyz, rot


class Tokenizer:
    pad_token_id = 0

    def convert_tokens_to_ids(self, token):
        assert token == "<|traj_future_start|>"
        return EOS


class StopAfterEos:
    """Done one token after a row's EOS (the release's stop: the cache then holds the EOS)."""

    def __call__(self, input_ids, scores, **kwargs):
        return input_ids[:, -2] == EOS


class MaskTrajectoryTokens:
    def __call__(self, input_ids, scores):
        scores[:, TRAJ_TOKENS[0]:sum(TRAJ_TOKENS)] = float("-inf")
        return scores


class ReleaseShaped(nn.Module):
    def __init__(self, eos_bias: float = 0.0):
        from transformers import AutoModel, StoppingCriteriaList

        from benchmarks.teacher_scale import build_vlm

        super().__init__()
        torch.manual_seed(0)
        self.vlm = build_vlm(smoke(), "cpu", torch.float32)
        self.vlm.lm_head.bias = nn.Parameter(torch.zeros(smoke().vocab))
        self.vlm.lm_head.bias.data[EOS] = eos_bias  # makes reasoning end early, at different lengths
        expert_config = copy.deepcopy(self.vlm.config.text_config)
        expert_config.hidden_size, expert_config.intermediate_size = 32, 48
        self.expert = AutoModel.from_config(expert_config).float()
        del self.expert.embed_tokens
        self.action_in_proj = ActionIn(32)
        self.action_out_proj = nn.Linear(32, 2)
        self.action_space = ActionSpace()
        self.diffusion = CountingEuler(self.action_space.get_action_space_dims())
        self.tokenizer = Tokenizer()
        self.config = types.SimpleNamespace(expert_non_causal_attention=True)
        self.stopping = StoppingCriteriaList([StopAfterEos()])
        self.eval().requires_grad_(False)
        self.expert_rows, self.sequences, self.actions = [], [], []

    def fuse_traj_tokens(self, input_ids, history):
        """The history placeholder tokens replaced by tokens of the ego history."""
        sc = smoke()
        start = sc.system_tokens + sc.images * (sc.tokens_per_image + 2)
        ids = input_ids.clone()
        ids[:, start:start + sc.history_tokens] = (history["ego_history_xyz"][:, 0, :sc.history_tokens, 0] * 7).long() % 300
        return ids

    def sample_trajectories_from_data_with_vlm_rollout(self, data, top_p, temperature, num_traj_samples,
                                                       max_generation_length, return_extra=False):
        from transformers import LogitsProcessorList

        with torch.autocast("cpu", enabled=False):
            xyz, rot = data["ego_history_xyz"], data["ego_history_rot"]
            b, k = xyz.shape[0], num_traj_samples
            tokenized = data["tokenized_data"]
            input_ids = self.fuse_traj_tokens(tokenized.pop("input_ids"), data)
            config = self.vlm.generation_config
            config.update(top_p=top_p, top_k=None, temperature=temperature, do_sample=True,
                          num_return_sequences=k, max_new_tokens=max_generation_length, output_logits=True,
                          return_dict_in_generate=True, pad_token_id=self.tokenizer.pad_token_id)
            out = self.vlm.generate(input_ids=input_ids, generation_config=config, stopping_criteria=self.stopping,
                                    logits_processor=LogitsProcessorList([MaskTrajectoryTokens()]), **tokenized)
            sequences, cache = out.sequences, out.past_key_values
            self.sequences.append(sequences)
            rows, length = sequences.shape[0], cache.get_seq_length()
            deltas = self.vlm.model.rope_deltas
            deltas = expand_samples(deltas, rows // deltas.shape[0])  # (B, 1) after K-fold generate in transformers 5
            ended = sequences == EOS
            end = torch.where(ended.any(1), ended.int().argmax(1), sequences.shape[1] - 1) + 1
            positions = (torch.arange(ACTION_TOKENS) + deltas + end[:, None]).expand(3, rows, ACTION_TOKENS)
            mask = torch.zeros(rows, 1, ACTION_TOKENS, length + ACTION_TOKENS)
            for i in range(rows):
                mask[i, :, :, end[i]:length] = torch.finfo(mask.dtype).min

            def step_fn(x, t):
                self.expert_rows.append(x.shape[0])
                hidden = self.expert(inputs_embeds=self.action_in_proj(x, t), position_ids=positions,
                                     past_key_values=cache, attention_mask=mask, use_cache=True,
                                     is_causal=False).last_hidden_state
                cache.crop(length - cache.get_seq_length())  # (the release's crop(length) is refused by transformers 5)
                return self.action_out_proj(hidden)

            actions = self.diffusion.sample(batch_size=rows, step_fn=step_fn, device=input_ids.device)
            self.actions.append(actions)
            pred_xyz, pred_rot = self.action_space.action_to_traj(
                actions, expand_samples(xyz[:, -1, -1], k), expand_samples(rot[:, -1, -1], k))
            generated = sequences[:, input_ids.shape[1]:]
            cot = np.array([" ".join(str(t) for t in row[:int(e) - input_ids.shape[1]].tolist())
                            for row, e in zip(generated, end)]).reshape(b, 1, k)
            return pred_xyz.view(b, 1, k, ACTION_TOKENS, 3), pred_rot.view(b, 1, k, ACTION_TOKENS, 3, 3), {"cot": cot}


class TokenizingProcessor:
    """The Qwen3-VL processor's output for the clips: a fixed random prompt layout per clip."""

    def apply_chat_template(self, conversations, **kwargs):
        from benchmarks.teacher_scale import random_batch

        batch = random_batch(smoke(), len(conversations), seed=9, device="cpu", dtype=torch.float32)
        return {"input_ids": batch.input_ids, "attention_mask": torch.ones_like(batch.input_ids),
                "mm_token_type_ids": batch.mm_token_type_ids, "pixel_values": batch.pixel_values,
                "image_grid_thw": batch.image_grid_thw}


def test_shared_prefill_generate_equals_k_fold_generate_with_one_vision_pass_and_prefill():
    from transformers import GenerationConfig

    from benchmarks.teacher_scale import build_vlm, random_batch

    sc, clips, k, new = smoke(), 2, 3, 5
    vlm = build_vlm(sc, "cpu", torch.float32)
    recorder = Recorder(vlm)
    batch = random_batch(sc, clips, seed=1, device="cpu", dtype=torch.float32)
    inputs = dict(input_ids=batch.input_ids, attention_mask=torch.ones_like(batch.input_ids),
                  mm_token_type_ids=batch.mm_token_type_ids, pixel_values=batch.pixel_values,
                  image_grid_thw=batch.image_grid_thw)
    config = GenerationConfig(do_sample=True, temperature=0.6, top_p=0.98, top_k=None, num_return_sequences=k,
                              max_new_tokens=new, return_dict_in_generate=True, output_logits=True, pad_token_id=0)
    torch.manual_seed(5)
    stock = vlm.generate(generation_config=copy.deepcopy(config), **inputs)
    stock_images, stock_passes = recorder.images[:], recorder.passes[:]
    recorder.images.clear(), recorder.passes.clear()
    vlm.generation_config.num_return_sequences = k  # as the release leaves the model's own config
    torch.manual_seed(5)
    ours = shared_prefill_generate(vlm, generation_config=config, **inputs)
    assert vlm.generation_config.num_return_sequences == k

    p = sc.prompt_tokens
    assert stock_passes[0] == (clips * k, p)  # K-fold generate prefills every prompt K times
    assert sum(stock_images) == clips * sc.images * (1 if STOCK_ENCODES_ONCE else k)
    assert recorder.images == [clips * sc.images]  # one vision pass over each clip's images, once
    assert recorder.passes == [(clips, p - 1)] + [(clips * k, 1)] * new  # one prefill per clip, then B*K rows
    assert torch.equal(ours.sequences, stock.sequences)
    assert ours.sequences.shape == (clips * k, p + new)
    assert max(float((a - b).abs().max()) for a, b in zip(ours.logits, stock.logits)) < 1e-4
    for mine, theirs in zip(ours.past_key_values.layers, stock.past_key_values.layers):
        torch.testing.assert_close(mine.keys, theirs.keys, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mine.values, theirs.values, atol=1e-5, rtol=1e-5)
    assert vlm.model.rope_deltas.shape == (clips * k, 1)
    assert config.num_return_sequences == k  # the caller's config is not changed


def test_one_sample_per_clip_is_plain_generate():
    class Vlm:
        def generate(self, **kwargs):
            return kwargs

    config = types.SimpleNamespace(num_return_sequences=1)
    ids = torch.ones(2, 5, dtype=torch.long)
    assert shared_prefill_generate(Vlm(), ids, config, pixel_values=3) == {
        "input_ids": ids, "generation_config": config, "pixel_values": 3}


def test_shared_prefill_installs_itself_for_the_block_only():
    vlm = types.SimpleNamespace()
    with shared_prefill(vlm):
        assert callable(vlm.generate)
    assert not hasattr(vlm, "generate")


def test_short_prompt_is_rejected():
    config = types.SimpleNamespace(num_return_sequences=2)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        shared_prefill_generate(object(), torch.zeros(1, 1, dtype=torch.long), config)


@pytest.fixture(scope="module")
def rollouts():
    """The same two clips, K=3, through both rollouts of the adapter, with the same seeds."""
    model = ReleaseShaped(eos_bias=2.0)
    recorder = Recorder(model.vlm)
    clips, k = [make_clip("a", 0.0), make_clip("b", 3.0)], 3
    result = {}
    for rollout in ("release", "shared_prefill"):
        model.diffusion.step_rows.clear(), model.expert_rows.clear(), model.sequences.clear(), model.actions.clear()
        recorder.images.clear(), recorder.passes.clear()
        teacher = AlpamayoR1Teacher.wrap(model, TokenizingProcessor(), "cpu", "0" * 64, "v", rollout=rollout)
        samples = teacher.predict(clips, k, [11, 12])
        result[rollout] = dict(samples=samples, images=recorder.images[:], passes=recorder.passes[:],
                               steps=model.diffusion.step_rows[:], expert=model.expert_rows[:],
                               sequences=model.sequences[0], actions=model.actions[0])
    return result, clips, k


def test_shared_prefill_encodes_and_prefills_each_clip_once(rollouts):
    result, clips, k = rollouts
    p = smoke().prompt_tokens
    assert sum(result["release"]["images"]) == len(clips) * smoke().images * (1 if STOCK_ENCODES_ONCE else k)
    assert result["release"]["passes"][0] == (len(clips) * k, p)
    assert result["shared_prefill"]["images"] == [len(clips) * smoke().images]
    assert result["shared_prefill"]["passes"][0] == (len(clips), p - 1)
    assert {rows for rows, _ in result["shared_prefill"]["passes"][1:]} == {len(clips) * k}


def test_each_euler_step_runs_once_for_all_samples(rollouts):
    result, clips, k = rollouts
    for rollout in ("release", "shared_prefill"):
        assert result[rollout]["steps"] == [len(clips) * k] * FLOW_STEPS
        assert result[rollout]["expert"] == [len(clips) * k] * FLOW_STEPS


def test_shared_prefill_gives_the_release_rollouts_samples(rollouts):
    result, _, _ = rollouts
    assert torch.equal(result["shared_prefill"]["sequences"], result["release"]["sequences"])
    ends = (result["release"]["sequences"] == EOS).int().argmax(1)
    assert len(set(ends.tolist())) > 2  # reasoning of different lengths: the expert's mask and positions differ per sample
    for mine, theirs in zip(result["shared_prefill"]["samples"], result["release"]["samples"]):
        for a, b in zip(mine, theirs):
            assert a["reasoning"] == b["reasoning"]
            np.testing.assert_allclose(a["traj_xyz"], b["traj_xyz"], atol=1e-4)
            np.testing.assert_allclose(a["traj_yaw"], b["traj_yaw"], atol=1e-4)


def test_samples_map_to_clips_sample_major(rollouts):
    result, clips, k = rollouts
    sequences, actions = result["shared_prefill"]["sequences"], result["shared_prefill"]["actions"]
    samples = result["shared_prefill"]["samples"]
    p = smoke().prompt_tokens
    assert [len(s) for s in samples] == [k] * len(clips)
    for b, clip in enumerate(clips):
        last = np.asarray(clip["ego_history_xyz"], np.float32)[-1]  # (22.5, 23, 23.5) + the clip's offset
        for s in range(k):
            row = b * k + s
            text = [int(t) for t in samples[b][s]["reasoning"].split()]
            assert text == sequences[row, p:p + len(text)].tolist() and len(text) > 0
            traj = samples[b][s]["traj_xyz"]
            assert traj.shape == (ACTION_TOKENS, 3)
            assert np.all(traj[:, 2] == last[2])
            np.testing.assert_allclose(traj[:, :2], actions[row].cumsum(0).numpy() + last[:2], atol=1e-5)
