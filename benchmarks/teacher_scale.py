"""Teacher at Alpamayo scale on one GPU: the naive path against our teacher runner's path.

The stand-in is built from code with random bf16 weights (no download): a Qwen3-VL-8B-configured
`Qwen3VLForConditionalGeneration` (8.8B parameters) fed 16 images of 320x576 (180 visual tokens
each, 3000 prompt tokens with 48 history tokens), a forced 40-token reasoning trace, and a 2.3B
action expert (36 layers, hidden 2048, GQA 16/8 heads, SwiGLU 8256) running 10 Euler steps over
64 action tokens against the 3040-token prefix.

Paths, each timed per stage (vision, prefill, decode, action):
- naive: `generate` one clip at a time, eager; K samples through `num_return_sequences`
  (which prefills the clip K times), then the expert, eager.
- shared-prefill (with `--shared-prefill`): the naive path with the real teacher runner's
  rollout (`models.vlm_rollout.shared_prefill_generate`, what `AlpamayoR1Teacher` runs by
  default): the clip's prompt prefilled once, its KV cache repeated for the K samples, then
  `generate` over the K samples.
- ours: a batch of clips; vision attention batched over the equal-size images; one prefill per
  clip whose KV cache all K samples share (the prefix is never copied K times: attention runs
  over the shared prefix and each sample's own tokens and merges the two by log-sum-exp);
  a static KV cache and a CUDA-graphed decode step; all samples' flow steps batched in one
  CUDA-graphed action stage. Variants, cumulative: `bf16` (the above), `compiled` (+ the
  language model's RMSNorms and SwiGLU and the vision rotation fused by torch.compile), `fp8`
  (+ FP8 language-model matmuls, compared against bf16 for token agreement and trajectory L2).

    python -m benchmarks.teacher_scale --variants bf16,compiled,fp8 --json out/teacher_scale.json
    python -m benchmarks.teacher_scale --shared-prefill --variants bf16 --batches 16
    python -m benchmarks.teacher_scale --smoke        # tiny config, seconds, also on CPU

Figures and where the time goes: docs/PERFORMANCE.md.
"""

import argparse
import json
import math
import platform
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from functools import partial
from types import MethodType

import torch
import torch.nn.functional as F
from torch import nn

from models.flow import euler_sample
from models.vlm_rollout import expand_samples, shared_prefill_generate

STAGES = ("vision", "prefill", "decode", "action")


@dataclass(frozen=True)
class Scale:
    """Every size of the stand-in; `FULL` is Alpamayo-R1's, `SMOKE` a tiny one for tests."""
    # vision tower (Qwen3-VL)
    vision_depth: int = 27
    vision_hidden: int = 1152
    vision_heads: int = 16
    vision_intermediate: int = 4304
    vision_position_embeddings: int = 2304
    deepstack_layers: tuple[int, ...] = (8, 16, 24)
    patch: int = 16
    merge: int = 2
    temporal_patch: int = 2
    # language model (Qwen3-VL-8B)
    hidden: int = 4096
    layers: int = 36
    heads: int = 32
    kv_heads: int = 8
    head_dim: int = 128
    intermediate: int = 12288
    vocab: int = 151936
    rope_theta: float = 5_000_000.0
    mrope_section: tuple[int, int, int] = (24, 20, 20)
    image_token_id: int = 151655
    video_token_id: int = 151656
    vision_start_token_id: int = 151652
    vision_end_token_id: int = 151653
    # one clip's prompt and trace
    images: int = 16
    image_hw: tuple[int, int] = (320, 576)
    system_tokens: int = 20
    history_tokens: int = 48
    instruction_tokens: int = 20
    reasoning_tokens: int = 40
    # action expert
    expert_layers: int = 36
    expert_hidden: int = 2048
    expert_heads: int = 16
    expert_kv_heads: int = 8
    expert_intermediate: int = 8256
    action_tokens: int = 64
    action_dim: int = 2
    flow_steps: int = 10

    @property
    def patches_per_image(self) -> int:
        return (self.image_hw[0] // self.patch) * (self.image_hw[1] // self.patch)

    @property
    def tokens_per_image(self) -> int:
        return self.patches_per_image // (self.merge * self.merge)

    @property
    def prompt_tokens(self) -> int:
        """System text, then per image <vision_start> image tokens <vision_end>, history, instruction."""
        return (self.system_tokens + self.images * (self.tokens_per_image + 2)
                + self.history_tokens + self.instruction_tokens)

    @property
    def prefix_tokens(self) -> int:
        """What the action expert attends to: the prompt and the reasoning trace."""
        return self.prompt_tokens + self.reasoning_tokens

    @property
    def patch_dim(self) -> int:
        return 3 * self.temporal_patch * self.patch * self.patch


FULL = Scale()
SMOKE = replace(
    FULL, vision_depth=3, vision_hidden=32, vision_heads=2, vision_intermediate=64,
    vision_position_embeddings=64, deepstack_layers=(0, 1), hidden=64, layers=3, heads=4,
    kv_heads=2, head_dim=16, intermediate=128, vocab=512, mrope_section=(4, 2, 2),
    image_token_id=509, video_token_id=510, vision_start_token_id=507, vision_end_token_id=508,
    images=4, image_hw=(64, 96), system_tokens=3, history_tokens=4, instruction_tokens=3,
    reasoning_tokens=5, expert_layers=2, expert_hidden=64, expert_heads=4, expert_kv_heads=2,
    expert_intermediate=128)


# ---------------------------------------------------------------- the vision-language stand-in

def qwen3vl_config(scale: Scale):
    """A `Qwen3VLConfig` of `scale`'s sizes, built in code."""
    from transformers import Qwen3VLConfig

    return Qwen3VLConfig(
        text_config=dict(
            vocab_size=scale.vocab, hidden_size=scale.hidden, intermediate_size=scale.intermediate,
            num_hidden_layers=scale.layers, num_attention_heads=scale.heads,
            num_key_value_heads=scale.kv_heads, head_dim=scale.head_dim, rms_norm_eps=1e-6,
            max_position_embeddings=262144, tie_word_embeddings=False,
            rope_parameters=dict(rope_type="default", rope_theta=scale.rope_theta,
                                 mrope_section=list(scale.mrope_section), mrope_interleaved=True)),
        vision_config=dict(
            depth=scale.vision_depth, hidden_size=scale.vision_hidden, num_heads=scale.vision_heads,
            intermediate_size=scale.vision_intermediate, out_hidden_size=scale.hidden,
            patch_size=scale.patch, spatial_merge_size=scale.merge,
            temporal_patch_size=scale.temporal_patch,
            num_position_embeddings=scale.vision_position_embeddings,
            deepstack_visual_indexes=list(scale.deepstack_layers)),
        image_token_id=scale.image_token_id, video_token_id=scale.video_token_id,
        vision_start_token_id=scale.vision_start_token_id,
        vision_end_token_id=scale.vision_end_token_id, tie_word_embeddings=False)


def build_vlm(scale: Scale, device: str, dtype=torch.bfloat16):
    """Random-weight `Qwen3VLForConditionalGeneration` made directly on `device`, sdpa attention."""
    from transformers import Qwen3VLForConditionalGeneration

    with torch.device(device):
        model = Qwen3VLForConditionalGeneration._from_config(
            qwen3vl_config(scale), dtype=dtype, attn_implementation="sdpa")
    return model.eval().requires_grad_(False)


def clip_prompt(scale: Scale, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One clip's (input_ids, mm_token_type_ids), both (prompt_tokens,): random text ids around
    the image placeholders (type 1), in Alpamayo's order: images, then history, then instruction."""
    def text(n):
        return torch.randint(0, scale.vision_start_token_id, (n,), generator=generator)

    image = torch.cat([torch.tensor([scale.vision_start_token_id]),
                       torch.full((scale.tokens_per_image,), scale.image_token_id),
                       torch.tensor([scale.vision_end_token_id])])
    ids = torch.cat([text(scale.system_tokens), image.repeat(scale.images),
                     text(scale.history_tokens), text(scale.instruction_tokens)])
    return ids, (ids == scale.image_token_id).int()


def image_grid(scale: Scale, clips: int) -> torch.Tensor:
    """(clips * images, 3) patch grid (t, h, w) of every image."""
    h, w = scale.image_hw[0] // scale.patch, scale.image_hw[1] // scale.patch
    return torch.tensor([[1, h, w]]).repeat(clips * scale.images, 1)


@dataclass
class ClipBatch:
    input_ids: torch.Tensor        # (clips, prompt_tokens)
    mm_token_type_ids: torch.Tensor
    pixel_values: torch.Tensor     # (clips * images * patches_per_image, patch_dim)
    image_grid_thw: torch.Tensor   # (clips * images, 3)


def random_batch(scale: Scale, clips: int, seed: int, device: str, dtype=torch.bfloat16) -> ClipBatch:
    g = torch.Generator().manual_seed(seed)
    prompts = [clip_prompt(scale, g) for _ in range(clips)]
    pixels = torch.randn(clips * scale.images * scale.patches_per_image, scale.patch_dim,
                         generator=g, dtype=torch.float32)
    return ClipBatch(torch.stack([p[0] for p in prompts]).to(device),
                     torch.stack([p[1] for p in prompts]).to(device),
                     pixels.to(device, dtype), image_grid(scale, clips).to(device))


def _batched_vision_attention(self, hidden_states, cu_seqlens, position_embeddings=None,
                              patches_per_image=0, rope=None, **kwargs):
    """Qwen3-VL vision attention for images of one size: one SDPA call over (images, heads,
    patches, dim) instead of one call per image; `rope` is Qwen3-VL's vision rotation."""
    n = hidden_states.shape[0]
    q, k, v = self.qkv(hidden_states).reshape(n, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    q, k = rope(q, k, *position_embeddings)
    images = n // patches_per_image

    def per_image(x):
        return x.reshape(images, patches_per_image, self.num_heads, -1).transpose(1, 2)

    out = F.scaled_dot_product_attention(per_image(q), per_image(k), per_image(v), scale=self.scaling)
    return self.proj(out.transpose(1, 2).reshape(n, -1))


@contextmanager
def batched_vision_attention(model, patches_per_image: int, rope=None):
    """Within the block, every vision attention layer of `model` runs `_batched_vision_attention`
    (with Qwen3-VL's own vision rotation unless `rope` is given)."""
    from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb_vision

    blocks = model.model.visual.blocks
    for block in blocks:
        block.attn.forward = MethodType(partial(_batched_vision_attention, patches_per_image=patches_per_image,
                                                rope=rope or apply_rotary_pos_emb_vision), block.attn)
    try:
        yield
    finally:
        for block in blocks:
            del block.attn.forward


def joined(features) -> torch.Tensor:
    """Vision features as one (visual tokens, hidden) tensor; transformers returns them split per
    image in some releases."""
    return torch.cat(features) if isinstance(features, (tuple, list)) else features


def layout_positions(model, scale: Scale, device: str) -> tuple[torch.Tensor, int]:
    """(position ids (4, 1, prompt_tokens): text row then the 3 M-RoPE rows, rope delta) of the
    prompt layout, which every clip shares; the decode position of token i after it is i + delta."""
    ids, types = clip_prompt(scale, torch.Generator().manual_seed(0))
    pos3, delta = model.model.get_rope_index(ids[None].to(device), types[None].to(device),
                                             image_grid_thw=image_grid(scale, 1).to(device))
    text = torch.arange(scale.prompt_tokens, device=device).view(1, 1, -1)
    return torch.cat([text, pos3]), int(delta.item())


# ------------------------------------------------------------------------ attention over a shared prefix

def attention_lse(q, k, v, scale: float, mask=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention of q (..., Lq, d) over k, v (..., Lk, d) with the same leading shape:
    (out (..., Lq, d) in q's dtype, log-sum-exp of the scores (..., Lq) in float32).
    `mask` (bool, True = attend) broadcasts to (..., Lq, Lk). Flash attention on CUDA when
    there is no mask; float32 arithmetic otherwise."""
    if q.is_cuda and mask is None and q.dtype in (torch.bfloat16, torch.float16):
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, False, False, scale=scale)[:2]
        return out, lse
    scores = (q.float() @ k.float().transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    return (torch.exp(scores - lse[..., None]) @ v.float()).to(q.dtype), lse


def merge_attention(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Attention over the union of disjoint key sets from each set's (out, lse)."""
    total = torch.logsumexp(torch.stack([lse for _, lse in parts]), dim=0)
    out = sum(o.float() * torch.exp(lse - total)[..., None] for o, lse in parts)
    return out.to(parts[0][0].dtype)


def shared_prefix_attention(q, prefix_k, prefix_v, own_k, own_v, scale: float, own_mask=None):
    """GQA attention of samples that share their clip's prefix.

    q (clips * K, heads, L, d), sample-major within a clip; prefix_k/v (clips, kv_heads, P, d),
    stored once per clip; own_k/v (clips * K, kv_heads, S, d), each sample's own keys;
    own_mask (bool) broadcasts to (clips * K, kv_heads, groups * L, S).
    Equals attention over each sample's expanded cache [prefix; own] (`expand_prefix`), while
    reading the prefix once per clip: the K samples' queries become rows of one query block.
    """
    n, heads, length, d = q.shape
    clips, kv_heads = prefix_k.shape[:2]
    k_samples, groups = n // clips, heads // kv_heads
    q_clip = (q.reshape(clips, k_samples, kv_heads, groups, length, d).permute(0, 2, 1, 3, 4, 5)
              .reshape(clips, kv_heads, k_samples * groups * length, d))
    out_p, lse_p = attention_lse(q_clip, prefix_k, prefix_v, scale)
    out_p = (out_p.view(clips, kv_heads, k_samples, groups, length, d).permute(0, 2, 1, 3, 4, 5)
             .reshape(n, heads, length, d))
    lse_p = (lse_p.view(clips, kv_heads, k_samples, groups, length).permute(0, 2, 1, 3, 4)
             .reshape(n, heads, length))
    out_o, lse_o = attention_lse(q.reshape(n, kv_heads, groups * length, d), own_k, own_v, scale, own_mask)
    return merge_attention([(out_p, lse_p), (out_o.view(n, heads, length, d), lse_o.view(n, heads, length))])


# (clips, ...) -> (clips * samples, ...): each clip's cache copied for its K samples (what
# `generate` with num_return_sequences holds); the reference that shared attention must equal.
expand_prefix = expand_samples


# --------------------------------------------------------------------------------- the action expert

def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


class ExpertLayer(nn.Module):
    """Pre-norm GQA attention over [VLM prefix; own 64 tokens] (non-causal) and a SwiGLU MLP;
    `prefix_k`/`prefix_v` map the VLM's per-layer keys/values to this layer's heads."""

    def __init__(self, scale: Scale):
        super().__init__()
        d, hd = scale.expert_hidden, scale.expert_hidden // scale.expert_heads
        self.heads, self.kv_heads, self.head_dim = scale.expert_heads, scale.expert_kv_heads, hd
        self.attn_norm, self.mlp_norm = nn.RMSNorm(d, eps=1e-6), nn.RMSNorm(d, eps=1e-6)
        self.q = nn.Linear(d, self.heads * hd, bias=False)
        self.k = nn.Linear(d, self.kv_heads * hd, bias=False)
        self.v = nn.Linear(d, self.kv_heads * hd, bias=False)
        self.o = nn.Linear(self.heads * hd, d, bias=False)
        vlm_kv = scale.kv_heads * scale.head_dim
        self.prefix_k = nn.Linear(vlm_kv, self.kv_heads * hd, bias=False)
        self.prefix_v = nn.Linear(vlm_kv, self.kv_heads * hd, bias=False)
        self.gate = nn.Linear(d, scale.expert_intermediate, bias=False)
        self.up = nn.Linear(d, scale.expert_intermediate, bias=False)
        self.down = nn.Linear(scale.expert_intermediate, d, bias=False)

    def project(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """VLM keys/values (rows, vlm_kv_heads, T, vlm_head_dim) -> (rows, kv_heads, T, head_dim)."""
        rows, _, t, _ = k.shape

        def heads(x, proj):
            return proj(x.transpose(1, 2).reshape(rows, t, -1)).view(rows, t, self.kv_heads, -1).transpose(1, 2)

        return heads(k, self.prefix_k), heads(v, self.prefix_v)

    def forward(self, x, prompt_kv, reasoning_kv):
        n, length, _ = x.shape
        h = self.attn_norm(x)
        q = self.q(h).view(n, length, self.heads, -1).transpose(1, 2)
        k = self.k(h).view(n, length, self.kv_heads, -1).transpose(1, 2)
        v = self.v(h).view(n, length, self.kv_heads, -1).transpose(1, 2)
        own_k, own_v = torch.cat([reasoning_kv[0], k], dim=2), torch.cat([reasoning_kv[1], v], dim=2)
        a = shared_prefix_attention(q, *prompt_kv, own_k, own_v, self.head_dim ** -0.5)
        x = x + self.o(a.transpose(1, 2).reshape(n, length, -1))
        h = self.mlp_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class ActionExpert(nn.Module):
    """Flow-matching action expert: 64 action tokens of (acceleration, curvature) attending to the
    VLM's KV cache; `sample` integrates its velocity from noise in `flow_steps` Euler steps."""

    def __init__(self, scale: Scale):
        super().__init__()
        d = scale.expert_hidden
        self.scale = scale
        self.action_in = nn.Linear(scale.action_dim, d)
        self.time_in = nn.Linear(d, d)
        self.position = nn.Parameter(torch.randn(scale.action_tokens, d) * 0.02)
        self.layers = nn.ModuleList(ExpertLayer(scale) for _ in range(scale.expert_layers))
        self.norm = nn.RMSNorm(d, eps=1e-6)
        self.action_out = nn.Linear(d, scale.action_dim)

    def velocity(self, x, t, prompt_kv, reasoning_kv):
        """x (clips * K, 64, action_dim), t (clips * K,); prompt_kv per layer (clips, ...), once
        per clip; reasoning_kv per layer (clips * K, ...), per sample (both already projected)."""
        h = self.action_in(x.to(self.position.dtype)) + self.position
        h = h + self.time_in(timestep_embedding(t, h.shape[-1]).to(h.dtype))[:, None]
        for layer, pkv, rkv in zip(self.layers, prompt_kv, reasoning_kv):
            h = layer(h, pkv, rkv)
        return self.action_out(self.norm(h)).to(x.dtype)

    def project(self, cache: list[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The VLM's per-layer (k, v) mapped to each expert layer's heads (once per clip)."""
        return [layer.project(*kv) for layer, kv in zip(self.layers, cache)]

    def sample(self, noise, prompt_kv, reasoning_kv):
        """Actions (clips * K, 64, action_dim) from `noise`, given projected per-layer (k, v) of
        the prompt (clips, ...) and of each sample's reasoning (clips * K, ...)."""
        return euler_sample(lambda x, t: self.velocity(x, t, prompt_kv, reasoning_kv),
                            noise, self.scale.flow_steps)


def build_expert(scale: Scale, device: str, dtype=torch.bfloat16) -> ActionExpert:
    with torch.device(device):
        expert = ActionExpert(scale)
    return expert.to(dtype).eval().requires_grad_(False)


# ------------------------------------------------------------------------------- our teacher runner

def sample_tokens(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Temperature sampling by the Gumbel-max trick (CUDA-graph safe); greedy at temperature 0."""
    if temperature <= 0:
        return logits.argmax(-1)
    u = torch.rand_like(logits, dtype=torch.float32).clamp_(min=1e-10)
    return (logits.float() / temperature - torch.log(-torch.log(u))).argmax(-1)


def _write_into(layer, key_states, value_states, *args, keys, values, **kwargs):
    """A prefill cache layer's update that writes into static tensors instead of growing its own."""
    keys.copy_(key_states)
    values.copy_(value_states)
    layer.keys, layer.values, layer.is_initialized = keys, values, True
    return key_states, value_states


class TeacherRunner:
    """Our path for a fixed (clips, K): batched vision, one prefill per clip, K samples decoding
    against the shared prefix from a static cache, batched flow steps; decode step and action
    stage each captured once as a CUDA graph (on CUDA; eager elsewhere)."""

    def __init__(self, model, expert: ActionExpert, scale: Scale, clips: int, samples: int,
                 temperature: float = 0.6, graphs: bool = True, vision_rope=None):
        self.model, self.expert, self.scale, self.vision_rope = model, expert, scale, vision_rope
        self.clips, self.samples, self.temperature = clips, samples, temperature
        lm = model.model.language_model
        device, dtype = lm.embed_tokens.weight.device, lm.embed_tokens.weight.dtype
        self.positions, delta = layout_positions(model, scale, str(device))
        n, p, s = clips * samples, scale.prompt_tokens, scale.reasoning_tokens

        def zeros(*shape):
            return torch.zeros(*shape, device=device, dtype=dtype)

        self.prompt_k = [zeros(clips, scale.kv_heads, p, scale.head_dim) for _ in range(scale.layers)]
        self.prompt_v = [zeros(clips, scale.kv_heads, p, scale.head_dim) for _ in range(scale.layers)]
        self.own_k = [zeros(n, scale.kv_heads, s, scale.head_dim) for _ in range(scale.layers)]
        self.own_v = [zeros(n, scale.kv_heads, s, scale.head_dim) for _ in range(scale.layers)]
        self.tokens = torch.zeros(n, dtype=torch.long, device=device)
        self.trace = torch.zeros(n, s, dtype=torch.long, device=device)
        self.logits = torch.zeros(n, scale.vocab, dtype=dtype, device=device)
        self.step = torch.zeros(1, dtype=torch.long, device=device)
        self.slots = torch.arange(s, device=device)
        self.first_position = p + delta
        self.inv_freq = lm.rotary_emb.inv_freq.float()
        self.noise = torch.zeros(n, scale.action_tokens, scale.action_dim, device=device, dtype=dtype)
        self.actions = torch.zeros_like(self.noise)
        self.decode_graph = self.action_graph = None
        if graphs and device.type == "cuda":
            self.decode_graph = self._capture(self.decode_step)
            self.action_graph = self._capture(self.act)

    @staticmethod
    def _capture(fn):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        return graph

    def vision(self, batch: ClipBatch):
        """(image embeddings (clips * visual tokens, hidden), deepstack features)."""
        with batched_vision_attention(self.model, self.scale.patches_per_image, self.vision_rope):
            out = self.model.model.get_image_features(batch.pixel_values, batch.image_grid_thw)
        return joined(out.pooler_output), [joined(f) for f in out.deepstack_features]

    def prefill(self, batch: ClipBatch, image_embeds, deepstack) -> None:
        """One causal pass per clip over its prompt; fills the static prompt cache and samples each
        sample's first reasoning token."""
        from transformers import DynamicCache

        lm = self.model.model.language_model
        embeds = lm.embed_tokens(batch.input_ids)
        image_mask = batch.input_ids == self.scale.image_token_id
        embeds = embeds.masked_scatter(image_mask[..., None], image_embeds.to(embeds.dtype))
        cache = DynamicCache(config=lm.config)
        for layer, k, v in zip(cache.layers, self.prompt_k, self.prompt_v):
            layer.update = MethodType(partial(_write_into, keys=k, values=v), layer)
        out = lm(inputs_embeds=embeds, position_ids=self.positions.expand(-1, self.clips, -1),
                 past_key_values=cache, use_cache=True, visual_pos_masks=image_mask,
                 deepstack_visual_embeds=deepstack)
        logits = self.model.lm_head(out.last_hidden_state[:, -1])
        self.tokens.copy_(sample_tokens(expand_prefix(logits, self.samples), self.temperature))
        self.step.zero_()

    def decode_step(self) -> None:
        """Feed `tokens` at trace slot `step` to every layer, write its keys/values to the static
        cache, sample the next tokens, advance `step`. Text tokens have equal M-RoPE components,
        so their rotation is the plain RoPE of position first_position + step."""
        from transformers.models.qwen3_vl.modeling_qwen3_vl import rotate_half

        lm, sc = self.model.model.language_model, self.scale
        n = self.tokens.shape[0]
        x = lm.embed_tokens(self.tokens)
        freqs = (self.step + self.first_position).float()[:, None] * self.inv_freq[None]
        angles = torch.cat([freqs, freqs], dim=-1)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        mask = self.slots <= self.step
        for layer, pk, pv, ok, ov in zip(lm.layers, self.prompt_k, self.prompt_v, self.own_k, self.own_v):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = attn.q_norm(attn.q_proj(h).view(n, sc.heads, sc.head_dim))
            k = attn.k_norm(attn.k_proj(h).view(n, sc.kv_heads, sc.head_dim))
            v = attn.v_proj(h).view(n, sc.kv_heads, sc.head_dim)
            q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
            ok.index_copy_(2, self.step, k[:, :, None])
            ov.index_copy_(2, self.step, v[:, :, None])
            a = shared_prefix_attention(q[:, :, None], pk, pv, ok, ov, attn.scaling, mask)
            x = x + attn.o_proj(a.reshape(n, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        self.logits.copy_(self.model.lm_head(lm.norm(x)))
        self.trace.index_copy_(1, self.step, self.tokens[:, None])
        self.tokens.copy_(sample_tokens(self.logits, self.temperature))
        self.step.add_(1)

    def decode(self) -> None:
        for _ in range(self.scale.reasoning_tokens):
            self.decode_graph.replay() if self.decode_graph else self.decode_step()

    def act(self) -> None:
        """Project the prompt cache to the expert's heads in place (decode no longer needs it),
        then integrate all samples' flow together."""
        for layer, k, v in zip(self.expert.layers, self.prompt_k, self.prompt_v):
            pk, pv = layer.project(k, v)
            k.copy_(pk)
            v.copy_(pv)
        reasoning = self.expert.project(list(zip(self.own_k, self.own_v)))
        self.actions.copy_(self.expert.sample(self.noise, list(zip(self.prompt_k, self.prompt_v)), reasoning))

    def action(self, noise: torch.Tensor | None = None) -> None:
        self.noise.copy_(noise) if noise is not None else self.noise.normal_()
        self.action_graph.replay() if self.action_graph else self.act()

    def run(self, batch: ClipBatch) -> dict[str, float]:
        """Label one batch; returns ms per stage for the batch (device events on CUDA)."""
        timer = StageTimer(self.tokens.device)
        image_embeds, deepstack = self.vision(batch)
        timer.mark("vision")
        self.prefill(batch, image_embeds, deepstack)
        timer.mark("prefill")
        self.decode()
        timer.mark("decode")
        self.action()
        timer.mark("action")
        return timer.ms()


class StageTimer:
    """Milliseconds between consecutive marks: CUDA events on a GPU, the host clock elsewhere."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks = [("", self._now())]

    def _now(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def mark(self, name: str) -> None:
        self.marks.append((name, self._now()))

    def ms(self) -> dict[str, float]:
        if self.cuda:
            torch.cuda.synchronize()
            return {n: a.elapsed_time(b) for (_, a), (n, b) in zip(self.marks, self.marks[1:])}
        return {n: (b - a) * 1e3 for (_, a), (n, b) in zip(self.marks, self.marks[1:])}


# ------------------------------------------------------------- variants: fused elementwise, FP8 matmuls

VARIANTS = ("bf16", "compiled", "fp8")  # cumulative: each adds to the ones before it
FP8_MAX = 448.0  # largest float8 e4m3 value


def _rms_norm(x, weight, eps: float):
    """Qwen3's RMSNorm (statistics in float32, weight applied in the input's dtype)."""
    xf = x.float()
    return weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _swiglu(gate, up):
    return F.silu(gate) * up


def _vision_rope(q, k, cos, sin):
    from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb_vision

    return apply_rotary_pos_emb_vision(q, k, cos, sin)


def compile_elementwise(model):
    """Fuse the language model's RMSNorms and SwiGLU products with torch.compile (eager HF runs
    each as several passes over the prefill activations); returns the fused vision rotation for
    `TeacherRunner(vision_rope=...)`."""
    rms, swiglu = torch.compile(_rms_norm), torch.compile(_swiglu)
    lm = model.model.language_model
    norms = [lm.norm] + [n for layer in lm.layers for n in (
        layer.input_layernorm, layer.post_attention_layernorm, layer.self_attn.q_norm, layer.self_attn.k_norm)]
    for norm in norms:
        norm.forward = partial(rms, weight=norm.weight, eps=norm.variance_epsilon)
    for layer in lm.layers:
        mlp = layer.mlp
        mlp.forward = partial(lambda x, m: m.down_proj(swiglu(m.gate_proj(x), m.up_proj(x))), m=mlp)
    return torch.compile(_vision_rope)


def _quantize_rows(x):
    """(rows, k) -> (float8 e4m3 rows, float32 scale per row (rows, 1))."""
    scale = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12) / FP8_MAX
    return (x.float() / scale).to(torch.float8_e4m3fn), scale


_quantize_rows_compiled = torch.compile(_quantize_rows)


class Fp8Linear(nn.Module):
    """x W^T on the FP8 tensor cores: W in float8 e4m3 with one scale per output feature, x
    quantised per token at run time; bf16 out."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.float()
        scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / FP8_MAX
        self.register_buffer("weight", (w / scale).to(torch.float8_e4m3fn))
        self.register_buffer("weight_scale", scale.t().contiguous())
        self.bias = linear.bias

    def forward(self, x):
        q, scale = _quantize_rows_compiled(x.reshape(-1, x.shape[-1]))
        out = torch._scaled_mm(q, self.weight.t(), scale_a=scale, scale_b=self.weight_scale, out_dtype=x.dtype)
        if self.bias is not None:
            out = out + self.bias
        return out.view(*x.shape[:-1], -1)


def quantize_text_linears(model) -> None:
    """Every linear layer of the language model's decoder layers to `Fp8Linear` (the bf16 weights
    are dropped); vision tower, embeddings and lm_head stay bf16."""
    for layer in model.model.language_model.layers:
        for parent, names in ((layer.self_attn, ("q_proj", "k_proj", "v_proj", "o_proj")),
                              (layer.mlp, ("gate_proj", "up_proj", "down_proj"))):
            for name in names:
                setattr(parent, name, Fp8Linear(getattr(parent, name)))
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def greedy_outputs(model, expert, scale: Scale, device: str, vision_rope=None) -> dict:
    """Our path, greedy, on two fixed clips with fixed flow noise: first decode step's logits,
    reasoning trace, actions; what a variant is compared on."""
    batch = random_batch(scale, 2, seed=321, device=device)
    runner = TeacherRunner(model, expert, scale, clips=2, samples=1, temperature=0.0, graphs=False,
                           vision_rope=vision_rope)
    runner.prefill(batch, *runner.vision(batch))
    runner.decode_step()
    logits = runner.logits.clone()
    for _ in range(scale.reasoning_tokens - 1):
        runner.decode_step()
    noise = torch.randn(runner.noise.shape, generator=torch.Generator().manual_seed(7)).to(runner.noise)
    runner.action(noise)
    return {"logits": logits, "trace": runner.trace.clone(), "actions": runner.actions.clone()}


def compare_outputs(ours: dict, reference: dict, v0: float = 10.0) -> dict:
    """Token agreement, logits and action errors, and trajectory L2 (m, mean over waypoints and
    samples, unicycle rolled out at `v0` m/s) of a variant against the bf16 reference."""
    from models.action_space import actions_to_traj

    xyz, _ = actions_to_traj(ours["actions"].float().cpu().numpy(), v0)
    ref_xyz, _ = actions_to_traj(reference["actions"].float().cpu().numpy(), v0)
    return {"token_agreement": float((ours["trace"] == reference["trace"]).float().mean()),
            "decode_logits_rel_err": rel_err(ours["logits"], reference["logits"]),
            "action_rel_err": rel_err(ours["actions"], reference["actions"]),
            "traj_l2_m": float(((xyz - ref_xyz) ** 2).sum(-1).__pow__(0.5).mean())}


# ------------------------------------------------------------------------------------ the naive path

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def generate_kwargs(batch: ClipBatch, samples: int, new_tokens: int, **sampling) -> dict:
    """`generate`'s keyword arguments for `batch`: its inputs and a `generation_config` of
    `new_tokens` tokens, K = `samples` per clip, sampled as the release samples (or `sampling`)."""
    from transformers import GenerationConfig

    config = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True, temperature=0.6,
                  top_p=0.98, num_return_sequences=samples, pad_token_id=0, eos_token_id=None)
    return dict(input_ids=batch.input_ids, attention_mask=torch.ones_like(batch.input_ids),
                mm_token_type_ids=batch.mm_token_type_ids, pixel_values=batch.pixel_values,
                image_grid_thw=batch.image_grid_thw, generation_config=GenerationConfig(**{**config, **sampling}))


def stock_generate(model, **kwargs):
    return model.generate(**kwargs)


GENERATE = {"naive": stock_generate, "shared-prefill": shared_prefill_generate}


def naive_clip(model, expert: ActionExpert, scale: Scale, batch: ClipBatch, samples: int,
               generate=stock_generate) -> dict[str, float]:
    """One clip as a first port would run it (or with `generate` = `shared_prefill_generate`, as
    the real teacher runner does); ms per stage. `generate` holds vision, prefill and decode
    together, so they are told apart by timing the vision tower alone and `generate` of one
    token; the clip's time is the full `generate` plus the extra step that puts the last
    reasoning token in the cache, plus the expert."""
    device = batch.input_ids.device

    def timed(fn):
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        return result, (time.perf_counter() - start) * 1e3

    _, vision = timed(lambda: model.model.get_image_features(batch.pixel_values, batch.image_grid_thw))
    _, first = timed(lambda: generate(model, **generate_kwargs(batch, samples, 1)))

    def full():
        out = generate(model, **generate_kwargs(batch, samples, scale.reasoning_tokens, return_dict_in_generate=True))
        model(input_ids=out.sequences[:, -1:], past_key_values=out.past_key_values, use_cache=True,
              logits_to_keep=1)
        return out.past_key_values

    cache, generated = timed(full)
    p = scale.prompt_tokens

    def act():
        noise = torch.randn(samples, scale.action_tokens, scale.action_dim, device=device,
                            dtype=expert.position.dtype)
        return expert.sample(noise, expert.project([(l.keys[:, :, :p], l.values[:, :, :p]) for l in cache.layers]),
                             expert.project([(l.keys[:, :, p:], l.values[:, :, p:]) for l in cache.layers]))

    _, action = timed(act)
    return {"vision": vision, "prefill": first - vision, "decode": generated - first, "action": action}


# -------------------------------------------------------------------------------------- measurement

def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def checks(model, expert, scale: Scale, device: str) -> dict:
    """Our path against the stock one on one clip: vision tower, first decode step's logits,
    greedy token agreement over the trace, and shared-prefix against expanded-cache actions."""
    batch = random_batch(scale, 1, seed=123, device=device)
    stock = model.model.get_image_features(batch.pixel_values, batch.image_grid_thw)
    runner = TeacherRunner(model, expert, scale, clips=1, samples=1, temperature=0.0, graphs=False)
    image_embeds, deepstack = runner.vision(batch)
    result = {"vision_rel_err": rel_err(image_embeds, joined(stock.pooler_output)),
              "deepstack_rel_err": max(rel_err(a, joined(b)) for a, b in zip(deepstack, stock.deepstack_features))}
    runner.prefill(batch, image_embeds, deepstack)
    first = runner.tokens.clone()
    runner.decode_step()
    ours_logits = runner.logits.clone()
    out = model(input_ids=batch.input_ids, mm_token_type_ids=batch.mm_token_type_ids,
                pixel_values=batch.pixel_values, image_grid_thw=batch.image_grid_thw, use_cache=True,
                logits_to_keep=1)
    ref_first = out.logits[:, -1].argmax(-1)
    ref = model(input_ids=ref_first[:, None], past_key_values=out.past_key_values, use_cache=True)
    result["first_token_equal"] = bool((first == ref_first).all())
    result["decode_logits_rel_err"] = rel_err(ours_logits, ref.logits[:, -1])
    for _ in range(scale.reasoning_tokens - 1):
        runner.decode_step()
    greedy = model.generate(**generate_kwargs(batch, 1, scale.reasoning_tokens, do_sample=False,
                                              temperature=None, top_p=None))
    ref_trace = greedy[:, scale.prompt_tokens:]
    result["greedy_token_agreement"] = float((runner.trace == ref_trace).float().mean())
    n, p = 2, scale.prompt_tokens  # two samples of one clip
    prompt = [(torch.randn(1, scale.kv_heads, p, scale.head_dim, device=device, dtype=torch.bfloat16),) * 2
              for _ in range(scale.layers)]
    reasoning = [(torch.randn(n, scale.kv_heads, scale.reasoning_tokens, scale.head_dim, device=device,
                              dtype=torch.bfloat16),) * 2 for _ in range(scale.layers)]
    noise = torch.randn(n, scale.action_tokens, scale.action_dim, device=device, dtype=torch.bfloat16)
    prompt, reasoning = expert.project(prompt), expert.project(reasoning)
    shared = expert.sample(noise, prompt, reasoning)
    expanded = torch.stack([expert.sample(noise[i:i + 1], prompt, [(a[i:i + 1], b[i:i + 1]) for a, b in reasoning])[0]
                            for i in range(n)])
    result["action_shared_vs_expanded_rel_err"] = rel_err(shared, expanded)
    q, k, v = (torch.randn(2, scale.kv_heads, rows, scale.head_dim, device=device, dtype=torch.bfloat16)
               for rows in (24, p, p))
    fast, slow = attention_lse(q, k, v, 0.1), attention_lse(q, k, v, 0.1, mask=torch.ones((), dtype=torch.bool, device=device))
    result["attention_out_rel_err"], result["attention_lse_rel_err"] = rel_err(fast[0], slow[0]), rel_err(fast[1], slow[1])
    result.update(shared_prefill_check(model, scale, device))
    return result


def shared_prefill_check(model, scale: Scale, device: str, clips: int = 2, samples: int = 3) -> dict:
    """The real runner's shared-prefill `generate` against K-fold `generate` with the same seed:
    sampled-token agreement over the trace and the first step's logits error."""
    batch = random_batch(scale, clips, seed=77, device=device)
    outputs = []
    for generate in (stock_generate, shared_prefill_generate):
        torch.manual_seed(11)
        outputs.append(generate(model, **generate_kwargs(batch, samples, scale.reasoning_tokens,
                                                         return_dict_in_generate=True, output_logits=True)))
    stock, shared = outputs
    p = scale.prompt_tokens
    return {"shared_prefill_token_agreement": float((shared.sequences[:, p:] == stock.sequences[:, p:]).float().mean()),
            "shared_prefill_first_logits_rel_err": rel_err(shared.logits[0], stock.logits[0])}


def measure_ours(model, expert, scale: Scale, clips: int, samples: int, iters: int, device: str,
                 variant: str = "bf16", vision_rope=None, profile: bool = False) -> dict:
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    runner = TeacherRunner(model, expert, scale, clips, samples, vision_rope=vision_rope)
    batches = [random_batch(scale, clips, seed=1000 + i, device=device) for i in range(2)]
    runner.run(batches[0])  # warm-up
    stages, walls = [], []
    for i in range(iters):
        sync(dev)
        start = time.perf_counter()
        stages.append(runner.run(batches[i % 2]))
        sync(dev)
        walls.append((time.perf_counter() - start) * 1e3)
    wall = statistics.median(walls)
    row = {"path": f"ours/{variant}", "samples": samples, "batch": clips, "clips_per_s": clips * 1e3 / wall,
           "ms_per_clip": {**{s: statistics.median(x[s] for x in stages) / clips for s in STAGES},
                           "total": wall / clips},
           "peak_gib": peak_gib(dev)}
    if profile and dev.type == "cuda":
        row["top_kernels_ms_per_batch"] = top_kernels(lambda: runner.run(batches[0]))
    return row


def top_kernels(fn, count: int = 25) -> list[tuple[str, float]]:
    """The `count` GPU kernels with the most device time in one call of `fn` (ms)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    events = sorted(prof.key_averages(), key=lambda e: e.self_device_time_total, reverse=True)
    return [(e.key[:90], e.self_device_time_total / 1e3) for e in events[:count]]


def measure_naive(model, expert, scale: Scale, samples: int, iters: int, device: str, path: str = "naive") -> dict:
    """A row of one clip at a time through `GENERATE[path]`."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    batches = [random_batch(scale, 1, seed=2000 + i, device=device) for i in range(2)]
    clip = partial(naive_clip, model, expert, scale, samples=samples, generate=GENERATE[path])
    clip(batches[0])  # warm-up
    runs = [clip(batches[i % 2]) for i in range(iters)]
    ms = {s: statistics.median(r[s] for r in runs) for s in STAGES}
    total = sum(ms.values())
    return {"path": path, "samples": samples, "batch": 1, "clips_per_s": 1e3 / total,
            "ms_per_clip": {**ms, "total": total}, "peak_gib": peak_gib(dev)}


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def table(rows: list[dict]) -> str:
    head = f"{'path':14} {'K':>2} {'batch':>5} {'clips/s':>8} " + " ".join(f"{s:>8}" for s in (*STAGES, "total")) + f" {'peak GiB':>8}"
    lines = [head, " " * 32 + "ms per clip"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['path']:14} {r['samples']:>2} {r['batch']:>5} error: {r['error']}")
            continue
        ms = r["ms_per_clip"]
        peak = f"{r['peak_gib']:8.1f}" if r["peak_gib"] is not None else f"{'-':>8}"
        lines.append(f"{r['path']:14} {r['samples']:>2} {r['batch']:>5} {r['clips_per_s']:8.2f} "
                     + " ".join(f"{ms[s]:8.1f}" for s in (*STAGES, "total")) + f" {peak}")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.teacher_scale",
        description="Clips/s, ms per clip per stage and peak GPU memory of the Alpamayo-scale teacher "
                    "stand-in (random weights, no download) on the naive path and on our runner's path.",
        epilog="example: python -m benchmarks.teacher_scale --batches 16,32 --samples 1,6 "
               "--variants bf16,compiled,fp8 --profile --json out/teacher_scale.json")
    parser.add_argument("--batches", default="16,32", help="clips per batch on our path (default 16,32)")
    parser.add_argument("--samples", default="1,6", help="K values, trajectories and traces per clip (default 1,6)")
    parser.add_argument("--iters", type=int, default=3, help="timed batches per row of our path (default 3)")
    parser.add_argument("--naive-iters", type=int, default=2, help="timed clips per naive row (default 2)")
    parser.add_argument("--variants", default="bf16,compiled",
                        help="our path's variants, cumulative, from: bf16 (graphs, shared prefix), compiled "
                             "(+ torch.compile'd norms, SwiGLU, vision rotation), fp8 (+ FP8 language-model "
                             "matmuls, compared against bf16); default bf16,compiled")
    parser.add_argument("--profile", action="store_true", help="add each of our rows' top GPU kernels to the JSON")
    parser.add_argument("--skip-naive", action="store_true", help="time our path only")
    parser.add_argument("--shared-prefill", action="store_true",
                        help="also time the shared-prefill path (the naive path through the real teacher "
                             "runner's rollout, models/vlm_rollout.py: one prefill per clip for its K samples)")
    parser.add_argument("--skip-checks", action="store_true", help="skip the correctness checks against the stock path")
    parser.add_argument("--smoke", action="store_true", help="tiny config (runs in seconds, also on CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument("--json", help="write the rows, checks and environment to this JSON file")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    import transformers

    scale = SMOKE if args.smoke else FULL
    env = {"torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
           "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor(),
           "smoke": args.smoke}
    print(json.dumps(env), flush=True)
    with torch.inference_mode():
        start = time.perf_counter()
        model = build_vlm(scale, args.device)
        expert = build_expert(scale, args.device)
        env.update(vlm_params=param_count(model), expert_params=param_count(expert),
                   build_s=time.perf_counter() - start, prompt_tokens=scale.prompt_tokens,
                   prefix_tokens=scale.prefix_tokens)
        print(f"built VLM {env['vlm_params'] / 1e9:.2f}B + expert {env['expert_params'] / 1e9:.2f}B "
              f"in {env['build_s']:.0f} s; prompt {scale.prompt_tokens} tokens", flush=True)
        result = {"env": env, "scale": asdict(scale), "args": vars(args), "rows": []}
        if not args.skip_checks:
            try:
                result["checks"] = checks(model, expert, scale, args.device)
            except Exception as error:  # report and go on to the timings
                result["checks"] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
            print("checks", json.dumps(result["checks"]), flush=True)
        samples = [int(k) for k in args.samples.split(",")]
        batches = [int(b) for b in args.batches.split(",")]
        variants = args.variants.split(",")
        if not set(variants) <= set(VARIANTS):
            raise SystemExit(f"--variants: choose from {','.join(VARIANTS)}, got {args.variants}")

        def record(path, k, b, measure):
            try:
                row = measure()
            except Exception as error:  # one failed row (say, out of memory) must not lose the others
                row = {"path": path, "samples": k, "batch": b, "error": f"{type(error).__name__}: {str(error)[:200]}"}
            result["rows"].append(row)
            print(table([row]).splitlines()[-1], flush=True)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(result, f, indent=1)

        generate_paths = [] if args.skip_naive else ["naive", "shared-prefill"] if args.shared_prefill else ["naive"]
        for path in generate_paths:
            for k in samples:
                record(path, k, 1, partial(measure_naive, model, expert, scale, k, args.naive_iters, args.device, path))
        vision_rope, reference = None, None
        last = max(VARIANTS.index(v) for v in variants)
        for variant in VARIANTS[:last + 1]:
            if variant == "compiled":
                vision_rope = compile_elementwise(model)
            if variant == "fp8":
                reference = greedy_outputs(model, expert, scale, args.device, vision_rope)
                quantize_text_linears(model)
                result["fp8_vs_bf16"] = compare_outputs(
                    greedy_outputs(model, expert, scale, args.device, vision_rope), reference)
                print("fp8 against bf16", json.dumps(result["fp8_vs_bf16"]), flush=True)
            if variant not in variants:
                continue
            for k in samples:
                for b in batches:
                    record(f"ours/{variant}", k, b, partial(
                        measure_ours, model, expert, scale, b, k, args.iters, args.device, variant,
                        vision_rope, args.profile))
    print(table(result["rows"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
