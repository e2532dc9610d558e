"""Multi-head attention with causal and padding masks and a key/value cache.

Two ways to compute the same thing:

- :func:`attention_plain` is the textbook formula, softmax(q·kᵀ/√d + mask)·v,
  written out so a learner can read every step;
- :func:`attention` calls ``torch.nn.functional.scaled_dot_product_attention``,
  which fuses those steps (faster, less memory). Tests check they agree.

Masks are booleans, ``True`` where a query may look at a key, shaped so they
broadcast to ``[B, H, T_query, T_key]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn



def attention_plain(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
    """q [B, H, Tq, Dh], k and v [B, H, Tk, Dh] -> [B, H, Tq, Dh].

    ``causal`` hides, for each query, the keys after it (see :func:`causal_mask`).
    """
    if causal:
        cmask = causal_mask(q.shape[2], k.shape[2], q.device)
        mask = cmask if mask is None else mask & cmask
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5      # [B, H, Tq, Tk]
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)                             # each row sums to 1
    return weights @ v                                           # [B, H, Tq, Dh]


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
    """The fused equivalent of :func:`attention_plain`."""
    if causal and q.shape[2] == 1:
        causal = False          # the newest query may see every key
    if causal and mask is None and q.shape[2] == k.shape[2]:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)  # no past: built-in mask
    if causal:
        cmask = causal_mask(q.shape[2], k.shape[2], q.device)
        mask = cmask if mask is None else mask & cmask
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def causal_mask(num_queries: int, num_keys: int, device=None) -> torch.Tensor:
    """[Tq, Tk] booleans: the queries are the *last* ``num_queries`` positions.

    With a cache, the keys include past steps, so query i sits at absolute
    position ``num_keys - num_queries + i`` and may see every key up to it.
    """
    query_pos = torch.arange(num_keys - num_queries, num_keys, device=device)[:, None]
    key_pos = torch.arange(num_keys, device=device)[None, :]
    return key_pos <= query_pos


def padding_mask(mask: torch.Tensor) -> torch.Tensor:
    """Key padding mask [B, Tk] (1 = real token) -> [B, 1, 1, Tk] booleans."""
    return mask.bool()[:, None, None, :]


@dataclass
class KVCache:
    """One layer's memory during decoding, preallocated so a step only writes.

    ``keys``/``values`` are the self-attention's [B, H, max_len, Dh]; positions
    ``[:length]`` are filled. ``memory`` holds the cross-attention's keys and
    values of the text: they are the same at every step, so they are
    projected once, at the first step, and reused.
    """
    keys: torch.Tensor
    values: torch.Tensor
    length: int = 0
    memory: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def empty(cls, batch: int, heads: int, max_len: int, head_dim: int,
              dtype: torch.dtype, device) -> "KVCache":
        shape = (batch, heads, max_len, head_dim)
        return cls(torch.zeros(shape, dtype=dtype, device=device),
                   torch.zeros(shape, dtype=dtype, device=device))

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v [B, H, T, Dh] after the past ones; return all of them."""
        steps = k.shape[2]
        end = self.length + steps
        if end > self.keys.shape[2]:
            raise ValueError(f"KV cache holds {self.keys.shape[2]} steps; asked for {end}.")
        self.keys.narrow(2, self.length, steps).copy_(k)          # keys[:, :, length:end] = k, in one op
        self.values.narrow(2, self.length, steps).copy_(v)
        self.length = end
        return self.keys.narrow(2, 0, end), self.values.narrow(2, 0, end)

    def positions(self, steps: int) -> torch.Tensor:
        """Absolute positions of the next ``steps`` inputs."""
        return torch.arange(self.length, self.length + steps, device=self.keys.device)


class MultiheadAttention(nn.Module):
    """Attention with the projections packed as audiocraft stores them.

    ``in_proj_weight`` [3D, D] stacks the query, key and value projections
    (heads contiguous inside each). Self-attention projects ``x`` three ways;
    cross-attention projects queries from ``x`` and keys/values from
    ``memory`` (the text condition).
    """

    def __init__(self, dim: int, num_heads: int, bias: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        nn.init.xavier_uniform_(self.in_proj_weight)     # as torch.nn.MultiheadAttention; loading overwrites it
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim)) if bias else None
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        return x.view(B, T, self.num_heads, D // self.num_heads).transpose(1, 2)  # [B, H, T, Dh]

    def project(self, x: torch.Tensor, which: slice | None = None) -> torch.Tensor:
        """Apply some of the packed projections (None: all three): [B, T, D] -> [B, T, n·D]."""
        weight, bias = self.in_proj_weight, self.in_proj_bias
        if which is not None:
            weight, bias = weight[which], None if bias is None else bias[which]
        return F.linear(x, weight, bias)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, cache: KVCache | None = None,
                causal: bool = False) -> torch.Tensor:
        """x [B, T, D] -> [B, T, D].

        Self-attention (``memory is None``): new keys/values are appended to
        ``cache`` if given; ``causal`` hides keys after each query.
        Cross-attention: keys/values come from ``memory`` [B, L, D], or from
        ``cache.memory`` once a first step has projected them.
        """
        D = x.shape[-1]
        if memory is None:
            B, T, _ = x.shape
            qkv = self.project(x).view(B, T, 3, self.num_heads, D // self.num_heads)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)             # split_heads of each third: 3 x [B, H, T, Dh]
            if cache is not None:
                k, v = cache.append(k, v)                    # the past steps' keys and values too
        else:
            q = self.split_heads(self.project(x, slice(0, D)))
            if cache is not None and cache.memory is not None:
                k, v = cache.memory                                    # projected at the first step
            else:
                k = self.split_heads(self.project(memory, slice(D, 2 * D)))
                v = self.split_heads(self.project(memory, slice(2 * D, 3 * D)))
                if cache is not None:
                    cache.memory = (k, v)
        out = attention(q, k, v, mask, causal)                         # [B, H, T, Dh]
        out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], D)   # [B, T, D]
        return self.out_proj(out)
