"""The shipped tiny models: they load like official ones, and they obey their prompts (measured on samples).

The figures of the report (`python -m minicraft.toyworld.evaluate`, docs/tiny_model.md) come from more clips than
these tests use; each threshold below says what it was measured at on its sample and what margin it leaves."""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from minicraft import AudioGen, MusicGen
from minicraft.api import TINY, TINY_AUDIOGEN
from minicraft.cli import main as cli
from minicraft.toyworld import world as tw
from minicraft.toyworld.evaluate import (accuracy, caption_information, codec_ceiling, codec_report,
                                         continuation_report, generation_report, labelled_audio,
                                         long_generation_report, round_trip, train_classifier, windows_of)

MODELS = {"musicgen": (MusicGen, tw.INSTRUMENTS), "audiogen": (AudioGen, tw.EFFECTS)}


@pytest.fixture(scope="module", params=sorted(MODELS))
def tiny(request):
    cls, classes = MODELS[request.param]
    return request.param, cls.get_pretrained("tiny", device="cpu"), classes


@pytest.fixture(scope="module")
def classifier():
    return train_classifier()


def test_shipped_files_are_two_models_sharing_a_codec():
    folders = [Path(TINY), Path(TINY_AUDIOGEN)]
    for folder in folders:
        assert sorted(p.name for p in folder.iterdir()) == ["config.json", "generation_config.json",
                                                            "model.safetensors", "spiece.model"]
    assert sum(p.stat().st_size for folder in folders for p in folder.iterdir()) < 25 * 2**20
    music, effects = MusicGen.get_pretrained("tiny", device="cpu"), AudioGen.get_pretrained("tiny", device="cpu")
    assert (music.sample_rate, music.frame_rate, music.max_duration) == (16000, 50, 2.0)
    assert (effects.sample_rate, effects.frame_rate, effects.max_duration) == (16000, 50, 2.0)
    assert all(torch.equal(a, b) for a, b in zip(music.codec.parameters(), effects.codec.parameters()))
    assert not torch.equal(music.lm.emb[0].weight, effects.lm.emb[0].weight)
    assert next(music.lm.parameters()).dtype == torch.float32          # stored as float16, computed in float32
    effects.set_generation_params(duration=1.0)
    wav = effects.generate(["the sound of rain", "a fast high chiptune melody in major"])
    assert wav.shape == (2, 1, 16000) and torch.isfinite(wav).all()


def test_codec_keeps_what_the_classifier_hears(classifier):
    codec = MusicGen.get_pretrained("tiny", device="cpu").codec
    _, audio, labels = labelled_audio(65, seed=7, held_out=True)
    real = accuracy(classifier, audio, labels)
    rows = codec_report(codec, classifier, audio, labels)
    assert rows[-1]["accuracy"] >= real - 0.05
    distances = [row["mel_distance"] for row in rows]
    assert all(a > b for a, b in zip(distances, distances[1:])), distances


def own_clips(classes, n: int, seed: int = 7):
    return tw.sample_clips(n, seed=seed, held_out=True, classes=classes)


# Measured on the samples below (held out; generation seed 0; both LMs of 2026-12-07, trained with scheduled
# sampling; the AudioGen's on an Intel Xeon, the MusicGen's at its recommended temperature 0.7 on an AMD EPYC), as
# (floor, gain) and (recognised, same class as window 0). A clip is 1/24 of the guidance sample and 1/16 of the
# others; the margins are 2-4 clips, for CPUs whose sampled tokens differ in the last bits of a probability.
GUIDANCE = {"musicgen": (0.70, 0.08),      # measured 83.3 % -> 87.5 % (cfg 1 -> 3): 4 clips of margin; gain 1 clip
            "audiogen": (0.85, 0.04)}      # measured 87.5 % -> 100 %: 3 clips; the gain (3 clips) keeps 1
LONG = {"musicgen": (0.625, 0.625),        # measured: worst window 81.3 % recognised, 81.3 % same as 0: 3 clips
        "audiogen": (0.75, 0.75)}          # measured: worst window 93.8 %, 93.8 %: 3 clips
CONTINUATION = {"musicgen": 0.625,         # measured 81.3 % (13 of 16): 3 clips
                "audiogen": 0.75}          # measured 93.8 % (15 of 16): 3 clips


@pytest.fixture(scope="module")
def guided(tiny, classifier):
    name, model, classes = tiny
    return name, generation_report(model, classifier, own_clips(classes, 24), cfg_coefs=(1.0, 3.0))


def test_prompts_are_heard_with_guidance(guided):
    name, (_, with_cfg) = guided
    assert with_cfg.recognised >= GUIDANCE[name][0]


def test_guidance_makes_prompts_heard_better(guided, request):
    name, (without, with_cfg) = guided
    if name == "musicgen":       # docs/tiny_model.md: +2.2 points on the report's 88 clips, the 5 missed
        request.applymarker(pytest.mark.xfail(reason="the tiny MusicGen follows its captions about as well without "
                                                     "guidance: 83.3 % with cfg 1, 87.5 % with cfg 3 on this sample"))
    assert with_cfg.recognised >= without.recognised + GUIDANCE[name][1]


def test_long_generation_keeps_playing_what_it_started(tiny, classifier):
    """6 seconds from a 2-second window: every 2 seconds still the prompt's class, and the class of the first 2."""
    name, model, classes = tiny
    result = long_generation_report(model, classifier, own_clips(classes, 16, seed=17), seconds=6.0)
    recognised, same = LONG[name]
    assert min(result.recognised) >= recognised, result.recognised
    assert min(result.same_as_first[1:]) >= same, result.same_as_first


def test_continuation_keeps_the_prompts_class(tiny, classifier):
    name, model, classes = tiny
    scenes = tw.sample_scenes(16, seed=17, held_out=True, classes=classes, change_share=0)
    result = continuation_report(model, classifier, scenes)
    assert result.kept >= CONTINUATION[name], result.by_class


def test_continuation_leaves_out_a_silent_prompt(classifier):
    """Held-out birds of seed 13 are silent from second 1 to 2: no class to keep, and the API refuses silence."""
    scenes = tw.sample_scenes(60, seed=13, held_out=True, classes=tw.EFFECTS, change_share=0)[11:13]
    assert [s.label_at(0) for s in scenes][1] == "birds"
    model = AudioGen.get_pretrained("tiny", device="cpu")
    result = continuation_report(model, classifier, scenes, continued=1.0)
    assert result.silent == 1 and sum(total for _, total in result.by_class.values()) == 1


class Transparent:
    """A codec that gives back what it is given."""

    def encode(self, audio):
        return audio

    def decode(self, codes):
        return codes


def test_the_codec_ceiling_hears_the_same_seconds_as_the_reports(classifier):
    """Through a codec that changes nothing, the ceiling is the classifier on the real sounds, cut where the long
    report cuts its windows and where the continuation report judges its last 2 seconds."""
    clips = own_clips(tw.INSTRUMENTS, 6)
    scenes = tw.sample_scenes(6, seed=17, held_out=True, classes=tw.INSTRUMENTS, change_share=0)
    ceiling = codec_ceiling(Transparent(), classifier, clips, scenes, seconds=6.0)
    real = torch.from_numpy(np.stack([tw.render(c, 6.0) for c in clips]))
    assert ceiling.long.heard == [classifier.predict(real[:, a:a + 32000]) for a in (0, 32000, 64000)]
    last = torch.from_numpy(np.stack([tw.render_scene(s)[3 * 16000:5 * 16000] for s in scenes]))   # seconds 3-5
    heard = classifier.predict(last)
    assert ceiling.continuation.kept == np.mean([h == s.label_at(0) for h, s in zip(heard, scenes)])
    assert ceiling.continuation.silent == 0


def test_round_trip_is_the_codec_a_few_clips_at_a_time():
    codec = MusicGen.get_pretrained("tiny", device="cpu").codec
    audio = torch.from_numpy(tw.render_batch(own_clips(tw.INSTRUMENTS, 5)))[:, None]
    with torch.no_grad():
        whole = codec.decode(codec.encode(audio))[:, 0]
    assert torch.allclose(round_trip(codec, audio, batch=2), whole, atol=1e-5)


def pitch_error_cents(codec, instrument: str, frequency: float) -> float:
    """A note held for 1 s through the codec: how far (cents) the strongest frequency of the middle half of its
    reconstruction lies from the nearest harmonic of the note."""
    n = 16000
    wave = tw.note_wave(instrument, frequency, n, np.random.default_rng(0)).astype(np.float32)
    recon = round_trip(codec, torch.from_numpy(0.9 * wave / np.abs(wave).max())[None, None])[0].numpy()
    spectrum = np.abs(np.fft.rfft(recon[n // 4: 3 * n // 4] * np.hanning(n // 2), 8 * n))
    peak = np.fft.rfftfreq(8 * n, 1 / 16000)[spectrum.argmax()]
    return float(abs(1200 * np.log2(peak / (max(1, round(peak / frequency)) * frequency))))


@pytest.mark.xfail(strict=True, reason="the shared codec moves a tone's pitch onto its 50-Hz frame grid "
                                      "(docs/tiny_model.md, \"Not yet good enough\"); strict, so that a codec that "
                                      "keeps it is noticed")
@pytest.mark.parametrize("instrument", ["chiptune", "flute", "synth", "bell"])
def test_the_codec_keeps_a_notes_pitch(instrument):
    """Notes every 3 semitones from A2 to A5, each within a quarter-tone (50 cents) of its pitch.

    Measured: a median error of 76-79 cents and up to 165-238 (220 Hz comes back at 200, 330 at 350, 392 at
    400: multiples of the 50-Hz frame rate)."""
    codec = MusicGen.get_pretrained("tiny", device="cpu").codec
    errors = [pitch_error_cents(codec, instrument, 440.0 * 2 ** ((midi - 69) / 12)) for midi in range(45, 82, 3)]
    assert max(errors) < 50, errors


def test_the_caption_informs_the_opening_frame_most(tiny):
    """Where guidance can pay: once the LM has heard a frame, the audio says what is playing, and the caption
    saves it little."""
    name, model, classes = tiny
    saved = caption_information(model, own_clips(classes, 48, seed=13))      # [spans, K]
    # measured: first code 2.13 (MusicGen) and 1.19 (AudioGen) nats; elsewhere at most 0.20 and 0.16
    assert saved[0, 0] > 0.7
    assert saved[1:].abs().max() < 0.3 and saved[0, 1:].abs().max() < 0.3


@pytest.mark.xfail(strict=True, reason="the tiny MusicGen does not yet play flute for 10 s at seed 0 "
                                      "(docs/tiny_model.md: flute in 4 of 10 last windows of 6-s generations)")
def test_a_flute_melody_plays_flute_for_ten_seconds(tmp_path, classifier):
    """The issue's first thing a user tries: `minicraft generate "..." --duration 10`, heard window by window.

    Measured at its recommended temperature 0.7: wind, bell, flute, flute, wind (seeds 1-3: flute in 1, 3 and 2 of
    the 5 windows, the others wind or bell). Strict, so that it is noticed when it passes."""
    assert cli(["generate", "a slow low flute melody in minor", "--duration", "10", "--seed", "0",
                "--out", str(tmp_path / "flute.wav")]) == 0
    wav, rate = sf.read(str(tmp_path / "flute.wav"), dtype="float32")
    assert rate == 16000 and len(wav) == 10 * 16000
    heard = [classifier.predict(w)[0] for w in windows_of(torch.from_numpy(wav)[None])]
    assert heard == ["flute"] * 5, heard
