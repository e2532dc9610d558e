"""Worked solutions to the exercises of notebook 06."""
import torch


def softmax_with_temperature(logits, temperature):
    scaled = logits / temperature
    e = (scaled - scaled.max()).exp()
    return e / e.sum()


def top_k_probs(probs, k):
    kth = probs.sort(descending=True).values[k - 1]
    kept = torch.where(probs >= kth, probs, torch.zeros_like(probs))   # ties with the k-th are kept
    return kept / kept.sum()


def top_p_filter(logits, p):
    probs = torch.softmax(logits, dim=-1)                                # [..., V]
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs             # the mass of the likelier codes
    kept = sorted_probs * (mass_before <= p)     # keep while the mass *before* is <= p: the crossing code stays
    kept = kept / kept.sum(dim=-1, keepdim=True)                         # renormalise
    return torch.zeros_like(probs).scatter(-1, order, kept)             # back to token order
