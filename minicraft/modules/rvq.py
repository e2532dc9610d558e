"""Residual vector quantization: latent frames <-> K integer codes per frame.

One codebook is a table of ``codebook_size`` vectors; *encoding* a frame picks the
nearest vector (its index is the code), *decoding* looks the vector up.
Residual VQ chains K codebooks: codebook 1 encodes the frame, codebook 2 the
error codebook 1 left, and so on; decoding sums the K vectors. Each extra
codebook refines the sound (this is what "4 codebooks of 2048" means).

Only inference lives here; training (k-means init, EMA updates, dead codes)
is in the training scripts. The checkpoint's training-only buffers
(``inited``, ``cluster_size``, ``embed_avg``) are dropped by the loader.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Codebook(nn.Module):
    def __init__(self, codebook_size: int, dim: int):
        super().__init__()
        self.embed = nn.Parameter(torch.empty(codebook_size, dim), requires_grad=False)   # [codebook_size, D]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, D] -> index [N] of the nearest code vector (squared Euclidean distance).

        ||x - e||² = ||x||² - 2 x·e + ||e||², written out with a matmul rather
        than ``torch.cdist``: the same arithmetic as audiocraft, and only plain
        ops, which behave the same on CUDA, MPS and CPU.
        """
        distance = (x.pow(2).sum(1, keepdim=True) - 2 * x @ self.embed.t()
                    + self.embed.pow(2).sum(1)[None, :])                        # [N, codebook_size]
        return (-distance).max(dim=-1).indices

    def decode(self, index: torch.Tensor) -> torch.Tensor:
        return F.embedding(index, self.embed)


class VectorQuantizer(nn.Module):
    """One level: holds its codebook under the checkpoint's name ``_codebook``."""

    def __init__(self, codebook_size: int, dim: int):
        super().__init__()
        self._codebook = Codebook(codebook_size, dim)


class ResidualVectorQuantizer(nn.Module):
    def __init__(self, num_codebooks: int, codebook_size: int, dim: int):
        super().__init__()
        self.vq = nn.Module()
        self.vq.layers = nn.ModuleList(VectorQuantizer(codebook_size, dim) for _ in range(num_codebooks))

    @property
    def codebooks(self) -> list[Codebook]:
        return [layer._codebook for layer in self.vq.layers]

    def encode(self, latent: torch.Tensor, num_codebooks: int | None = None) -> torch.Tensor:
        """latent [B, D, F] -> codes [B, K, F]."""
        B, D, frames = latent.shape
        residual = latent.transpose(1, 2).reshape(-1, D)          # [B·F, D]
        codes = []
        for codebook in self.codebooks[:num_codebooks]:
            index = codebook.encode(residual)
            residual = residual - codebook.decode(index)           # what is left to explain
            codes.append(index.view(B, frames))
        return torch.stack(codes, dim=1)                           # [B, K, F]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, K, F] -> latent [B, D, F]: the sum of the chosen vectors."""
        latent = 0
        for k in range(codes.shape[1]):
            latent = latent + self.codebooks[k].decode(codes[:, k])   # [B, F, D]
        return latent.transpose(1, 2)
