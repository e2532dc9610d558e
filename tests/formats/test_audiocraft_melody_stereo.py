"""Stereo and melody MusicGens in the audiocraft format, against what audiocraft 1.3.0 itself computed
(``tests/fixtures/make_audiocraft_fixtures.py``; every reference is described in the fixtures' README)."""
import pytest
import torch

from paths import FIXTURES, T5_TINY
from minicraft import MusicGen, audio
from minicraft.modules.chroma import chroma, chroma_filterbank

P0, P1, P2 = "80s pop track with bassy drums and synth", "dog barking", "calm piano"


@pytest.fixture(scope="module")
def refs():
    return torch.load(FIXTURES / "refs_melody_stereo.pt", weights_only=True)


@pytest.fixture
def stereo():
    return MusicGen.get_pretrained(str(FIXTURES / "musicgen_stereo_tiny"), device="cpu", t5=T5_TINY)


@pytest.fixture
def melody():
    return MusicGen.get_pretrained(str(FIXTURES / "musicgen_melody_tiny"), device="cpu", t5=T5_TINY)


def wave(refs, name):
    return refs[f"melody.{name}.pcm16"].float() / 32768            # as a 16-bit wav file reads


def melodies(refs):
    """The fixtures' melodies, each ([C, T], sample rate)."""
    a = wave(refs, "a")
    return {"a": (a, 32000), "b": (wave(refs, "b"), 44100), "c": (wave(refs, "c"), 32000),
            "long": (a.repeat(1, 48), 32000)}


# ---------------------------------------------------------------- stereo

def test_stereo_codec_interleaves_left_and_right(stereo, refs):
    with torch.no_grad():
        assert torch.equal(stereo.codec.encode(refs["stereo.codec.enc.wav"]), refs["stereo.codec.enc.codes"])
        torch.testing.assert_close(stereo.codec.decode(refs["stereo.codec.dec.codes"]), refs["stereo.codec.dec.wav"],
                                   atol=1e-5, rtol=1e-4)


def test_stereo_pattern_and_predictions(stereo, refs):
    codes = refs["stereo.lm.cp.codes"]
    sequence, mask = stereo.lm.pattern(codes.shape[-1]).build(codes, stereo.lm.special_token)
    assert torch.equal(sequence, refs["stereo.pattern.seq"]) and torch.equal(mask, refs["stereo.pattern.mask"])
    cond, _ = stereo.conditioner([P0, P1])
    with torch.no_grad():
        logits, valid = stereo.lm.compute_predictions(codes, cond)
    assert torch.equal(valid, refs["stereo.lm.cp.mask"])
    torch.testing.assert_close(logits[valid], refs["stereo.lm.cp.logits"][valid], atol=1e-5, rtol=1e-4)


def test_stereo_generation(stereo, refs):
    stereo.set_generation_params(use_sampling=False, duration=0.1, cfg_coef=3.0)
    wav, tokens = stereo.generate([P0], return_tokens=True)
    assert torch.equal(tokens, refs["stereo.gen.tokens"])
    torch.testing.assert_close(wav, refs["stereo.gen.wav"], atol=1e-5, rtol=1e-4)
    stereo.set_generation_params(use_sampling=True, top_k=5, temperature=1.0, duration=0.2, cfg_coef=3.0)
    stereo.mask_text_padding = False          # audiocraft's batch: P1's text padding is attended, not hidden
    torch.manual_seed(1234)
    assert torch.equal(stereo.generate([P0, P1], return_tokens=True)[1], refs["stereo.gen.topk5_seed1234"])


def test_stereo_continuation(stereo, refs):
    stereo.set_generation_params(use_sampling=False, duration=0.3, cfg_coef=3.0)
    tokens = stereo.generate_continuation(refs["stereo.codec.enc.wav"], 32000, [P2], return_tokens=True)[1]
    assert torch.equal(tokens, refs["stereo.continuation.tokens"])


# ---------------------------------------------------------------- melody: the chroma

def test_chroma_filter_bank(refs):
    bank = chroma_filterbank(32000, 16384)
    assert torch.equal(bank[:, ::32], refs["melody.chroma.fbanks_every_32"])


@pytest.mark.parametrize("name", ["a", "c", "long"])
def test_chroma_equals_audiocraft(melody, refs, name):
    wav, rate = melodies(refs)[name]
    mono = wav.mean(0, keepdim=True)                         # generate_with_chroma's hand-over: 32 kHz, mono
    soft = chroma(mono[None], rate, melody.melody.config.__class__(argmax=False))
    torch.testing.assert_close(soft, refs[f"melody.{name}.chroma_soft"], atol=1e-6, rtol=0)
    assert torch.equal(chroma(mono[None], rate), refs[f"melody.{name}.chroma"])
    assert torch.equal(melody.melody.chroma([wav], rate).argmax(-1), refs[f"melody.{name}.fit_argmax"])
    assert melody.melody.frames == int(refs["melody.chroma_len"]) == 235


def test_chroma_of_another_sample_rate(melody, refs):
    """Melody b is at 44.1 kHz: audiocraft resamples with julius, minicraft with its own windowed sinc, so the
    soft chroma differs slightly; every frame's class is the same."""
    wav, rate = melodies(refs)["b"]
    assert torch.equal(melody.melody.chroma([wav], rate).argmax(-1), refs["melody.b.fit_argmax"])
    assert audio.convert(wav, rate, 32000, 1).shape[-1] == int(refs["melody.b.resampled_len"])


def test_null_melody_is_a_held_c(melody, refs):
    assert (refs["melody.null.fit_argmax"] == 0).all()
    prefix = melody.melody([None], 32000)
    assert (prefix[0] == refs["melody.null.embeds_row"]).all()
    wav, rate = melodies(refs)["a"]
    assert torch.equal(melody.melody([wav], rate)[:, :8], refs["melody.a.embeds_head8"])


# ---------------------------------------------------------------- melody: the LM

def prefixes(melody, refs, names):
    """[chroma | text] for prompts P0 and P1 with the named melodies (None: no melody)."""
    texts, _ = melody.conditioner([P0, P1])
    tunes = melodies(refs)
    chroma_part = torch.cat([melody.melody([tunes[n][0]], tunes[n][1]) if n else melody.melody([None], 32000)
                             for n in names])
    return torch.cat([chroma_part, texts], dim=1)


def test_fused_input_and_logits_equal_audiocraft(melody, refs):
    prefix = prefixes(melody, refs, ["a", None])
    sequence = refs["melody.lm.in.sequence"]
    assert prefix.shape[1] + sequence.shape[-1] == int(refs["melody.lm.fused_len"]) == 261
    with torch.no_grad():
        emb = sum(melody.lm.emb[k](sequence[:, k]) for k in range(4))
        fused = torch.cat([prefix, emb], dim=1)
        torch.testing.assert_close(fused[:, -32:], refs["melody.lm.fused_tail"], atol=1e-6, rtol=0)
        logits = melody.lm(sequence, prefix=prefix)
        torch.testing.assert_close(logits, refs["melody.lm.out.logits"], atol=1e-5, rtol=1e-4)
        predicted, valid = melody.lm.compute_predictions(refs["melody.lm.cp.codes"], prefix=prefix)
    assert torch.equal(valid, refs["melody.lm.cp.mask"])
    torch.testing.assert_close(predicted[valid], refs["melody.lm.cp.logits"][valid], atol=1e-5, rtol=1e-4)


def test_generate_with_chroma(melody, refs):
    tunes = melodies(refs)
    melody.set_generation_params(use_sampling=False, duration=0.2, cfg_coef=3.0)
    wav, tokens = melody.generate_with_chroma([P0], tunes["a"][0][None], 32000, return_tokens=True)
    assert torch.equal(tokens, refs["melody.gen.a.tokens"])
    torch.testing.assert_close(wav, refs["melody.gen.a.wav"], atol=1e-5, rtol=1e-4)
    melody.set_generation_params(use_sampling=False, duration=0.3, cfg_coef=3.0)
    tokens = melody.generate_with_chroma([P0, P1], [tunes["b"][0], None], 44100, return_tokens=True)[1]
    assert torch.equal(tokens, refs["melody.gen.batch_none.tokens"])
    tokens = melody.generate_with_chroma([P2], [tunes["long"][0]], 32000, return_tokens=True)[1]
    assert torch.equal(tokens, refs["melody.gen.long.tokens"])
    # what follows the 235 chroma frames' reach (about 30.2 s) changes nothing, and is not even read
    longer = torch.cat([tunes["long"][0], torch.randn(1, 90 * 32000)], dim=1)
    assert torch.equal(melody.generate_with_chroma([P2], [longer], 32000, return_tokens=True)[1], tokens)


def test_generate_without_a_melody_and_text_padding(melody, refs):
    """No melody: the null chroma. The text is prepended, so its padding in a batch moves the codes' positions:
    a prompt alone and in a batch give different tokens, in audiocraft and here."""
    melody.set_generation_params(use_sampling=False, duration=0.3, cfg_coef=3.0)
    assert torch.equal(melody.generate([P0, P1], return_tokens=True)[1], refs["melody.gen.text_only.tokens"])
    assert torch.equal(melody.generate([P1], return_tokens=True)[1], refs["melody.gen.text_only_p1_alone.tokens"])


def test_seeded_sampling_with_a_stereo_melody(melody, refs):
    melody.set_generation_params(use_sampling=True, top_k=5, temperature=1.0, duration=0.3, cfg_coef=3.0)
    torch.manual_seed(1234)
    tokens = melody.generate_with_chroma([P0], [melodies(refs)["c"][0]], 32000, return_tokens=True)[1]
    assert torch.equal(tokens, refs["melody.gen.c_topk5_seed1234.tokens"])


def test_sliding_window_reads_the_melody_from_each_window_start(melody, refs):
    melody.max_duration = 0.6
    melody.set_generation_params(use_sampling=False, duration=1.0, extend_stride=0.2, cfg_coef=3.0)
    tokens = melody.generate_with_chroma([P0, P1], [melodies(refs)["a"][0], None], 32000, return_tokens=True)[1]
    assert torch.equal(tokens, refs["melody.gen.extended.tokens"])
