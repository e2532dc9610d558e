"""Writing minicraft models in the Hugging Face format: same model back, and transformers can read it."""

import torch

from paths import FIXTURES, T5_TINY
from minicraft.formats.export import export_musicgen
from minicraft.formats.loaders import load_audiocraft, load_huggingface
from minicraft.api import MusicGen


def test_audiocraft_to_huggingface_round_trip(tmp_path):
    parts = load_audiocraft(FIXTURES / "musicgen_tiny", t5=T5_TINY)
    export_musicgen(tmp_path, parts.lm, parts.conditioner, parts.codec, max_duration=30.0)
    original, exported = MusicGen(parts), MusicGen(load_huggingface(tmp_path))
    assert exported.max_duration == 30.0
    for model in (original, exported):
        model.set_generation_params(use_sampling=False, duration=0.4)
    wav_a, tokens_a = original.generate(["dog barking"], return_tokens=True)
    wav_b, tokens_b = exported.generate(["dog barking"], return_tokens=True)
    assert torch.equal(tokens_a, tokens_b)
    torch.testing.assert_close(wav_a, wav_b, atol=1e-5, rtol=1e-4)

    from transformers import MusicgenForConditionalGeneration
    model, info = MusicgenForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
