"""Worked solutions to the exercises of notebook 07."""
import torch

from minicraft.modules.attention import KVCache


def cfg_mix(cond_logits, uncond_logits, coef):
    return uncond_logits + coef * (cond_logits - uncond_logits)


def kv_cache_bytes(layers, dim, batch, seconds, frame_rate, num_codebooks, cfg=True, bytes_per_number=4):
    steps = int(seconds * frame_rate) + (num_codebooks - 1) + 1    # frames, the delay tail, the empty step
    rows = 2 * batch if cfg else batch
    return 2 * layers * rows * steps * dim * bytes_per_number       # keys and values


def greedy_by_hand(lm, cond, cross_mask, frames):
    B = cond.shape[0] // 2
    K, special = lm.config.num_codebooks, lm.special_token
    pattern = lm.pattern(frames)
    sequence, valid = pattern.build(torch.full((B, K, frames), -1), special)
    S = sequence.shape[-1]
    caches = [KVCache.empty(2 * B, lm.config.num_heads, S, lm.config.dim // lm.config.num_heads, cond.dtype, cond.device)
              for _ in lm.transformer.layers]
    with torch.inference_mode():
        for s in range(1, S):
            step = sequence[..., s - 1:s]
            logits = lm(torch.cat([step, step]), cond, cross_mask, caches=caches)[:, :, -1]
            cond_logits, uncond_logits = logits.split(B)
            token = cfg_mix(cond_logits, uncond_logits, 3.0).argmax(-1, keepdim=True)
            token[~valid[:, s:s + 1].expand(B, -1, -1)] = special
            sequence[..., s:s + 1] = token
    codes, _ = pattern.revert(sequence, special)
    return codes
