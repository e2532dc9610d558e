"""Does the tiny model obey its prompt? Objective checks on the toy world.

1. An **attribute classifier** (a small MLP on log-mel statistics) learns the
   13 instrument/effect classes from real toy-world clips. Its accuracy on
   held-out real clips is the ceiling for everything else.
2. **Codec report**: held-out clips through EnCodec with 1..K codebooks —
   mel distance to the original (should fall with every codebook), SI-SNR
   (meaningless for a codec trained without adversarial losses: it gets the
   spectrum, not the phase), and the classifier's accuracy on the
   reconstructions.
3. **Generation report**: clips generated from held-out captions; the share
   whose class the classifier recognises, with and without classifier-free
   guidance.

    python -m minicraft.evaluate --model data/tiny
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import toyworld
from .audio import mel_spectrogram


def features(audio: torch.Tensor) -> torch.Tensor:
    """[N, samples] -> [N, 192]: per mel band, the mean, spread and change over time of log-power."""
    mel = mel_spectrogram(audio, toyworld.SAMPLE_RATE, 1024, 256, 64)             # [N, 64, frames]
    change = (mel[..., 1:] - mel[..., :-1]).abs().mean(-1)
    return torch.cat([mel.mean(-1), mel.std(-1), change], dim=1)


class AttributeClassifier(nn.Module):
    def __init__(self, n_features: int = 192, n_classes: int = len(toyworld.CLASSES)):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.net = nn.Sequential(nn.Linear(n_features, 128), nn.ReLU(), nn.Linear(128, n_classes))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.net((features(audio) - self.mean) / self.std)

    @torch.no_grad()
    def predict(self, audio: torch.Tensor) -> list[str]:
        return [toyworld.CLASSES[i] for i in self(audio).argmax(-1).tolist()]


def labelled_audio(n: int, seed: int, held_out: bool = False):
    clips = toyworld.sample_clips(n, seed=seed, held_out=held_out)
    audio = torch.from_numpy(toyworld.render_batch(clips))
    labels = torch.tensor([toyworld.CLASSES.index(c.label) for c in clips])
    return clips, audio, labels


def train_classifier(n: int = 1500, seed: int = 100, epochs: int = 300) -> AttributeClassifier:
    torch.manual_seed(seed)
    _, audio, labels = labelled_audio(n, seed)
    clf = AttributeClassifier()
    x = features(audio)
    clf.mean, clf.std = x.mean(0), x.std(0) + 1e-5
    x = (x - clf.mean) / clf.std
    optimizer = torch.optim.Adam(clf.net.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in range(epochs):
        loss = F.cross_entropy(clf.net(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return clf.eval()


def accuracy(clf: AttributeClassifier, audio: torch.Tensor, labels: list[str] | torch.Tensor) -> float:
    if isinstance(labels, torch.Tensor):
        labels = [toyworld.CLASSES[i] for i in labels.tolist()]
    return float(np.mean([p == y for p, y in zip(clf.predict(audio), labels)]))


def si_snr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Scale-invariant signal-to-noise ratio in dB, per row of [N, T]."""
    target = target - target.mean(-1, keepdim=True)
    estimate = estimate - estimate.mean(-1, keepdim=True)
    projection = (estimate * target).sum(-1, keepdim=True) / (target.pow(2).sum(-1, keepdim=True) + 1e-8) * target
    noise = estimate - projection
    return 10 * torch.log10(projection.pow(2).sum(-1) / (noise.pow(2).sum(-1) + 1e-8) + 1e-8)


def mel_distance(estimate: torch.Tensor, target: torch.Tensor) -> float:
    """Mean absolute difference of log10-mel spectrograms."""
    sr = toyworld.SAMPLE_RATE
    return float((mel_spectrogram(estimate, sr) - mel_spectrogram(target, sr)).abs().mean())


@torch.no_grad()
def codec_report(codec, clf: AttributeClassifier, audio: torch.Tensor, labels) -> list[dict]:
    codes = codec.encode(audio[:, None])                                  # [N, K, frames]
    rows = []
    for k in range(1, codes.shape[1] + 1):
        recon = codec.decode(codes[:, :k])[:, 0, :audio.shape[-1]]
        rows.append(dict(codebooks=k, mel_distance=mel_distance(recon, audio),
                         si_snr=float(si_snr(recon, audio).mean()), accuracy=accuracy(clf, recon, labels)))
    return rows


@dataclass
class GenerationResult:
    cfg_coef: float
    recognised: float


@torch.no_grad()
def generation_report(model, clf: AttributeClassifier, clips: list, cfg_coefs=(1.0, 3.0), seed: int = 0,
                      batch: int = 16) -> list[GenerationResult]:
    """Generate one clip per caption (sampling, top-k 250 or the vocabulary) and classify it."""
    results = []
    for coef in cfg_coefs:
        model.set_generation_params(duration=toyworld.DURATION, cfg_coef=coef)
        torch.manual_seed(seed)
        predictions = []
        for i in range(0, len(clips), batch):
            wav = model.generate([c.caption for c in clips[i:i + batch]])[:, 0]
            predictions += clf.predict(wav[..., :int(toyworld.DURATION * toyworld.SAMPLE_RATE)])
        recognised = float(np.mean([p == c.label for p, c in zip(predictions, clips)]))
        results.append(GenerationResult(coef, recognised))
    return results


def main(argv=None):
    from .models import MusicGen
    p = argparse.ArgumentParser(prog="python -m minicraft.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--clips", type=int, default=200, help="held-out clips for each report")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    clf = train_classifier()
    clips, audio, labels = labelled_audio(args.clips, seed=7, held_out=True)
    real = accuracy(clf, audio, labels)
    model = MusicGen.get_pretrained(args.model, device="cpu")
    print(f"attribute classifier on held-out real clips: {100 * real:.1f}% of {len(clips)}")
    print("\n| codebooks | mel distance | SI-SNR (dB) | classifier accuracy |\n|---|---|---|---|")
    for row in codec_report(model.codec, clf, audio, labels):
        print(f"| {row['codebooks']} | {row['mel_distance']:.3f} | {row['si_snr']:.1f} | "
              f"{100 * row['accuracy']:.1f}% |")
    print("\n| cfg_coef | generated clips whose class is recognised |\n|---|---|")
    for result in generation_report(model, clf, clips):
        print(f"| {result.cfg_coef:g} | {100 * result.recognised:.1f}% |")


if __name__ == "__main__":
    main()
