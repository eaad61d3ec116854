"""TinyVLA: a small vision-language-action model in the image of Alpamayo-R1.

    16 images (4 cameras x 4 frames) --shared CNN--> 8 tokens each  \
    ego history (16 poses) --per-step deltas--> 16 tokens            > scene tokens (prefix)
    reasoning decoder: prefix-LM transformer over [scene, <bos>, words...], KV cache, top-p
    action expert: transformer over 8 action tokens (8 waypoints x (accel, curvature) each),
                   cross-attending to the decoder's hidden states of the scene and the reasoning,
                   trained by flow matching, sampled with 10 Euler steps from noise.

Shapes: B clips, K samples per clip, S scene tokens, T text tokens, d model width.
"""

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models import flow
from schemas.contract import (
    HISTORY_DELTA_CLIP_XY,
    HISTORY_DELTA_CLIP_Z,
    NUM_FRAMES,
    NUM_FUTURE,
    NUM_HISTORY,
    TEACHER_CAMERAS,
)

NUM_IMAGES = len(TEACHER_CAMERAS) * NUM_FRAMES


@dataclass
class VLAConfig:
    vocab_size: int
    d_model: int = 128
    n_heads: int = 4
    n_decoder_layers: int = 4
    n_expert_layers: int = 2
    image_height: int = 80  # the clips' 320x576 JPEGs decode at 1/4 scale straight to this
    image_width: int = 144
    image_grid: tuple[int, int] = (2, 4)  # tokens per image (rows, columns)
    max_text_len: int = 40  # words generated at most (then <eos> is forced)
    action_chunk: int = 8  # waypoints per action token

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "VLAConfig":
        d = dict(d)
        d["image_grid"] = tuple(d["image_grid"])
        return cls(**d)


class Attention(nn.Module):
    """Multi-head attention; self-attention with an optional KV cache, or cross-attention."""

    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.proj = nn.Linear(d, d)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        return x.view(B, T, self.n_heads, d // self.n_heads).transpose(1, 2)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(x).chunk(2, dim=-1)
        return self.heads(k), self.heads(v)

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask=None) -> torch.Tensor:
        """Attention of `x`'s queries over keys/values `k`, `v` (B, heads, S, d_head); `mask` (bool,
        True = may attend) broadcasts to (B, heads, T, S). Written out rather than
        F.scaled_dot_product_attention, whose CPU kernel splits work by the batch's shape and so
        ties a row's bits to the other rows (batch invariance of the teacher's samples)."""
        q = self.heads(self.q(x))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        if mask is not None:
            att = att.masked_fill(~mask, float("-inf"))
        y = torch.softmax(att, -1) @ v
        return self.proj(y.transpose(1, 2).reshape(x.shape))

    def forward(self, x, mask=None, cache=None):
        """Self-attention of `x` after the cached keys/values; returns (output, new cache)."""
        k, v = self.keys_values(x)
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        return self.attend(x, k, v, mask), (k, v)


def mlp(d: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))


class DecoderBlock(nn.Module):
    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.ln1, self.attn, self.ln2, self.mlp = nn.LayerNorm(d), Attention(d, n_heads), nn.LayerNorm(d), mlp(d)

    def forward(self, x, mask=None, cache=None):
        y, cache = self.attn(self.ln1(x), mask, cache)
        x = x + y
        return x + self.mlp(self.ln2(x)), cache


class VisionEncoder(nn.Module):
    """A CNN shared by the 16 images -> grid tokens, plus camera, frame and grid-cell embeddings."""

    def __init__(self, cfg: VLAConfig):
        super().__init__()
        d = cfg.d_model
        self.grid = cfg.image_grid
        self.cnn = nn.Sequential(  # 80x144 -> 20x36 -> 10x18 -> 5x9
            nn.Conv2d(3, 32, 4, 4), nn.GELU(),
            nn.Conv2d(32, 64, 3, 2, 1), nn.GELU(),
            nn.Conv2d(64, d, 3, 2, 1), nn.GELU(),
            nn.Conv2d(d, d, 1),
        )
        n_cells = self.grid[0] * self.grid[1]
        self.cell = nn.Parameter(torch.zeros(n_cells, d))
        self.camera = nn.Parameter(torch.zeros(len(TEACHER_CAMERAS), d))
        self.frame = nn.Parameter(torch.zeros(NUM_FRAMES, d))
        self.ln = nn.LayerNorm(d)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 16, 3, H, W) normalised images, camera-major -> (B, 16 * cells, d)."""
        B = images.shape[0]
        f = F.adaptive_max_pool2d(self.cnn(images.flatten(0, 1)), self.grid)  # (B*16, d, gh, gw)
        f = f.flatten(2).transpose(1, 2).reshape(B, len(TEACHER_CAMERAS), NUM_FRAMES, -1, f.shape[1])
        f = f + self.cell + self.frame[None, None, :, None] + self.camera[None, :, None, None]
        return self.ln(f.reshape(B, -1, f.shape[-1]))


def history_features(xyz: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """(B, 16, 3) positions and (B, 16, 9) rotations in the t0 frame -> (B, 16, 12) token features:
    per-step position deltas (the first is zero) clipped to +-4 m (x, y) / +-10 m (z), and the rotation."""
    delta = torch.diff(xyz, dim=1, prepend=xyz[:, :1])
    clip = xyz.new_tensor([HISTORY_DELTA_CLIP_XY, HISTORY_DELTA_CLIP_XY, HISTORY_DELTA_CLIP_Z])
    delta = torch.maximum(torch.minimum(delta, clip), -clip)
    return torch.cat([delta / 2.0, rot], -1)


def timestep_embedding(t: torch.Tensor, d: int) -> torch.Tensor:
    """(N,) flow times in [0, 1] -> (N, d) sinusoidal features."""
    half = d // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device) / half)
    angles = 1000.0 * t[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], -1)


class ExpertBlock(nn.Module):
    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(d), Attention(d, n_heads)
        self.ln2, self.cross = nn.LayerNorm(d), Attention(d, n_heads)
        self.ln3, self.mlp = nn.LayerNorm(d), mlp(d)

    def forward(self, x, context_kv, context_mask):
        x = x + self.attn(self.ln1(x))[0]
        x = x + self.cross.attend(self.ln2(x), *context_kv, context_mask)
        return x + self.mlp(self.ln3(x))


class ActionExpert(nn.Module):
    """Predicts the flow velocity of the (scaled) action sequence, attending to a context."""

    def __init__(self, cfg: VLAConfig):
        super().__init__()
        d = cfg.d_model
        self.chunk = cfg.action_chunk
        self.n_tokens = NUM_FUTURE // cfg.action_chunk
        self.inp = nn.Linear(2 * cfg.action_chunk, d)
        self.pos = nn.Parameter(torch.zeros(self.n_tokens, d))
        self.cond = nn.Sequential(nn.Linear(d + 1, d), nn.GELU(), nn.Linear(d, d))
        self.context_ln = nn.LayerNorm(d)
        self.blocks = nn.ModuleList(ExpertBlock(d, cfg.n_heads) for _ in range(cfg.n_expert_layers))
        self.out_ln = nn.LayerNorm(d)
        self.out = nn.Linear(d, 2 * cfg.action_chunk)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def context_kv(self, context: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each block's cross-attention keys/values of the context, computed once per sample."""
        context = self.context_ln(context)
        return [block.cross.keys_values(context) for block in self.blocks]

    def forward(self, x, t, v0, context_kv, context_mask) -> torch.Tensor:
        """x (N, 64, 2) scaled actions at flow time t (N,), speed v0 (N,) -> velocity (N, 64, 2)."""
        N = x.shape[0]
        h = self.inp(x.reshape(N, self.n_tokens, 2 * self.chunk)) + self.pos
        cond = self.cond(torch.cat([timestep_embedding(t, h.shape[-1]), v0[:, None] / 10.0], -1))
        h = h + cond[:, None]
        for block, kv in zip(self.blocks, context_kv):
            h = block(h, kv, context_mask)
        return self.out(self.out_ln(h)).reshape(N, NUM_FUTURE, 2)


class TinyVLA(nn.Module):
    def __init__(self, cfg: VLAConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.vision = VisionEncoder(cfg)
        self.history = nn.Linear(12, d)
        self.history_pos = nn.Parameter(torch.zeros(NUM_HISTORY, d))
        self.token = nn.Embedding(cfg.vocab_size, d)
        self.text_pos = nn.Parameter(torch.zeros(cfg.max_text_len + 2, d))
        self.blocks = nn.ModuleList(DecoderBlock(d, cfg.n_heads) for _ in range(cfg.n_decoder_layers))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, cfg.vocab_size, bias=False)
        self.expert = ActionExpert(cfg)
        # Per-dimension scale of the normalised actions (set from the training data): the flow
        # runs on actions / action_scale so that the data has about unit spread.
        self.register_buffer("action_scale", torch.ones(2))
        for p in (self.vision.cell, self.vision.camera, self.vision.frame, self.history_pos, self.text_pos, self.expert.pos):
            nn.init.normal_(p, std=0.02)

    # --- scene and reasoning -------------------------------------------------------------
    def scene(self, images, history_xyz, history_rot) -> torch.Tensor:
        """(B, 16, 3, H, W), (B, 16, 3), (B, 16, 9) -> scene tokens (B, S, d)."""
        hist = self.history(history_features(history_xyz, history_rot)) + self.history_pos
        return torch.cat([self.vision(images), hist], 1)

    def decode(self, x, mask=None, caches=None):
        """Run the decoder blocks over embeddings `x`; returns (hidden (B, T, d), caches)."""
        caches = caches or [None] * len(self.blocks)
        new = []
        for block, cache in zip(self.blocks, caches):
            x, c = block(x, mask, cache)
            new.append(c)
        return self.ln_f(x), new

    def embed_text(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        return self.token(ids) + self.text_pos[start : start + ids.shape[1]]

    def prefix_mask(self, S: int, T: int, device) -> torch.Tensor:
        """Prefix-LM mask over [S scene tokens, T text tokens]: the scene sees itself, text sees
        the scene and earlier text."""
        mask = torch.ones(S + T, S + T, dtype=torch.bool, device=device).tril()
        mask[:, :S] = True
        return mask

    # --- training ------------------------------------------------------------------------
    def loss(self, images, history_xyz, history_rot, text, actions, v0, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(reasoning cross-entropy, flow MSE) for a batch with the true reasoning.

        `text` (B, T) is <bos> words <eos> <pad>...; `actions` (B, 64, 2) normalised; `v0` (B,)."""
        scene = self.scene(images, history_xyz, history_rot)
        S, inp, target = scene.shape[1], text[:, :-1], text[:, 1:]
        hidden, _ = self.decode(torch.cat([scene, self.embed_text(inp)], 1), self.prefix_mask(S, inp.shape[1], scene.device))
        logits = self.lm_head(hidden[:, S:])
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=0)
        # The expert sees the scene and the words fed to the decoder (<bos> .. last word).
        valid = torch.cat([torch.ones_like(scene[..., 0], dtype=torch.bool), (inp != 0)], 1)
        context_kv = self.expert.context_kv(hidden)
        mask = valid[:, None, None, :]
        fm = flow.flow_loss(lambda x, t: self.expert(x, t, v0, context_kv, mask), actions / self.action_scale, generator)
        return ce, fm

    # --- sampling ------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, images, history_xyz, history_rot, v0, num_samples: int, generators: list[torch.Generator],
               temperature: float = 0.6, top_p: float = 0.98, bos_id: int = 1, eos_id: int = 2,
               flow_steps: int = flow.DEFAULT_STEPS) -> tuple[torch.Tensor, torch.Tensor]:
        """K reasoning texts then K trajectories per clip -> (token ids (B, K, L), actions (B, K, 64, 2)).

        All randomness of clip i comes from `generators[i]`, drawn in a fixed order (word
        uniforms, then flow noise), so a clip's samples do not depend on the rest of the batch."""
        B, K, L = images.shape[0], num_samples, self.cfg.max_text_len
        scene = self.scene(images, history_xyz, history_rot)
        uniforms = torch.stack([torch.rand(K, L + 1, generator=g) for g in generators]).flatten(0, 1).to(scene.device)
        noise = torch.stack([torch.randn(K, NUM_FUTURE, 2, generator=g) for g in generators]).flatten(0, 1).to(scene.device)
        S = scene.shape[1]
        bos = torch.full((B, 1), bos_id, dtype=torch.long, device=scene.device)
        hidden, caches = self.decode(torch.cat([scene, self.embed_text(bos)], 1), self.prefix_mask(S, 1, scene.device))
        # K samples per clip share the prefix: repeat its hidden states and caches.
        hidden = hidden.repeat_interleave(K, 0)
        caches = [(k.repeat_interleave(K, 0), v.repeat_interleave(K, 0)) for k, v in caches]
        states = [hidden]
        ids = torch.zeros(B * K, L, dtype=torch.long, device=scene.device)
        alive = torch.ones(B * K, dtype=torch.bool, device=scene.device)
        lengths = torch.zeros(B * K, dtype=torch.long, device=scene.device)
        for step in range(L + 1):
            logits = self.lm_head(states[-1][:, -1])
            token = sample_top_p(logits, temperature, top_p, uniforms[:, step]) if step < L else torch.full_like(lengths, eos_id)
            alive &= token != eos_id
            if not alive.any():
                break
            ids[:, step] = torch.where(alive, token, 0)
            lengths += alive.long()
            h, caches = self.decode(self.embed_text(ids[:, step : step + 1], start=step + 1), None, caches)
            states.append(h)
        # Pad the context to its full length: the expert's attention then has the same shape
        # whenever the batch's longest text ends, which keeps each clip's result bitwise its own.
        context = torch.cat(states, 1)
        context = F.pad(context, (0, 0, 0, S + 1 + L - context.shape[1]))
        valid = torch.arange(context.shape[1], device=context.device) < (S + 1 + lengths[:, None])
        context_kv = self.expert.context_kv(context)
        v = v0.repeat_interleave(K, 0)
        actions = flow.euler_sample(lambda x, t: self.expert(x, t, v, context_kv, valid[:, None, None, :]), noise, flow_steps)
        return ids.view(B, K, L), (actions * self.action_scale).view(B, K, NUM_FUTURE, 2)


def sample_top_p(logits: torch.Tensor, temperature: float, top_p: float, u: torch.Tensor) -> torch.Tensor:
    """One token per row by nucleus sampling, driven by uniforms `u` (N,) (inverse CDF over the
    nucleus in order of decreasing probability); temperature 0 is greedy."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / temperature, -1)
    p, order = probs.sort(-1, descending=True)
    cum = p.cumsum(-1)
    p = torch.where(cum - p < top_p, p, torch.zeros_like(p))
    cum = p.cumsum(-1)
    pick = torch.searchsorted(cum, (u * cum[:, -1])[:, None]).clamp(max=p.shape[-1] - 1)
    return order.gather(-1, pick).squeeze(-1)
