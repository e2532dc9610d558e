"""The decoding loop: codes, one pattern step at a time, with a KV cache.

What happens, in order (audiocraft's ``LMModel.generate``):

1. Lay out the frames to generate, ``[B, K, T]`` filled with -1 ("unknown")
   except the prompt, as a delay-pattern sequence ``[B, K, S]``.
2. Feed the steps before the first unknown one (the empty step, plus the
   prompt) in one forward pass; afterwards feed one step at a time, since the
   KV cache remembers the past.
3. From the last position's logits choose the next step's K tokens (with
   classifier-free guidance: a conditioned and an unconditioned pass, mixed).
4. Write them where the sequence is still unknown, and the special token
   where the pattern holds nothing for a codebook.
5. Finally undo the pattern: ``[B, K, S] -> [B, K, T]``.

Classifier-free guidance runs either as one doubled batch (conditions, then
null conditions) or, with ``two_step=True``, as two passes with two caches.

``decoding`` picks how a step runs: "plain" (a growing cache, the default),
"static" (:class:`~minicraft.attention.StaticKVCache`: fixed shapes) or
"cuda-graph" (static, and each one-step call recorded once as a CUDA graph and
replayed, so a step costs one launch instead of hundreds; CUDA only).
"""
from __future__ import annotations

from typing import Callable

import torch

from .attention import KVCache, StaticKVCache
from .lm import LM
from .sampling import classifier_free_guidance, sample_next_token

UNKNOWN = -1


DECODINGS = ("plain", "static", "cuda-graph")


def check_decoding(decoding: str, device: torch.device):
    if decoding not in DECODINGS:
        raise ValueError(f"decoding must be one of {', '.join(DECODINGS)}, not {decoding!r}.")
    if decoding == "cuda-graph" and device.type != "cuda":
        raise ValueError(f"decoding='cuda-graph' needs a CUDA device (the model is on {device.type}); "
                         "use 'static' or 'plain'.")


def new_caches(lm: LM, batch: int, max_steps: int, like: torch.Tensor, static: bool = False) -> list[KVCache]:
    cfg = lm.cfg
    kind = StaticKVCache if static else KVCache
    return [kind.empty(batch, cfg.num_heads, max_steps, cfg.dim // cfg.num_heads, like.dtype, like.device)
            for _ in range(cfg.num_layers)]


def doubled_mask(cross_mask: torch.Tensor | None, null_cross_mask: torch.Tensor | None,
                 cond: torch.Tensor) -> torch.Tensor | None:
    """The text mask [2B, 1, 1, L] of CFG's doubled batch; a half given None hides nothing."""
    if cross_mask is None and null_cross_mask is None:
        return None
    full = torch.ones(cond.shape[0], 1, 1, cond.shape[1], dtype=torch.bool, device=cond.device)
    return torch.cat([full if cross_mask is None else cross_mask,
                      full if null_cross_mask is None else null_cross_mask])


class GraphedStep:
    """One decoding step of ``lm`` (one position, static caches) recorded as a CUDA graph.

    CUDA graphs replay recorded kernels with the same memory addresses, so the
    input goes into a fixed buffer and the output comes out of one; the caches
    advance their own position tensors inside the graph.
    """

    def __init__(self, lm: LM, example: torch.Tensor, cross, cross_mask, caches: list[StaticKVCache]):
        self.input = example.clone()                               # [B, K, 1]
        warm = torch.cuda.Stream()                                 # capture wants a warmed-up side stream
        warm.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(warm):
            lm(self.input, cross, cross_mask, caches=caches)
        torch.cuda.current_stream().wait_stream(warm)
        for cache in caches:                                       # undo the warm-up's step
            cache.position -= 1
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):                         # recorded, not run
            self.output = lm(self.input, cross, cross_mask, caches=caches)

    def __call__(self, step_input: torch.Tensor) -> torch.Tensor:
        self.input.copy_(step_input)
        self.graph.replay()
        return self.output


@torch.inference_mode()
def generate_codes(lm: LM, cond: torch.Tensor | None, null_cond: torch.Tensor | None,
                   max_gen_len: int, prompt: torch.Tensor | None = None, num_samples: int | None = None,
                   use_sampling: bool = True, temperature: float = 1.0, top_k: int = 250,
                   top_p: float = 0.0, cfg_coef: float | None = None, two_step: bool = False,
                   callback: Callable[[int, int], None] | None = None,
                   cross_mask: torch.Tensor | None = None,
                   null_cross_mask: torch.Tensor | None = None, decoding: str = "plain") -> torch.Tensor:
    """Generate ``max_gen_len`` frames of codes [B, K, max_gen_len], prompt included.

    ``cond``/``null_cond`` [B, L, D] are the projected text conditions and
    their "no text" counterpart; pass ``cond=None`` for no conditioning at all
    (then no guidance either). ``prompt`` [B, K, T0] are frames to continue.
    ``cross_mask``/``null_cross_mask`` [B, 1, 1, L] optionally hide padded text
    positions from cross-attention (audiocraft passes None).
    """
    cfg_coef = lm.cfg.cfg_coef if cfg_coef is None else cfg_coef
    device = next(lm.parameters()).device
    check_decoding(decoding, device)
    static = decoding != "plain"
    K = lm.cfg.num_codebooks
    if prompt is not None:
        B = prompt.shape[0]
    elif cond is not None:
        B = cond.shape[0]
    else:
        B = num_samples or 1
    if prompt is None:
        prompt = torch.zeros(B, K, 0, dtype=torch.long, device=device)
    start = prompt.shape[-1]
    if start >= max_gen_len:
        raise ValueError(f"the prompt ({start} frames) is not shorter than max_gen_len ({max_gen_len}).")

    pattern = lm.pattern(max_gen_len)
    codes = torch.full((B, K, max_gen_len), UNKNOWN, dtype=torch.long, device=device)
    codes[..., :start] = prompt
    sequence, mask = pattern.build(codes, lm.special_token)      # [B, K, S], [K, S]
    first = pattern.first_step_with(start)
    S = sequence.shape[-1]

    guided = cond is not None
    if guided and not two_step:
        batch_cond = torch.cat([cond, null_cond], dim=0)         # [2B, L, D]
        batch_mask = doubled_mask(cross_mask, null_cross_mask, cond)
        caches = new_caches(lm, 2 * B, S, batch_cond, static)
    else:
        batch_cond = cond
        caches = new_caches(lm, B, S, next(lm.parameters()), static)
    null_caches = new_caches(lm, B, S, null_cond, static) if guided and two_step else None
    graphs: dict[str, GraphedStep] = {}
    seen: set[str] = set()

    def run(name: str, step_input, cross, mask, step_caches):
        """The LM on this step's input; with CUDA graphs, one-position steps after the first are replayed."""
        if decoding != "cuda-graph" or name not in seen or step_input.shape[-1] != 1:
            seen.add(name)              # the first call runs as usual: it projects the text keys/values
            return lm(step_input, cross, mask, caches=step_caches)
        if name not in graphs:
            graphs[name] = GraphedStep(lm, step_input, cross, mask, step_caches)
        return graphs[name](step_input)

    prev = 0
    for offset in range(first, S):
        step_input = sequence[..., prev:offset]                    # [B, K, offset - prev]
        if guided and not two_step:
            logits = run("both", torch.cat([step_input, step_input]), batch_cond, batch_mask, caches)
            cond_logits, uncond_logits = logits.split(B)
            logits = classifier_free_guidance(cond_logits, uncond_logits, cfg_coef)
        elif guided:
            cond_logits = run("cond", step_input, cond, cross_mask, caches)
            uncond_logits = run("null", step_input, null_cond, null_cross_mask, null_caches)
            logits = classifier_free_guidance(cond_logits, uncond_logits, cfg_coef)
        else:
            logits = run("cond", step_input, None, None, caches)
        next_token = sample_next_token(logits[:, :, -1], use_sampling, temperature, top_k, top_p)  # [B, K, 1]
        next_token[~mask[:, offset:offset + 1].expand(B, -1, -1)] = lm.special_token
        current = sequence[..., offset:offset + 1]
        sequence[..., offset:offset + 1] = torch.where(current == UNKNOWN, next_token, current)
        prev = offset
        if callback is not None:
            callback(offset - first + 1, S - first)

    out, _ = pattern.revert(sequence, UNKNOWN)
    return out[..., :max_gen_len]
