"""The student network: the teacher's building blocks (models/vla.py) at a student's size, with
a scene-only few-step action head and a greedy reasoning decoder.

    scene tokens (vision + ego history) --decoder (scene attends to itself)--> scene hidden
    scene hidden --action expert, 1-2 Euler steps from noise (or once on learnt modes)--> actions
    scene hidden + <bos> --greedy decoding, KV cache--> one reasoning text per clip

Shapes: B clips, K samples, S scene tokens, d model width; actions are the normalised unicycle
actions of models/action_space.py, (B, K, 64, 2).
"""

import functools
import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F

from models import flow
from models.students.config import StudentConfig
from models.vla import TinyVLA, VLAConfig, sample_top_p
from schemas.contract import NUM_FUTURE


def vla_config(cfg: StudentConfig, vocab_size: int) -> VLAConfig:
    return VLAConfig(vocab_size=vocab_size, d_model=cfg.d_model, n_heads=cfg.n_heads, n_decoder_layers=cfg.n_decoder_layers,
                     n_expert_layers=cfg.n_expert_layers, image_height=cfg.image_height, image_width=cfg.image_width,
                     image_grid=cfg.image_grid, max_text_len=cfg.max_text_len, action_chunk=cfg.action_chunk)


def horizon_weights(n: int = NUM_FUTURE) -> torch.Tensor:
    """(n, 1) weights of the action steps, proportional to the time left after each (an action's
    error moves every later waypoint), with mean 1."""
    w = torch.arange(n, 0, -1, dtype=torch.float32)
    return (w / w.mean())[:, None]


def set_distance(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, K, 64, 2) x (B, M, 64, 2) -> (B, K, M) horizon-weighted mean squared distance of every pair."""
    w = horizon_weights(pred.shape[-2]).to(pred.device, pred.dtype)
    return ((pred[:, :, None] - target[:, None]).pow(2) * w).flatten(3).mean(-1)


@functools.cache
def permutations(k: int) -> torch.Tensor:
    """(k!, k) every ordering of range(k)."""
    return torch.tensor(list(itertools.permutations(range(k))), dtype=torch.long)


def set_loss(pred: torch.Tensor, target: torch.Tensor, target_mask: torch.Tensor | None = None,
             symmetric: bool = True, match: str = "chamfer", coverage: float = 1.0) -> torch.Tensor:
    """Loss between a clip's predicted and target sample sets. "chamfer": every target sample is
    matched by its nearest prediction (coverage: minADE; weighted by `coverage`) and, when
    `symmetric`, every prediction by its nearest target (no stray samples); a coverage weight
    below 1 lets the predictions gather on the targets' most common behaviour. "assignment" (K predictions, K targets, K <= 7): twice
    the mean distance of the cheapest one-to-one pairing (the exact assignment, over all K!
    orderings), so the predictions reproduce the targets' proportions of behaviours; on the
    scale of the symmetric Chamfer. `target_mask` (B,) drops clips."""
    d = set_distance(pred, target)
    if match == "assignment":
        K = d.shape[1]
        if d.shape[2] != K or K > 7:
            raise ValueError(f"an assignment needs as many predictions as targets (at most 7), got {tuple(d.shape[1:])}")
        perms = permutations(K).to(d.device)  # (P, K): prediction perms[p, j] pairs with target j
        cost = d[:, perms, torch.arange(K, device=d.device)].mean(-1)  # (B, P)
        per_clip = 2.0 * cost.min(-1).values
    elif match == "chamfer":
        per_clip = coverage * d.min(1).values.mean(-1) + (d.min(2).values.mean(-1) if symmetric else 0.0)
    else:
        raise ValueError(f"unknown set match {match!r}; choose chamfer or assignment")
    if target_mask is None:
        return per_clip.mean()
    m = target_mask.float()
    return (per_clip * m).sum() / m.sum().clamp(min=1.0)


class Student(TinyVLA):
    def __init__(self, cfg: StudentConfig, vocab_size: int):
        if cfg.backbone_path is not None:
            raise ValueError(f"student {cfg.name!r} is the production template: its decoder is the pretrained language "
                             f"model at {cfg.backbone_path} (see models/students/config.py); only nano and small are built here")
        super().__init__(vla_config(cfg, vocab_size))
        self.student_cfg = cfg
        if cfg.cnn_channels != (32, 64):  # the teacher's CNN layout at other widths
            c1, c2 = cfg.cnn_channels
            self.vision.cnn = nn.Sequential(nn.Conv2d(3, c1, 4, 4), nn.GELU(), nn.Conv2d(c1, c2, 3, 2, 1), nn.GELU(),
                                            nn.Conv2d(c2, cfg.d_model, 3, 2, 1), nn.GELU(), nn.Conv2d(cfg.d_model, cfg.d_model, 1))
        if cfg.head == "regression":
            # learnt action queries, one per mode, spread like noise at t=0 so modes start apart
            self.modes = nn.Parameter(torch.randn(cfg.num_modes, NUM_FUTURE, 2, generator=torch.Generator().manual_seed(0)))

    # --- the trajectory path (exported to ONNX) --------------------------------------------
    def scene_hidden(self, images, history_xyz, history_rot) -> torch.Tensor:
        """(B, 16, 3, H, W), (B, 16, 3), (B, 16, 9) -> (B, S, d) decoder states of the scene tokens."""
        return self.decode(self.scene(images, history_xyz, history_rot))[0]

    def context_kv(self, hidden: torch.Tensor, K: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The action expert's cross-attention keys/values of the scene states (B, S, d), computed
        once per clip and repeated for its K samples."""
        return [(k.repeat_interleave(K, 0), v.repeat_interleave(K, 0)) for k, v in self.expert.context_kv(hidden)]

    def actions(self, hidden: torch.Tensor, v0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Scene states (B, S, d), speed (B,) and noise (B, K, 64, 2) (ignored by the regression
        head, whose K is its number of modes) -> normalised actions (B, K, 64, 2)."""
        B = hidden.shape[0]
        K = self.student_cfg.num_modes if self.student_cfg.head == "regression" else noise.shape[1]
        context_kv = self.context_kv(hidden, K)
        v = v0.repeat_interleave(K, 0)
        if self.student_cfg.head == "regression":
            x = self.modes.repeat(B, 1, 1)
            out = self.expert(x, torch.ones_like(v), v, context_kv, None)
        else:
            # Euler integration written out (not flow.euler_sample, which is no-grad): training
            # back-propagates through the few steps.
            steps = self.student_cfg.flow_steps
            out = noise.flatten(0, 1)
            for i in range(steps):
                out = out + self.expert(out, torch.full_like(v, i / steps), v, context_kv, None) / steps
        return (out * self.action_scale).view(B, K, NUM_FUTURE, 2)

    def trajectory_path(self, images, history_xyz, history_rot, v0, noise) -> torch.Tensor:
        return self.actions(self.scene_hidden(images, history_xyz, history_rot), v0, noise)

    # --- reasoning -------------------------------------------------------------------------
    @torch.no_grad()
    def reason(self, images, history_xyz, history_rot, bos_id: int, eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy reasoning (B, L) token ids (0-padded) and the scene states (B, S, d), in one pass."""
        scene = self.scene(images, history_xyz, history_rot)
        B, S, L = scene.shape[0], scene.shape[1], self.cfg.max_text_len
        bos = torch.full((B, 1), bos_id, dtype=torch.long, device=scene.device)
        hidden, caches = self.decode(torch.cat([scene, self.embed_text(bos)], 1), self.prefix_mask(S, 1, scene.device))
        ids = torch.zeros(B, L, dtype=torch.long, device=scene.device)
        alive = torch.ones(B, dtype=torch.bool, device=scene.device)
        last = hidden[:, -1]
        for step in range(L):
            token = sample_top_p(self.lm_head(last), 0.0, 1.0, None)
            alive &= token != eos_id
            if not alive.any():
                break
            ids[:, step] = torch.where(alive, token, 0)
            h, caches = self.decode(self.embed_text(ids[:, step : step + 1], start=step + 1), None, caches)
            last = h[:, -1]
        return ids, hidden[:, :S]

    # --- training ------------------------------------------------------------------------
    def distill_loss(self, images, history_xyz, history_rot, v0, text, teacher_actions, noise, flow_generator=None,
                     gt_actions=None, gt_mask=None, set_match: str = "chamfer", set_coverage: float = 1.0) -> dict[str, torch.Tensor]:
        """Losses of one batch.

        `text` (B, T): <bos> teacher reasoning <eos> <pad>... (sequence-level distillation, teacher
        forced); `teacher_actions` (B, K, 64, 2) normalised; `noise` (B, K, 64, 2); optional
        ground truth `gt_actions` (B, 64, 2) where `gt_mask` (B,) is true.
        Returns "ce", "set" (student samples vs the teacher's K, matched by `set_match`, the
        Chamfer's coverage term weighted by `set_coverage`), "flow" (flow matching on the
        teacher's samples; 0 for the regression head) and "gt" (min-over-K to the truth)."""
        scene = self.scene(images, history_xyz, history_rot)
        S, inp, target = scene.shape[1], text[:, :-1], text[:, 1:]
        hidden, _ = self.decode(torch.cat([scene, self.embed_text(inp)], 1), self.prefix_mask(S, inp.shape[1], scene.device))
        logits = self.lm_head(hidden[:, S:])
        out = {"ce": F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=0)}
        scene_hidden = hidden[:, :S]
        pred = self.actions(scene_hidden, v0, noise) / self.action_scale
        teacher = teacher_actions / self.action_scale
        out["set"] = set_loss(pred, teacher, match=set_match, coverage=set_coverage)
        if self.student_cfg.head == "flow":
            B, K = teacher.shape[:2]
            context_kv = self.context_kv(scene_hidden, K)
            v = v0.repeat_interleave(K, 0)
            out["flow"] = flow.flow_loss(lambda x, t: self.expert(x, t, v, context_kv, None), teacher.flatten(0, 1), flow_generator)
        else:
            out["flow"] = torch.zeros((), device=scene.device)
        if gt_actions is not None:
            out["gt"] = set_loss(pred, (gt_actions / self.action_scale)[:, None], gt_mask, symmetric=False)
        else:
            out["gt"] = torch.zeros((), device=scene.device)
        return out


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
