"""The decoding loop: codes, one pattern step at a time, with a KV cache.

What happens, in order (audiocraft's ``LMModel.generate``):

1. Lay out the frames to generate, ``[B, K, T]`` filled with -1 ("unknown")
   except the prompt, as a delay-pattern sequence ``[B, K, S]``.
2. Feed the steps before the first unknown one (the empty step, plus the
   prompt) in one forward pass; afterwards feed one step at a time, since the
   KV cache remembers the past.
3. From the last position's logits choose the next step's K tokens (with
   classifier-free guidance: a conditioned and an unconditioned pass, mixed).
4. Write them where the sequence is still unknown, and the special token
   where the pattern holds nothing for a codebook.
5. Finally undo the pattern: ``[B, K, S] -> [B, K, T]``.

Classifier-free guidance runs either as one doubled batch (conditions, then
null conditions) or, with ``two_step=True``, as two passes with two caches.

The loop asks the LM for its caches (``lm.new_caches``) and calls it; an
accelerated LM (:func:`minicraft.fast.accelerate`) answers with caches and
steps of its own, and the loop stays the same.
"""
from __future__ import annotations

from typing import Callable

import torch

from minicraft.models.lm import LM
from minicraft.generate.sampling import classifier_free_guidance, sample_next_token

UNKNOWN = -1


def doubled_mask(cross_mask: torch.Tensor | None, null_cross_mask: torch.Tensor | None,
                 cond: torch.Tensor) -> torch.Tensor | None:
    """The text mask [2B, 1, 1, L] of CFG's doubled batch; a half given None hides nothing."""
    if cross_mask is None and null_cross_mask is None:
        return None
    full = torch.ones(cond.shape[0], 1, 1, cond.shape[1], dtype=torch.bool, device=cond.device)
    return torch.cat([full if cross_mask is None else cross_mask,
                      full if null_cross_mask is None else null_cross_mask])


@torch.inference_mode()
def generate_codes(lm: LM, cond: torch.Tensor | None, null_cond: torch.Tensor | None,
                   max_gen_len: int, prompt: torch.Tensor | None = None, num_samples: int | None = None,
                   use_sampling: bool = True, temperature: float = 1.0, top_k: int = 250,
                   top_p: float = 0.0, cfg_coef: float | None = None, two_step: bool = False,
                   callback: Callable[[int, int], None] | None = None,
                   cross_mask: torch.Tensor | None = None,
                   null_cross_mask: torch.Tensor | None = None,
                   prefix: torch.Tensor | None = None, null_prefix: torch.Tensor | None = None) -> torch.Tensor:
    """Generate ``max_gen_len`` frames of codes [B, K, max_gen_len], prompt included.

    ``cond``/``null_cond`` [B, L, D] are the projected text conditions and
    their "no text" counterpart; pass ``cond=None`` for no conditioning at all
    (then no guidance either). ``prompt`` [B, K, T0] are frames to continue.
    ``cross_mask``/``null_cross_mask`` [B, 1, 1, L] optionally hide padded text
    positions from cross-attention (audiocraft passes None).
    ``prefix``/``null_prefix`` [B, P, D]: conditions prepended to the sequence instead (musicgen-melody),
    fed with the first forward pass; guidance then compares them as it compares ``cond`` and ``null_cond``.
    """
    cfg_coef = lm.config.cfg_coef if cfg_coef is None else cfg_coef
    device = next(lm.parameters()).device
    K = lm.config.num_codebooks
    if prompt is not None:
        B = prompt.shape[0]
    elif cond is not None or prefix is not None:
        B = (cond if cond is not None else prefix).shape[0]
    else:
        B = num_samples or 1
    if prompt is None:
        prompt = torch.zeros(B, K, 0, dtype=torch.long, device=device)
    start = prompt.shape[-1]
    if start >= max_gen_len:
        raise ValueError(f"the prompt ({start} frames) is not shorter than max_gen_len ({max_gen_len}).")

    pattern = lm.pattern(max_gen_len)
    codes = torch.full((B, K, max_gen_len), UNKNOWN, dtype=torch.long, device=device)
    codes[..., :start] = prompt
    sequence, mask = pattern.build(codes, lm.special_token)      # [B, K, S], [K, S]
    first = pattern.first_step_with(start)
    S = sequence.shape[-1]

    guided = cond is not None or prefix is not None
    P = 0 if prefix is None else prefix.shape[1]                 # cache room for the prepended positions
    like = next(t for t in (cond, prefix, next(lm.parameters())) if t is not None)
    if guided and not two_step:
        batch_cond = None if cond is None else torch.cat([cond, null_cond], dim=0)         # [2B, L, D]
        batch_prefix = None if prefix is None else torch.cat([prefix, null_prefix], dim=0)  # [2B, P, D]
        batch_mask = None if cond is None else doubled_mask(cross_mask, null_cross_mask, cond)
        caches = lm.new_caches(2 * B, P + S, like)
    else:
        caches = lm.new_caches(B, P + S, like)
    null_caches = lm.new_caches(B, P + S, like) if guided and two_step else None

    prev = 0
    for offset in range(first, S):
        step_input = sequence[..., prev:offset]                    # [B, K, offset - prev]
        once = offset == first                                     # prefixes go in with the first pass only
        if guided and not two_step:
            logits = lm(torch.cat([step_input, step_input]), batch_cond, batch_mask, caches=caches,
                        prefix=batch_prefix if once else None)
            cond_logits, uncond_logits = logits.split(B)
            logits = classifier_free_guidance(cond_logits, uncond_logits, cfg_coef)
        elif guided:
            cond_logits = lm(step_input, cond, cross_mask, caches=caches, prefix=prefix if once else None)
            uncond_logits = lm(step_input, null_cond, null_cross_mask, caches=null_caches,
                               prefix=null_prefix if once else None)
            logits = classifier_free_guidance(cond_logits, uncond_logits, cfg_coef)
        else:
            logits = lm(step_input, None, None, caches=caches)
        next_token = sample_next_token(logits[:, :, -1], use_sampling, temperature, top_k, top_p)  # [B, K, 1]
        next_token[~mask[:, offset:offset + 1].expand(B, -1, -1)] = lm.special_token
        current = sequence[..., offset:offset + 1]
        sequence[..., offset:offset + 1] = torch.where(current == UNKNOWN, next_token, current)
        prev = offset
        if callback is not None:
            callback(offset - first + 1, S - first)

    out, _ = pattern.revert(sequence, UNKNOWN)
    return out[..., :max_gen_len]
