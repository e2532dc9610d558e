"""Choosing the next token from the LM's logits.

Semantics follow audiocraft exactly, so a seeded run gives the same tokens:

- greedy (``use_sampling=False`` or ``temperature == 0``): argmax;
- otherwise probabilities ``softmax(logits / temperature)``, then
  - top-p if ``top_p > 0`` (it wins over top-k when both are set): keep the
    most likely tokens until their mass reaches p, sampling in sorted order;
  - else top-k if ``top_k > 0``: keep every token at least as likely as the
    k-th (ties at the boundary are all kept);
  - else the full distribution;
- one ``torch.multinomial`` call over all ``B·K`` rows per step.

Classifier-free guidance mixes the logits of a conditioned and an
unconditioned pass before any of this: ``uncond + (cond - uncond) · coef``.
"""
from __future__ import annotations

import math

import torch

from minicraft.checks import check_number

# The sampling settings a user gives: type, lowest, highest (None: the codebook size) and what the edges
# mean. The API and the explorer both check with it (:func:`check_setting`).
SETTINGS = {
    "temperature": (float, 0, math.inf, " (0 = greedy)"),
    "top_k": (int, 0, None, " (0 = off; at most the codebook size)"),
    "top_p": (float, 0, 1, " (0 = off)"),
    "cfg_coef": (float, 0, math.inf, " (1 = no guidance, 3 = default)"),
}


def check_setting(name: str, value, codebook_size: int | None = None):
    """One sampling setting (:data:`SETTINGS`), checked; ``top_k`` against ``codebook_size`` where known."""
    kind, low, high, meaning = SETTINGS[name]
    if high is None:
        high = math.inf if codebook_size is None else codebook_size
    return check_number(name, value, kind, low, high, meaning)


def classifier_free_guidance(cond_logits: torch.Tensor, uncond_logits: torch.Tensor,
                             coef: float) -> torch.Tensor:
    """coef = 1 is the conditional model alone; larger pushes away from the unconditional."""
    return uncond_logits + (cond_logits - uncond_logits) * coef


def multinomial(probs: torch.Tensor) -> torch.Tensor:
    """One draw per row of ``probs [..., codebook_size]`` -> indices [..., 1]."""
    flat = probs.reshape(-1, probs.shape[-1])                   # [B·K, codebook_size]
    return torch.multinomial(flat, num_samples=1).reshape(*probs.shape[:-1], 1)


def top_k_filter(probs: torch.Tensor, k: int) -> torch.Tensor:
    """Zero every probability below the k-th largest, renormalise."""
    kth = probs.topk(k, dim=-1).values[..., -1:]                # [..., 1]
    kept = probs * (probs >= kth)
    return kept / kept.sum(dim=-1, keepdim=True)


def sample_top_p(probs: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus sampling: draw among the smallest set of tokens with mass >= p.

    A token is kept if the mass *before* it (in decreasing order) is <= p,
    so the most likely token is always kept.
    """
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_probs = sorted_probs * (mass_before <= p)
    sorted_probs = sorted_probs / sorted_probs.sum(dim=-1, keepdim=True)
    return order.gather(-1, multinomial(sorted_probs))          # back to token ids


def sample_next_token(logits: torch.Tensor, use_sampling: bool = True, temperature: float = 1.0,
                      top_k: int = 0, top_p: float = 0.0) -> torch.Tensor:
    """logits [B, K, codebook_size] -> next tokens [B, K, 1]."""
    if not use_sampling or temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p > 0:
        return sample_top_p(probs, top_p)
    if top_k > 0:
        probs = top_k_filter(probs, top_k)
    return multinomial(probs)
