"""Chroma: which of the 12 pitch classes (C, C#, ..., B) sounds loudest, frame by frame.

musicgen-melody is conditioned on a melody through its chromagram, computed as audiocraft 1.3.0 does it
(``ChromaExtractor`` with the settings of ``ChromaStemConditioner`` in musicgen-melody's config):

1. mix to mono and resample to 32 kHz;
2. power spectrum: Hann windows of 2**14 = 16 384 samples (0.512 s), hop 4 096 (128 ms), each window
   centred on its frame (reflect padding), divided by the window's energy;
3. a filter bank (librosa's ``filters.chroma``, rebuilt here from its definition) sums the power of every
   frequency bin into the pitch classes, each bin spread over its nearest classes by a Gaussian;
4. each frame is divided by its largest class (the inf-norm, floored at 1e-6, so silence stays 0);
5. ``argmax``: each frame keeps only its loudest class, as a one-hot vector. A silent frame is all zeros,
   so its argmax is class 0: silence reads as a held C (and so does the "no melody" input of guidance).

The chroma runs at 32 000 / 4 096 = 7.8125 frames per second, a frame per ``hop`` samples plus one:
``T // 4096 + 1`` (a wave shorter than one window is first zero-padded to 16 384 samples, so 5 frames at
least). The LM does not resample it to its own 50 Hz: the conditioner cuts or tiles it to the length of
30 s of training audio (235 frames, :func:`fit_length`) and prepends it to the sequence.

Left to the caller: audiocraft first removes drums and bass with the Demucs source separator (keeping the
"vocals" and "other" stems) and takes the chroma of what remains.

transformers' ``MusicgenMelodyFeatureExtractor`` computes the same chroma (same STFT, filter bank, norm and
argmax) but cuts the wave to 30 s *before* the STFT, so for a longer melody its last two frames (233, 234)
see reflect padding where audiocraft's see the next samples; it resamples with torchaudio instead of audiocraft's
julius and does not run Demucs itself. Cutting the wave to ``30 * 32000`` samples before :func:`chroma`
reproduces it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from minicraft import audio

A0 = 27.5            # Hz; pitch 0 of the filter bank (librosa's octave 0: A440 / 16)


@dataclass(frozen=True)
class ChromaConfig:
    """musicgen-melody's chroma settings (audiocraft's ``conditioner/chroma2music.yaml``)."""
    sample_rate: int = 32000     # the melody is resampled to the model's rate first
    n_chroma: int = 12           # pitch classes (12 semitones; 24 would be quarter tones)
    radix2_exp: int = 14         # window (and FFT) length 2**radix2_exp samples
    argmax: bool = True          # keep only each frame's loudest class, one-hot
    norm: float = math.inf       # each frame divided by its p-norm over the classes
    duration: float = 30.0       # seconds of audio the LM was trained with: sets the chroma length it sees

    @property
    def n_fft(self) -> int:
        return 2 ** self.radix2_exp                  # 16 384: 2 Hz bins at 32 kHz, fine enough for low notes

    @property
    def hop_length(self) -> int:
        return self.n_fft // 4                       # 4 096: windows overlap by 3/4

    @property
    def frames(self) -> int:
        """Chroma frames the LM sees whatever the melody's length: 235 for 30 s."""
        return num_frames(int(self.sample_rate * self.duration), self)


# ---------------------------------------------------------------- the filter bank

def bin_pitches(sample_rate: int, n_fft: int, n_chroma: int = 12) -> torch.Tensor:
    """Pitch of FFT bins 0 .. n_fft/2 + 1 -> [n_fft // 2 + 2], in chroma steps (semitones) above A0 = 27.5 Hz.

    Bin k is the frequency k · sample_rate / n_fft; its pitch is ``n_chroma · log2(f / 27.5)``, so that
    whole multiples of ``n_chroma`` are A's. The DC bin (0 Hz) has no pitch: it is given one 1.5 octaves
    below bin 1, as librosa does. One bin past Nyquist is included: the last real bin needs it for its width.
    """
    k = torch.arange(1, n_fft // 2 + 2, dtype=torch.float64)
    pitch = n_chroma * torch.log2(k * sample_rate / n_fft / A0)                  # [n_fft // 2 + 1]
    dc = pitch[:1] - 1.5 * n_chroma
    return torch.cat([dc, pitch])                                                # [n_fft // 2 + 2]


def chroma_filterbank(sample_rate: int, n_fft: int, n_chroma: int = 12, center_octave: float = 5.0,
                      octave_width: float = 2.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Weights [n_chroma, n_fft // 2 + 1] that sum a power spectrum into pitch classes, row 0 = C.

    librosa's ``filters.chroma`` (tuning 0, its defaults otherwise), which audiocraft uses:

    - each bin's weight for class c is a Gaussian of the bin's distance to c, taken round the circle of
      classes (B is next to C). Its width is the pitch gap to the next bin (at least one class): high bins,
      closely spaced in pitch, feed mostly their own class, while low bins, a semitone or more apart, spread;
    - each bin's weights are scaled to unit L2 norm over the classes, so every bin counts alike...
    - ...then all are weighted by a Gaussian over octaves, centred ``center_octave`` octaves above A0
      (880 Hz) with ``octave_width`` octaves of spread, so very low and very high bins count little;
    - the rows are rotated so that row 0 is C rather than A (C lies 3 semitones above A).

    Built in float64, returned in ``dtype`` (float32: what audiocraft gets from librosa).
    """
    pitch = bin_pitches(sample_rate, n_fft, n_chroma)                            # [F + 1]
    width = (pitch[1:] - pitch[:-1]).clamp(min=1.0)                              # [F]
    pitch = pitch[:-1]                                                           # [F], F = n_fft // 2 + 1
    classes = torch.arange(n_chroma, dtype=torch.float64)[:, None]               # [n_chroma, 1]
    half = round(n_chroma / 2)
    distance = torch.remainder(pitch - classes + half, n_chroma) - half          # [n_chroma, F] in [-6, 6)
    weights = torch.exp(-0.5 * (2 * distance / width) ** 2)                      # [n_chroma, F]
    weights = weights / weights.norm(dim=0, keepdim=True)                        # unit L2 norm per bin
    octave = torch.exp(-0.5 * ((pitch / n_chroma - center_octave) / octave_width) ** 2)  # [F]
    weights = weights * octave
    weights = torch.roll(weights, -3 * (n_chroma // 12), dims=0)                 # row 0: A -> C
    return weights.to(dtype)


# ---------------------------------------------------------------- the spectrum

def pad_to_window(wav: torch.Tensor, n_fft: int) -> torch.Tensor:
    """[N, T] -> [N, max(T, n_fft)]: zeros on both sides (the odd one at the end) for a wave shorter than a window.

    Centring pads half a window of reflection on each side, which needs more than half a window of signal;
    audiocraft pads short waves (the one-sample null melody of guidance included) to a full window first.
    """
    missing = n_fft - wav.shape[-1]
    if missing <= 0:
        return wav
    return torch.nn.functional.pad(wav, (missing // 2, missing - missing // 2))


def power_spectrogram(wav: torch.Tensor, n_fft: int, hop_length: int) -> torch.Tensor:
    """wav [N, T] (T >= n_fft) -> power [N, n_fft // 2 + 1, T // hop_length + 1].

    A (periodic) Hann window of ``n_fft`` samples slides by ``hop_length``; frame t is centred on sample
    t · hop_length, the ends mirrored (reflect padding) so the first and last frames see a full window.
    |FFT|² is divided by the window's energy Σ w² (torchaudio's ``Spectrogram(normalized=True)``, which
    audiocraft calls), so a sine's peak does not depend on the window length. The scale cancels in the
    normalisation; it only matters against the 1e-6 floor there.
    """
    window = torch.hann_window(n_fft, dtype=wav.dtype, device=wav.device)
    spec = torch.stft(wav, n_fft, hop_length, window=window, center=True, pad_mode="reflect",
                      return_complex=True)                                       # [N, F, frames]
    return spec.abs().pow(2) / window.pow(2).sum()


# ---------------------------------------------------------------- chroma

def normalize_frames(raw: torch.Tensor, p: float = math.inf, eps: float = 1e-6) -> torch.Tensor:
    """raw [..., n_chroma, frames] -> same, each frame divided by its p-norm over the classes (at least eps).

    With p = inf the loudest class becomes 1: the chroma says which notes sound, not how loud. The floor
    keeps silent frames at 0 instead of dividing 0 by 0.
    """
    return raw / raw.norm(p=p, dim=-2, keepdim=True).clamp(min=eps)


def one_hot_argmax(chroma: torch.Tensor) -> torch.Tensor:
    """[..., n_chroma] -> one-hot [..., n_chroma] of the largest class (the first one on ties: 0 in silence).

    musicgen-melody keeps a single pitch class per frame: the melody line, not the harmony.
    """
    index = chroma.argmax(dim=-1)
    return torch.nn.functional.one_hot(index, chroma.shape[-1]).to(chroma.dtype)


def num_frames(num_samples: int, config: ChromaConfig = ChromaConfig()) -> int:
    """Chroma frames of a wave of ``num_samples`` at ``config.sample_rate``: one per hop, plus one."""
    return max(num_samples, config.n_fft) // config.hop_length + 1


def chroma(wav: torch.Tensor, sample_rate: int, config: ChromaConfig = ChromaConfig()) -> torch.Tensor:
    """wav [B, C, T] at ``sample_rate`` -> chroma [B, frames, n_chroma], float32.

    ``frames`` is :func:`num_frames` of the wave's length at ``config.sample_rate``. The channels are
    averaged (audiocraft's conditioning is mono), the wave is resampled, then steps 2-5 of the module's
    description. Without ``config.argmax`` the frames are the normalised chroma (values in [0, 1]).
    """
    wav = audio.convert(wav.float(), sample_rate, config.sample_rate, 1)[:, 0]   # [B, T']
    wav = pad_to_window(wav, config.n_fft)                                       # [B, max(T', n_fft)]
    power = power_spectrogram(wav, config.n_fft, config.hop_length)              # [B, F, frames]
    bank = chroma_filterbank(config.sample_rate, config.n_fft, config.n_chroma).to(wav.device)  # [n_chroma, F]
    raw = bank @ power                                                           # [B, n_chroma, frames]
    out = normalize_frames(raw, config.norm).transpose(1, 2)                     # [B, frames, n_chroma]
    return one_hot_argmax(out) if config.argmax else out


def fit_length(chroma: torch.Tensor, frames: int) -> torch.Tensor:
    """[B, T, n_chroma] -> [B, frames, n_chroma]: cut a longer chroma, tile a shorter one from its start.

    What musicgen-melody's conditioner does at generation: the LM always sees ``ChromaConfig().frames``
    (235) chroma frames, so a short melody loops and a long one is cut.
    """
    repeats = math.ceil(frames / chroma.shape[1])
    return chroma.repeat(1, repeats, 1)[:, :frames]
