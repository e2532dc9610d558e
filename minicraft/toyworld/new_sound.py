"""Does a fine-tune teach the tiny AudioGen something real? A sound the toy world does not have, before and after.

    python -m minicraft.toyworld.new_sound --out runs/new-sound      # writes the clips, fine-tunes, measures

The new sound is a crackling fire: a low rumble under random crackles, each a short burst of decaying noise, a
texture none of the toy world's effects has (its rain is dense drops, its footsteps and clock regular). The command
writes ``--clips`` of them as WAV files with ``.txt`` captions, exactly what a user gives ``minicraft finetune``,
and measures with the evaluation's own tools (:mod:`minicraft.toyworld.evaluate`) and an attribute classifier
trained with the fire as a 14th class:

- before and after: the share of generations for held-out fire captions that the classifier hears as fire;
- before and after: the 2-second report on held-out effect captions (seed 7, cfg 3): what was forgotten.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from minicraft.api import AudioGen
from minicraft.toyworld import world
from minicraft.toyworld.evaluate import generation_report, train_classifier
from minicraft.tune.train import finetune

NAME = "fire"
TRAIN_CAPTIONS = ["a crackling fire", "wood burning in a fireplace", "a campfire crackling at night",
                  "logs crackling and popping in a fire"]
HELD_OUT_CAPTIONS = ["a fire crackling", "the crackle of burning wood", "a fireplace burning"]


@dataclass
class Prompt:
    caption: str
    label: str


def render_fire(seed: int, seconds: float = world.DURATION, rate: int = world.SAMPLE_RATE) -> np.ndarray:
    """[samples]: a crackling fire, a soft low rumble (smoothed noise) under 12-30 crackles a second, each a burst
    of noise decaying in 0.3-2.5 ms, at random times and levels."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    out = 0.02 * np.convolve(rng.standard_normal(n), np.ones(40) / 40, mode="same")
    for _ in range(int(rng.uniform(12, 30) * seconds)):
        length = int(rng.integers(rate // 800, rate // 80))
        start = int(rng.integers(0, max(1, n - length)))
        decay = np.exp(-np.arange(length) / (rate * rng.uniform(0.0003, 0.0025)))
        out[start:start + length] += rng.uniform(0.05, 0.6) * rng.choice([-1, 1]) * rng.standard_normal(length) * decay
    return out.astype(np.float32)


def write_clips(folder: Path, count: int, seed: int = 0) -> Path:
    """``count`` clips as a user would hold them: WAV files at 44.1 kHz, 2 to 4 s, each with a .txt caption."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        seconds = float(rng.uniform(2.0, 4.0))
        sf.write(folder / f"fire_{i:03d}.wav", render_fire(seed * 100_000 + i, seconds, 44100), 44100)
        (folder / f"fire_{i:03d}.txt").write_text(TRAIN_CAPTIONS[i % len(TRAIN_CAPTIONS)] + "\n")
    return folder


def new_clips(n: int, seed: int) -> torch.Tensor:
    """[n, samples] two-second clips of the new sound at the toy world's rate, for the classifier."""
    return torch.from_numpy(np.stack([render_fire(seed * 100_000 + i) for i in range(n)]))


def measure(model, clf, new: list[Prompt], effects: list, seed: int = 0) -> tuple[float, float, dict]:
    """(new-sound captions heard as the new sound, effects recognised, the effects by class), cfg 3."""
    heard = generation_report(model, clf, new, cfg_coefs=(3.0,), seed=seed)[0]
    old = generation_report(model, clf, effects, cfg_coefs=(3.0,), seed=seed)[0]
    return heard.recognised, old.recognised, old.by_class


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m minicraft.toyworld.new_sound", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/new-sound"), help="clips in OUT/clips, the run in OUT/run")
    p.add_argument("--clips", type=int, default=60, help="clips to fine-tune on (the issue asks for 40-100)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=5e-4, help="the fine-tune's peak learning rate")
    p.add_argument("--targets", nargs="+", default=None, help="LoRA targets (default: finetune's)")
    p.add_argument("--keep", type=int, default=64, help="training captions of the toy world's effects whose base "
                   "generations are mixed in (prior preservation; 0: none)")
    p.add_argument("--keep-share", type=float, default=0.75, help="share of each batch from the base's generations")
    p.add_argument("--keep-clips", type=int, default=128, help="base generations made for those captions")
    p.add_argument("--prompts", type=int, default=48,
                   help="held-out captions of the new sound, generated before and after")
    p.add_argument("--effects", type=int, default=200, help="held-out toy-world clips, effects kept")
    p.add_argument("--seed", type=int, default=7, help="which held-out clips (7: the report's, as evaluate)")
    p.add_argument("--generation-seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    clf = train_classifier(extra={NAME: new_clips(300, seed=1)})
    held = new_clips(100, seed=2)
    print(f"classifier with {NAME} as a 14th class: held-out real clips heard as {NAME} "
          f"{100 * np.mean([p == NAME for p in clf.predict(held)]):.1f}% of {len(held)}")
    new = [Prompt(HELD_OUT_CAPTIONS[i % len(HELD_OUT_CAPTIONS)], NAME) for i in range(args.prompts)]
    effects = [c for c in world.sample_clips(args.effects, seed=args.seed, held_out=True) if c.label in world.EFFECTS]
    base = AudioGen.get_pretrained("tiny", device="cpu", dtype="float32", quantize=None)
    before = measure(base, clf, new, effects, args.generation_seed)
    write_clips(args.out / "clips", args.clips)
    start = time.time()
    keep = None
    if args.keep:        # training phrasings of the effects (the held-out ones are measured)
        keep = sorted({c.caption for c in world.sample_clips(args.keep, seed=3, classes=world.EFFECTS)})
    run = finetune(args.out / "clips", model="audiogen-tiny", out=args.out / "run", steps=args.steps, lr=args.lr,
                   targets=args.targets, keep_prompts=keep, keep_share=args.keep_share, keep_clips=args.keep_clips)
    minutes = (time.time() - start) / 60
    tuned = AudioGen.get_pretrained(str(run), device="cpu", dtype="float32", quantize=None)
    after = measure(tuned, clf, new, effects, args.generation_seed)
    print(f"\nfine-tune: {args.clips} clips, {args.steps} steps, {minutes:.1f} min on {args.threads} threads")
    print(f"| cfg 3 | before | after |\n|---|---|---|\n| {len(new)} held-out {NAME} captions heard as {NAME} | "
          f"{100 * before[0]:.1f}% | {100 * after[0]:.1f}% |\n| {len(effects)} held-out effect captions recognised "
          f"| {100 * before[1]:.1f}% | {100 * after[1]:.1f}% |")
    print("by class: " + ", ".join(f"{k} {before[2][k][0]}/{before[2][k][1]} -> {after[2].get(k, (0, 0))[0]}"
                                   for k in before[2]))


if __name__ == "__main__":
    main()
