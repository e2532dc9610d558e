"""The LM's transformer: pre-norm layers with self- and cross-attention.

Parameter names follow audiocraft's ``StreamingTransformerLayer`` so an
official checkpoint loads key for key: ``self_attn``, ``cross_attention``,
``linear1``/``linear2`` (feed-forward), ``norm1``/``norm_cross``/``norm2``.
"""
from __future__ import annotations

import torch
from torch import nn

from minicraft.modules.attention import KVCache, MultiheadAttention


def sin_embedding(positions: torch.Tensor, dim: int, max_period: float = 10_000,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sinusoidal positions as audiocraft makes them: [T] -> [T, dim].

    Cosines first, then sines; frequency i is ``max_period ** (-i / (half - 1))``
    (note ``half - 1``, not ``half`` as in the original Transformer paper).
    """
    half = dim // 2
    positions = positions.to(dtype)[:, None]                         # [T, 1]
    i = torch.arange(half, device=positions.device, dtype=dtype)[None, :]
    max_period = torch.tensor(max_period, device=positions.device, dtype=dtype)
    phase = positions / max_period ** (i / (half - 1))               # [T, half]
    return torch.cat([phase.cos(), phase.sin()], dim=-1)             # [T, dim]


class TransformerLayer(nn.Module):
    """x + SelfAttn(LN(x)); x + CrossAttn(LN(x), text); x + FFN(LN(x)), FFN = linear2(GELU(linear1(·))).

    ``activation`` is a module so that it can be swapped (``layer.activation = nn.ReLU()``) and the
    change seen in what the model generates; audiocraft's layers use GELU.
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, cross_attention: bool = True,
                 bias_attn: bool = False, bias_ff: bool = False, eps: float = 1e-5):
        super().__init__()
        self.self_attn = MultiheadAttention(dim, num_heads, bias=bias_attn)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        if cross_attention:
            self.cross_attention = MultiheadAttention(dim, num_heads, bias=bias_attn)
            self.norm_cross = nn.LayerNorm(dim, eps=eps)
        else:
            self.cross_attention = None
        self.linear1 = nn.Linear(dim, ffn_dim, bias=bias_ff)
        self.activation = nn.GELU()
        self.linear2 = nn.Linear(ffn_dim, dim, bias=bias_ff)
        self.norm2 = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, cross: torch.Tensor | None = None,
                cross_mask: torch.Tensor | None = None, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x), cache=cache, causal=True)
        if self.cross_attention is not None:
            x = x + self.cross_attention(self.norm_cross(x), memory=cross, mask=cross_mask, cache=cache)
        return x + self.linear2(self.activation(self.linear1(self.norm2(x))))


class Transformer(nn.Module):
    """A stack of layers; adds sinusoidal positions counted from ``offset``."""

    def __init__(self, dim: int, num_heads: int, num_layers: int, ffn_dim: int,
                 cross_attention: bool = True, bias_attn: bool = False, bias_ff: bool = False,
                 max_period: float = 10_000, positional_scale: float = 1.0):
        super().__init__()
        self.max_period = max_period
        self.positional_scale = positional_scale
        self.layers = nn.ModuleList(
            TransformerLayer(dim, num_heads, ffn_dim, cross_attention, bias_attn, bias_ff)
            for _ in range(num_layers))

    def forward(self, x: torch.Tensor, cross: torch.Tensor | None = None,
                cross_mask: torch.Tensor | None = None,
                caches: list[KVCache] | None = None) -> torch.Tensor:
        """x [B, T, D] -> [B, T, D]. With ``caches``, x continues the cached steps."""
        B, T, D = x.shape
        positions = caches[0].positions(T) if caches else torch.arange(T, device=x.device)
        x = x + self.positional_scale * sin_embedding(positions, D, self.max_period, x.dtype)
        for i, layer in enumerate(self.layers):
            x = layer(x, cross, cross_mask, caches[i] if caches else None)
        return x
