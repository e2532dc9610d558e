"""The T5 encoder: what turns a tokenized prompt into vectors the LM can attend to.

A stack of pre-norm transformer blocks, with three T5 particulars:

- **RMSNorm** instead of LayerNorm: divide by the root mean square, no mean
  subtraction and no bias (computed in float32, as T5 does);
- **relative position bias** instead of position embeddings: each head adds
  a learned scalar per *bucket* of query-key distance to its attention
  scores (exact buckets for short distances, logarithmic ones up to
  ``max_distance``); layer 0 owns the table and every layer reuses it;
- **no 1/√d scaling** of attention scores (T5 folds it into initialisation).

Parameter names are the Hugging Face ``T5EncoderModel`` keys. Only the encoder
exists here: a full T5 checkpoint's ``decoder.*`` and ``lm_head`` are skipped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from minicraft.checks import check_fields


@dataclass
class T5Config:
    vocab_size: int = 32128
    d_model: int = 768
    d_kv: int = 64
    d_ff: int = 3072
    num_layers: int = 12
    num_heads: int = 12
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    gated: bool = False              # flan-t5: gelu(wi_0 x) * wi_1 x instead of relu(wi x)

    def __post_init__(self):
        check_fields(self, "T5 config", positive=("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
                                                  "relative_attention_num_buckets",
                                                  "relative_attention_max_distance"),
                     numbers=("layer_norm_epsilon",))

    @classmethod
    def from_hf(cls, config: dict) -> "T5Config":
        proj = config.get("feed_forward_proj", "relu")
        if proj not in ("relu", "gated-gelu"):
            raise ValueError(f"T5 feed_forward_proj {proj!r} is not supported (relu or gated-gelu).")
        return cls(vocab_size=config["vocab_size"], d_model=config["d_model"], d_kv=config["d_kv"],
                   d_ff=config["d_ff"], num_layers=config["num_layers"], num_heads=config["num_heads"],
                   relative_attention_num_buckets=config.get("relative_attention_num_buckets", 32),
                   relative_attention_max_distance=config.get("relative_attention_max_distance", 128),
                   layer_norm_epsilon=config.get("layer_norm_epsilon", 1e-6), gated=proj == "gated-gelu")


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.float().pow(2).mean(dim=-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.eps)
        return self.weight * x.to(self.weight.dtype)


def relative_position_bucket(relative: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Distance (key - query) -> bucket id, bidirectional as in T5's encoder.

    Half the buckets are for keys after the query, half for keys before.
    Within each half, distances below ``num_buckets // 4`` get a bucket each;
    larger ones share logarithmically wider buckets, up to ``max_distance``.
    """
    half = num_buckets // 2
    bucket = (relative > 0).long() * half                 # which side of the query
    distance = relative.abs()
    exact = half // 2
    # clamp: distance 0 would give log(0); torch.where below discards those entries anyway
    log_ratio = torch.log(distance.clamp(min=1).float() / exact) / math.log(max_distance / exact)
    far = (exact + (log_ratio * (half - exact)).long()).clamp(max=half - 1)
    return bucket + torch.where(distance < exact, distance, far)


class Attention(nn.Module):
    def __init__(self, config: T5Config, has_relative_bias: bool):
        super().__init__()
        inner = config.num_heads * config.d_kv
        self.num_heads, self.d_kv = config.num_heads, config.d_kv
        self.q = nn.Linear(config.d_model, inner, bias=False)
        self.k = nn.Linear(config.d_model, inner, bias=False)
        self.v = nn.Linear(config.d_model, inner, bias=False)
        self.o = nn.Linear(inner, config.d_model, bias=False)
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.relative_attention_max_distance
        if has_relative_bias:
            self.relative_attention_bias = nn.Embedding(self.num_buckets, config.num_heads)

    def position_bias(self, length: int) -> torch.Tensor:
        """[1, H, L, L]: the learned bias for every (query, key) distance."""
        positions = torch.arange(length, device=self.relative_attention_bias.weight.device)
        relative = positions[None, :] - positions[:, None]                  # [L, L]: key - query
        buckets = relative_position_bucket(relative, self.num_buckets, self.max_distance)
        return self.relative_attention_bias(buckets).permute(2, 0, 1)[None]  # [1, H, L, L]

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        split = lambda t: t.view(B, L, self.num_heads, self.d_kv).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))           # [B, H, L, dk]
        scores = q @ k.transpose(-2, -1) + bias                                   # [B, H, L, L], no 1/√d
        weights = scores.float().softmax(dim=-1).to(scores.dtype)
        out = (weights @ v).transpose(1, 2).reshape(B, L, -1)                     # [B, L, H·dk]
        return self.o(out)


class FeedForward(nn.Module):
    def __init__(self, config: T5Config):
        super().__init__()
        self.gated = config.gated
        if config.gated:
            self.wi_0 = nn.Linear(config.d_model, config.d_ff, bias=False)
            self.wi_1 = nn.Linear(config.d_model, config.d_ff, bias=False)
        else:
            self.wi = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            hidden = F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x)
        else:
            hidden = F.relu(self.wi(x))
        return self.wo(hidden.to(self.wo.weight.dtype))


class SelfAttentionLayer(nn.Module):
    def __init__(self, config: T5Config, has_relative_bias: bool):
        super().__init__()
        self.SelfAttention = Attention(config, has_relative_bias)
        self.layer_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)

    def forward(self, x, bias):
        return x + self.SelfAttention(self.layer_norm(x), bias)


class FeedForwardLayer(nn.Module):
    def __init__(self, config: T5Config):
        super().__init__()
        self.layer_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.DenseReluDense = FeedForward(config)   # the checkpoint's name, gated or not

    def forward(self, x):
        return x + self.DenseReluDense(self.layer_norm(x))


class Block(nn.Module):
    def __init__(self, config: T5Config, has_relative_bias: bool):
        super().__init__()
        self.layer = nn.ModuleList([SelfAttentionLayer(config, has_relative_bias), FeedForwardLayer(config)])

    def forward(self, x, bias):
        return self.layer[1](self.layer[0](x, bias))


class Stack(nn.Module):
    def __init__(self, config: T5Config):
        super().__init__()
        self.block = nn.ModuleList(Block(config, has_relative_bias=(i == 0)) for i in range(config.num_layers))
        self.final_layer_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)


class T5Encoder(nn.Module):
    def __init__(self, config: T5Config):
        super().__init__()
        self.config = config
        self.shared = nn.Embedding(config.vocab_size, config.d_model)   # the token embeddings
        self.encoder = Stack(config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids [B, L] (and mask [B, L], 1 = real token) -> hidden states [B, L, d_model]."""
        x = self.shared(input_ids)                                           # [B, L, D]
        bias = self.encoder.block[0].layer[0].SelfAttention.position_bias(input_ids.shape[1])
        bias = bias.to(x.dtype)
        if attention_mask is not None:
            # A very negative number, not -inf: a row with no real token stays finite.
            hide = (1 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
            bias = bias + hide                                               # [B, H, L, L]
        for block in self.encoder.block:
            x = block(x, bias)
        return self.encoder.final_layer_norm(x)
