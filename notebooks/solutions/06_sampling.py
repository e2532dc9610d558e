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


def top_p_kept(probs, p):
    sorted_probs, order = probs.sort(descending=True)
    mass_before = sorted_probs.cumsum(0) - sorted_probs
    return order[mass_before <= p].sort().values
