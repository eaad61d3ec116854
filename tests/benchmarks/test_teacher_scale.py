"""The CPU-testable parts of benchmarks/teacher_scale.py: the stand-in's sizes, the prompt layout,
attention over a prefix shared by K samples (against each sample's expanded cache), the action
expert, sampling; the parts built on transformers' Qwen3-VL skip where it is not installed."""

import importlib.util
import json

import pytest
import torch

from benchmarks.teacher_scale import (
    FULL, SMOKE, ActionExpert, StageTimer, attention_lse, build_expert, clip_prompt, expand_prefix,
    merge_attention, param_count, sample_tokens, shared_prefix_attention)

torch.set_num_threads(2)
needs_transformers = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None,
    reason="transformers is not installed: the stand-in VLM is its Qwen3VLForConditionalGeneration")


def test_full_scale_matches_the_alpamayo_prompt():
    assert FULL.patches_per_image == 20 * 36
    assert FULL.tokens_per_image == 180
    assert FULL.prompt_tokens == 3000
    assert FULL.prefix_tokens == 3040
    assert FULL.patch_dim == 3 * 2 * 16 * 16
    assert SMOKE.prompt_tokens == 3 + 4 * (6 + 2) + 4 + 3


def test_expert_has_the_stated_size():
    with torch.device("meta"):
        expert = ActionExpert(FULL)
    d, kv, ffn = 2048, 8 * 128, 8256
    per_layer = 2 * d * d + 2 * d * kv + 2 * kv * kv + 3 * d * ffn + 2 * d
    rest = (2 * d + d) + (d * d + d) + 64 * d + d + (d * 2 + 2)
    assert param_count(expert) == 36 * per_layer + rest == 2_359_064_578


def test_clip_prompt_layout():
    ids, types = clip_prompt(SMOKE, torch.Generator().manual_seed(3))
    assert ids.shape == types.shape == (SMOKE.prompt_tokens,)
    assert int((ids == SMOKE.image_token_id).sum()) == SMOKE.images * SMOKE.tokens_per_image
    assert torch.equal(types.bool(), ids == SMOKE.image_token_id)
    starts = torch.nonzero(ids == SMOKE.vision_start_token_id).flatten()
    assert starts.tolist() == [SMOKE.system_tokens + i * (SMOKE.tokens_per_image + 2) for i in range(SMOKE.images)]
    assert torch.equal(ids[starts + SMOKE.tokens_per_image + 1],
                       torch.full((SMOKE.images,), SMOKE.vision_end_token_id))
    again, _ = clip_prompt(SMOKE, torch.Generator().manual_seed(3))
    assert torch.equal(ids, again)


def test_expand_prefix_is_sample_major_within_a_clip():
    x = torch.arange(2 * 3).view(2, 3)
    assert expand_prefix(x, 3).tolist() == [[0, 1, 2]] * 3 + [[3, 4, 5]] * 3


def reference_attention(q, k, v, scale, mask=None):
    """Plain GQA softmax attention; query head h reads kv head h // groups."""
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = (q @ k.transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def test_merge_attention_of_split_keys_equals_attention_over_all():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 8, generator=g) for n in (5, 11, 11))
    parts = [attention_lse(q, k[:, :, s], v[:, :, s], 0.3) for s in (slice(0, 4), slice(4, 11))]
    torch.testing.assert_close(merge_attention(parts), reference_attention(q, k, v, 0.3), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("length, masked", [(1, True), (5, False)])
def test_shared_prefix_attention_equals_the_expanded_cache(length, masked):
    clips, samples, heads, kv_heads, d, prefix, own = 2, 3, 8, 2, 16, 13, 6
    g = torch.Generator().manual_seed(1)
    q = torch.randn(clips * samples, heads, length, d, generator=g)
    prefix_k, prefix_v = (torch.randn(clips, kv_heads, prefix, d, generator=g) for _ in range(2))
    own_k, own_v = (torch.randn(clips * samples, kv_heads, own, d, generator=g) for _ in range(2))
    mask = torch.arange(own) <= 3 if masked else None
    ours = shared_prefix_attention(q, prefix_k, prefix_v, own_k, own_v, d ** -0.5, mask)
    keys = torch.cat([expand_prefix(prefix_k, samples), own_k], dim=2)
    values = torch.cat([expand_prefix(prefix_v, samples), own_v], dim=2)
    full_mask = torch.cat([torch.ones(prefix, dtype=torch.bool), mask]) if masked else None
    torch.testing.assert_close(ours, reference_attention(q, keys, values, d ** -0.5, full_mask), atol=1e-5, rtol=1e-5)


def test_expert_sharing_the_prompt_equals_each_sample_with_its_own_copy():
    torch.manual_seed(0)
    expert = build_expert(SMOKE, "cpu", dtype=torch.float32)
    clips, samples, hd = 2, 3, SMOKE.head_dim
    layers = range(SMOKE.expert_layers)
    prompt = [tuple(torch.randn(clips, SMOKE.kv_heads, 9, hd) for _ in "kv") for _ in layers]
    reasoning = [tuple(torch.randn(clips * samples, SMOKE.kv_heads, SMOKE.reasoning_tokens, hd) for _ in "kv")
                 for _ in layers]
    noise = torch.randn(clips * samples, SMOKE.action_tokens, SMOKE.action_dim)
    shared = expert.sample(noise, expert.project(prompt), expert.project(reasoning))
    expanded_prompt = [tuple(expand_prefix(x, samples) for x in kv) for kv in prompt]
    expanded = expert.sample(noise, expert.project(expanded_prompt), expert.project(reasoning))
    assert shared.shape == (clips * samples, SMOKE.action_tokens, SMOKE.action_dim)
    torch.testing.assert_close(shared, expanded, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(shared[0], shared[1])  # each sample follows its own reasoning


def test_sample_tokens_greedy_and_seeded():
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 1.9]])
    assert sample_tokens(logits, 0.0).tolist() == [1, 0]
    torch.manual_seed(5)
    first = sample_tokens(logits.repeat(50, 1), 0.6)
    torch.manual_seed(5)
    assert torch.equal(first, sample_tokens(logits.repeat(50, 1), 0.6))
    assert set(first[1::2].tolist()) == {0, 2}  # near-tied logits: both get drawn


def test_stage_timer_reports_each_stage_in_order():
    timer = StageTimer(torch.device("cpu"))
    for name in ("vision", "prefill"):
        timer.mark(name)
    ms = timer.ms()
    assert list(ms) == ["vision", "prefill"] and all(t >= 0 for t in ms.values())


@needs_transformers
def test_vlm_stand_in_size_and_layout_positions():
    from benchmarks.teacher_scale import build_vlm, layout_positions, qwen3vl_config
    from transformers import Qwen3VLForConditionalGeneration

    with torch.device("meta"):
        full = Qwen3VLForConditionalGeneration._from_config(qwen3vl_config(FULL))
    assert 8.7e9 < param_count(full) < 8.9e9
    model = build_vlm(SMOKE, "cpu", dtype=torch.float32)
    positions, delta = layout_positions(model, SMOKE, "cpu")
    assert positions.shape == (4, 1, SMOKE.prompt_tokens)
    # each image's 6 tokens take max(2, 3) = 3 positions
    assert delta == SMOKE.images * (3 - SMOKE.tokens_per_image) == -12


@needs_transformers
def test_runner_matches_the_stock_model_on_the_smoke_config():
    from benchmarks.teacher_scale import build_vlm, checks

    torch.manual_seed(0)
    model = build_vlm(SMOKE, "cpu")
    expert = build_expert(SMOKE, "cpu")
    with torch.inference_mode():
        result = checks(model, expert, SMOKE, "cpu")
    assert result["first_token_equal"]
    assert result["vision_rel_err"] < 1e-2 and result["deepstack_rel_err"] < 1e-2
    assert result["decode_logits_rel_err"] < 2e-2
    assert result["action_shared_vs_expanded_rel_err"] < 1e-2


@needs_transformers
@pytest.mark.slow
def test_smoke_benchmark_writes_its_rows(tmp_path):
    from benchmarks.teacher_scale import main

    out = tmp_path / "ts.json"
    assert main(["--smoke", "--batches", "2", "--samples", "2", "--iters", "1", "--naive-iters", "1",
                 "--variants", "bf16", "--skip-checks", "--device", "cpu", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["path"], r["samples"], r["batch"]) for r in rows] == [("naive", 2, 1), ("ours/bf16", 2, 2)]
    for row in rows:
        assert set(row["ms_per_clip"]) == {"vision", "prefill", "decode", "action", "total"}
        assert row["clips_per_s"] > 0
