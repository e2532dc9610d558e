"""LoRA: a frozen weight plus a small trainable update of low rank.

Fine-tuning every weight of an LM needs memory for the weights, their gradients and two Adam moments each. LoRA
(Hu et al., 2021) freezes a weight ``W [out, in]`` and learns only a low-rank change of it::

    W' = W + (alpha / rank) · B A,      A [rank, in],  B [out, rank],  rank << in, out

so a layer computes ``x W'ᵀ = x Wᵀ + (alpha / rank) · (x Aᵀ) Bᵀ``: the frozen product plus two thin ones. ``B``
starts at zero, so before training the model is exactly the one loaded; ``A`` starts random, so ``B``'s
gradient is not zero. A 1024 x 1024 projection has 1,048,576 weights; its rank-8 update has 16,384.

The frozen weight may be kept compact (:class:`FrozenLinear`): bfloat16, or int8 with one scale per row,
which is what lets a laptop hold the base model while the small update trains in float32.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from minicraft.modules.attention import MultiheadAttention


class LoRA(nn.Module):
    """The trainable update of one weight ``[out, in]``: ``x -> scale · (x Aᵀ) Bᵀ``, ``scale = alpha / rank``."""

    def __init__(self, in_features: int, out_features: int, rank: int = 8, alpha: float = 16.0,
                 dropout: float = 0.0):
        super().__init__()
        self.A = nn.Parameter(torch.empty(rank, in_features))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))        # as nn.Linear initialises a weight
        self.B = nn.Parameter(torch.zeros(out_features, rank))  # zero: the update starts as no change
        self.scale = alpha / rank
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., in] -> [..., out]."""
        return self.scale * F.linear(F.linear(self.dropout(x), self.A), self.B)

    def delta(self) -> torch.Tensor:
        """The update as a full matrix [out, in], for merging it into ``W``."""
        return self.scale * (self.B @ self.A)


class _FrozenProduct(torch.autograd.Function):
    """``x Wᵀ`` for a frozen ``W`` kept compact. The float ``W`` is rebuilt for the product and again for the
    gradient of ``x``, so no float copy of it waits in memory for the backward pass."""

    @staticmethod
    def forward(ctx, x, frozen: "FrozenLinear", rows):
        ctx.frozen, ctx.rows = frozen, rows
        return F.linear(x, frozen.weight_as(x.dtype, rows))

    @staticmethod
    def backward(ctx, grad):
        return grad @ ctx.frozen.weight_as(grad.dtype, ctx.rows), None, None


class FrozenLinear(nn.Module):
    """A linear layer that does not train, its weight stored in float32, bfloat16 or int8 (one scale per row:
    ``W[o] ≈ scale[o] · q[o]``, as :mod:`minicraft.fast.int8` stores weights for decoding). Buffers, not
    parameters: an optimizer never sees them."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        weight = weight.detach()
        if dtype == torch.int8:
            w = weight.float()
            scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127
            self.register_buffer("weight", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
            self.register_buffer("scale", scale)                                    # [out]
        else:
            self.register_buffer("weight", weight.to(dtype).clone())                # [out, in]
            self.scale = None
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    def weight_as(self, dtype: torch.dtype, rows: slice | None = None) -> torch.Tensor:
        """The weight (or its ``rows``) as ``dtype``: [out, in]."""
        w = self.weight if rows is None else self.weight[rows]
        if self.scale is not None:
            scale = self.scale if rows is None else self.scale[rows]
            return w.to(dtype) * scale.to(dtype)[:, None]
        return w.to(dtype)

    def forward(self, x: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
        """x [..., in] -> [..., out] (or the ``rows`` slice of the outputs)."""
        y = _FrozenProduct.apply(x, self, rows)
        if self.bias is not None:
            y = y + (self.bias if rows is None else self.bias[rows]).to(y.dtype)
        return y


class LoRALinear(nn.Module):
    """A frozen linear layer plus one LoRA update per block of its output rows.

    An ``nn.Linear`` has one block. Attention's packed projection ``[3·D, D]`` has three, the query, key and value
    projections, each with its own update, as LoRA is applied to transformers' separate ``q_proj``, ``k_proj``
    and ``v_proj``; a ``rows`` slice (attention asks for the query third alone, or the key and value thirds)
    uses the updates of those blocks only.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, blocks: int = 1, rank: int = 8,
                 alpha: float = 16.0, dropout: float = 0.0, base_dtype: torch.dtype = torch.float32):
        super().__init__()
        out_features, in_features = weight.shape
        if out_features % blocks:
            raise ValueError(f"{out_features} output rows do not split into {blocks} blocks.")
        self.base = FrozenLinear(weight, bias, base_dtype)
        self.block = out_features // blocks
        self.loras = nn.ModuleList(LoRA(in_features, self.block, rank, alpha, dropout) for _ in range(blocks))

    def forward(self, x: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
        """x [..., in] -> [..., out] (or the ``rows`` slice, whole blocks, of the outputs)."""
        first, last = (0, len(self.loras)) if rows is None else (rows.start // self.block, rows.stop // self.block)
        dtype = self.loras[0].A.dtype             # the update trains in float32 whatever the activations' dtype
        update = torch.cat([lora(x.to(dtype)) for lora in self.loras[first:last]], dim=-1)
        return self.base(x, rows) + update.to(x.dtype)

    def merged_weight(self) -> torch.Tensor:
        """``W + ΔW`` in float32: [out, in]."""
        return self.base.weight_as(torch.float32) + torch.cat([lora.delta().float() for lora in self.loras])

    def merged(self) -> nn.Linear:
        """An ``nn.Linear`` computing the same thing (up to the frozen weight's rounding)."""
        out_features, in_features = self.base.weight.shape
        linear = nn.Linear(in_features, out_features, bias=self.base.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(self.merged_weight())
            if self.base.bias is not None:
                linear.bias.copy_(self.base.bias)
        return linear


class LoRAAttention(MultiheadAttention):
    """:class:`~minicraft.modules.attention.MultiheadAttention` whose packed q/k/v projection and output
    projection are :class:`LoRALinear`: the attention itself is the reference code, unchanged."""

    def __init__(self, attention: MultiheadAttention, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0,
                 base_dtype: torch.dtype = torch.float32):
        nn.Module.__init__(self)
        self.num_heads = attention.num_heads
        self.in_proj_weight = self.in_proj_bias = None
        self.in_proj = LoRALinear(attention.in_proj_weight, attention.in_proj_bias, 3, rank, alpha, dropout, base_dtype)
        out = attention.out_proj
        self.out_proj = LoRALinear(out.weight, out.bias, 1, rank, alpha, dropout, base_dtype)

    def project(self, x: torch.Tensor, which: slice | None = None) -> torch.Tensor:
        return self.in_proj(x, which)

    def merged(self) -> MultiheadAttention:
        """A plain attention module with the updates folded into its weights."""
        dim = self.out_proj.base.weight.shape[0]
        attention = MultiheadAttention(dim, self.num_heads, bias=self.in_proj.base.bias is not None)
        with torch.no_grad():
            attention.in_proj_weight.copy_(self.in_proj.merged_weight())
            if attention.in_proj_bias is not None:
                attention.in_proj_bias.copy_(self.in_proj.base.bias)
        attention.out_proj = self.out_proj.merged()
        return attention
