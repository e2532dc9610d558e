"""Worked solutions to the exercises of notebook 07."""
import torch


def cfg_mix(cond_logits, uncond_logits, coef):
    return uncond_logits + coef * (cond_logits - uncond_logits)


def kv_cache_bytes(layers, dim, batch, seconds, frame_rate, num_codebooks, cfg=True, bytes_per_number=4):
    steps = int(seconds * frame_rate) + (num_codebooks - 1) + 1    # frames, the delay tail, the empty step
    rows = 2 * batch if cfg else batch
    return 2 * layers * rows * steps * dim * bytes_per_number       # keys and values


def guided_probs(logits, cfg_coef, temperature, top_k):
    B = logits.shape[0] // 2
    cond_logits, uncond_logits = logits.split(B)                    # prompts first, then the null condition
    guided = cfg_mix(cond_logits, uncond_logits, cfg_coef)          # mix logits, not probabilities
    probs = torch.softmax(guided / temperature, dim=-1)             # [B, K, V]
    kth = probs.topk(top_k, dim=-1).values[..., -1:]                # the k-th largest, per row
    probs = torch.where(probs >= kth, probs, torch.zeros_like(probs))   # ties with the k-th are kept
    return probs / probs.sum(dim=-1, keepdim=True)
