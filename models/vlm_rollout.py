"""K reasoning samples per clip from one prefill of the clip's prompt.

Hugging Face `generate` with `num_return_sequences=K` repeats every prompt K times before its
first forward pass, so a vision-language model encodes a clip's images and prefills its prompt K
times (NVIDIA's Alpamayo-R1 rollout draws its K samples this way). `shared_prefill_generate`
gives the same result with one vision pass and one prefill per clip: it prefills all but the
last prompt token of each clip once, repeats the KV cache K times (sample-major: clip b's
samples are rows b*K .. b*K+K-1, the order `generate` uses), then lets `generate` decode the
B*K samples together from that cache. No random numbers are drawn before the first sampled token
on either path, so for the same seed both draw the same tokens from logits that differ only by
float rounding.

`shared_prefill(vlm)` installs it as `vlm.generate` for the duration of a block, so a caller
that calls `vlm.generate(...)` (the release's `sample_trajectories_from_data_with_vlm_rollout`)
runs unchanged otherwise: its action expert then integrates all B*K samples' flow in one batch
per Euler step against the returned (B*K-row) cache.
"""

import copy
from contextlib import contextmanager

import torch

# Keyword inputs with one entry per prompt token, sliced and repeated with the prompt; the
# vision inputs feed the prefill only (the cache holds what they produced).
PER_TOKEN_INPUTS = ("attention_mask", "mm_token_type_ids", "token_type_ids")
VISION_INPUTS = ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw",
                 "second_per_grid_ts")


def expand_samples(x: torch.Tensor, samples: int) -> torch.Tensor:
    """(clips, ...) -> (clips * samples, ...): each clip's rows repeated for its K samples,
    sample-major within a clip."""
    return x.repeat_interleave(samples, dim=0)


@torch.no_grad()
def shared_prefill_generate(vlm, input_ids: torch.Tensor, generation_config, **kwargs):
    """`vlm.generate(input_ids, generation_config, **kwargs)` with K =
    `generation_config.num_return_sequences` samples per prompt, prefilling each prompt (and
    encoding its images) once instead of K times.

    Returns what `generate` returns for the B*K rows: sequences (prompt included) and the
    B*K-row cache when `return_dict_in_generate` is set. A Qwen-VL model's `rope_deltas` are left
    at B*K rows, as after K-fold expansion. Prompts must end in a text token (a chat prompt does).
    At K = 1 there is nothing to share: this is `generate` itself.
    """
    samples = generation_config.num_return_sequences or 1
    if samples == 1:
        return type(vlm).generate(vlm, input_ids=input_ids, generation_config=generation_config, **kwargs)
    per_token = {name: kwargs.pop(name) for name in PER_TOKEN_INPUTS if kwargs.get(name) is not None}
    vision = {name: kwargs.pop(name) for name in VISION_INPUTS if kwargs.get(name) is not None}
    if input_ids.shape[1] < 2:
        raise ValueError("shared prefill needs a prompt of at least 2 tokens")
    prefill = vlm(input_ids=input_ids[:, :-1], **{name: x[:, :-1] for name, x in per_token.items()},
                  **vision, use_cache=True, logits_to_keep=1)
    cache = prefill.past_key_values
    cache.batch_repeat_interleave(samples)
    model = getattr(vlm, "model", None)
    if getattr(model, "rope_deltas", None) is not None:
        model.rope_deltas = expand_samples(model.rope_deltas, samples)
    config = copy.deepcopy(generation_config)
    config.num_return_sequences = 1
    # transformers 4.x fills a passed config's default-valued fields from the model's own config,
    # which the release sets to K: the model's config is this one for the call.
    own_config, vlm.generation_config = vlm.generation_config, config
    try:
        return type(vlm).generate(
            vlm, input_ids=expand_samples(input_ids, samples), generation_config=config, past_key_values=cache,
            **{name: expand_samples(x, samples) for name, x in per_token.items()}, **kwargs)
    finally:
        vlm.generation_config = own_config


@contextmanager
def shared_prefill(vlm):
    """Within the block, `vlm.generate` is `shared_prefill_generate` on `vlm`."""
    vlm.generate = lambda input_ids, generation_config, **kwargs: shared_prefill_generate(
        vlm, input_ids, generation_config, **kwargs)
    try:
        yield
    finally:
        del vlm.generate
