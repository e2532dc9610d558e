"""SEANet: EnCodec's convolutional encoder (waveform -> latent frames) and decoder (back).

The encoder is a stack of 1-D convolutions: each downsampling stage has a
residual block (dilated conv + 1x1 conv, skip added) then a strided conv
that divides the time resolution by its ratio and doubles the channels;
an LSTM and a final conv produce ``dimension`` channels at
``sample_rate / prod(ratios)`` frames per second (32 kHz / 640 = 50 Hz).
The decoder mirrors it with transposed convolutions.

Padding is the subtle part, and it must be audiocraft's exactly: a
non-causal conv pads ``kernel - stride`` samples split between both sides
(more on the left), plus extra padding on the right, in the same mode
(reflected samples by default, not zeros), so the last window is complete;
a transposed conv trims the same amount from its output.

Weight norm is folded into plain weights when loading (``checkpoints.fold_weight_norm``).
Module names reproduce the checkpoint keys: ``model.{i}.conv.conv.weight``,
``model.{i}.convtr.convtr.weight``, ``model.{i}.block.{j}.conv.conv.weight``,
``model.{i}.lstm.*``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from minicraft.checks import check_fields


@dataclass
class SEANetConfig:
    channels: int = 1
    dimension: int = 128
    n_filters: int = 64
    n_residual_layers: int = 1
    ratios: list[int] = field(default_factory=lambda: [8, 5, 4, 4])   # decoder order
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    dilation_base: int = 2
    causal: bool = False
    pad_mode: str = "reflect"
    true_skip: bool = True
    compress: int = 2
    lstm: int = 2
    trim_right_ratio: float = 1.0

    def __post_init__(self):
        check_fields(self, "SEANet config", positive=("channels", "dimension", "n_filters", "n_residual_layers",
                                                      "kernel_size", "last_kernel_size", "residual_kernel_size",
                                                      "dilation_base", "compress"), numbers=("trim_right_ratio",))
        if not isinstance(self.ratios, list) or not self.ratios or any(
                isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= 2**10 for r in self.ratios):
            raise ValueError(f"SEANet config: ratios must be a list of whole numbers >= 1, got {self.ratios!r}.")
        if isinstance(self.lstm, bool) or not isinstance(self.lstm, int) or not 0 <= self.lstm <= 64:
            raise ValueError(f"SEANet config: lstm must be a whole number of layers (0 for none), got {self.lstm!r}.")

    @property
    def hop_length(self) -> int:
        return math.prod(self.ratios)


def pad1d(x: torch.Tensor, left: int, right: int, mode: str) -> torch.Tensor:
    """F.pad that also reflects inputs shorter than the padding (zero-extend first)."""
    if mode != "reflect":
        return F.pad(x, (left, right), mode)
    extra = max(0, max(left, right) - x.shape[-1] + 1)   # reflect needs length > padding
    if extra:
        x = F.pad(x, (0, extra))
    padded = F.pad(x, (left, right), mode)
    return padded[..., :padded.shape[-1] - extra]


class Conv1d(nn.Module):
    """A conv that keeps ``ceil(T / stride)`` frames: audiocraft's StreamableConv1d."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1,
                 causal: bool = False, pad_mode: str = "reflect"):
        super().__init__()
        # Named conv.conv, as in the checkpoint (a norm wrapper around nn.Conv1d).
        self.conv = nn.ModuleDict({"conv": nn.Conv1d(cin, cout, kernel, stride, dilation=dilation)})
        self.causal, self.pad_mode = causal, pad_mode
        self.stride = stride
        self.effective_kernel = (kernel - 1) * dilation + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, Cin, T] -> [B, Cout, ceil(T / stride)]."""
        k, s = self.effective_kernel, self.stride
        padding = k - s
        frames = (x.shape[-1] - k + padding) / s + 1
        extra = (math.ceil(frames) - 1) * s + (k - padding) - x.shape[-1]   # complete the last window
        if self.causal:
            x = pad1d(x, padding, extra, self.pad_mode)
        else:
            right = padding // 2
            x = pad1d(x, padding - right, right + extra, self.pad_mode)
        return self.conv["conv"](x)


class ConvTranspose1d(nn.Module):
    """Upsampling by ``stride``, trimmed back to exactly ``T · stride``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, causal: bool = False,
                 trim_right_ratio: float = 1.0):
        super().__init__()
        self.convtr = nn.ModuleDict({"convtr": nn.ConvTranspose1d(cin, cout, kernel, stride)})
        self.causal, self.trim_right_ratio = causal, trim_right_ratio
        self.padding = kernel - stride

    def upsample(self, x: torch.Tensor) -> torch.Tensor:
        """[B, Cin, T] -> [B, Cout, (T - 1)·s + k], untrimmed."""
        return self.convtr["convtr"](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.upsample(x)                                       # [B, Cout, (T - 1)·s + k]
        if self.causal:
            right = math.ceil(self.padding * self.trim_right_ratio)
        else:
            right = self.padding // 2
        left = self.padding - right
        return y[..., left:y.shape[-1] - right]                    # [B, Cout, T·s]


class ResidualBlock(nn.Module):
    """x + conv1x1(ELU(conv_k,dilated(ELU(x)))), channels squeezed by ``compress`` inside."""

    def __init__(self, dim: int, kernel: int, dilation: int, config: SEANetConfig):
        super().__init__()
        hidden = dim // config.compress
        self.block = nn.Sequential(
            nn.ELU(), Conv1d(dim, hidden, kernel, dilation=dilation, causal=config.causal, pad_mode=config.pad_mode),
            nn.ELU(), Conv1d(hidden, dim, 1, causal=config.causal, pad_mode=config.pad_mode))
        self.shortcut = nn.Identity() if config.true_skip else Conv1d(dim, dim, 1, causal=config.causal,
                                                                   pad_mode=config.pad_mode)

    def forward(self, x):
        return self.shortcut(x) + self.block(x)


class LSTM(nn.Module):
    """An LSTM over frames with a skip connection; [B, C, T] in and out."""

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def forward(self, x):
        x = x.permute(2, 0, 1)                 # [T, B, C]: nn.LSTM's default layout
        y, _ = self.lstm(x)
        return (y + x).permute(1, 2, 0)        # [B, C, T]


class SEANetEncoder(nn.Module):
    def __init__(self, config: SEANetConfig):
        super().__init__()
        conv = lambda cin, cout, k, s=1: Conv1d(cin, cout, k, s, causal=config.causal, pad_mode=config.pad_mode)  # noqa
        layers: list[nn.Module] = [conv(config.channels, config.n_filters, config.kernel_size)]
        width = config.n_filters
        for ratio in reversed(config.ratios):     # the encoder downsamples in reverse order
            layers += [ResidualBlock(width, config.residual_kernel_size, config.dilation_base ** j, config)
                       for j in range(config.n_residual_layers)]
            layers += [nn.ELU(), conv(width, 2 * width, 2 * ratio, ratio)]
            width *= 2
        if config.lstm:
            layers.append(LSTM(width, config.lstm))
        layers += [nn.ELU(), conv(width, config.dimension, config.last_kernel_size)]
        self.model = nn.Sequential(*layers)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, channels, T] -> latent [B, dimension, ceil(T / hop)]."""
        return self.model(wav)


class SEANetDecoder(nn.Module):
    def __init__(self, config: SEANetConfig):
        super().__init__()
        width = config.n_filters * 2 ** len(config.ratios)
        layers: list[nn.Module] = [Conv1d(config.dimension, width, config.kernel_size, causal=config.causal,
                                          pad_mode=config.pad_mode)]
        if config.lstm:
            layers.append(LSTM(width, config.lstm))
        for ratio in config.ratios:
            layers += [nn.ELU(), ConvTranspose1d(width, width // 2, 2 * ratio, ratio, config.causal,
                                                 config.trim_right_ratio)]
            width //= 2
            layers += [ResidualBlock(width, config.residual_kernel_size, config.dilation_base ** j, config)
                       for j in range(config.n_residual_layers)]
        layers += [nn.ELU(), Conv1d(config.n_filters, config.channels, config.last_kernel_size, causal=config.causal,
                                    pad_mode=config.pad_mode)]
        self.model = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """latent [B, dimension, F] -> wav [B, channels, F · hop]."""
        return self.model(latent)
