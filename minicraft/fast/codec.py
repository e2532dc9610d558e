"""The codec decoder, faster and in bounded memory: transposed convs as one ordinary conv, long clips in chunks.

Both replace reference modules of :mod:`minicraft.modules.seanet` by subclasses computing the same samples
(to float rounding); ``tests/modules/test_codec.py`` holds them to that.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from minicraft.modules.seanet import Conv1d, ConvTranspose1d, SEANetDecoder


def polyphase_weight(weight: torch.Tensor, stride: int) -> torch.Tensor:
    """A transposed conv's weight [Cin, Cout, k] as the ordinary conv weight [Cout·s, Cin, taps] below."""
    cin, cout, k = weight.shape
    taps = -(-k // stride)
    w = F.pad(weight, (0, taps * stride - k)).view(cin, cout, taps, stride)   # tap j, phase r: w[..., j·s + r]
    return w.flip(2).permute(1, 3, 0, 2).reshape(cout * stride, cin, taps)  # conv tap m = taps - 1 - j


def polyphase_conv_transpose1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int,
                               phases: torch.Tensor | None = None) -> torch.Tensor:
    """F.conv_transpose1d(x, weight, bias, stride) as one ordinary conv: the same sums, faster on CPU.

    Output sample t·s + r of a transposed conv is Σ_j x[t - j] · w[..., j·s + r]: for each phase r
    (0 <= r < s) an ordinary conv with ``taps = ceil(k / s)`` taps. PyTorch's CPU transposed conv is a
    slow scatter and its ordinary conv a fast GEMM, so the s phases run as s·Cout output channels of
    one conv and are interleaved. ``phases``: ``polyphase_weight(weight, stride)``, if already made.
    """
    B, cin, T = x.shape
    _, cout, k = weight.shape
    phases = polyphase_weight(weight, stride) if phases is None else phases
    taps = phases.shape[-1]
    b = None if bias is None else bias.repeat_interleave(stride)
    z = F.conv1d(F.pad(x, (taps - 1, taps - 1)), phases, b)       # [B, Cout·s, T + taps - 1]
    y = z.view(B, cout, stride, T + taps - 1).transpose(2, 3).reshape(B, cout, (T + taps - 1) * stride)
    return y[..., :(T - 1) * stride + k]                          # [B, Cout, (T - 1)·s + k]


class PolyphaseConvTranspose1d(ConvTranspose1d):
    """:class:`~minicraft.modules.seanet.ConvTranspose1d` whose upsampling is :func:`polyphase_conv_transpose1d`."""

    replaces = ConvTranspose1d
    what = "transposed conv as one ordinary conv (polyphase)"

    def adopt(self):
        self._phases = None     # (the weight it was made from, its polyphase form); inference only

    def phases(self) -> torch.Tensor:
        """The weight in polyphase form, rebuilt only when the weight changes (or gradients must flow)."""
        conv = self.convtr["convtr"]
        w = conv.weight
        if torch.is_grad_enabled():
            return polyphase_weight(w, conv.stride[0])
        version = None if w.is_inference() else w._version    # inference tensors keep no version counter
        key = (w.data_ptr(), version, w.dtype, w.device)
        if self._phases is None or self._phases[0] != key:
            self._phases = (key, polyphase_weight(w, conv.stride[0]))
        return self._phases[1]

    def upsample(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.convtr["convtr"]
        return polyphase_conv_transpose1d(x, conv.weight, conv.bias, conv.stride[0], self.phases())


def reach(layers: nn.Sequential) -> int:
    """How many output samples away, at most, an input of ``layers`` can still change an output sample.

    A conv of (effective) kernel k reaches k - 1 samples at its own rate; a transposed conv of
    kernel k and stride s mixes ceil(k / s) input samples, that many times s of its output
    samples. Walking from the output back, each upsampling multiplies what one sample spans.
    """
    total, scale = 0, 1                        # scale: output samples per sample at this layer's rate
    for layer in reversed(list(layers.modules())):
        if isinstance(layer, Conv1d):
            total += (layer.effective_kernel - 1) * scale
        elif isinstance(layer, ConvTranspose1d):
            conv = layer.convtr["convtr"]
            kernel, stride = conv.kernel_size[0], conv.stride[0]
            total += -(-kernel // stride) * stride * scale
            scale *= stride
    return total


class ChunkedSEANetDecoder(SEANetDecoder):
    """The decoder, ``chunk_frames`` frames at a time for long inputs: memory set by the chunk, not the clip.

    The upsampling layers hold a few tensors of ``F · hop`` samples at a time, so in one pass memory grows
    with the clip. Past the first conv (and the LSTM, which needs every frame before) each output sample
    depends only on frames within about two of its own, so each piece is decoded with ``margin_frames`` of
    real context on both sides, cut off afterwards. The kept samples are computed from the same inputs as
    in one pass; they differ from it by float rounding at most.
    """

    replaces = SEANetDecoder
    what = "long clips decoded in chunks (bounded memory)"

    def adopt(self, chunk_frames: int = 100):
        self.hop = 1
        for layer in self.model:
            if isinstance(layer, ConvTranspose1d):
                self.hop *= layer.convtr["convtr"].stride[0]
        self.first_local = next(i for i, layer in enumerate(self.model)       # after the LSTM, if any
                                if isinstance(layer, (nn.ELU, ConvTranspose1d)))
        self.chunk_frames = chunk_frames
        self.margin_frames = -(-reach(self.model[self.first_local:]) // self.hop) + 1   # context per side

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """latent [B, dimension, F] -> wav [B, channels, F · hop]."""
        frames = latent.shape[-1]
        if frames <= self.chunk_frames:
            return self.model(latent)
        x = self.model[:self.first_local](latent)                  # [B, C, F]: whole-clip layers
        local, margin = self.model[self.first_local:], self.margin_frames
        pieces = []
        for start in range(0, frames, self.chunk_frames):
            end = min(start + self.chunk_frames, frames)
            lo, hi = max(0, start - margin), min(frames, end + margin)
            wav = local(x[..., lo:hi])                                 # [B, channels, (hi - lo) · hop]
            pieces.append(wav[..., (start - lo) * self.hop:(end - lo) * self.hop])
        return torch.cat(pieces, dim=-1)                               # [B, channels, F · hop]
