"""Does the tiny model obey its prompt? Objective checks on the toy world.

1. An **attribute classifier** (a small MLP on log-mel statistics) learns the
   13 instrument/effect classes from real toy-world clips. Its accuracy on
   held-out real clips is the ceiling for everything else. It trains on
   generically degraded copies too (noise, saturation, EQ, gain), so that it
   judges *what* is playing rather than how cleanly it was rendered; its
   accuracy on unseen degradations is reported next to the clean figure.
2. **Codec report**: held-out clips through EnCodec with 1..K codebooks —
   mel distance to the original (should fall with every codebook), SI-SNR
   (meaningless for a codec trained without adversarial losses: it gets the
   spectrum, not the phase), and the classifier's accuracy on the
   reconstructions.
3. **Generation report**: clips generated from held-out captions; the share
   whose class the classifier recognises, with and without classifier-free
   guidance.
4. **Long generation**: 6-second generations (the sliding window past the
   LM's 2-second window), classified window by window: is the prompt's class
   still heard in every 2 seconds, and is it the class of the first window?
5. **Continuation**: a real held-out scene's second second as the prompt, 3
   seconds continued: does the continuation keep the prompt's class? Both 4
   and 5 are also taken on the real sounds through the codec (``codec_ceiling``):
   what an LM that continued every sound exactly as it goes on would score.
6. **Caption information**: on real held-out clips, how many nats per code the
   caption saves the LM, frame by frame. Guidance amplifies exactly this
   difference between the LM with and without text; where it is ~0 (the audio
   heard so far already says what is playing) guidance only amplifies noise.

Each tiny model is judged on its own classes: MusicGen on the instruments,
AudioGen on the effects.

    python -m minicraft.toyworld.evaluate --model tiny
    python -m minicraft.toyworld.evaluate --model audiogen-tiny
"""
from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from minicraft.api import AudioGen, resolve
from minicraft.audio import mel_spectrogram
from minicraft.models.conditioning import text_mask
from minicraft.toyworld import world


FEATURE_BATCH = 128     # clips per spectrogram: the memory features() needs is set by this, not by N


def features(audio: torch.Tensor) -> torch.Tensor:
    """[N, samples] -> [N, 192]: per mel band, the mean, spread and change over time of log-power."""
    out = []
    for start in range(0, audio.shape[0], FEATURE_BATCH):
        mel = mel_spectrogram(audio[start:start + FEATURE_BATCH], world.SAMPLE_RATE, 1024, 256, 64)  # [n, 64, frames]
        change = (mel[..., 1:] - mel[..., :-1]).abs().mean(-1)
        out.append(torch.cat([mel.mean(-1), mel.std(-1), change], dim=1))
    return torch.cat(out) if out else audio.new_zeros(0, 192)


class AttributeClassifier(nn.Module):
    """``names``: the classes it tells apart, the toy world's (or those and a fine-tune's new sound)."""

    def __init__(self, n_features: int = 192, names: list[str] = world.CLASSES):
        super().__init__()
        self.names = list(names)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.net = nn.Sequential(nn.Linear(n_features, 128), nn.ReLU(), nn.Linear(128, len(self.names)))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.net((features(audio) - self.mean) / self.std)

    @torch.no_grad()
    def predict(self, audio: torch.Tensor) -> list[str]:
        return [self.names[i] for i in self(audio).argmax(-1).tolist()]


def labelled_audio(n: int, seed: int, held_out: bool = False):
    clips = world.sample_clips(n, seed=seed, held_out=held_out)
    audio = torch.from_numpy(world.render_batch(clips))
    labels = torch.tensor([world.CLASSES.index(c.label) for c in clips])
    return clips, audio, labels


def brown(noise: torch.Tensor) -> torch.Tensor:
    """White noise [N, T] -> brown (integrated: its power falls 6 dB per octave), centred."""
    noise = noise.cumsum(-1)
    return noise - noise.mean(-1, keepdim=True)


def with_noise(audio: torch.Tensor, noise: torch.Tensor, snr_db) -> torch.Tensor:
    """audio [N, T] plus ``noise`` scaled to ``snr_db`` (a number or [N, 1]) below each row's power."""
    scale = (audio.pow(2).mean(-1, keepdim=True) / noise.pow(2).mean(-1, keepdim=True)).sqrt()
    return audio + noise * scale * 10 ** (-snr_db / 20)


def degrade(audio: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """[N, T] -> [N, T] with one generic degradation at a random strength per row.

    None of these change what a listener would call the sound; a classifier
    trained only on clean renders fails on all of them (white noise at 30 dB
    SNR drops it from 100 % to ~40 %)."""
    n = audio.shape[0]
    uniform = lambda lo, hi: torch.empty(n, 1).uniform_(lo, hi, generator=generator)   # noqa: E731
    if kind == "noise":                                  # white or brown noise at 20..60 dB SNR
        noise = torch.randn(audio.shape, generator=generator)
        if torch.rand((), generator=generator) < 0.5:
            noise = brown(noise)
        return with_noise(audio, noise, uniform(20, 60))
    if kind == "saturation":                             # tanh soft clipping, drive 1..6
        drive, peak = uniform(1, 6), audio.abs().amax(-1, keepdim=True) + 1e-8
        return torch.tanh(drive * audio / peak) * peak / torch.tanh(drive)
    if kind == "eq":                                     # a spectral tilt and one bump or notch
        spectrum = torch.fft.rfft(audio)
        f = torch.linspace(0, 1, spectrum.shape[-1])
        db = uniform(-12, 12) * (f - 0.2) + uniform(-9, 9) * torch.exp(-((f - uniform(0.05, 0.6)) / 0.08) ** 2)
        return torch.fft.irfft(spectrum * 10 ** (db / 20), n=audio.shape[-1])
    if kind == "gain":
        return audio * 10 ** (uniform(-12, 6) / 20)
    raise ValueError(f"unknown degradation {kind!r}")


def augment(audio: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each row gets each degradation with some probability, in a fixed order."""
    for kind, probability in (("eq", 0.5), ("saturation", 0.3), ("noise", 0.6), ("gain", 0.5)):
        rows = torch.rand(audio.shape[0], generator=generator) < probability
        if rows.any():
            audio = audio.clone()
            audio[rows] = degrade(audio[rows], kind, generator)
    return audio


def unseen_degradations(audio: torch.Tensor, seed: int = 1) -> dict[str, torch.Tensor]:
    """Fixed test conditions, partly outside the training ranges (a 4 kHz low-pass is never trained on)."""
    g = torch.Generator().manual_seed(seed)
    white = [torch.randn(audio.shape, generator=g) for _ in range(3)]      # one draw per noisy condition
    peak = audio.abs().amax(-1, keepdim=True) + 1e-8
    spectrum = torch.fft.rfft(audio)
    lowpass = torch.fft.irfft(spectrum * (torch.linspace(0, 1, spectrum.shape[-1]) < 0.5), n=audio.shape[-1])
    return {"white noise 30 dB": with_noise(audio, white[0], 30), "white noise 20 dB": with_noise(audio, white[1], 20),
            "brown noise 30 dB": with_noise(audio, brown(white[2]), 30),
            "soft clipping": torch.tanh(3 * audio / peak) * peak,
            "low-pass 4 kHz": lowpass, "gain -20 dB": audio * 0.1}


def train_classifier(n: int = 1500, seed: int = 100, epochs: int = 300, degraded_copies: int = 3,
                     extra: dict[str, torch.Tensor] | None = None) -> AttributeClassifier:
    """Clean clips plus ``degraded_copies`` augmented copies of each (0 = the clean-only classifier).

    ``extra``: {a new class: its clips [n, samples]}, told apart from the toy world's classes too."""
    torch.manual_seed(seed)
    _, audio, labels = labelled_audio(n, seed)
    names = list(world.CLASSES)
    for name, clips in (extra or {}).items():
        audio = torch.cat([audio, clips])
        labels = torch.cat([labels, torch.full((len(clips),), len(names))])
        names.append(name)
    generator = torch.Generator().manual_seed(seed)
    # one augmented copy at a time, down to its features: never all the copies' audio at once
    x = torch.cat([features(audio)] + [features(augment(audio, generator)) for _ in range(degraded_copies)])
    labels = labels.repeat(degraded_copies + 1)
    clf = AttributeClassifier(names=names)
    clf.mean, clf.std = x.mean(0), x.std(0) + 1e-5
    x = (x - clf.mean) / clf.std
    optimizer = torch.optim.Adam(clf.net.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in range(epochs):
        loss = F.cross_entropy(clf.net(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return clf.eval()


def class_names(labels: list[str] | torch.Tensor) -> list[str]:
    return [world.CLASSES[i] for i in labels.tolist()] if isinstance(labels, torch.Tensor) else list(labels)


def accuracy(clf: AttributeClassifier, audio: torch.Tensor, labels: list[str] | torch.Tensor) -> float:
    return float(np.mean([p == y for p, y in zip(clf.predict(audio), class_names(labels))]))


def heard_as(predictions: list[str], labels: list[str] | torch.Tensor) -> dict[str, Counter]:
    """{true class: Counter of the classes heard}, in toy-world order (a new class last): the confusion matrix,
    row by row."""
    rows = {}
    for p, y in zip(predictions, class_names(labels)):
        rows.setdefault(y, Counter())[p] += 1
    order = world.CLASSES + sorted(set(rows) - set(world.CLASSES))
    return {name: rows[name] for name in order if name in rows}


def recognised_by_class(predictions: list[str], labels: list[str] | torch.Tensor) -> dict[str, tuple[int, int]]:
    """{class: (recognised, clips)}: the average hides which sounds are lost, this shows them."""
    return {name: (row[name], sum(row.values())) for name, row in heard_as(predictions, labels).items()}


def by_class_line(counts: dict[str, tuple[int, int]]) -> str:
    return ", ".join(f"{name} {hit}/{total}" for name, (hit, total) in counts.items())


def misheard_as(predictions: list[str], labels: list[str] | torch.Tensor) -> dict[str, dict[str, int]]:
    """{true class: {heard class: clips}} for the misses, most frequent first: a lost sound's neighbour, or noise."""
    misses = {name: {heard: n for heard, n in row.most_common() if heard != name}
              for name, row in heard_as(predictions, labels).items()}
    return {name: heard for name, heard in misses.items() if heard}


def misheard_line(confusions: dict[str, dict[str, int]]) -> str:
    return "; ".join(f"{name} as " + ", ".join(f"{heard} {n}" for heard, n in counts.items())
                     for name, counts in confusions.items())


def si_snr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Scale-invariant signal-to-noise ratio in dB, per row of [N, T]."""
    target = target - target.mean(-1, keepdim=True)
    estimate = estimate - estimate.mean(-1, keepdim=True)
    projection = (estimate * target).sum(-1, keepdim=True) / (target.pow(2).sum(-1, keepdim=True) + 1e-8) * target
    noise = estimate - projection
    return 10 * torch.log10(projection.pow(2).sum(-1) / (noise.pow(2).sum(-1) + 1e-8) + 1e-8)


def mel_distance(estimate: torch.Tensor, target: torch.Tensor, top_db: float | None = None) -> float:
    """Mean absolute difference of log10-mel spectrograms.

    With ``top_db``, both are floored ``top_db`` under the original's loudest bin, clip by clip (librosa's
    ``power_to_db`` does the same with 80). Toy-world clips are digitally silent in half their bins, about
    130 dB under their peak; without a floor, an inaudible error down there counts as much as an audible one.
    """
    sr = world.SAMPLE_RATE
    est, tgt = mel_spectrogram(estimate, sr), mel_spectrogram(target, sr)           # [N, 64, frames], log10
    if top_db is not None:
        floor = tgt.amax(dim=(-2, -1), keepdim=True) - top_db / 10
        est, tgt = est.maximum(floor), tgt.maximum(floor)
    return float((est - tgt).abs().mean())


def reconstruction_measures(recon: torch.Tensor, audio: torch.Tensor, clf: AttributeClassifier, labels) -> dict:
    """How close a reconstruction [N, T] is to the original [N, T], and whether the classifier still hears it."""
    return dict(mel_distance=mel_distance(recon, audio), mel_distance_80db=mel_distance(recon, audio, top_db=80),
                si_snr=float(si_snr(recon, audio).mean()), accuracy=accuracy(clf, recon, labels))


@torch.no_grad()
def round_trip(codec, audio: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """[N, 1, samples] -> the codec's decoding of its own codes for them, [N, samples], a few at a time."""
    return torch.cat([codec.decode(codec.encode(audio[i:i + batch]))[:, 0, :audio.shape[-1]]
                      for i in range(0, len(audio), batch)])


@torch.no_grad()
def codec_report(codec, clf: AttributeClassifier, audio: torch.Tensor, labels) -> list[dict]:
    codes = codec.encode(audio[:, None])                                  # [N, K, frames]
    rows = []
    for k in range(1, codes.shape[1] + 1):
        recon = codec.decode(codes[:, :k])[:, 0, :audio.shape[-1]]
        rows.append(dict(codebooks=k, **reconstruction_measures(recon, audio, clf, labels)))
    return rows


@torch.no_grad()
def unquantized_report(codec, clf: AttributeClassifier, audio: torch.Tensor, labels) -> dict:
    """The codec's encoder straight into its decoder, no quantizer: what the autoencoder alone keeps.

    If this scores no better than all codebooks, more or bigger codebooks cannot help; the encoder and
    decoder are what lose the sound."""
    recon = codec.decoder(codec.encoder(audio[:, None]))[:, 0, :audio.shape[-1]]
    return reconstruction_measures(recon, audio, clf, labels)


@torch.no_grad()
def level_by_class(codec, audio: torch.Tensor, labels) -> dict[str, float]:
    """Reconstruction energy over original energy (dB, all codebooks) for each class.

    Mel distance averages over everything; this shows *which* sounds a codec
    drops. A codec trained with an absolute log floor gave flutes, sirens and
    bells back at -20 dB or lower: silence was its cheapest answer to a tone.
    """
    recon = round_trip(codec, audio[:, None])
    names = class_names(labels)
    levels = {}
    for name in world.CLASSES:
        rows = [i for i, n in enumerate(names) if n == name]
        if rows:
            levels[name] = float(10 * torch.log10(recon[rows].pow(2).mean() / audio[rows].pow(2).mean()))
    return levels


@dataclass
class GenerationResult:
    cfg_coef: float
    recognised: float
    by_class: dict[str, tuple[int, int]]
    misheard: dict[str, dict[str, int]]


@torch.no_grad()
def generation_report(model, clf: AttributeClassifier, clips: list, cfg_coefs=(1.0, 3.0), seed: int = 0,
                      batch: int = 16, **sampling) -> list[GenerationResult]:
    """Generate one clip per caption and classify it; ``sampling`` (temperature, top_k...) overrides the model's
    defaults (its recommended ones, else temperature 1 and top-k 250), the same for every guidance strength."""
    labels = [c.label for c in clips]
    results = []
    for coef in cfg_coefs:
        model.set_generation_params(duration=world.DURATION, cfg_coef=coef, **sampling)
        torch.manual_seed(seed)
        predictions = []
        for i in range(0, len(clips), batch):
            wav = model.generate([c.caption for c in clips[i:i + batch]])[:, 0]
            predictions += clf.predict(wav[..., :int(world.DURATION * world.SAMPLE_RATE)])
        recognised = float(np.mean([p == y for p, y in zip(predictions, labels)]))
        results.append(GenerationResult(coef, recognised, recognised_by_class(predictions, labels),
                                        misheard_as(predictions, labels)))
    return results


def windows_of(wav: torch.Tensor, seconds: float = world.DURATION) -> list[torch.Tensor]:
    """[N, samples] -> its whole ``seconds``-long windows, each [N, window samples]."""
    n = int(seconds * world.SAMPLE_RATE)
    return [wav[:, i:i + n] for i in range(0, wav.shape[-1] - n + 1, n)]


@dataclass
class LongResult:
    seconds: float
    recognised: list[float]          # per 2-second window: the caption's class heard
    same_as_first: list[float]       # per window: the class heard in window 0 heard again
    heard: list[list[str]]           # [window][clip]: what the classifier hears


@torch.no_grad()
def long_generation_report(model, clf: AttributeClassifier, clips: list, seconds: float = 6.0, cfg_coef: float = 3.0,
                           seed: int = 0, batch: int = 16, temperature: float | None = None) -> LongResult:
    """Generate ``seconds`` from each caption (the sliding window past the LM's own) and classify every 2 seconds
    (``temperature`` None: the model's recommended one)."""
    model.set_generation_params(duration=seconds, cfg_coef=cfg_coef, temperature=temperature)
    torch.manual_seed(seed)
    heard = None
    for i in range(0, len(clips), batch):
        wav = model.generate([c.caption for c in clips[i:i + batch]])[:, 0]
        predictions = [clf.predict(w) for w in windows_of(wav)]
        heard = predictions if heard is None else [a + b for a, b in zip(heard, predictions)]
    return long_result(seconds, heard, [c.label for c in clips])


def long_result(seconds: float, heard: list[list[str]], labels: list[str]) -> LongResult:
    """What was heard in each window [window][clip] -> the share recognised and the share agreeing with window 0."""
    return LongResult(seconds, [float(np.mean([p == y for p, y in zip(w, labels)])) for w in heard],
                      [float(np.mean([p == q for p, q in zip(w, heard[0])])) for w in heard], heard)


PROMPT_START = 1.0       # s: continuation prompts begin mid-phrase, a second into the scene


def scene_audio(scenes: list, start: float, seconds: float) -> torch.Tensor:
    """[N, 1, samples]: ``seconds`` of each real scene from ``start``."""
    a, b = int(start * world.SAMPLE_RATE), int((start + seconds) * world.SAMPLE_RATE)
    return torch.from_numpy(np.stack([world.render_scene(s)[a:b] for s in scenes]))[:, None]


def audible_prompts(scenes: list, seconds: float) -> tuple[list, torch.Tensor, int]:
    """(the scenes with sound in their prompt, those prompts [N, 1, samples], how many were left out).

    A scene whose prompt is silence has no class to keep (and the API refuses a silent prompt)."""
    prompts = scene_audio(scenes, PROMPT_START, seconds)
    audible = prompts.flatten(1).abs().amax(1) > 0
    return [s for s, a in zip(scenes, audible.tolist()) if a], prompts[audible], int((~audible).sum())


@dataclass
class ContinuationResult:
    kept: float                      # the prompt's class heard in the last 2 continued seconds
    by_class: dict[str, tuple[int, int]]
    silent: int = 0                  # scenes left out: their prompt second is silence (birds between songs)


@torch.no_grad()
def continuation_report(model, clf: AttributeClassifier, scenes: list, prompt_seconds: float = 1.0,
                        continued: float = 3.0, cfg_coef: float = 3.0, seed: int = 0, batch: int = 16,
                        captions: bool = True, temperature: float | None = None) -> ContinuationResult:
    """Continue real held-out scenes (their caption, or none) and check the continuation keeps their class.

    A scene whose prompt is silence is left out and counted (``audible_prompts``)."""
    model.set_generation_params(duration=prompt_seconds + continued, cfg_coef=cfg_coef, temperature=temperature)
    torch.manual_seed(seed)
    scenes, prompts, silent = audible_prompts(scenes, prompt_seconds)
    last = int(world.DURATION * world.SAMPLE_RATE)
    predictions = []
    for i in range(0, len(scenes), batch):
        texts = [s.caption if captions else None for s in scenes[i:i + batch]]
        wav = model.generate_continuation(prompts[i:i + batch], world.SAMPLE_RATE, texts)[:, 0]
        predictions += clf.predict(wav[..., -last:])
    return continuation_result(predictions, scenes, silent)


def continuation_result(predictions: list[str], scenes: list, silent: int) -> ContinuationResult:
    labels = [s.label_at(0) for s in scenes]
    return ContinuationResult(float(np.mean([p == y for p, y in zip(predictions, labels)])),
                              recognised_by_class(predictions, labels), silent)


@dataclass
class CodecCeiling:
    """The long and continuation measures taken on real audio through the codec instead of on generations."""
    long: LongResult                 # each caption's clip rendered ``seconds`` long, encoded and decoded
    continuation: ContinuationResult  # each scene's prompt second and the 3 s after it, encoded and decoded


@torch.no_grad()
def codec_ceiling(codec, clf: AttributeClassifier, clips: list, scenes: list, seconds: float = 6.0,
                  prompt_seconds: float = 1.0, continued: float = 3.0) -> CodecCeiling:
    """What an LM that continued every sound exactly as the toy world does would score, heard through the codec.

    The long and continuation reports can only be as good as the codec renders each class: a class the codec's
    own reconstruction is not heard as caps both, whatever the LM does. ``clips``: the long report's captions
    (their clips rendered ``seconds`` long); ``scenes``: the continuation report's, cut as it cuts them (from
    second 1, the prompt and what follows it), the silent-prompt ones left out as it leaves them out."""
    audio = torch.from_numpy(np.stack([world.render(c, seconds) for c in clips]))[:, None]
    heard = [clf.predict(w) for w in windows_of(round_trip(codec, audio))]
    long = long_result(seconds, heard, [c.label for c in clips])
    kept, _, silent = audible_prompts(scenes, prompt_seconds)
    recon = round_trip(codec, scene_audio(kept, PROMPT_START, prompt_seconds + continued))
    predictions = clf.predict(recon[..., -int(world.DURATION * world.SAMPLE_RATE):])
    return CodecCeiling(long, continuation_result(predictions, kept, silent))


def family(model) -> list[str]:
    """The classes a tiny model was trained on: effects for AudioGen, instruments for MusicGen."""
    return world.EFFECTS if isinstance(model, AudioGen) else world.INSTRUMENTS


CAPTION_SPANS = ((0, 1), (1, 5), (5, 25), (25, 100))     # frames [start, end)


@torch.no_grad()
def caption_information(model, clips: list, spans=CAPTION_SPANS) -> torch.Tensor:
    """[len(spans), K]: mean nats per code that the caption saves the LM on the real clips' own codes.

    Teacher forcing with and without the text, the same null condition that guidance uses."""
    audio = torch.from_numpy(world.render_batch(clips))[:, None].to(model.device)
    codes = model.codec.encode(audio.to(model.codec_dtype))                        # [N, K, T]
    cond, null, mask, null_mask = model.conditions([c.caption for c in clips], two_step=False)
    losses = []
    for cross, cross_mask in ((cond, mask), (null, null_mask)):
        logits, valid = model.lm.compute_predictions(codes, cross, text_mask(cross_mask))   # [N, K, T, codebook_size]
        nll = F.cross_entropy(logits.nan_to_num().float().permute(0, 3, 1, 2), codes, reduction="none")
        losses.append(nll.masked_fill(~valid, float("nan")))                     # [N, K, T]
    saved = losses[1] - losses[0]
    return torch.stack([saved[..., a:b].nanmean(dim=(0, 2)) for a, b in spans]).cpu()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m minicraft.toyworld.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny", help="tiny (MusicGen's), audiogen-tiny, or a folder")
    p.add_argument("--clips", type=int, default=200, help="held-out clips for the codec and 2-second reports")
    p.add_argument("--long-clips", type=int, default=60,
                   help="held-out captions of the model's classes for the long and continuation reports")
    p.add_argument("--seconds", type=float, default=6.0, help="length of the long generations")
    p.add_argument("--seed", type=int, default=7,
                   help="which held-out clips: 7 is the report in docs/tiny_model.md; tune on another, "
                        "or the report flatters")
    p.add_argument("--cfg", type=float, nargs="+", default=[1.0, 3.0], help="guidance strengths to generate with")
    p.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature for every generation (default: the model's, as a user gets it)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--degraded-copies", type=int, default=3,
                   help="augmented copies per training clip for the classifier (0: clean renders only)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    clf = train_classifier(degraded_copies=args.degraded_copies)
    clips, audio, labels = labelled_audio(args.clips, seed=args.seed, held_out=True)
    real = accuracy(clf, audio, labels)
    cls, name = resolve(args.model)
    # float32, not "auto": figures comparable from one CPU to another
    model = cls.get_pretrained(name, device="cpu", dtype="float32", quantize=None, fast=True)
    classes = family(model)
    print(f"attribute classifier on held-out real clips: {100 * real:.1f}% of {len(clips)}")
    print("on the same clips degraded: " + ", ".join(
        f"{name} {100 * accuracy(clf, wav, labels):.1f}%" for name, wav in unseen_degradations(audio).items()))
    print("\n| codebooks | mel distance | (80 dB range) | SI-SNR (dB) | classifier accuracy |\n|---|---|---|---|---|")
    for row in codec_report(model.codec, clf, audio, labels):
        print(f"| {row['codebooks']} | {row['mel_distance']:.3f} | {row['mel_distance_80db']:.3f} | "
              f"{row['si_snr']:.1f} | {100 * row['accuracy']:.1f}% |")
    whole = unquantized_report(model.codec, clf, audio, labels)
    print(f"| no quantizer | {whole['mel_distance']:.3f} | {whole['mel_distance_80db']:.3f} | "
          f"{whole['si_snr']:.1f} | {100 * whole['accuracy']:.1f}% |")
    heard = clf.predict(round_trip(model.codec, audio[:, None]))
    print("\nrecognised by class, all codebooks: " + by_class_line(recognised_by_class(heard, labels)))
    print("  misheard as: " + misheard_line(misheard_as(heard, labels)))
    print("reconstruction level against the original, by class (dB): " + ", ".join(
        f"{name} {db:+.1f}" for name, db in level_by_class(model.codec, audio, labels).items()))

    own = [c for c in clips if c.label in classes]
    print(f"\n{type(model).__name__} {args.model}: {len(own)} of the {len(clips)} held-out clips are of its "
          f"classes ({', '.join(classes)})")
    results = generation_report(model, clf, own, cfg_coefs=args.cfg, temperature=args.temperature)
    temperature = model.generation_params["temperature"]
    print(f"\n| cfg_coef | 2-second generations whose class is recognised (temperature {temperature:g}) |\n|---|---|")
    for result in results:
        print(f"| {result.cfg_coef:g} | {100 * result.recognised:.1f}% |")
    for result in results:
        print(f"recognised by class, cfg {result.cfg_coef:g}: {by_class_line(result.by_class)}")
        print(f"  misheard as: {misheard_line(result.misheard)}")

    captions = world.sample_clips(args.long_clips, seed=args.seed, held_out=True, classes=classes)
    long = long_generation_report(model, clf, captions, seconds=args.seconds, temperature=args.temperature)
    print(f"\n{args.seconds:g}-second generations, cfg 3, temperature {temperature:g}, {len(captions)} held-out "
          f"captions (seed {args.seed})")
    print("| window | recognised | same class as window 0 |\n|---|---|---|")
    for k, (hit, same) in enumerate(zip(long.recognised, long.same_as_first)):
        print(f"| {2 * k}-{2 * k + 2} s | {100 * hit:.1f}% | {'—' if k == 0 else f'{100 * same:.1f}%'} |")
    labels_long = [c.label for c in captions]
    print("recognised by class, last window: " + by_class_line(recognised_by_class(long.heard[-1], labels_long)))
    scenes = world.sample_scenes(args.long_clips, seed=args.seed, held_out=True, classes=classes, change_share=0)
    for with_text in (True, False):
        cont = continuation_report(model, clf, scenes, captions=with_text, temperature=args.temperature)
        print(f"continuation of real held-out scenes (1 s prompt from second 1, 3 s continued, cfg 3, "
              f"{'their captions' if with_text else 'no text'}): prompt's class kept in the last 2 s "
              f"{100 * cont.kept:.1f}% ({by_class_line(cont.by_class)})"
              + (f"; {cont.silent} scene(s) left out, their prompt silent" if cont.silent else ""))

    ceiling = codec_ceiling(model.codec, clf, captions, scenes, seconds=args.seconds)
    print(f"the same measures on the real sounds through the codec (an LM going on exactly as they do): "
          f"{args.seconds:g}-s windows recognised "
          + " / ".join(f"{100 * x:.1f}" for x in ceiling.long.recognised) + " %, the same class as window 0 "
          + " / ".join(f"{100 * x:.1f}" for x in ceiling.long.same_as_first[1:]) + " %; continuation kept "
          f"{100 * ceiling.continuation.kept:.1f}% ({by_class_line(ceiling.continuation.by_class)})")

    saved = caption_information(model, own)
    print("\nnats per code the caption saves the LM on the real clips (what guidance has to amplify)")
    print("| frames | " + " | ".join(f"codebook {k + 1}" for k in range(saved.shape[1])) + " |")
    print("|---" * (saved.shape[1] + 1) + "|")
    for (a, b), row in zip(CAPTION_SPANS, saved.tolist()):
        print(f"| {a}-{b - 1} | " + " | ".join(f"{x:.3f}" for x in row) + " |")


if __name__ == "__main__":
    main()
