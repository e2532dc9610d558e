"""Official-format checkpoints written by transformers itself, with random weights.

These are what a download of facebook/musicgen-* would give, at any size:
``MusicgenForConditionalGeneration(config).save_pretrained(folder)`` plus the
tokenizer files a MusicGen repository ships. The benchmarks build their weights with it, and the tests
their reference checkpoints (pytest puts this folder on its path: pyproject.toml).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch


# the tokenizer and T5 configuration of audiocraft's tiny fixtures (tests/fixtures/audiocraft_tiny/README.md)
T5_TINY = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "audiocraft_tiny" / "t5_tiny"
TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "tokenizer_config.json")

# facebook/encodec_32khz's configuration (the codec of every MusicGen).
ENCODEC_32KHZ = dict(sampling_rate=32000, audio_channels=1, num_filters=64, num_residual_layers=1,
                     upsampling_ratios=[8, 5, 4, 4], codebook_size=2048, codebook_dim=128, hidden_size=128,
                     num_lstm_layers=2, normalize=False, use_causal_conv=False, pad_mode="reflect", compress=2,
                     use_conv_shortcut=False, trim_right_ratio=1.0, target_bandwidths=[2.2], kernel_size=7,
                     last_kernel_size=7, residual_kernel_size=3, dilation_growth_rate=2)
# t5-base and musicgen-small's decoder.
T5_BASE = dict(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12,
               relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="relu",
               dropout_rate=0.0)
MUSICGEN_SMALL_DECODER = dict(vocab_size=2048, max_position_embeddings=2048, num_hidden_layers=24, ffn_dim=4096,
                              num_attention_heads=16, hidden_size=1024, num_codebooks=4, audio_channels=1)
MUSICGEN_SIZES = {"small": MUSICGEN_SMALL_DECODER,
                  "medium": dict(MUSICGEN_SMALL_DECODER, num_hidden_layers=48, ffn_dim=6144,
                                 num_attention_heads=24, hidden_size=1536)}
# Small versions of the same (the tiny codec has 4 codebooks of 32: 1 kbps at 50 Hz x 5 bits).
ENCODEC_TINY = dict(ENCODEC_32KHZ, num_filters=4, codebook_size=32, codebook_dim=16, hidden_size=16,
                    target_bandwidths=[1.0])
DECODER_TINY = dict(vocab_size=32, max_position_embeddings=256, num_hidden_layers=2, ffn_dim=128,
                    num_attention_heads=4, hidden_size=64, num_codebooks=4, audio_channels=1)
# the stereo MusicGens: the mono codec on each channel, 2 x 4 codebooks interleaved (musicgen-stereo-small)
DECODER_TINY_STEREO = dict(DECODER_TINY, num_codebooks=8, audio_channels=2)
MUSICGEN_STEREO_SMALL_DECODER = dict(MUSICGEN_SMALL_DECODER, num_codebooks=8, audio_channels=2)


def build_musicgen(text_encoder: dict, audio_encoder: dict, decoder: dict, seed: int = 0, melody: bool = False):
    """A MusicgenForConditionalGeneration with random weights (eval mode); with ``melody``, a
    MusicgenMelodyForConditionalGeneration (chroma and text prepended to the decoder's input)."""
    import transformers
    from transformers import EncodecConfig, T5Config
    transformers.logging.set_verbosity_error()
    torch.manual_seed(seed)
    kind = "MusicgenMelody" if melody else "Musicgen"
    config_class, decoder_class = getattr(transformers, kind + "Config"), getattr(transformers, kind + "DecoderConfig")
    codebook_size = decoder["vocab_size"]
    config = config_class(text_encoder=T5Config(**text_encoder).to_dict(),
                          audio_encoder=EncodecConfig(**audio_encoder).to_dict(),
                          decoder=decoder_class(**decoder, pad_token_id=codebook_size, bos_token_id=codebook_size,
                                                dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                                                layerdrop=0.0).to_dict())
    model = getattr(transformers, kind + "ForConditionalGeneration")(config).eval()
    with torch.no_grad():                     # transformers initialises codebooks to zeros
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
    return model


def tiny_text_encoder() -> dict:
    config = json.loads((T5_TINY / "config.json").read_text())
    return {k: v for k, v in config.items() if k not in ("architectures", "transformers_version")}


def tiny_musicgen_melody(seed: int = 0):
    return build_musicgen(tiny_text_encoder(), ENCODEC_TINY, DECODER_TINY, seed, melody=True)


def tiny_musicgen(seed: int = 0, decoder: dict = DECODER_TINY):
    return build_musicgen(tiny_text_encoder(), ENCODEC_TINY, decoder, seed)


def save_musicgen(model, folder: Path, max_shard_size: str | None = None, tokenizer: Path = T5_TINY) -> Path:
    """``save_pretrained`` plus what a MusicGen repository also holds (tokenizer files from ``tokenizer``)."""
    folder = Path(folder)
    if max_shard_size:
        model.save_pretrained(folder, max_shard_size=max_shard_size)
    else:
        model.save_pretrained(folder)
    for name in TOKENIZER_FILES:
        if (Path(tokenizer) / name).exists():
            shutil.copy(Path(tokenizer) / name, folder / name)
    generation = json.loads((folder / "generation_config.json").read_text())
    generation.update(do_sample=True, guidance_scale=3.0, max_length=1500, top_k=250)   # as on the Hub
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2))
    return folder


def hf_generate_codes(model, prompts: list[str], frames: int, return_audio: bool = False,
                      chroma: torch.Tensor | None = None, **kwargs):
    """transformers' MusicGen generation; returns the codes [B, K, frames] it decodes (and the audio, if asked).

    A stereo model decodes twice, left codebooks then right: the codes come back interleaved as its LM
    predicts them. ``chroma`` [B, frames, 12]: a MusicgenMelody's ``input_features``."""
    from transformers import AutoTokenizer
    inputs = AutoTokenizer.from_pretrained(T5_TINY)(prompts, return_tensors="pt", padding=True)
    if chroma is not None:
        inputs["input_features"] = chroma
    captured = []
    decode = model.audio_encoder.decode

    def spy(audio_codes, *args, **kw):
        captured.append(audio_codes[0])
        return decode(audio_codes, *args, **kw)
    model.audio_encoder.decode = spy
    delays = model.decoder.num_codebooks // model.decoder.config.audio_channels - 1
    try:
        with torch.no_grad():
            audio = model.generate(**inputs, max_new_tokens=frames + delays, **kwargs)
    finally:
        model.audio_encoder.decode = decode
    codes = captured[0] if len(captured) == 1 else torch.stack(captured, dim=2).flatten(1, 2)   # [B, K, T]
    return (codes, audio) if return_audio else codes
