"""Worked solutions to the exercises of notebook 05."""
import torch
import torch.nn.functional as F


def build_delayed(codes, delays, special):
    B, K, T = codes.shape
    S = T + max(delays) + 1                                  # the empty step 0, the frames, the longest delay
    sequence = torch.full((B, K, S), special, dtype=codes.dtype)   # empty cells hold the special token
    for k, delay in enumerate(delays):
        sequence[:, k, 1 + delay:1 + delay + T] = codes[:, k]      # frame t of codebook k at step t + 1 + delay
    return sequence


def masked_loss(logits, codes, valid):
    return F.cross_entropy(logits[valid], codes[valid])      # only the positions that have a prediction
