"""The shipped tiny model: it loads like an official one, and it obeys its prompts (measured on a sample)."""
import pytest
import torch

from minicraft import AudioGen, MusicGen
from minicraft.toyworld import world as tw
from minicraft.toyworld.evaluate import (accuracy, caption_information, codec_report, generation_report, labelled_audio,
                                train_classifier)
from minicraft.api import TINY


@pytest.fixture(scope="module")
def tiny():
    return MusicGen.get_pretrained("tiny", device="cpu")


@pytest.fixture(scope="module")
def classifier():
    return train_classifier()


def test_shipped_files_load_as_both_models(tiny):
    from pathlib import Path
    files = sorted(p.name for p in Path(TINY).iterdir())
    assert files == ["config.json", "generation_config.json", "model.safetensors", "spiece.model"]
    assert sum(p.stat().st_size for p in Path(TINY).iterdir()) < 25 * 2**20
    assert (tiny.sample_rate, tiny.frame_rate, tiny.max_duration) == (16000, 50, 2.0)
    effects = AudioGen.get_pretrained("tiny", device="cpu")
    effects.set_generation_params(duration=1.0)
    wav = effects.generate(["the sound of rain", "a fast high chiptune melody in major"])
    assert wav.shape == (2, 1, 16000) and torch.isfinite(wav).all()


# Issue 4's targets, measured on 200 held-out clips of seed 7 with the degradation-robust classifier: 100 % on
# originals, 95.5 % on 4-codebook reconstructions; mel distance 0.952, 0.943, 0.940, 0.936 for 1..4 codebooks;
# generated clips recognised 65.0 % with cfg 1, 76.0 % with cfg 3. The 39 clips sampled below: 71.8 -> 79.5 %.
# Guidance pays because a tenth of the LM's training captions were wrong (docs/tiny_model.md, "Why the LM is
# trained on some wrong captions"); test_the_caption_informs_the_opening_frame_only says where it pays.
CLEARLY = 0.05   # "clearly above": guidance must buy at least 5 points (2 of the 39 sampled clips)


def test_codec_keeps_what_the_classifier_hears(tiny, classifier):
    _, audio, labels = labelled_audio(65, seed=7, held_out=True)
    real = accuracy(classifier, audio, labels)
    rows = codec_report(tiny.codec, classifier, audio, labels)
    assert rows[-1]["accuracy"] >= real - 0.05
    distances = [row["mel_distance"] for row in rows]
    assert all(a > b for a, b in zip(distances, distances[1:])), distances


def test_guidance_makes_prompts_heard(tiny, classifier):
    clips = tw.sample_clips(39, seed=7, held_out=True)
    without, with_cfg = generation_report(tiny, classifier, clips, cfg_coefs=(1.0, 3.0))
    assert with_cfg.recognised >= 0.7
    assert with_cfg.recognised >= without.recognised + CLEARLY


def test_the_caption_informs_the_opening_frame_only(tiny):
    """Where guidance can pay: once the LM has heard a frame, the audio says what is playing, and the caption
    saves it almost nothing. On these 64 clips: 2.70 nats on the first code, at most 0.10 per code after it."""
    saved = caption_information(tiny, tw.sample_clips(64, seed=13, held_out=True))      # [spans, K]
    assert saved[0, 0] > 1.0
    assert saved[1:].abs().max() < 0.2 and saved[0, 1:].abs().max() < 0.2
