"""A melody -> the chroma condition musicgen-melody *prepends* to its LM's input.

Text reaches most MusicGens through cross-attention. musicgen-melody has no cross-attention at all: its
conditions become the first positions of the transformer's input, ``[chroma frames | text tokens | audio
steps]``, and the audio steps attend to them causally like to earlier steps (:meth:`LM.forward`'s
``prefix``). The melody's part is its chromagram (:mod:`minicraft.modules.chroma`): one one-hot pitch class
per 128 ms, tiled or cut to the length 30 s of training audio gave (235 frames), each frame projected to the
LM's width by ``output_proj`` (12 -> D). With no melody (``None``, or guidance's null condition) the chroma of
silence stands in: every frame class 0, a held C, as in audiocraft.

audiocraft first keeps only the "vocals" and "other" stems of the melody with the Demucs source separator.
Its weights are not part of minicraft: :func:`find_demucs` uses Demucs when the ``demucs`` package and the
htdemucs weights are already on this machine, and otherwise the chroma is taken from the whole mix, as
transformers' ``MusicgenMelodyFeatureExtractor`` does (``MelodyConditioner.demucs`` says which).

One difference from audiocraft, on purpose: each melody's chroma is computed at its own length. audiocraft pads
a batch's melodies with silence to the longest, so a short melody among long ones is followed by held C's
instead of repeating; here a melody gives what audiocraft gives it alone.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from minicraft import audio
from minicraft.modules.chroma import ChromaConfig, chroma, fit_length

HTDEMUCS_WEIGHTS = "955717e8-8726e21a.th"      # the file demucs's get_model("htdemucs") reads from torch's hub cache
MELODY_STEMS = ("vocals", "other")              # what audiocraft keeps: not drums, not bass


def find_demucs():
    """Demucs's htdemucs if the ``demucs`` package and its weights are on this machine, else None.

    Never downloads: without the weights in ``torch.hub.get_dir()/checkpoints`` this returns None at once.
    """
    try:
        from demucs.pretrained import get_model      # deferred: an optional package, absent on most machines
    except ImportError:
        return None
    if not (Path(torch.hub.get_dir()) / "checkpoints" / HTDEMUCS_WEIGHTS).is_file():
        return None
    return get_model("htdemucs").eval()


def melody_stems(demucs, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """wav [1, C, T] -> [1, 1, T'] at ``sample_rate``: the melody's vocals and other stems, summed, mono."""
    from demucs.apply import apply_model             # deferred: as in find_demucs
    wav = audio.convert(wav, sample_rate, demucs.samplerate, demucs.audio_channels)
    stems = apply_model(demucs, wav, device=wav.device)                     # [1, stems, C, T]
    keep = [demucs.sources.index(name) for name in MELODY_STEMS]
    return audio.convert(stems[:, keep].sum(1), demucs.samplerate, sample_rate, 1)


class MelodyConditioner(nn.Module):
    """Melodies -> prefix [B, frames, dim]: chroma, tiled or cut to ``frames``, projected by ``output_proj``."""

    def __init__(self, dim: int, frames: int = 235, config: ChromaConfig = ChromaConfig()):
        super().__init__()
        self.config = config
        self.frames = frames                          # chroma frames the LM always sees (235 for 30 s)
        self.output_proj = nn.Linear(config.n_chroma, dim)
        self.demucs = None                            # set by the loader: find_demucs(), or None for the mix

    def chroma(self, melodies: list[torch.Tensor | None], sample_rate: int) -> torch.Tensor:
        """Melodies (each [C, T] at ``sample_rate``, or None) -> chroma [B, frames, n_chroma]."""
        rows = []
        # the LM sees `frames` chroma frames: past the samples the last of them reads, a melody changes nothing
        seconds = ((self.frames - 1) * self.config.hop_length + self.config.n_fft // 2) / self.config.sample_rate
        keep = math.ceil((seconds + 0.1) * sample_rate)          # + 0.1 s: the resampler's filter reads ahead
        device = self.output_proj.weight.device        # every row on the model's device, the null one too
        for wav in melodies:
            if wav is None:                           # one silent sample: every frame class 0
                wav, rate = torch.zeros(1, 1, 1, device=device), self.config.sample_rate
            else:
                wav, rate = wav[None, :, :keep].to(device, torch.float32), sample_rate
                if self.demucs is not None:
                    wav, rate = melody_stems(self.demucs, wav, rate), self.config.sample_rate
            rows.append(fit_length(chroma(wav, rate, self.config), self.frames))   # [1, frames, n_chroma]
        return torch.cat(rows)

    @torch.inference_mode()
    def forward(self, melodies: list[torch.Tensor | None], sample_rate: int) -> torch.Tensor:
        """Melodies -> the projected prefix [B, frames, dim] (no padding: every row has ``frames``)."""
        weight = self.output_proj.weight
        return self.output_proj(self.chroma(melodies, sample_rate).to(weight.dtype))
