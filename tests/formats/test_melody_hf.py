"""musicgen-melody in the Hugging Face format, against transformers' MusicgenMelodyForConditionalGeneration."""
import math

import pytest
import torch

from hfcache import put_folder_in_cache
from hf_models import hf_generate_codes, save_musicgen, tiny_musicgen_melody
from paths import T5_TINY
from minicraft import MusicGen
from minicraft.models.melody import MelodyConditioner


def tune(seconds: float, rate: int = 32000, notes=(60, 64, 67, 72)) -> torch.Tensor:
    """A few notes (MIDI numbers), each an equal share of ``seconds``: [1, T]."""
    t = torch.arange(int(seconds * rate)) / rate
    pitch = torch.tensor(notes)[(t / seconds * len(notes)).long().clamp(max=len(notes) - 1)]
    return 0.5 * torch.sin(2 * math.pi * 440 * 2 ** ((pitch - 69) / 12) * t)[None]


@pytest.fixture(scope="module")
def reference():
    return tiny_musicgen_melody(seed=5)


@pytest.fixture
def melody(reference, hf_cache, tmp_path):
    put_folder_in_cache(hf_cache, "facebook/musicgen-melody", save_musicgen(reference, tmp_path / "saved"))
    return MusicGen.get_pretrained("melody", device="cpu")


def test_loads_as_a_melody_model(melody):
    assert isinstance(melody.melody, MelodyConditioner) and melody.melody.frames == 235
    assert melody.lm.config.cross_attention is False
    assert all(layer.cross_attention is None for layer in melody.lm.transformer.layers)
    melody.set_generation_params(duration=0.1)
    assert melody.generate_with_chroma(["a tune", None], tune(2.0)[None].expand(2, 1, -1), 32000).shape == (2, 1, 3200)


def transformers_inputs(melody, prompt, wav):
    from transformers import AutoTokenizer
    inputs = AutoTokenizer.from_pretrained(T5_TINY)([prompt], return_tensors="pt")
    inputs["input_features"] = melody.melody.chroma([wav], 32000)               # [1, 235, 12] one-hot
    return inputs


def test_logits_equal_transformers(melody, reference):
    """One forward pass over [chroma | text | steps]: the steps' logits match."""
    wav = tune(3.0)
    inputs = transformers_inputs(melody, "dog barking", wav)
    torch.manual_seed(1)
    sequence = torch.randint(0, 33, (1, 4, 9))
    with torch.no_grad():
        expected = reference(**inputs, decoder_input_ids=sequence.reshape(4, 9)).logits   # [B·K, P + S, card]
        text, _ = melody.conditioner(["dog barking"])
        prefix = torch.cat([melody.melody([wav], 32000), text], dim=1)                      # [1, 235 + L, D]
        logits = melody.lm(sequence, prefix=prefix)
    assert expected.shape[1] == 235 + text.shape[1] + 9            # transformers keeps the prefix's outputs
    torch.testing.assert_close(logits.reshape(4, 9, 32), expected[:, -9:], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("prompt, cfg", [("dog barking", 1.0), ("dog barking", 3.0),
                                         ("80s pop track with bassy drums and synth", 3.0)])
def test_greedy_codes_and_audio_equal_transformers(melody, reference, prompt, cfg):
    """The decoding loop, the cache over the 235 + L prepended positions, and guidance against the null
    melody (a held C) and null text: transformers' tokens, exactly."""
    wav = tune(3.0)
    codes, audio = hf_generate_codes(reference, [prompt], frames=12, return_audio=True, do_sample=False,
                                     guidance_scale=cfg, chroma=melody.melody.chroma([wav], 32000))
    melody.set_generation_params(use_sampling=False, duration=12 / 50, cfg_coef=cfg)
    wav_out, tokens = melody.generate_with_chroma([prompt], wav[None], 32000, return_tokens=True)
    assert torch.equal(tokens, codes)
    torch.testing.assert_close(wav_out, audio, atol=1e-5, rtol=1e-4)


def test_the_melody_changes_the_predictions(melody):
    """Two tunes on other notes: different chroma, different next-code distributions for the same codes.

    transformers' random init (std 0.02) makes attention nearly uniform and the prefix's effect small;
    unit-size chroma projections make it plain. (The same notes in another order would average alike.)"""
    torch.manual_seed(0)
    torch.nn.init.normal_(melody.melody.output_proj.weight)
    sequence = torch.randint(0, 32, (1, 4, 6))
    text, _ = melody.conditioner(["a tune"])
    logits = [melody.lm(sequence, prefix=torch.cat([melody.melody([wav], 32000), text], dim=1))
              for wav in (tune(3.0), tune(3.0, notes=(62, 65, 69, 74)))]
    assert (logits[0] - logits[1]).abs().max() > 1e-2
    # no melody is the null condition: what generate() gives
    melody.set_generation_params(use_sampling=False, duration=12 / 50)
    none = melody.generate_with_chroma(["a tune"], [None], 32000, return_tokens=True)[1]
    assert torch.equal(none, melody.generate(["a tune"], return_tokens=True)[1])


def test_cli_generates_with_a_melody_file(melody, tmp_path):
    """``minicraft generate --model melody --melody tune.wav``; and one clear line where a model has no melody."""
    import os
    import subprocess
    import sys

    import soundfile as sf

    def run(*args):
        return subprocess.run([sys.executable, "-m", "minicraft", "generate", *args], capture_output=True, text=True,
                              env=dict(os.environ, PYTHONWARNINGS="ignore"), timeout=300)
    sf.write(str(tmp_path / "tune.wav"), tune(2.0, rate=44100)[0].numpy(), 44100)
    made = run("a tune", "--model", "melody", "--melody", str(tmp_path / "tune.wav"), "--duration", "0.2",
               "--seed", "1", "--out", str(tmp_path / "out.wav"))
    assert made.returncode == 0, made.stderr
    assert sf.info(str(tmp_path / "out.wav")).frames == 10 * 640
    wrong = run("a tune", "--model", "tiny", "--melody", str(tmp_path / "tune.wav"), "--out", str(tmp_path / "x.wav"))
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert "--melody needs a melody model" in wrong.stderr and not (tmp_path / "x.wav").exists()
    missing = run("a tune", "--model", "melody", "--melody", str(tmp_path / "none.wav"), "--out", str(tmp_path / "y.wav"))
    assert missing.returncode == 2 and "no such audio file" in missing.stderr


def test_stereo_melody_equals_transformers(hf_cache, tmp_path):
    """musicgen-stereo-melody: melody conditioning and 8 interleaved codebooks together, by its Hub id."""
    from hf_models import DECODER_TINY_STEREO, ENCODEC_TINY, build_musicgen, tiny_text_encoder
    reference = build_musicgen(tiny_text_encoder(), ENCODEC_TINY, DECODER_TINY_STEREO, seed=7, melody=True)
    put_folder_in_cache(hf_cache, "facebook/musicgen-stereo-melody", save_musicgen(reference, tmp_path / "saved"))
    model = MusicGen.get_pretrained("facebook/musicgen-stereo-melody", device="cpu")
    assert model.audio_channels == 2 and model.melody is not None
    wav = tune(2.0)
    codes, audio = hf_generate_codes(reference, ["dog barking"], frames=10, return_audio=True, do_sample=False,
                                     guidance_scale=3.0, chroma=model.melody.chroma([wav], 32000))
    model.set_generation_params(use_sampling=False, duration=10 / 50, cfg_coef=3.0)
    out, tokens = model.generate_with_chroma(["dog barking"], wav[None].expand(1, 2, -1), 32000, return_tokens=True)
    assert torch.equal(tokens, codes)                                  # left, right interleaved
    assert out.shape == audio.shape == (1, 2, 10 * 640)
    torch.testing.assert_close(out, audio, atol=1e-5, rtol=1e-4)
