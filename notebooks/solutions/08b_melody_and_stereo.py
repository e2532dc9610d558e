"""Worked solutions to the exercises of notebook 08b."""
import math

import torch


def interleave_stereo(left, right):
    # left, right [B, K, F] -> [B, 2K, F]: rows L0 R0 L1 R1 ...
    B, K, F = left.shape
    pairs = torch.stack([left, right], dim=2)       # [B, K, 2, F]: each level's left and right codes side by side
    return pairs.reshape(B, 2 * K, F)               # row 2k = left codebook k, row 2k + 1 = right codebook k


def tile_or_cut(x, frames):
    # x [B, T, n_chroma] -> [B, frames, n_chroma]
    copies = math.ceil(frames / x.shape[1])         # enough whole copies to reach `frames` (1 if x is long enough)
    return x.repeat(1, copies, 1)[:, :frames]       # the melody again from its start, then its first `frames`
