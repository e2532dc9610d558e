"""What classifier-free guidance does to the tiny model, measured side by side in one run.

    python benchmarks/guidance.py                       # 400 held-out clips of seed 13, sampling seeds 0 1 2
    python benchmarks/guidance.py --clips 100 --seeds 0

For each sampling seed it generates one clip per held-out caption and reports the share whose class the
evaluation classifier recognises, under four ways of combining the LM with and without text:

- ``cfg 1``: the conditional LM alone;
- ``cfg 3``: audiocraft's guidance, ``uncond + 3 (cond - uncond)``, at every step;
- ``cfg 3, first 4 steps``: guidance only while the caption still tells the LM something (see
  ``minicraft.toyworld.evaluate.caption_information``: nearly all of it is in the first frame), then cfg 1;
- ``cfg 1 / cfg 3, plausible only``: the same, keeping only tokens to which the conditional LM gives at least a
  tenth of its top token's probability (the plausibility constraint of contrastive decoding). It removes the
  tail that guidance inflates, and is applied at both strengths so that they stay comparable.

It also reports how much of the sampling distribution sits on those implausible tokens, per codebook (for the
unfiltered variants; the filtered ones put none there).
This is a probe, not a feature: it swaps the guidance function that ``minicraft.generate.decoding`` calls.
Do not tune on seed 7: that is the report in docs/tiny_model.md.
"""
from __future__ import annotations

import argparse
import statistics

import torch

from minicraft.api import resolve
from minicraft.generate import decoding as generation
from minicraft.generate.sampling import classifier_free_guidance
from minicraft.toyworld import evaluate
from minicraft.toyworld import world as toyworld

PLAUSIBLE = 0.1          # a token is plausible if p_cond >= PLAUSIBLE * max p_cond
FIRST_STEPS = 4


def implausible(cond_logits: torch.Tensor) -> torch.Tensor:
    """[..., codebook_size] -> bool [..., codebook_size]: tokens the conditional LM finds implausible."""
    p = cond_logits.softmax(-1)
    return p < PLAUSIBLE * p.max(-1, keepdim=True).values


class Guidance:
    """A stand-in for ``classifier_free_guidance``; it counts decoding steps to know where a clip starts."""

    def __init__(self, steps_per_clip: int, ramp: int, first_steps: int | None = None, plausible_only: bool = False):
        self.steps_per_clip, self.ramp = steps_per_clip, ramp    # ramp: the delay pattern's first steps, where
        self.first_steps, self.plausible_only = first_steps, plausible_only      # some codebooks are not sampled
        self.calls, self.mass = 0, []

    def __call__(self, cond: torch.Tensor, uncond: torch.Tensor, coef: float) -> torch.Tensor:
        step = self.calls % self.steps_per_clip
        self.calls += 1
        guided = cond if self.first_steps is not None and step >= self.first_steps else \
            classifier_free_guidance(cond, uncond, coef)                 # [B, K, T, codebook_size]
        bad = implausible(cond)
        if step >= self.ramp:
            self.mass.append((guided[:, :, -1].softmax(-1) * bad[:, :, -1]).sum(-1).mean(0))   # [K]
        return guided.masked_fill(bad, float("-inf")) if self.plausible_only else guided


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny", help="tiny (MusicGen's, on instruments) or audiogen-tiny (effects)")
    p.add_argument("--clips", type=int, default=400)
    p.add_argument("--seed", type=int, default=13, help="held-out clips to use (7 is the report in docs/tiny_model.md)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="sampling seeds")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cls, name = resolve(args.model)
    model = cls.get_pretrained(name, device="cpu", dtype="float32", quantize=None, fast=True)
    clf = evaluate.train_classifier()
    clips = toyworld.sample_clips(args.clips, seed=args.seed, held_out=True, classes=evaluate.family(model))
    K = model.lm.config.num_codebooks
    steps = int(toyworld.DURATION * model.frame_rate) + K - 1      # decoding steps per clip, delays included
    variants = {"cfg 1": (1.0, {}), "cfg 3": (3.0, {}),
                f"cfg 3, first {FIRST_STEPS} steps": (3.0, dict(first_steps=FIRST_STEPS)),
                "cfg 1, plausible only": (1.0, dict(plausible_only=True)),
                "cfg 3, plausible only": (3.0, dict(plausible_only=True))}
    print(f"{type(model).__name__} {args.model}: {args.clips} held-out clips of its classes, seed {args.seed}; "
          f"recognised % for sampling seeds {args.seeds}")
    try:
        for name, (coef, options) in variants.items():
            scores, mass = [], []
            for seed in args.seeds:
                guidance = Guidance(steps, K, **options)
                generation.classifier_free_guidance = guidance
                result, = evaluate.generation_report(model, clf, clips, cfg_coefs=[coef], seed=seed)
                scores.append(100 * result.recognised)
                mass.append(torch.stack(guidance.mass).mean(0))
            share = "-" if options.get("plausible_only") else \
                " ".join(f"{100 * x:.1f}" for x in torch.stack(mass).mean(0).tolist())
            print(f"{name:<24} " + " ".join(f"{s:5.1f}" for s in scores) + f"   mean {statistics.mean(scores):5.1f}"
                  f"   mass on implausible tokens by codebook (%): {share}", flush=True)
    finally:
        generation.classifier_free_guidance = classifier_free_guidance


if __name__ == "__main__":
    main()
