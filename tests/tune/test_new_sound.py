"""A fine-tune teaches the tiny AudioGen a sound the toy world does not have, on a reduced budget.

The full figures come from ``python -m minicraft.toyworld.new_sound`` (docs/finetune.md: 60 clips, 300 steps; on
seed 13, fire heard in 97.9 % of generations, effects 90.2 -> 87.5 %). Here: 30 clips, 150 steps, a smaller
classifier and fewer prompts, so that it runs in CI in under a minute."""

from minicraft import AudioGen, finetune
from minicraft.toyworld import world
from minicraft.toyworld.evaluate import train_classifier
from minicraft.toyworld.new_sound import HELD_OUT_CAPTIONS, NAME, Prompt, measure, new_clips, write_clips


def test_the_tiny_audiogen_learns_a_new_sound_and_keeps_its_effects(tmp_path):
    clf = train_classifier(n=600, degraded_copies=1, extra={NAME: new_clips(100, seed=1)})
    assert sum(p == NAME for p in clf.predict(new_clips(40, seed=2))) >= 38        # the classifier hears it
    new = [Prompt(HELD_OUT_CAPTIONS[i % len(HELD_OUT_CAPTIONS)], NAME) for i in range(24)]
    effects = [c for c in world.sample_clips(120, seed=13, held_out=True) if c.label in world.EFFECTS][:48]
    keep = sorted({c.caption for c in world.sample_clips(64, seed=3, classes=world.EFFECTS)})
    before = measure(AudioGen.get_pretrained("tiny", device="cpu"), clf, new, effects)
    write_clips(tmp_path / "clips", 30)
    run = finetune(tmp_path / "clips", model="audiogen-tiny", out=tmp_path / "run", steps=150, lr=5e-4,
                   keep_prompts=keep, keep_share=0.75, keep_clips=64, progress=False)
    after = measure(AudioGen.get_pretrained(str(run), device="cpu"), clf, new, effects)
    # measured on an AMD EPYC (AVX-512): fire 0 -> 91.7 % (22 of 24); effects 97.9 -> 85.4 % (47 -> 41 of 48);
    # the margins (60 %, 20 points) leave room for another CPU's numerics drawing other samples
    assert before[0] <= 0.1
    assert after[0] >= 0.6, after
    assert after[1] >= before[1] - 0.2, (before, after)
