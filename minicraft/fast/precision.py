"""How far is a reduced-precision model (bfloat16, float16, int8) from float32?

Two questions, two measures, both over the same greedy decoding:

- **logits**: feed both models the float32 model's own greedy tokens
  (teacher forcing) and compare the guided logits step by step: the largest
  and the mean absolute difference, in units of the float32 logits' standard
  deviation, and the share of positions where both would pick the same token;
- **tokens**: let each model decode greedily on its own and count the
  positions where the tokens agree. One different token changes everything
  after it, so this is the stricter, "same audio" measure.

Both go through the decoding path, one position at a time with a KV cache,
and by default one prompt at a time: with CFG that is 2 rows per step, the
case in which a bfloat16 or int8 layer runs as one ``layer_step`` call
(:mod:`minicraft.fast.layer_step`). A full-sequence forward pass or a batch of more
than 2 prompts would measure PyTorch's layers instead.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from minicraft.generate.decoding import doubled_mask
from minicraft.models.conditioning import text_mask
from minicraft.generate.sampling import classifier_free_guidance


@dataclass
class PrecisionReport:
    max_logit_diff: float        # in float32 logit standard deviations
    mean_logit_diff: float
    teacher_forced_agreement: float
    greedy_agreement: float


@torch.inference_mode()
def stepped_predictions(lm, codes: torch.Tensor, cross: torch.Tensor, cross_mask: torch.Tensor | None):
    """``lm.compute_predictions``, but one position at a time through the KV cache, as decoding runs."""
    pattern = lm.pattern(codes.shape[-1])
    sequence, _ = pattern.build(codes, lm.special_token, valid_only=True)       # [B, K, S]
    caches = lm.new_caches(codes.shape[0], sequence.shape[-1], cross)
    steps = [lm(sequence[..., s:s + 1], cross, cross_mask, caches=caches) for s in range(sequence.shape[-1])]
    return pattern.revert_logits(torch.cat(steps, dim=2))                        # [B, K, T, codebook_size], [K, T]


@torch.inference_mode()
def guided_logits(model, descriptions: list[str], codes: torch.Tensor, cfg_coef: float) -> torch.Tensor:
    """Teacher-forced, guided logits [B, K, T, codebook_size] (float32) for codes [B, K, T]."""
    cond, null, mask, null_mask = model.conditions(descriptions, two_step=False)
    both = torch.cat([cond, null])
    masks = doubled_mask(text_mask(mask), text_mask(null_mask), cond) if model.mask_text_padding else None
    logits, valid = stepped_predictions(model.lm, torch.cat([codes, codes]).to(model.device), both, masks)
    cond_logits, null_logits = logits.float().split(codes.shape[0])
    return classifier_free_guidance(cond_logits, null_logits, cfg_coef), valid


def greedy_tokens(model, descriptions: list[str], steps: int, cfg_coef: float) -> torch.Tensor:
    model.set_generation_params(duration=steps / model.frame_rate, use_sampling=False, cfg_coef=cfg_coef)
    _, tokens = model.generate(descriptions, return_tokens=True)
    return tokens.cpu()                                                   # [B, K, steps]


def compare(reference, candidate, descriptions: list[str], steps: int = 100,
            cfg_coef: float = 3.0, batch: int = 1) -> PrecisionReport:
    """Measure ``candidate`` against ``reference`` (the same weights in float32), ``batch`` prompts at a time."""
    diffs, same_argmax, same_tokens = [], [], []
    for start in range(0, len(descriptions), batch):
        prompts = descriptions[start:start + batch]
        ref_tokens = greedy_tokens(reference, prompts, steps, cfg_coef)
        cand_tokens = greedy_tokens(candidate, prompts, steps, cfg_coef)
        ref_logits, valid = guided_logits(reference, prompts, ref_tokens, cfg_coef)
        cand_logits, _ = guided_logits(candidate, prompts, ref_tokens, cfg_coef)
        valid = valid[None].expand(len(prompts), -1, -1)
        ref_logits, cand_logits = ref_logits[valid], cand_logits[valid].to(ref_logits.device)   # [N, codebook_size]
        diffs.append((cand_logits - ref_logits).abs() / ref_logits.std())
        same_argmax.append(cand_logits.argmax(-1) == ref_logits.argmax(-1))
        same_tokens.append((cand_tokens == ref_tokens).flatten())
    diff = torch.cat(diffs)
    return PrecisionReport(
        max_logit_diff=float(diff.max()), mean_logit_diff=float(diff.mean()),
        teacher_forced_agreement=float(torch.cat(same_argmax).float().mean()),
        greedy_agreement=float(torch.cat(same_tokens).float().mean()))
