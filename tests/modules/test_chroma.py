"""Chroma as musicgen-melody's conditioner computes it: the filter bank, the spectrum, pitches, lengths, references.

References that run with what minicraft's tests install: transformers' ``chroma_filter_bank`` (a port of
librosa's ``filters.chroma``, which audiocraft calls) and the chroma steps of transformers'
``MusicgenMelodyFeatureExtractor``. Its STFT comes from torchaudio, which is not installed, so the STFT is
checked against the DFT written out in numpy instead; the full extractor and librosa itself are compared
only where they are installed.
"""
import math

import numpy as np
import pytest
import torch

from minicraft import audio
from minicraft.modules.chroma import (ChromaConfig, bin_pitches, chroma, chroma_filterbank, fit_length,
                                      num_frames, pad_to_window, power_spectrogram)

SR = 32000
CFG = ChromaConfig()
SOFT = ChromaConfig(argmax=False)
C4 = 261.6255653005986            # Hz, MIDI 60


def hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def tone(freqs, seconds: float, sample_rate: int = SR, amplitude: float = 0.3) -> torch.Tensor:
    """A sum of sines, [T]."""
    t = torch.arange(int(seconds * sample_rate), dtype=torch.float64) / sample_rate
    return sum(amplitude * torch.sin(2 * math.pi * f * t) for f in freqs).float()


def hf_bank(sample_rate: int, n_fft: int) -> torch.Tensor:
    from transformers.audio_utils import chroma_filter_bank
    return torch.from_numpy(chroma_filter_bank(num_frequency_bins=n_fft, num_chroma=12, sampling_rate=sample_rate,
                                               tuning=0))


# ---------------------------------------------------------------- the filter bank

def test_config_defaults_are_musicgen_melody():
    assert (CFG.sample_rate, CFG.n_chroma, CFG.n_fft, CFG.hop_length, CFG.argmax, CFG.norm) == \
        (32000, 12, 16384, 4096, True, math.inf)
    from transformers import MusicgenMelodyConfig
    assert CFG.frames == MusicgenMelodyConfig().chroma_length == 235        # 30 s of 32 kHz audio


@pytest.mark.parametrize("sample_rate, n_fft", [(32000, 16384), (32000, 4096), (44100, 4096), (16000, 2048)])
def test_filterbank_matches_transformers(sample_rate, n_fft):
    # Both built in float64. transformers (like librosa) adds 10 * n_chroma = 120 before the remainder that
    # wraps a bin's distance round the 12 classes, which rounds that distance to the float64 spacing near 126
    # (1.4e-14); we do not. Measured: at most 2.2e-14 on weights up to 0.98, so 1e-13 leaves ~5x room.
    ours = chroma_filterbank(sample_rate, n_fft, dtype=torch.float64)
    assert ours.shape == (12, n_fft // 2 + 1)
    torch.testing.assert_close(ours, hf_bank(sample_rate, n_fft), rtol=0, atol=1e-13)


def test_filterbank_float32_is_what_audiocraft_uses():
    # audiocraft's bank is librosa's float32 cast of the float64 weights; the differences above are
    # ~3000 times smaller than float32's spacing, and for musicgen-melody's bank no weight rounds differently.
    assert torch.equal(chroma_filterbank(SR, 16384), hf_bank(SR, 16384).float())


def test_filterbank_from_its_definition():
    bank = chroma_filterbank(SR, 16384, dtype=torch.float64)                    # [12, 8193]
    pitch = bin_pitches(SR, 16384)[:-1]                                         # semitones above A0 (27.5 Hz)
    assert pitch[1:].tolist() == pytest.approx((12 * np.log2(np.arange(1, 8193) * SR / 16384 / 27.5)).tolist())
    assert pitch[0].item() == pytest.approx(pitch[1].item() - 18)               # DC: 1.5 octaves below bin 1
    # Each bin (from 100 Hz to 4 kHz, not within 0.1 semitone of the middle between two classes) feeds
    # the pitch class nearest its frequency most; row 0 is C.
    freq = torch.arange(8193) * SR / 16384
    semis = 12 * torch.log2(freq[1:] / C4)
    nearest = torch.round(semis).remainder(12)
    clear = ((semis - torch.round(semis)).abs() < 0.4) & (freq[1:] > 100) & (freq[1:] < 4000)
    assert clear.sum() > 1500
    assert torch.equal(bank[:, 1:].argmax(0)[clear], nearest[clear].long())
    # Before the octave weighting every bin has unit L2 norm: dividing it out gives 1.
    octave = torch.exp(-0.5 * ((pitch / 12 - 5) / 2) ** 2)
    torch.testing.assert_close((bank / octave).norm(dim=0), torch.ones(8193, dtype=torch.float64),
                               rtol=1e-12, atol=0)


def test_filterbank_matches_librosa_if_installed():
    librosa = pytest.importorskip("librosa")
    expected = librosa.filters.chroma(sr=SR, n_fft=16384, tuning=0, n_chroma=12)   # audiocraft's exact call
    assert torch.equal(chroma_filterbank(SR, 16384), torch.from_numpy(expected))


# ---------------------------------------------------------------- the spectrum

def dft_power(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """The definition, in float64 numpy: mirror n_fft/2 samples at each end, periodic Hann frames, |DFT|² / Σw²."""
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
    padded = np.pad(x, n_fft // 2, mode="reflect")
    frames = np.stack([padded[t * hop: t * hop + n_fft] for t in range(len(x) // hop + 1)])
    spectrum = np.fft.rfft(frames * window, axis=-1).T                       # [n_fft // 2 + 1, frames]
    return np.abs(spectrum) ** 2 / np.sum(window ** 2)


@pytest.mark.parametrize("n_fft, hop, length", [(64, 16, 203), (256, 64, 256), (512, 128, 1000),
                                                (16384, 4096, 20000)])
def test_power_spectrogram_is_the_dft(n_fft, hop, length):
    x = torch.randn(length, generator=torch.Generator().manual_seed(n_fft))
    ours = power_spectrogram(x[None], n_fft, hop)[0]
    expected = torch.from_numpy(dft_power(x.double().numpy(), n_fft, hop)).float()
    assert ours.shape == expected.shape == (n_fft // 2 + 1, length // hop + 1)
    # float32 FFT against numpy's float64 one: measured at most 3.1e-7 of the largest power; 1e-5 leaves
    # room for other FFT back-ends. A wrong convention (window, centring, mirroring, scale) errs by O(1).
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5 * expected.max().item())


def test_short_waves_are_zero_padded_to_a_window():
    x = torch.arange(1, 6, dtype=torch.float32)[None]                           # [1, 5]
    assert pad_to_window(x, 8).tolist() == [[0, 1, 2, 3, 4, 5, 0, 0]]          # the odd zero goes at the end
    assert pad_to_window(x, 4) is x


# ---------------------------------------------------------------- pitches

def test_every_note_from_c2_to_c7_gives_its_pitch_class():
    notes = list(range(36, 97))                                                 # MIDI: C2 .. C7
    wav = torch.stack([tone([hz(m)], 1.0) for m in notes])[:, None]              # [61, 1, 32000]
    soft = chroma(wav, SR, SOFT)                                                # [61, 8, 12]
    hard = chroma(wav, SR)
    classes = torch.tensor(notes) % 12                                          # C = 0 ... A = 9, B = 11
    assert hard.shape == (61, 8, 12)
    assert torch.equal(hard.argmax(-1), classes[:, None].expand(61, 8))         # every frame, edges included
    assert torch.equal(hard.sum(-1), torch.ones(61, 8))                         # one-hot
    assert torch.equal(soft.argmax(-1), hard.argmax(-1))
    assert torch.equal(soft.amax(-1), torch.ones(61, 8))                        # inf-norm: loudest class is 1


def test_a_chord_lights_its_three_classes():
    wav = torch.stack([tone([hz(60), hz(64), hz(67)], 2.0),                     # C major: C E G
                       tone([hz(57), hz(60), hz(64)], 2.0)])[:, None]           # A minor: A C E
    soft = chroma(wav, SR, SOFT)                                                # [2, 16, 12]
    top3 = soft.topk(3, dim=-1).indices.sort(-1).values
    assert torch.equal(top3[0], torch.tensor([0, 4, 7]).expand(16, 3))
    assert torch.equal(top3[1], torch.tensor([0, 4, 9]).expand(16, 3))
    # The bank spreads a note over its neighbours (a Gaussian of half a semitone: exp(-2) ~ 0.14 a semitone
    # away), and a class between two notes of the chord collects from both: measured, the chord's notes
    # are >= 0.69 and every other class <= 0.26.
    assert soft.topk(3, dim=-1).values.amin() > 0.6
    others = soft.clone()
    others.scatter_(-1, soft.topk(3, dim=-1).indices, 0)
    assert others.amax() < 0.3
    hard = chroma(wav, SR).argmax(-1)
    assert torch.isin(hard[0], torch.tensor([0, 4, 7])).all() and torch.isin(hard[1], torch.tensor([0, 4, 9])).all()


def test_silence_is_zero_and_its_argmax_is_c():
    wav = torch.zeros(2, 1, 3 * SR)
    assert torch.equal(chroma(wav, SR, SOFT), torch.zeros(2, 24, 12))           # 0 / max(0, 1e-6) = 0
    c = torch.zeros(12)
    c[0] = 1
    assert torch.equal(chroma(wav, SR), c.expand(2, 24, 12))
    # The one-sample null melody of classifier-free guidance: 5 frames of C, looped to the 235 the LM sees.
    null = chroma(torch.zeros(3, 1, 1), SR)
    assert torch.equal(null, c.expand(3, 5, 12))
    assert torch.equal(fit_length(null, CFG.frames), c.expand(3, 235, 12))


@pytest.mark.parametrize("rate", [44100, 16000])
def test_other_sample_rates_are_resampled_first(rate):
    wav = tone([hz(69)], 1.5, sample_rate=rate)[None, None]                     # A4 = 440 Hz
    out = chroma(wav, rate)
    resampled = audio.resample(wav, rate, SR)
    assert out.shape == (1, num_frames(resampled.shape[-1]), 12) == (1, 12, 12)
    assert torch.equal(out, chroma(resampled, SR))
    assert (out.argmax(-1) == 9).all()


def test_channels_are_averaged():
    g = torch.Generator().manual_seed(0)
    stereo = torch.randn(2, 2, 40000, generator=g)
    torch.testing.assert_close(chroma(stereo, SR, SOFT), chroma(stereo.mean(1, keepdim=True), SR, SOFT),
                               rtol=0, atol=0)
    five = torch.randn(1, 5, 40000, generator=g)
    assert torch.equal(chroma(five, SR), chroma(five.mean(1, keepdim=True), SR))


# ---------------------------------------------------------------- lengths

@pytest.mark.parametrize("length, frames", [(1, 5), (100, 5), (4095, 5), (16383, 5), (16384, 5), (16385, 5),
                                            (20479, 5), (20480, 6), (20481, 6), (2 * SR + 17, 16),
                                            (30 * SR, 235)])
def test_frames_per_length(length, frames):
    # One frame per 4096-sample hop, plus one (frames are centred: the first on sample 0, the last on the
    # last whole hop); waves shorter than a 16384-sample window count as a full window.
    assert num_frames(length) == frames
    if length < 5 * SR:
        wav = torch.randn(2, 1, length, generator=torch.Generator().manual_seed(length))
        assert chroma(wav, SR).shape == (2, frames, 12)


def test_fit_length_cuts_or_tiles():
    x = torch.arange(79 * 12, dtype=torch.float32).reshape(1, 79, 12)           # 10 s of melody: 79 frames
    tiled = fit_length(x, 235)
    assert tiled.shape == (1, 235, 12)
    assert torch.equal(tiled[:, :79], x) and torch.equal(tiled[:, 79:158], x) and torch.equal(tiled[:, 158:], x[:, :77])
    long = torch.randn(2, 300, 12)
    assert torch.equal(fit_length(long, 235), long[:, :235])


# ---------------------------------------------------------------- transformers' feature extractor

def mixed_batch() -> torch.Tensor:
    """Two 6.3 s waves: a melody of seven notes with a little noise, and noise alone. [2, 1, T]"""
    g = torch.Generator().manual_seed(0)
    melody = torch.cat([tone([hz(m)], 0.9) for m in (57, 62, 67, 72, 77, 82, 87)])
    noise = torch.randn(2, melody.shape[0], generator=g)
    return torch.stack([melody + 0.01 * noise[0], noise[1]])[:, None]


def test_matches_transformers_chroma_steps():
    """transformers' own code for the steps after the STFT: short-wave padding, the bank, the norm, argmax.

    Its STFT (torchaudio's) is swapped for ours, checked against the DFT above; the comparison is exact
    because one-hot frames only change if two classes lie within float32 rounding of each other.
    """
    from types import SimpleNamespace
    from transformers.models.musicgen_melody.feature_extraction_musicgen_melody import \
        MusicgenMelodyFeatureExtractor
    stand_in = SimpleNamespace(n_fft=16384, chroma_filters=hf_bank(SR, 16384).float(),
                               spectrogram=lambda w: power_spectrogram(w, 16384, 4096))
    for wav in (mixed_batch(), mixed_batch()[..., :5000], torch.zeros(2, 1, 1)):
        expected = MusicgenMelodyFeatureExtractor._torch_extract_fbank_features(stand_in, wav[:, 0])
        assert torch.equal(chroma(wav, SR), expected)


def test_matches_transformers_feature_extractor_if_torchaudio_installed():
    pytest.importorskip("torchaudio")
    from transformers import MusicgenMelodyFeatureExtractor
    extractor = MusicgenMelodyFeatureExtractor()
    wav = mixed_batch()
    expected = extractor(list(wav[:, 0].numpy()), sampling_rate=SR, return_tensors="pt")["input_features"]
    assert torch.equal(chroma(wav, SR), expected)
    # Past 30 s transformers cuts the wave before the STFT: cutting it first matches it.
    long = torch.randn(1, 1, 31 * SR, generator=torch.Generator().manual_seed(1))
    expected = extractor(list(long[:, 0].numpy()), sampling_rate=SR, return_tensors="pt")["input_features"]
    assert torch.equal(chroma(long[..., :30 * SR], SR), expected)
