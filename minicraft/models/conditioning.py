"""Text -> the condition the LM cross-attends to.

tokenizer -> T5 encoder (frozen) -> ``output_proj`` (T5 width -> LM width).
As in audiocraft, padded positions are *zeroed after* the projection's bias,
and a missing prompt (``None`` or ``""``) becomes an all-zero row: that is
also the "null condition" classifier-free guidance compares against.
"""
from __future__ import annotations

import torch
from torch import nn


class TextConditioner(nn.Module):
    def __init__(self, tokenizer, t5: nn.Module, t5_dim: int, dim: int):
        super().__init__()
        self.tokenizer = tokenizer
        self.t5 = t5
        self.output_proj = nn.Linear(t5_dim, dim)

    def tokenize(self, texts: list[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.output_proj.weight.device
        ids, mask = self.tokenizer(texts)
        return ids.to(device), mask.to(device)

    @torch.inference_mode()
    def forward(self, texts: list[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """texts (B) -> condition [B, L, dim] and mask [B, L]."""
        ids, mask = self.tokenize(texts)                       # [B, L] each
        hidden = self.t5(ids, mask)                            # [B, L, t5_dim]
        weight = self.output_proj.weight
        embeds = self.output_proj(hidden.to(weight.dtype))    # [B, L, dim]
        return embeds * mask[..., None].to(embeds.dtype), mask


def text_mask(mask: torch.Tensor) -> torch.Tensor | None:
    """Padding mask [B, L] -> cross-attention mask [B, 1, 1, L], or None if nothing needs hiding.

    Why mask at all, when audiocraft does not? Its padded positions are zero
    vectors that still take a share of the attention, so a prompt's output
    depends on the longest prompt in its batch. Masking them gives every
    prompt what audiocraft gives it when generated alone. A row with no text
    at all (the null condition) is left unmasked: its keys and values are all
    zero, so its attention output is exactly zero either way.
    """
    mask = mask.bool().clone()
    mask[~mask.any(dim=1)] = True
    return None if mask.all() else mask[:, None, None, :]
