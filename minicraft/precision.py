"""How far is a reduced-precision model (bfloat16, float16, int8) from float32?

Two questions, two measures, both over the same greedy decoding:

- **logits**: feed both models the float32 model's own greedy tokens
  (teacher forcing) and compare the guided logits step by step: the largest
  and the mean absolute difference, in units of the float32 logits' standard
  deviation, and the share of positions where both would pick the same token;
- **tokens**: let each model decode greedily on its own and count the
  positions where the tokens agree. One different token changes everything
  after it, so this is the stricter, "same audio" measure.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .generation import doubled_mask
from .models import text_mask
from .sampling import classifier_free_guidance


@dataclass
class PrecisionReport:
    max_logit_diff: float        # in float32 logit standard deviations
    mean_logit_diff: float
    teacher_forced_agreement: float
    greedy_agreement: float


@torch.inference_mode()
def guided_logits(model, descriptions: list[str], codes: torch.Tensor, cfg_coef: float) -> torch.Tensor:
    """Teacher-forced, guided logits [B, K, T, card] (float32) for codes [B, K, T]."""
    cond, null, mask, null_mask = model.conditions(descriptions, two_step=False)
    both = torch.cat([cond, null])
    masks = doubled_mask(text_mask(mask), text_mask(null_mask), cond) if model.mask_text_padding else None
    logits, valid = model.lm.compute_predictions(torch.cat([codes, codes]).to(model.device), both, masks)
    cond_logits, null_logits = logits.float().split(codes.shape[0])
    return classifier_free_guidance(cond_logits, null_logits, cfg_coef), valid[: codes.shape[0]]


def greedy_tokens(model, descriptions: list[str], steps: int, cfg_coef: float) -> torch.Tensor:
    model.set_generation_params(duration=steps / model.frame_rate, use_sampling=False, cfg_coef=cfg_coef)
    _, tokens = model.generate(descriptions, return_tokens=True)
    return tokens.cpu()                                                   # [B, K, steps]


def compare(reference, candidate, descriptions: list[str], steps: int = 100,
            cfg_coef: float = 3.0) -> PrecisionReport:
    """Measure ``candidate`` against ``reference`` (the same weights in float32)."""
    ref_tokens = greedy_tokens(reference, descriptions, steps, cfg_coef)
    cand_tokens = greedy_tokens(candidate, descriptions, steps, cfg_coef)
    ref_logits, valid = guided_logits(reference, descriptions, ref_tokens, cfg_coef)
    cand_logits, _ = guided_logits(candidate, descriptions, ref_tokens, cfg_coef)
    ref_logits, cand_logits = ref_logits[valid], cand_logits[valid].to(ref_logits.device)   # [N, card]
    diff = (cand_logits - ref_logits).abs() / ref_logits.std()
    return PrecisionReport(
        max_logit_diff=float(diff.max()), mean_logit_diff=float(diff.mean()),
        teacher_forced_agreement=float((cand_logits.argmax(-1) == ref_logits.argmax(-1)).float().mean()),
        greedy_agreement=float((cand_tokens == ref_tokens).float().mean()))
