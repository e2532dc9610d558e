"""Stereo from a mono codec: each channel coded on its own, the two code streams interleaved.

The stereo MusicGens (facebook/musicgen-stereo-*) did not get a stereo EnCodec: they reuse the mono one on
the left and on the right channel, and their LM predicts both channels' codebooks, 2K of them, interleaved
as ``left 0, right 0, left 1, right 1, ...`` (audiocraft's ``InterleaveStereoCompressionModel`` with
``per_timestep=False``; transformers' ``audio_channels=2``). The delay pattern then delays each *pair* as
the mono pattern delays one codebook (delays 0, 0, 1, 1, 2, 2, 3, 3), so the LM picks a frame's left and
right codes of the same level at the same step.
"""
from __future__ import annotations

import torch
from torch import nn

from minicraft.models.codec import Encodec


def interleave(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """left, right [B, K, F] -> [B, 2K, F] with codebook k of the left at 2k, of the right at 2k + 1."""
    B, K, F = left.shape
    return torch.stack([left, right], dim=2).reshape(B, 2 * K, F)


def split_channels(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, 2K, F] -> (left, right), each [B, K, F]: the inverse of :func:`interleave`."""
    return codes[:, 0::2], codes[:, 1::2]


class StereoCodec(nn.Module):
    """A mono :class:`Encodec` applied to each channel: audio [B, 2, T] <-> codes [B, 2K, F]."""

    def __init__(self, mono: Encodec):
        super().__init__()
        if mono.channels != 1:
            raise ValueError(f"a stereo codec wraps a mono one; this codec has {mono.channels} channels.")
        self.mono = mono

    @property
    def config(self):
        return self.mono.config

    @property
    def sample_rate(self) -> int:
        return self.mono.sample_rate

    @property
    def hop_length(self) -> int:
        return self.mono.hop_length

    @property
    def frame_rate(self) -> float:
        return self.mono.frame_rate

    @property
    def channels(self) -> int:
        return 2

    @property
    def num_codebooks(self) -> int:
        """Codebooks per frame for both channels together (2K), as the LM counts them."""
        return 2 * self.mono.num_codebooks

    @property
    def codebook_size(self) -> int:
        return self.mono.codebook_size

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 2, T] -> codes [B, 2K, ceil(T / hop)]."""
        if wav.shape[1] != 2:
            raise ValueError(f"a stereo codec encodes 2 channels, got {wav.shape[1]}.")
        return interleave(self.mono.encode(wav[:, :1]), self.mono.encode(wav[:, 1:]))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, 2K', F] (K' <= K codebooks per channel) -> wav [B, 2, F · hop]."""
        if codes.shape[1] % 2:
            raise ValueError(f"stereo codes come in left/right pairs; got {codes.shape[1]} codebooks.")
        left, right = split_channels(codes)
        return torch.cat([self.mono.decode(left), self.mono.decode(right)], dim=1)
