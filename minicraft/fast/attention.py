"""The reference attention, with its projections through the C kernels or int8 weights, and fixed-shape caches."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from minicraft.fast import kernels
from minicraft.modules.attention import KVCache, MultiheadAttention


@dataclass
class StaticKVCache(KVCache):
    """A KV cache whose every step has the same shapes and kernels: what a CUDA graph replays.

    The write position is a tensor on the device, not a Python int, and
    attention always reads all ``max_len`` slots, the ones not written yet
    hidden by a mask instead of sliced off. Same results as
    :class:`~minicraft.modules.attention.KVCache` (the masked slots weigh exactly 0), slower on a CPU:
    use it for graphs. ``graph`` and ``calls`` are :class:`~minicraft.fast.decoding.FastLM`'s, kept on
    the first layer's cache.
    """
    position: torch.Tensor | None = None      # [] long: slots filled so far
    graph: object = None                      # the recorded one-position step, once there is one
    calls: int = 0                            # steps run on these caches so far

    @classmethod
    def empty(cls, batch: int, heads: int, max_len: int, head_dim: int, dtype: torch.dtype, device):
        cache = super().empty(batch, heads, max_len, head_dim, dtype, device)
        cache.position = torch.zeros((), dtype=torch.long, device=cache.keys.device)
        return cache

    def positions(self, steps: int) -> torch.Tensor:
        return self.position + torch.arange(steps, device=self.keys.device)

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.positions(k.shape[2])
        self.keys.index_copy_(2, index, k)
        self.values.index_copy_(2, index, v)
        self.position += k.shape[2]                                # in place: part of a captured graph
        return self.keys, self.values                              # all max_len slots

    def mask_for(self, steps: int) -> torch.Tensor:
        """[steps, max_len]: the next ``steps`` queries; query i (at position + i) sees the keys up to itself."""
        query = self.position + torch.arange(steps, device=self.keys.device)[:, None]
        return torch.arange(self.keys.shape[2], device=self.keys.device)[None, :] <= query


class FastMultiheadAttention(MultiheadAttention):
    """:class:`~minicraft.modules.attention.MultiheadAttention` that can hold its packed projections in int8
    (``in_proj_int8``, set by :func:`minicraft.fast.int8.quantize_lm_int8`), multiplies through
    :func:`minicraft.fast.kernels.linear`, and attends over a static cache's fixed slots."""

    replaces = MultiheadAttention
    what = "projections through the C kernels (bfloat16, int8); fixed-shape caches"

    def adopt(self):
        self.in_proj_int8 = None    # an Int8Linear of the packed q/k/v projections, once quantized

    def project(self, x: torch.Tensor, which: slice | None = None) -> torch.Tensor:
        if self.in_proj_int8 is not None:
            return self.in_proj_int8(x, which)
        weight, bias = self.in_proj_weight, self.in_proj_bias
        if which is not None:
            weight, bias = weight[which], None if bias is None else bias[which]
        return kernels.linear(x, weight, bias)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                cache: KVCache | None = None, causal: bool = False) -> torch.Tensor:
        if memory is None and isinstance(cache, StaticKVCache):
            mask, causal = cache.mask_for(x.shape[1]), False     # its append returns every slot, written or not
        return super().forward(x, memory, mask, cache, causal)
