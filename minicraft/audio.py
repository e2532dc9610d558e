"""Reading, writing, resampling and normalising audio.

Files go through ``soundfile`` (WAV, FLAC, OGG). Writing is atomic: the audio
goes to a temporary file beside the target, which is renamed over it only
once complete, so a failure never leaves half a file behind.

Normalisation strategies are audiocraft's (``audio_write``): ``peak``
(scale the largest sample to -1 dBFS), ``loudness`` (scale to -14 LUFS,
ITU-R BS.1770), ``rms``, ``clip`` and ``none``.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

from minicraft.files import atomic_write

STRATEGIES = ("peak", "loudness", "rms", "clip", "none")
FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}


# ---------------------------------------------------------------- channels and rate

def convert_channels(wav: torch.Tensor, channels: int) -> torch.Tensor:
    """[..., C, T] -> [..., channels, T]: average to mono, copy mono out, or keep the first."""
    source = wav.shape[-2]
    if source == channels:
        return wav
    if channels == 1:
        return wav.mean(dim=-2, keepdim=True)
    if source == 1:
        return wav.expand(*wav.shape[:-2], channels, wav.shape[-1])
    if source > channels:
        return wav[..., :channels, :]
    raise ValueError(f"cannot make {channels} channels from {source}: the audio is not mono.")


MIN_RATE, MAX_RATE = 1, 1_000_000          # sample rates resample() takes, in Hz
BLOCK = 2**19             # inputs gathered at once for rates with many phases (resample_blocks)
DENSE_TABLE = 2**21       # phase-table entries up to which all phases are one convolution (resample_phases)


def check_rate(rate, what: str = "sample rate") -> int:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or not MIN_RATE <= rate <= MAX_RATE:
        raise ValueError(f"{what} must be a whole number of Hz from {MIN_RATE} to {MAX_RATE:,}, got {rate!r}.")
    return int(rate)


def resample(wav: torch.Tensor, old_rate: int, new_rate: int, zeros: int = 24,
             rolloff: float = 0.945) -> torch.Tensor:
    """Band-limited resampling [..., T] -> [..., T · new/old] with a windowed sinc.

    Output sample n lies at input position t = n · old / new (the rates reduced to lowest terms). It is a
    weighted sum of the inputs within ``zeros`` zero crossings of a sinc cut off just below the lower
    Nyquist frequency, Hann-windowed, the weights normalised to sum to 1; past the ends the first and last
    samples repeat. The weights repeat every ``new`` outputs (one set per *phase*). Where all the phases'
    weights make a small table (every pair of common rates: 44 100 -> 32 000 Hz has 320 phases), one
    strided convolution applies them; otherwise (44 101 -> 16 000 Hz has 16 000 phases, a table of
    gigabytes) each block of outputs gets its own weights, so memory never grows with the rates' factors.
    """
    old_rate = check_rate(old_rate, "the input sample rate")
    new_rate = check_rate(new_rate, "the output sample rate")
    if old_rate == new_rate:
        return wav
    g = math.gcd(old_rate, new_rate)
    old, new = old_rate // g, new_rate // g
    cutoff = min(old, new) * rolloff                     # in units of the reduced rates
    width = math.ceil(zeros * old / cutoff)              # inputs either side of t that can weigh anything
    shape, length = wav.shape, wav.shape[-1]
    x = wav.reshape(-1, length)                          # [N, T]
    out_length = new * length // old
    if new * (2 * width + old) <= DENSE_TABLE:
        out = resample_phases(x, old, new, width, cutoff, zeros)
    else:
        out = resample_blocks(x, old, new, width, cutoff, zeros)
    return out[:, :out_length].reshape(*shape[:-1], out_length)


def sinc_window(t: torch.Tensor, zeros: int) -> torch.Tensor:
    """Hann-windowed sinc at ``t`` zero crossings (clamped to ±``zeros``): the weights before normalising."""
    t = t.clamp(-zeros, zeros) * math.pi
    return torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t) * torch.cos(t / zeros / 2) ** 2


def sinc_weights(t: torch.Tensor, zeros: int) -> torch.Tensor:
    """:func:`sinc_window` normalised along the last axis: each output's weights sum to 1."""
    weights = sinc_window(t, zeros)
    return weights / weights.sum(dim=-1, keepdim=True)


def resample_phases(x: torch.Tensor, old: int, new: int, width: int, cutoff: float, zeros: int) -> torch.Tensor:
    """All ``new`` phases' weights in one table [new, taps]: a convolution strided by ``old``, interleaved."""
    taps = torch.arange(-width, width + old, dtype=torch.float64)
    phases = torch.arange(new, dtype=torch.float64)[:, None] / new
    kernels = sinc_weights((taps[None, :] / old - phases) * cutoff, zeros).to(x.dtype)     # [new, taps]
    padded = F.pad(x[:, None], (width, width + old), mode="replicate")                      # [N, 1, T + ...]
    y = F.conv1d(padded, kernels[:, None, :], stride=old)                                   # [N, new, frames]
    return y.transpose(1, 2).reshape(x.shape[0], -1)                                        # phases interleaved


def resample_blocks(x: torch.Tensor, old: int, new: int, width: int, cutoff: float, zeros: int) -> torch.Tensor:
    """The same sums, a block of outputs at a time, each output with its own weights over 2·width + 2 inputs.

    A very large downsampling (1 MHz -> 1 Hz) spans millions of inputs per output: then the inputs are taken
    a chunk at a time too, the weighted sums and the weights' total accumulated, and divided at the end.
    """
    length, out_length = x.shape[-1], new * x.shape[-1] // old
    taps = 2 * width + 2                                                            # inputs around floor(t)
    chunk = min(taps, BLOCK)
    block = max(1, BLOCK // (chunk * max(1, x.shape[0])))
    out = x.new_empty(x.shape[0], out_length)
    for start in range(0, out_length, block):
        n = torch.arange(start, min(start + block, out_length))                     # [b] output samples
        base = n * old // new                                                       # floor(t), exact
        frac = (n * old - base * new).double() / new                                # t - floor(t), in [0, 1)
        if chunk == taps:                                                           # one chunk: as the table
            offsets = torch.arange(-width, width + 2)
            weights = sinc_weights((offsets[None, :] - frac[:, None]) / old * cutoff, zeros).to(x.dtype)
            inputs = x[:, (base[:, None] + offsets[None, :]).clamp(0, length - 1)]  # [N, b, taps]
            out[:, start:start + len(n)] = torch.einsum("nbk,bk->nb", inputs, weights)
            continue
        total = torch.zeros(x.shape[0], len(n), dtype=torch.float64)
        norm = torch.zeros(len(n), dtype=torch.float64)
        for first in range(-width, width + 2, chunk):
            offsets = torch.arange(first, min(first + chunk, width + 2))
            weights = sinc_window((offsets[None, :] - frac[:, None]) / old * cutoff, zeros)   # [b, chunk]
            inputs = x[:, (base[:, None] + offsets[None, :]).clamp(0, length - 1)]
            total += torch.einsum("nbk,bk->nb", inputs.double(), weights)
            norm += weights.sum(-1)
        out[:, start:start + len(n)] = (total / norm).to(x.dtype)
    return out


def convert(wav: torch.Tensor, from_rate: int, to_rate: int, to_channels: int) -> torch.Tensor:
    """Resample and fix the channel count, as audiocraft's ``convert_audio``."""
    return convert_channels(resample(wav, from_rate, to_rate), to_channels)


# ---------------------------------------------------------------- loudness

def _biquad_response(b, a, n: int) -> torch.Tensor:
    """Frequency response of b/a at the ``n // 2 + 1`` bins of an ``n``-point rFFT."""
    z = torch.exp(-1j * torch.linspace(0, math.pi, n // 2 + 1, dtype=torch.float64))
    return (b[0] + b[1] * z + b[2] * z ** 2) / (a[0] + a[1] * z + a[2] * z ** 2)


def k_weighting(wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """BS.1770's K filter (a +4 dB shelf above ~1.5 kHz, then a 38 Hz high-pass).

    Applied in the frequency domain with one second of zero padding, which the
    filters' short impulse responses need to die out, instead of a per-sample
    recursive loop.
    """
    w = 2 * math.pi * 1500.0 / sample_rate
    A, alpha = 10 ** (4.0 / 40), math.sin(w) / (2 / math.sqrt(2))
    cw, sa = math.cos(w), 2 * math.sqrt(A) * alpha
    shelf_b = (A * ((A + 1) + (A - 1) * cw + sa), -2 * A * ((A - 1) + (A + 1) * cw),
               A * ((A + 1) + (A - 1) * cw - sa))
    shelf_a = ((A + 1) - (A - 1) * cw + sa, 2 * ((A - 1) - (A + 1) * cw), (A + 1) - (A - 1) * cw - sa)
    w = 2 * math.pi * 38.0 / sample_rate
    alpha, cw = math.sin(w) / (2 * 0.5), math.cos(w)
    hp_b = ((1 + cw) / 2, -(1 + cw), (1 + cw) / 2)
    hp_a = (1 + alpha, -2 * cw, 1 - alpha)
    n = wav.shape[-1] + sample_rate
    spectrum = torch.fft.rfft(wav.to(torch.float64), n=n)
    spectrum = spectrum * _biquad_response(shelf_b, shelf_a, n) * _biquad_response(hp_b, hp_a, n)
    return torch.fft.irfft(spectrum, n=n)[..., :wav.shape[-1]]


def loudness(wav: torch.Tensor, sample_rate: int) -> float:
    """Integrated loudness in LUFS of ``wav [C, T]`` (ITU-R BS.1770-4).

    K-weight, take the mean square in 400 ms blocks every 100 ms, drop blocks
    below -70 LUFS, then blocks 10 LU below the mean of the rest.
    """
    weights = torch.tensor([1.0, 1.0, 1.0, 1.41, 1.41][:wav.shape[0]], dtype=torch.float64)
    filtered = k_weighting(wav, sample_rate)
    block, step = round(0.4 * sample_rate), round(0.1 * sample_rate)
    if filtered.shape[-1] < block:
        filtered = F.pad(filtered, (0, block - filtered.shape[-1]))
    power = filtered.unfold(-1, block, step).pow(2).mean(dim=-1)         # [C, blocks]
    block_loudness = -0.691 + 10 * torch.log10((weights[:, None] * power).sum(dim=0))
    gated = block_loudness > -70
    if not gated.any():
        return float("-inf")
    relative = -0.691 + 10 * math.log10(float((weights[:, None] * power[:, gated]).sum(0).mean())) - 10
    gated &= block_loudness > relative
    return -0.691 + 10 * math.log10(float((weights[:, None] * power[:, gated]).sum(0).mean()))


# ---------------------------------------------------------------- normalisation

def normalize(wav: torch.Tensor, strategy: str = "peak", sample_rate: int | None = None,
              peak_clip_headroom_db: float = 1, rms_headroom_db: float = 18,
              loudness_headroom_db: float = 14, loudness_compressor: bool = False) -> torch.Tensor:
    """Scale ``wav [C, T]`` for writing; the result always lies in [-1, 1]."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown normalization strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}.")
    peak_scale = 10 ** (-peak_clip_headroom_db / 20)
    if strategy == "peak":
        peak = wav.abs().max()
        return wav * (peak_scale / peak) if peak > 0 else wav
    if strategy == "clip":
        return wav.clamp(-peak_scale, peak_scale)
    if strategy == "rms":
        rms = wav.mean(dim=0).pow(2).mean().sqrt()
        wav = wav * (10 ** (-rms_headroom_db / 20) / rms) if rms > 0 else wav
    elif strategy == "loudness":
        if wav.pow(2).mean().sqrt() >= 2e-3:        # below this energy floor, leave it alone
            gain = 10 ** ((-loudness_headroom_db - loudness(wav, sample_rate)) / 20)
            wav = gain * wav
            if loudness_compressor:
                wav = torch.tanh(wav)
    return wav.clamp(-1, 1)


# ---------------------------------------------------------------- files

def audio_info(path: str | Path):
    """``soundfile``'s header of an audio file, checked: a file (not a folder), readable, with samples, at a
    rate :func:`resample` takes. Nothing but the header is read."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not an audio file; give a WAV, FLAC or OGG file.")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such audio file.")
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises its own LibsndfileError / RuntimeError
        raise ValueError(f"{path}: cannot read this audio file ({str(e).splitlines()[0]}). Use WAV, FLAC or OGG.") from None
    check_rate(info.samplerate, f"{path}: its sample rate")
    if info.frames <= 0:
        raise ValueError(f"{path} holds no audio (0 samples).")
    return info


def read(path: str | Path, sample_rate: int | None = None, channels: int | None = None,
         last_seconds: float | None = None, first_seconds: float | None = None) -> tuple[torch.Tensor, int]:
    """Audio file -> (wav [C, T] float32, sample rate), optionally only its ``last_seconds`` or its
    ``first_seconds``, converted.

    Only the samples asked for are read, so a long file costs the part used, not its length. A WAV whose
    data stops before its header says (a truncated download) is read as far as it goes, said in one line.
    """
    path = Path(path)
    info = audio_info(path)
    start, stop = 0, None
    if last_seconds is not None:
        start = max(0, info.frames - max(1, math.ceil(last_seconds * info.samplerate)))
    if first_seconds is not None:
        stop = min(info.frames, max(1, math.ceil(first_seconds * info.samplerate)))
    try:
        data, rate = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)   # [T, C]
    except Exception as e:
        raise ValueError(f"{path}: cannot read this audio file ({str(e).splitlines()[0]}). Use WAV, FLAC or OGG.") from None
    if len(data) == 0:
        raise ValueError(f"{path} holds no audio where its header says it does (a damaged file).")
    promised = wav_data_bytes(path)
    if promised is not None and promised > path.stat().st_size:
        print(f"minicraft: {path} is shorter than its header says (a truncated file?); using the "
              f"{(start + len(data)) / rate:.2f} s it holds.", file=sys.stderr)
    wav = torch.from_numpy(np.ascontiguousarray(data.T))
    if sample_rate is not None:
        wav, rate = resample(wav, rate, sample_rate), sample_rate
    if channels is not None:
        wav = convert_channels(wav, channels)
    return wav, rate


def wav_data_bytes(path: Path) -> int | None:
    """Where a RIFF/WAVE file's ``data`` chunk says it ends (bytes from the start), or None if not a WAV."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            while chunk := f.read(8):
                if len(chunk) < 8:
                    return None
                size = int.from_bytes(chunk[4:], "little")
                if chunk[:4] == b"data":
                    return f.tell() + size
                f.seek(size + size % 2, 1)
    except OSError:
        return None
    return None


def write(path: str | Path, wav: torch.Tensor, sample_rate: int, strategy: str = "peak",
          **normalize_kwargs) -> Path:
    """Write ``wav [C, T]`` (or [T]) to ``path`` atomically; the suffix picks the format."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"{path}: unsupported extension; use one of {', '.join(FORMATS)}.")
    wav = wav.detach().float().cpu()
    if wav.dim() == 1:
        wav = wav[None]
    if wav.dim() != 2:
        raise ValueError(f"expected audio shaped [channels, samples], got {tuple(wav.shape)}.")
    if not torch.isfinite(wav).all():
        raise ValueError("the audio contains NaN or infinite values; nothing was written.")
    wav = normalize(wav, strategy, sample_rate, **normalize_kwargs)
    fmt, subtype = FORMATS[path.suffix.lower()]
    with atomic_write(path) as f:
        sf.write(f, wav.T.numpy(), sample_rate, format=fmt, subtype=subtype)
    return path


# ---------------------------------------------------------------- spectrograms

def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> torch.Tensor:
    """[n_mels, n_fft // 2 + 1] triangles, evenly spaced on the mel scale (HTK formula)."""
    fmax = fmax or sample_rate / 2
    to_mel = lambda f: 2595 * math.log10(1 + f / 700)                   # noqa: E731
    mels = torch.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2, dtype=torch.float64)
    hz = 700 * (10 ** (mels / 2595) - 1)                                 # n_mels + 2 edges
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    lower, center, upper = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    rising = (bins - lower) / (center - lower)
    falling = (upper - bins) / (upper - center)
    return torch.clamp(torch.minimum(rising, falling), min=0).float()


def mel_power(wav: torch.Tensor, sample_rate: int, n_fft: int = 1024, hop: int = 256,
              n_mels: int = 64) -> torch.Tensor:
    """mel-band power [..., n_mels, frames] of ``wav [..., T]``."""
    shape = wav.shape
    window = torch.hann_window(n_fft, device=wav.device, dtype=wav.dtype)
    spec = torch.stft(wav.reshape(-1, shape[-1]), n_fft, hop, window=window, return_complex=True)
    power = spec.abs().pow(2)                                            # [N, bins, frames]
    mel = mel_filterbank(sample_rate, n_fft, n_mels).to(wav) @ power
    return mel.reshape(*shape[:-1], n_mels, -1)


def mel_spectrogram(wav: torch.Tensor, sample_rate: int, n_fft: int = 1024, hop: int = 256,
                    n_mels: int = 64) -> torch.Tensor:
    """log-mel power [..., n_mels, frames] of ``wav [..., T]`` (log10, floored at 1e-5)."""
    return torch.log10(mel_power(wav, sample_rate, n_fft, hop, n_mels).clamp(min=1e-5))
