"""Worked solutions to the exercises of notebook 04."""
import math

import torch


def frames_for(samples, hop):
    return math.ceil(samples / hop)            # the encoder pads the last partial frame


def bitrate(frame_rate, num_codebooks, codebook_size):
    return frame_rate * num_codebooks * math.log2(codebook_size)


def rvq_encode(latent, codebooks):
    residual, codes = latent, []
    for codebook in codebooks:
        index = torch.cdist(residual, codebook).argmin(dim=1)    # nearest vector per frame
        residual = residual - codebook[index]                    # what this codebook left unexplained
        codes.append(index)
    return torch.stack(codes)                                    # [K, frames]
