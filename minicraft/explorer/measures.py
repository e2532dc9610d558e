"""Cheap numbers that describe one generated sample, for comparing sampling settings.

Each one answers a question a listener would ask, in milliseconds, with no
trained model except the last:

- ``entropy``: how varied are the codes? (bits; low = few codes, monotone)
- ``repetition``: did the model get stuck repeating itself?
- ``silence``: how much of the clip is (nearly) silent?
- ``loudness``: how loud is it? (LUFS, ITU-R BS.1770)
- ``centroid``: how bright is it? (Hz)
- ``flatness``: tone-like (0) or noise-like (1)?
- ``adherence``: for the tiny model, does the attribute classifier hear the
  instrument or effect the prompt asks for? (1 or 0; averaged in tables)

``MEASURES`` holds the label, unit and explanation the report shows for each.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from minicraft import audio
from minicraft.files import atomic_write, cache_dir
from minicraft.toyworld import evaluate, world


@dataclass(frozen=True)
class Measure:
    label: str
    unit: str
    explanation: str
    bounded: bool = False       # lies in [0, 1]: heat maps use that whole range, so small gaps look small


MEASURES = {
    "entropy": Measure("token entropy", "bits",
                       "Entropy of the codes the clip uses, per codebook, averaged over codebooks. 0 bits = one "
                       "code over and over; the most is log2 of the codebook size or of the number of frames, "
                       "whichever is smaller (every frame a different code). Low values come with monotone or "
                       "stuck audio, high ones with noise."),
    "repetition": Measure("repetition", "share",
                          "Share of 4-code sequences in the first codebook that already occurred earlier in the "
                          "clip: how much the model 'got stuck'. Greedy and low-temperature decoding loop; "
                          "0.9 means nine in ten steps repeat an earlier pattern.", True),
    "silence": Measure("silence", "share",
                       "Share of 20 ms frames quieter than -50 dBFS. A model that gives up produces silence.", True),
    "loudness": Measure("loudness", "LUFS",
                        "Integrated loudness (ITU-R BS.1770), of the raw model output, before any "
                        "normalisation. -70 is the floor (silence); music is mastered near -14."),
    "centroid": Measure("spectral centroid", "Hz",
                        "The spectrum's centre of mass: how bright the clip sounds (bells, hiss and high notes "
                        "raise it; engines and low notes lower it)."),
    "flatness": Measure("spectral flatness", "0-1",
                        "Geometric over arithmetic mean of the power spectrum: near 0 for tones, about 0.5 "
                        "for white noise. High temperatures push clips towards noise.", True),
    "adherence": Measure("prompt adherence", "share",
                         "Tiny model only: 1 if the toy world's attribute classifier hears the instrument or "
                         "effect the prompt names, else 0; tables average it over seeds and prompts. Prompts "
                         "that name no toy-world class (or several) get no score.", True),
}

SILENCE_DB = -50.0
LOUDNESS_FLOOR = -70.0


# ---------------------------------------------------------------- codes

def token_entropy(codes: torch.Tensor) -> float:
    """Codes [K, T] -> mean over codebooks of the entropy (bits) of the codes used."""
    bits = []
    for row in codes.reshape(codes.shape[0], -1):
        counts = torch.bincount(row.long()).double()
        p = counts[counts > 0] / counts.sum()
        bits.append(float(-(p * p.log2()).sum()))
    return sum(bits) / len(bits)


def repetition(codes: torch.Tensor, n: int = 4) -> float:
    """Codes [K, T] -> share of n-grams of the first codebook that repeat an earlier one.

    The first codebook carries the coarse content; the finer ones keep varying
    even when the sound is stuck, so they would hide the loop.
    """
    row = codes[0].tolist()
    grams = [tuple(row[i:i + n]) for i in range(len(row) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


# ---------------------------------------------------------------- audio

def silence_ratio(wav: torch.Tensor, sample_rate: int, threshold_db: float = SILENCE_DB) -> float:
    """Mono ``wav [T]`` -> share of 20 ms frames whose RMS is below ``threshold_db`` dBFS."""
    frame = max(1, int(0.02 * sample_rate))
    wav = wav.double()
    if wav.shape[-1] < frame:
        wav = torch.nn.functional.pad(wav, (0, frame - wav.shape[-1]))
    rms = wav[:wav.shape[-1] // frame * frame].reshape(-1, frame).pow(2).mean(-1).sqrt()
    return float((rms < 10 ** (threshold_db / 20)).double().mean())


def loudness(wav: torch.Tensor, sample_rate: int) -> float:
    """Mono ``wav [T]`` -> LUFS, floored at -70 (BS.1770's gate: anything quieter counts as silence)."""
    return max(audio.loudness(wav.double()[None], sample_rate), LOUDNESS_FLOOR)


def spectral_shape(wav: torch.Tensor, sample_rate: int, n_fft: int = 1024, hop: int = 256
                   ) -> tuple[float | None, float | None]:
    """Mono ``wav [T]`` -> (centroid in Hz, flatness 0-1), frames weighted by their energy.

    Weighting by energy lets quiet frames, whose spectra are mostly rounding
    noise, count for little; a silent clip has neither value (None).
    """
    wav = wav.double()
    if wav.shape[-1] < n_fft:
        wav = torch.nn.functional.pad(wav, (0, n_fft - wav.shape[-1]))
    spec = torch.stft(wav, n_fft, hop, window=torch.hann_window(n_fft, dtype=torch.float64),
                      return_complex=True, center=False)
    power = spec.abs().pow(2)                                               # [bins, frames]
    energy = power.sum(0)
    if float(energy.sum()) <= 1e-12:
        return None, None
    freqs = torch.linspace(0, sample_rate / 2, power.shape[0], dtype=torch.float64)
    weights = energy / energy.sum()
    centroid = (freqs[:, None] * power).sum(0) / energy.clamp_min(1e-30)
    floor = 1e-12
    flatness = (power + floor).log().mean(0).exp() / (power + floor).mean(0)
    return float((weights * centroid).sum()), float((weights * flatness).sum())


def measure(wav: torch.Tensor, codes: torch.Tensor, sample_rate: int) -> dict[str, float | None]:
    """Every measure but adherence, for one sample: mono ``wav [T]`` and its ``codes [K, frames]``."""
    centroid, flatness = spectral_shape(wav, sample_rate)
    return dict(entropy=token_entropy(codes), repetition=repetition(codes),
                silence=silence_ratio(wav, sample_rate), loudness=loudness(wav, sample_rate),
                centroid=centroid, flatness=flatness)


# ---------------------------------------------------------------- adherence (tiny model)

def prompt_class(prompt: str) -> str | None:
    """The toy-world class a prompt asks for, found by the class's name or synonyms.

    None when it names no class, or several (then no single answer is right).
    """
    text = prompt.lower()
    named = {label for label, words in world.SYNONYMS.items()
             if any(re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) for word in words)}
    return named.pop() if len(named) == 1 else None


_classifiers: dict = {}


def fingerprint() -> str:
    """Changes whenever the code that trains the classifier (or renders its data) changes."""
    sources = [Path(m.__file__).read_bytes() for m in (evaluate, world, audio)]
    return hashlib.sha256(b"".join(sources)).hexdigest()[:16]


def classifier_cache() -> Path:
    """Where the classifier is kept for every run on this machine, beside the C kernels."""
    return cache_dir() / f"classifier-{fingerprint()}.pt"


def attribute_classifier(cache: Path | None = None):
    """The toy world's attribute classifier, trained once and kept in ``cache`` on disk (default:
    :func:`classifier_cache`), and in this process.

    Training takes about half a minute on two cores and, its features made a batch of clips at a time,
    well under a gigabyte; every later run on the machine skips it.
    """
    key = fingerprint()
    cache = classifier_cache() if cache is None else cache
    if key not in _classifiers and cache is not None and Path(cache).is_file():
        try:
            saved = torch.load(cache, weights_only=True)
            if saved.get("fingerprint") == key:
                clf = evaluate.AttributeClassifier()
                clf.load_state_dict(saved["state"])
                _classifiers[key] = clf.eval()
        except Exception:                               # unreadable or outdated: a cache never stops a run
            pass
    if key not in _classifiers:
        _classifiers[key] = evaluate.train_classifier()
    try:
        save_classifier(_classifiers[key], Path(cache))
    except OSError:                                     # an unwritable cache costs a retraining next time, no more
        pass
    return _classifiers[key]


def save_classifier(clf, path: Path, key: str | None = None):
    """Write the classifier's weights atomically (unless an up-to-date copy is already there)."""
    key = key or fingerprint()
    if path.is_file():
        try:
            if torch.load(path, weights_only=True).get("fingerprint") == key:
                return
        except Exception:
            pass
    with atomic_write(path) as f:
        torch.save({"fingerprint": key, "state": clf.state_dict()}, f)


def adherence(classifier, wavs: torch.Tensor, prompts: list[str]) -> list[tuple[str | None, float | None]]:
    """``wavs [N, T]`` at 16 kHz -> (class heard, 1.0/0.0 or None) per prompt."""
    heard = classifier.predict(wavs.float())
    out = []
    for prompt, h in zip(prompts, heard):
        target = prompt_class(prompt)
        out.append((h, None if target is None else float(h == target)))
    return out
