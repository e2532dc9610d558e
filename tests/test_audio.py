"""Audio I/O: formats, normalisation, resampling, loudness, atomic writes."""
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from minicraft import audio


def sine(freq, rate, seconds, amplitude=1.0):
    t = torch.arange(int(rate * seconds), dtype=torch.float64) / rate
    return (amplitude * torch.sin(2 * math.pi * freq * t)).float()[None]


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_write_and_read_back(tmp_path, suffix):
    wav = sine(440, 16000, 0.5, 0.5)
    path = audio.write(tmp_path / f"a{suffix}", wav, 16000, strategy="none")
    back, rate = audio.read(path)
    assert rate == 16000 and back.shape == wav.shape
    assert (back - wav).abs().max() < 1e-4                      # 16-bit quantisation
    assert [p.name for p in tmp_path.iterdir()] == [f"a{suffix}"]  # no temporary file left


def test_peak_and_clip_strategies():
    wav = sine(440, 16000, 0.1, 3.0)
    assert audio.normalize(wav, "peak").abs().max() == pytest.approx(10 ** (-1 / 20), rel=1e-5)
    assert audio.normalize(wav, "clip").abs().max() == pytest.approx(10 ** (-1 / 20), rel=1e-5)
    assert audio.normalize(wav, "none").abs().max() == 1.0       # always clamped into [-1, 1]
    with pytest.raises(ValueError, match="unknown normalization strategy 'loud'"):
        audio.normalize(wav, "loud")


def test_loudness_of_a_full_scale_sine():
    # BS.1770: a 0 dBFS 997 Hz sine reads about -3 LUFS (audiocraft's K filter is an approximation).
    assert audio.loudness(sine(997, 48000, 3.0), 48000) == pytest.approx(-3.01, abs=0.1)
    assert audio.loudness(sine(997, 48000, 3.0, 0.1), 48000) == pytest.approx(-23.01, abs=0.1)
    quiet = audio.normalize(sine(997, 32000, 2.0, 0.5), "loudness", 32000)
    assert audio.loudness(quiet, 32000) == pytest.approx(-14.0, abs=0.05)


def test_k_weighting_equals_the_recursive_filter():
    """The FFT shortcut equals filtering sample by sample with the two biquads."""
    rate = 16000
    x = torch.randn(1, 4000, dtype=torch.float64)
    y = audio.k_weighting(x, rate)[0].numpy()
    # Direct-form biquads, the way a textbook writes them.
    def biquad(signal, b, a):
        out, x1, x2, y1, y2 = np.zeros_like(signal), 0.0, 0.0, 0.0, 0.0
        for n, v in enumerate(signal):
            out[n] = (b[0] * v + b[1] * x1 + b[2] * x2 - a[1] * y1 - a[2] * y2) / a[0]
            x2, x1, y2, y1 = x1, v, y1, out[n]
        return out
    w = 2 * math.pi * 1500 / rate
    A, cw = 10 ** (4 / 40), math.cos(w)
    sa = 2 * math.sqrt(A) * math.sin(w) / (2 / math.sqrt(2))
    shelf = ((A * ((A + 1) + (A - 1) * cw + sa), -2 * A * ((A - 1) + (A + 1) * cw), A * ((A + 1) + (A - 1) * cw - sa)),
             ((A + 1) - (A - 1) * cw + sa, 2 * ((A - 1) - (A + 1) * cw), (A + 1) - (A - 1) * cw - sa))
    w = 2 * math.pi * 38 / rate
    alpha, cw = math.sin(w), math.cos(w)
    highpass = (((1 + cw) / 2, -(1 + cw), (1 + cw) / 2), (1 + alpha, -2 * cw, 1 - alpha))
    expected = biquad(biquad(x[0].numpy(), *shelf), *highpass)
    np.testing.assert_allclose(y, expected, atol=1e-6)


@pytest.mark.parametrize("old, new", [(48000, 32000), (16000, 44100), (44100, 16000), (32000, 32000)])
def test_resampling_keeps_a_sine(old, new):
    wav = sine(440, old, 0.5)
    out = audio.resample(wav, old, new)
    assert out.shape[-1] == new * wav.shape[-1] // old
    expected = sine(440, new, out.shape[-1] / new)[..., :out.shape[-1]]
    assert (out - expected)[..., 100:-100].abs().max() < 5e-3


def test_channel_conversion():
    stereo = torch.stack([torch.ones(10), -torch.ones(10)])
    assert audio.convert_channels(stereo, 1).abs().max() == 0
    assert audio.convert_channels(torch.ones(1, 10), 2).shape == (2, 10)
    with pytest.raises(ValueError, match="not mono"):
        audio.convert_channels(torch.ones(2, 10), 3)


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "out.wav"
    target.write_bytes(b"old")

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(sf, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        audio.write(target, sine(440, 16000, 0.1), 16000)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]


def test_bad_audio_inputs(tmp_path):
    with pytest.raises(ValueError, match="NaN or infinite"):
        audio.write(tmp_path / "x.wav", torch.tensor([[0.0, float("nan")]]), 16000)
    with pytest.raises(ValueError, match="unsupported extension"):
        audio.write(tmp_path / "x.mp4", torch.zeros(1, 10), 16000)
    with pytest.raises(FileNotFoundError, match="no such audio file"):
        audio.read(tmp_path / "missing.wav")
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    with pytest.raises(ValueError, match="cannot read this audio file"):
        audio.read(tmp_path / "bad.wav")
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.parametrize("old, new", [(44100, 16000), (48000, 32000), (16000, 44100), (8000, 11025)])
def test_the_phase_table_and_the_blocks_compute_the_same(old, new):
    """Common rates take one convolution over a table of all phases; rates with many phases take blocks of
    outputs, each with its own weights. On the same rates the two agree to float32 rounding."""
    wav = torch.randn(2, old // 3, generator=torch.Generator().manual_seed(old))
    g = math.gcd(old, new)
    o, n = old // g, new // g
    cutoff = min(o, n) * 0.945
    width = math.ceil(24 * o / cutoff)
    table = audio.resample_phases(wav, o, n, width, cutoff, 24)[:, :n * wav.shape[-1] // o]
    blocks = audio.resample_blocks(wav, o, n, width, cutoff, 24)
    torch.testing.assert_close(blocks, table, rtol=0, atol=1e-6)


def test_rates_with_many_phases_resample_in_bounded_memory():
    """44 101 -> 16 000 Hz has 16 000 phases: a table of them would be 5.7 GB; the blocks gather 2^19 inputs."""
    wav = torch.sin(torch.arange(44101) / 44101 * 2 * math.pi * 440)[None]
    out = audio.resample(wav, 44101, 16000)
    assert out.shape == (1, 16000)
    expected = torch.sin(torch.arange(16000) / 16000 * 2 * math.pi * 440)[None]
    assert (out - expected)[..., 100:-100].abs().max() < 5e-3
    with pytest.raises(ValueError, match="from 1 to 1,000,000"):
        audio.resample(wav, 2_000_000_000, 16000)


def test_a_huge_downsampling_takes_its_inputs_a_chunk_at_a_time(monkeypatch):
    """1 MHz -> 1 Hz: each output weighs some fifty million inputs, gathered 2^19 at a time."""
    gathered, einsum = [], torch.einsum
    monkeypatch.setattr(torch, "einsum", lambda eq, a, b: gathered.append(a.numel()) or einsum(eq, a, b))
    out = audio.resample(torch.full((1, 1_000_000), 0.25), 1_000_000, 1)
    assert out.shape == (1, 1)
    torch.testing.assert_close(out, torch.full_like(out, 0.25), rtol=0, atol=1e-6)
    assert max(gathered) <= audio.BLOCK
