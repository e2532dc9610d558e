"""How the LM decodes on the fast path: caches the C layer step can use, or fixed-shape caches replayed as
CUDA graphs.

:class:`FastLM` is the reference :class:`~minicraft.models.lm.LM`; only the caches it hands the decoding
loop (:func:`minicraft.generate.decoding.generate_codes`) and, with CUDA graphs, how a one-position step
runs, differ. ``decoding`` is

- "plain": growing caches (:class:`~minicraft.fast.layer_step.StepCache`), each layer's step in C on a CPU;
- "static": fixed-shape caches (:class:`~minicraft.fast.attention.StaticKVCache`), the same tokens;
- "cuda-graph": static caches, and each one-position step recorded once as a CUDA graph and replayed, so a
  step costs one launch instead of hundreds (CUDA only).
"""
from __future__ import annotations

import torch

from minicraft.fast.attention import StaticKVCache
from minicraft.fast.layer_step import StepCache
from minicraft.models.lm import LM

DECODINGS = ("plain", "static", "cuda-graph")


def check_decoding(decoding: str, device: torch.device):
    if decoding not in DECODINGS:
        raise ValueError(f"decoding must be one of {', '.join(DECODINGS)}, not {decoding!r}.")
    if decoding == "cuda-graph" and device.type != "cuda":
        raise ValueError(f"decoding='cuda-graph' needs a CUDA device (the model is on {device.type}); "
                         "use 'static' or 'plain'.")


class GraphedStep:
    """One decoding step (one position, static caches) recorded as a CUDA graph.

    CUDA graphs replay recorded kernels with the same memory addresses, so the
    input goes into a fixed buffer and the output comes out of one; the caches
    advance their own position tensors inside the graph.
    """

    def __init__(self, step, example: torch.Tensor, caches: list[StaticKVCache]):
        self.input = example.clone()                               # [B, K, 1]
        warm = torch.cuda.Stream()                                 # capture wants a warmed-up side stream
        warm.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(warm):
            step(self.input)
        torch.cuda.current_stream().wait_stream(warm)
        for cache in caches:                                       # undo the warm-up's step
            cache.position -= 1
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):                         # recorded, not run
            self.output = step(self.input)

    def __call__(self, step_input: torch.Tensor) -> torch.Tensor:
        self.input.copy_(step_input)
        self.graph.replay()
        return self.output


class FastLM(LM):
    """The reference LM, decoding with the fast path's caches (and CUDA graphs, if asked)."""

    replaces = LM
    what = "caches for the C layer step; fixed-shape caches and CUDA graphs if asked"

    def adopt(self, decoding: str = "plain"):
        check_decoding(decoding, next(self.parameters()).device)
        self.decoding = decoding

    def new_caches(self, batch: int, max_steps: int, like: torch.Tensor) -> list:
        kind = StepCache if self.decoding == "plain" else StaticKVCache
        config = self.config
        return [kind.empty(batch, config.num_heads, max_steps, config.dim // config.num_heads, like.dtype, like.device)
                for _ in range(config.num_layers)]

    def forward(self, sequence: torch.Tensor, cross: torch.Tensor | None = None,
                cross_mask: torch.Tensor | None = None, caches=None,
                prefix: torch.Tensor | None = None) -> torch.Tensor:
        """As :meth:`LM.forward`; with CUDA graphs, one-position steps after the first are replayed."""
        if self.decoding != "cuda-graph" or not caches or sequence.shape[-1] != 1 or caches[0].calls == 0:
            if caches and isinstance(caches[0], StaticKVCache):
                caches[0].calls += 1          # the first call runs as usual: it projects the text's keys/values
            return super().forward(sequence, cross, cross_mask, caches, prefix)
        first = caches[0]
        if first.graph is None:
            first.graph = GraphedStep(lambda step: LM.forward(self, step, cross, cross_mask, caches), sequence,
                                      caches)
        first.calls += 1
        return first.graph(sequence)
