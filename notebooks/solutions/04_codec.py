"""Worked solutions to the exercises of notebook 04."""
import math

import torch


def bitrate(frame_rate, num_codebooks, codebook_size):
    return frame_rate * num_codebooks * math.log2(codebook_size)   # a code is an index: log2(size) bits


def rvq_decode(codes, codebooks):
    # codes [k, frames]: row j indexes codebooks[j]. Each codebook encoded what the ones before it left over,
    # so the reconstruction is the *sum* of the chosen vectors (zip stops at the k rows given).
    return sum(codebook[index] for index, codebook in zip(codes, codebooks))   # [frames, D]


def rvq_residual(latent, codes, codebooks, k):
    # What the first k codebooks have not explained yet: the latent minus their reconstruction.
    # (Codebook k + 1 quantizes exactly this; with k = 0 it is the latent itself.)
    if k == 0:
        return latent.clone()
    return latent - rvq_decode(codes[:k], codebooks)
