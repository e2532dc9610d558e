"""The stereo MusicGens in the Hugging Face format, against transformers (``audio_channels=2``)."""
import pytest
import torch

from hfcache import put_folder_in_cache
from hf_models import DECODER_TINY_STEREO, hf_generate_codes, save_musicgen, tiny_musicgen
from paths import T5_TINY
from minicraft import MusicGen
from minicraft.models.stereo import StereoCodec


@pytest.fixture(scope="module")
def reference():
    return tiny_musicgen(seed=3, decoder=DECODER_TINY_STEREO)


@pytest.fixture
def stereo(reference, hf_cache, tmp_path):
    """As a new user would get it: ``get_pretrained("stereo-small")`` from the download's cache layout."""
    put_folder_in_cache(hf_cache, "facebook/musicgen-stereo-small", save_musicgen(reference, tmp_path / "saved"))
    return MusicGen.get_pretrained("stereo-small", device="cpu")


def test_loads_as_stereo(stereo):
    assert isinstance(stereo.codec, StereoCodec) and stereo.audio_channels == 2
    assert stereo.lm.config.num_codebooks == 8 and stereo.lm.config.delays == [0, 0, 1, 1, 2, 2, 3, 3]
    stereo.set_generation_params(duration=0.1)
    assert stereo.generate(["dog barking", "rain"]).shape == (2, 2, 5 * 640)


def test_lm_logits_equal_transformers(stereo, reference):
    from transformers import AutoTokenizer
    inputs = AutoTokenizer.from_pretrained(T5_TINY)(["dog barking"], return_tensors="pt")
    torch.manual_seed(1)
    sequence = torch.randint(0, 33, (1, 8, 9))                    # may hold the special token 32
    with torch.no_grad():
        expected = reference(**inputs, decoder_input_ids=sequence.reshape(8, 9)).logits   # [B·K, S, codebook_size]
        cond, _ = stereo.conditioner(["dog barking"])
        logits = stereo.lm(sequence, cond)                        # [B, K, S, codebook_size]
    torch.testing.assert_close(logits.reshape(8, 9, 32), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("prompt", ["dog barking", "80s pop track with bassy drums and synth"])
def test_greedy_cfg_codes_and_audio_equal_transformers(stereo, reference, prompt):
    """Greedy decoding with guidance: the same 8 interleaved codebooks, and the same left and right audio."""
    codes, audio = hf_generate_codes(reference, [prompt], frames=12, return_audio=True, do_sample=False,
                                     guidance_scale=3.0)
    stereo.set_generation_params(use_sampling=False, duration=12 / 50, cfg_coef=3.0)
    wav, tokens = stereo.generate([prompt], return_tokens=True)
    assert torch.equal(tokens, codes)
    assert wav.shape == audio.shape == (1, 2, 12 * 640)
    torch.testing.assert_close(wav, audio, atol=1e-5, rtol=1e-4)
    assert not torch.equal(wav[:, 0], wav[:, 1])                 # two channels, not one copied


def test_stereo_prompt_is_encoded_as_transformers_does(stereo, reference):
    """transformers encodes each channel with the mono EnCodec and interleaves left/right codebooks."""
    torch.manual_seed(0)
    wav = 0.3 * torch.randn(1, 2, 4000)
    with torch.no_grad():
        left = reference.audio_encoder.encode(wav[:, :1]).audio_codes[0]
        right = reference.audio_encoder.encode(wav[:, 1:]).audio_codes[0]
        codes = stereo.codec.encode(wav)
    assert torch.equal(codes[:, 0::2], left) and torch.equal(codes[:, 1::2], right)


def test_continuation_takes_a_mono_prompt_as_both_channels(stereo):
    torch.manual_seed(0)
    mono = 0.3 * torch.randn(1, 1, 3200)
    stereo.set_generation_params(use_sampling=False, duration=0.2)
    from_mono = stereo.generate_continuation(mono, 32000, ["rain"], return_tokens=True)[1]
    from_both = stereo.generate_continuation(mono.expand(1, 2, -1), 32000, ["rain"], return_tokens=True)[1]
    assert torch.equal(from_mono, from_both)
    assert torch.equal(from_mono[:, 0::2, :5], from_mono[:, 1::2, :5])   # the prompt's 5 frames, left = right


def test_cli_writes_stereo_files_and_continues_them(stereo, hf_cache, tmp_path):
    """``minicraft generate --model stereo-small`` writes 2-channel files; ``continue`` reads one back."""
    import os
    import subprocess
    import sys

    import soundfile as sf

    def run(*args):
        return subprocess.run([sys.executable, "-m", "minicraft", *args, "--model", "stereo-small"],
                              capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"),
                              timeout=300)
    made = run("generate", "dog barking", "--duration", "0.2", "--seed", "1", "--out", str(tmp_path / "a.wav"))
    assert made.returncode == 0, made.stderr
    info = sf.info(str(tmp_path / "a.wav"))
    assert (info.samplerate, info.channels, info.frames) == (32000, 2, 10 * 640)
    continued = run("continue", str(tmp_path / "a.wav"), "--duration", "0.3", "--prompt-seconds", "0.1",
                    "--out", str(tmp_path / "b.wav"))
    assert continued.returncode == 0, continued.stderr
    info = sf.info(str(tmp_path / "b.wav"))
    assert (info.channels, info.frames) == (2, 15 * 640)
