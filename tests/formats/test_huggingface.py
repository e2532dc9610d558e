"""Loading Hugging Face-format checkpoints the way a download lays them out, compared with transformers."""
import json

import torch

from hfcache import put_folder_in_cache, put_in_cache
from hf_models import (DECODER_TINY, ENCODEC_TINY, build_musicgen, hf_generate_codes, save_musicgen,
                       tiny_musicgen)
from paths import FIXTURES, T5_TINY
from minicraft import AudioGen, MusicGen
from minicraft.models.codec import Encodec
from minicraft.formats.checkpoints import CheckpointError
from minicraft.formats.hub import ModelNotAvailable

import pytest


@pytest.fixture(scope="module")
def reference():
    return tiny_musicgen()


@pytest.fixture
def cached_small(reference, hf_cache, tmp_path):
    folder = save_musicgen(reference, tmp_path / "saved")
    put_folder_in_cache(hf_cache, "facebook/musicgen-small", folder)
    return MusicGen.get_pretrained("small", device="cpu")


def test_offline_download_layout_loads(cached_small):
    model = cached_small
    assert "facebook/musicgen-small" in model.name
    assert (model.sample_rate, model.frame_rate, model.max_duration) == (32000, 50, 30)
    model.set_generation_params(duration=0.2)
    assert model.generate(["dog barking"]).shape == (1, 1, 10 * 640)


def test_lm_logits_equal_transformers(cached_small, reference):
    """One prompt (no text padding): the decoder's logits match."""
    from transformers import AutoTokenizer
    inputs = AutoTokenizer.from_pretrained(T5_TINY)(["dog barking"], return_tensors="pt")
    torch.manual_seed(1)
    sequence = torch.randint(0, 33, (1, 4, 9))                    # may hold the special token 32
    with torch.no_grad():
        expected = reference(**inputs, decoder_input_ids=sequence.reshape(4, 9)).logits   # [B·K, S, codebook_size]
        cond, _ = cached_small.conditioner(["dog barking"])
        logits = cached_small.lm(sequence, cond)                  # [B, K, S, codebook_size]
    torch.testing.assert_close(logits.reshape(4, 9, 32), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("prompt", ["dog barking", "80s pop track with bassy drums and synth"])
def test_greedy_cfg_generation_equals_transformers(cached_small, reference, prompt):
    expected = hf_generate_codes(reference, [prompt], frames=12, do_sample=False, guidance_scale=3.0)
    model = cached_small
    model.set_generation_params(use_sampling=False, duration=12 / 50, cfg_coef=3.0)
    wav, tokens = model.generate([prompt], return_tokens=True)
    assert torch.equal(tokens, expected)
    with torch.no_grad():
        audio = reference.audio_encoder.decode(expected[None], [None]).audio_values
    torch.testing.assert_close(wav, audio, atol=1e-5, rtol=1e-4)


def test_sharded_checkpoint(reference, tmp_path):
    folder = save_musicgen(reference, tmp_path / "sharded", max_shard_size="200KB")
    assert (folder / "model.safetensors.index.json").is_file()
    assert len(list(folder.glob("model-*.safetensors"))) > 1
    model = MusicGen.get_pretrained(str(folder), device="cpu")
    model.set_generation_params(use_sampling=False, duration=0.1)
    expected = hf_generate_codes(reference, ["dog barking"], frames=5, do_sample=False, guidance_scale=3.0)
    assert torch.equal(model.generate(["dog barking"], return_tokens=True)[1], expected)


def test_audiogen_from_cache(hf_cache):
    """AudioGen's repository holds the audiocraft files; its T5-large comes from google-t5/t5-large."""
    refs = torch.load(FIXTURES / "refs.pt", weights_only=True)
    put_folder_in_cache(hf_cache, "facebook/audiogen-medium", FIXTURES / "audiogen_tiny")
    put_folder_in_cache(hf_cache, "google-t5/t5-large", T5_TINY)
    model = AudioGen.get_pretrained("medium", device="cpu")
    model.set_generation_params(use_sampling=False, duration=0.3, top_k=32)
    wav, tokens = model.generate(["dog barking"], return_tokens=True)
    assert torch.equal(tokens, refs["audiogen.generate.tokens"])
    torch.testing.assert_close(wav, refs["audiogen.generate.wav"], atol=1e-5, rtol=1e-4)


def test_compression_pointer_is_followed(hf_cache, tmp_path, reference):
    """compression_state_dict.bin may only say {'pretrained': 'facebook/encodec_32khz'}."""
    reference.audio_encoder.save_pretrained(tmp_path / "encodec")
    put_folder_in_cache(hf_cache, "facebook/encodec_32khz", tmp_path / "encodec")
    put_folder_in_cache(hf_cache, "google-t5/t5-base", T5_TINY)
    folder = tmp_path / "musicgen_audiocraft"
    folder.mkdir()
    (folder / "state_dict.bin").symlink_to(FIXTURES / "musicgen_tiny" / "state_dict.bin")
    torch.save({"pretrained": "facebook/encodec_32khz"}, folder / "compression_state_dict.bin")
    model = MusicGen.get_pretrained(str(folder), device="cpu")
    assert isinstance(model.codec, Encodec)
    codes = torch.randint(0, 32, (1, 4, 6))
    with torch.no_grad():
        expected = reference.audio_encoder.decode(codes[None], [None]).audio_values
        torch.testing.assert_close(model.codec.decode(codes), expected, atol=1e-5, rtol=1e-4)


def test_offline_and_not_cached_says_how_to_download(hf_cache):
    with pytest.raises(ModelNotAvailable, match="not in the local Hugging Face cache.*minicraft download"):
        MusicGen.get_pretrained("medium", device="cpu")
    with pytest.raises(FileNotFoundError):     # ModelNotAvailable is a FileNotFoundError
        AudioGen.get_pretrained("medium", device="cpu")


def test_cache_layout_is_what_huggingface_hub_reads(hf_cache):
    from huggingface_hub import hf_hub_download
    snapshot = put_in_cache(hf_cache, "org/repo", {"config.json": b"{}", "model.safetensors": b"x" * 10})
    path = hf_hub_download("org/repo", "model.safetensors")
    assert path == str(snapshot / "model.safetensors")
    assert (snapshot / "model.safetensors").is_symlink()


def tiny_text_encoder():
    config = json.loads((T5_TINY / "config.json").read_text())
    return {k: v for k, v in config.items() if k not in ("architectures", "transformers_version")}


def test_a_decoder_as_wide_as_the_text_encoder_needs_no_projection(tmp_path):
    """transformers makes no enc_to_dec_proj when the widths match and uses the text states as they are."""
    width = tiny_text_encoder()["d_model"]
    reference = build_musicgen(tiny_text_encoder(), ENCODEC_TINY, dict(DECODER_TINY, hidden_size=width))
    assert not hasattr(reference, "enc_to_dec_proj")
    model = MusicGen.get_pretrained(str(save_musicgen(reference, tmp_path / "same-width")), device="cpu")
    expected = hf_generate_codes(reference, ["dog barking"], frames=8, do_sample=False, guidance_scale=3.0)
    model.set_generation_params(use_sampling=False, duration=8 / 50, cfg_coef=3.0)
    assert torch.equal(model.generate(["dog barking"], return_tokens=True)[1], expected)


def test_a_codec_with_fewer_codebooks_than_the_lm_fails_at_load(tmp_path):
    """0.5 kbps at 50 frames/s of 5-bit codes is 2 codebooks; the LM predicts 4. Said at load, both numbers."""
    reference = build_musicgen(tiny_text_encoder(), dict(ENCODEC_TINY, target_bandwidths=[0.5]), DECODER_TINY)
    folder = save_musicgen(reference, tmp_path / "two-codebooks")
    with pytest.raises(CheckpointError, match="the LM predicts 4 codebooks per frame, but its codec has only 2"):
        MusicGen.get_pretrained(str(folder), device="cpu")
