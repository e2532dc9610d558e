"""The toy world: deterministic clips whose captions say what is in them."""
import re

import numpy as np
import pytest

from minicraft.toyworld import world as tw


def test_deterministic_from_seed():
    a, b = tw.sample_clips(20, seed=3), tw.sample_clips(20, seed=3)
    assert [c.caption for c in a] == [c.caption for c in b]
    assert np.array_equal(tw.render_batch(a), tw.render_batch(b))
    assert [c.caption for c in tw.sample_clips(20, seed=4)] != [c.caption for c in a]


def test_captions_match_attributes():
    for clip in tw.sample_clips(300, seed=0) + tw.sample_clips(100, seed=1, held_out=True):
        template, synonym = clip.phrasing
        assert tw.SYNONYMS[clip.label][synonym] in clip.caption, clip
        if clip.kind == "music":
            words = set(re.findall(r"[a-z0-9-]+", clip.caption))
            for key, value in clip.attributes.items():
                mentioned = "{" + key + "}" in tw.MUSIC_TEMPLATES[template]
                if clip.label == "drums" and key in ("register", "mode"):
                    mentioned = False                  # drums have no pitch: never described
                assert (value in words) == mentioned, (key, clip)
        for other in tw.CLASSES:                       # no other class is named
            if other != clip.label:
                assert not any(f" {n} " in f" {clip.caption} " for n in tw.SYNONYMS[other]), clip


def test_held_out_phrasings_are_never_trained_on():
    train = tw.sample_clips(2000, seed=0)
    held = tw.sample_clips(200, seed=0, held_out=True)
    assert all(c.phrasing not in tw.HELD_OUT for c in train)
    assert all(c.phrasing in tw.HELD_OUT for c in held)
    assert not {c.caption for c in train} & {c.caption for c in held}


@pytest.mark.parametrize("label", tw.CLASSES)
def test_every_class_renders(label):
    clips = [c for c in tw.sample_clips(400, seed=5) if c.label == label][:2]
    audio = tw.render_batch(clips)
    assert audio.shape == (2, int(tw.DURATION * tw.SAMPLE_RATE)) and audio.dtype == np.float32
    assert np.isfinite(audio).all()
    assert 0.89 < np.abs(audio).max() <= 0.9 + 1e-6          # normalised, not silent


def test_classes_sound_different():
    """Mean spectra of two classes differ more than two clips of one class do."""
    clips = tw.sample_clips(300, seed=6)

    def spectrum(label, k):
        chosen = [c for c in clips if c.label == label][k:k + 1]
        s = np.abs(np.fft.rfft(tw.render_batch(chosen)[0]))
        return np.log(s[:16000].reshape(-1, 250).mean(1) + 1e-6)
    same = np.abs(spectrum("rain", 0) - spectrum("rain", 1)).mean()
    other = np.abs(spectrum("rain", 0) - spectrum("siren", 0)).mean()
    assert other > 2 * same
