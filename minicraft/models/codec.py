"""EnCodec = SEANet encoder + residual VQ + SEANet decoder.

``encode``: waveform [B, C, T] -> codes [B, K, F] at ``frame_rate`` frames per
second; ``decode``: codes -> waveform [B, C, F · hop]. The LM never sees audio,
only these codes.

Loading either official format is :mod:`minicraft.formats.encodec`'s work.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from minicraft.checks import check_fields
from minicraft.modules.rvq import ResidualVectorQuantizer
from minicraft.modules.seanet import SEANetConfig, SEANetDecoder, SEANetEncoder


@dataclass
class EncodecConfig:
    sample_rate: int = 32000
    seanet: SEANetConfig = field(default_factory=SEANetConfig)
    num_codebooks: int = 4
    codebook_size: int = 2048
    renormalize: bool = False

    def __post_init__(self):
        check_fields(self, "EnCodec config", positive=("sample_rate", "num_codebooks", "codebook_size"))

    @classmethod
    def from_audiocraft(cls, config: dict) -> "EncodecConfig":
        """From a resolved audiocraft ``xp.cfg`` (sections ``encodec``, ``seanet``, ``rvq``)."""
        s, e = config["seanet"], config["encodec"]
        if s.get("norm", "weight_norm") not in ("weight_norm", "none"):
            raise ValueError(f"SEANet norm {s['norm']!r} is not supported (weight_norm or none).")
        if s.get("activation", "ELU") != "ELU" or s.get("decoder", {}).get("final_activation"):
            raise ValueError("only SEANet with ELU activations and no final activation is supported.")
        seanet = SEANetConfig(
            channels=s.get("channels", config.get("channels", 1)), dimension=s["dimension"], n_filters=s["n_filters"],
            n_residual_layers=s["n_residual_layers"], ratios=list(s["ratios"]), kernel_size=s["kernel_size"],
            last_kernel_size=s["last_kernel_size"], residual_kernel_size=s["residual_kernel_size"],
            dilation_base=s["dilation_base"], causal=bool(s.get("causal", False)), pad_mode=s["pad_mode"],
            true_skip=bool(s["true_skip"]), compress=s["compress"], lstm=s["lstm"],
            trim_right_ratio=s.get("decoder", {}).get("trim_right_ratio", 1.0))
        if e.get("quantizer", "rvq") != "rvq":
            raise ValueError(f"quantizer {e['quantizer']!r} is not supported (rvq only).")
        return cls(sample_rate=e.get("sample_rate", config["sample_rate"]), seanet=seanet, num_codebooks=config["rvq"]["n_q"],
                   codebook_size=config["rvq"]["bins"], renormalize=bool(e.get("renormalize", False)))

    @classmethod
    def from_hf(cls, c: dict) -> "EncodecConfig":
        """From a transformers ``EncodecConfig`` dict (a ``config.json``)."""
        if c.get("norm_type", "weight_norm") not in ("weight_norm",):
            raise ValueError(f"EnCodec norm_type {c['norm_type']!r} is not supported (weight_norm only).")
        ratios = list(c.get("upsampling_ratios", [8, 5, 4, 2]))
        seanet = SEANetConfig(
            channels=c.get("audio_channels", 1), dimension=c.get("hidden_size", 128),
            n_filters=c.get("num_filters", 32), n_residual_layers=c.get("num_residual_layers", 1),
            ratios=ratios, kernel_size=c.get("kernel_size", 7), last_kernel_size=c.get("last_kernel_size", 7),
            residual_kernel_size=c.get("residual_kernel_size", 3), dilation_base=c.get("dilation_growth_rate", 2),
            causal=bool(c.get("use_causal_conv", True)), pad_mode=c.get("pad_mode", "reflect"),
            true_skip=not c.get("use_conv_shortcut", True), compress=c.get("compress", 2),
            lstm=c.get("num_lstm_layers", 2), trim_right_ratio=c.get("trim_right_ratio", 1.0))
        sample_rate = c.get("sampling_rate", 24000)
        codebook_size = c.get("codebook_size", 1024)
        for name, value in (("sampling_rate", sample_rate), ("codebook_size", codebook_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:   # before dividing by them
                raise ValueError(f"EnCodec config: {name} must be a whole number >= 2, got {value!r}.")
        frame_rate = math.ceil(sample_rate / seanet.hop_length)
        bandwidth = c.get("target_bandwidths", [24.0])[-1]
        num_codebooks = int(1000 * bandwidth // (frame_rate * math.ceil(math.log2(codebook_size))))
        if c.get("codebook_dim") not in (None, seanet.dimension):
            raise ValueError("EnCodec with codebook_dim != hidden_size (a projected codebook) is not supported.")
        if c.get("chunk_length_s"):
            raise ValueError("chunked EnCodec (chunk_length_s set, as the 48 kHz model) is not supported.")
        return cls(sample_rate=sample_rate, seanet=seanet, num_codebooks=num_codebooks, codebook_size=codebook_size,
                   renormalize=bool(c.get("normalize", False)))


class Encodec(nn.Module):
    def __init__(self, config: EncodecConfig):
        super().__init__()
        self.config = config
        self.encoder = SEANetEncoder(config.seanet)
        self.decoder = SEANetDecoder(config.seanet)
        self.quantizer = ResidualVectorQuantizer(config.num_codebooks, config.codebook_size, config.seanet.dimension)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.seanet.hop_length

    @property
    def frame_rate(self) -> float:
        """Frames (LM steps) per second: 32000 / 640 = 50."""
        rate = self.sample_rate / self.hop_length
        return int(rate) if rate == int(rate) else rate

    @property
    def channels(self) -> int:
        return self.config.seanet.channels

    @property
    def num_codebooks(self) -> int:
        return self.config.num_codebooks

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, C, T] -> codes [B, K, ceil(T / hop)] (long)."""
        return self.quantizer.encode(self.encoder(wav))

    def decode_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, K, F] -> latent [B, D, F], the sum of the chosen code vectors."""
        return self.quantizer.decode(codes)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, K, F] -> wav [B, C, F · hop]."""
        return self.decoder(self.decode_latent(codes))
