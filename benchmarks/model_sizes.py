"""The weights' memory of every official MusicGen and AudioGen, counted from their architectures.

Each model is built from its published configuration on PyTorch's ``meta`` device (shapes, no memory) with
transformers' classes, and its parameters are counted: text encoder, codec and LM. Nothing is downloaded and
nothing is measured; the README's model table comes from here.

    python benchmarks/model_sizes.py

Memory per dtype is the weights alone: float32 4 bytes a parameter, bfloat16 2, and with ``--quantize int8`` the LM's
linear layers 1 byte (plus a float32 scale per row) while the rest stays float32. Loading peaks at 1.0-1.2 times the
loaded model (``tests/formats/test_musicgen_small_size.py``), and the KV cache adds little next to the weights.
"""
from __future__ import annotations

import torch

from hf_models import ENCODEC_32KHZ, MUSICGEN_SMALL_DECODER, T5_BASE

MEDIUM = dict(MUSICGEN_SMALL_DECODER, num_hidden_layers=48, ffn_dim=6144, num_attention_heads=24, hidden_size=1536)
LARGE = dict(MUSICGEN_SMALL_DECODER, num_hidden_layers=48, ffn_dim=8192, num_attention_heads=32, hidden_size=2048)
STEREO = dict(num_codebooks=8, audio_channels=2)
T5_LARGE = dict(T5_BASE, d_model=1024, d_ff=4096, num_layers=24, num_heads=16)
ENCODEC_16KHZ = dict(ENCODEC_32KHZ, sampling_rate=16000, upsampling_ratios=[8, 5, 4, 2])   # audiogen's codec

# name -> (text encoder, codec, decoder, melody?)
MODELS = {
    "facebook/musicgen-small": (T5_BASE, ENCODEC_32KHZ, MUSICGEN_SMALL_DECODER, False),
    "facebook/musicgen-medium": (T5_BASE, ENCODEC_32KHZ, MEDIUM, False),
    "facebook/musicgen-large": (T5_BASE, ENCODEC_32KHZ, LARGE, False),
    "facebook/musicgen-melody": (T5_BASE, ENCODEC_32KHZ, MEDIUM, True),
    "facebook/musicgen-melody-large": (T5_BASE, ENCODEC_32KHZ, LARGE, True),
    "facebook/musicgen-stereo-small": (T5_BASE, ENCODEC_32KHZ, dict(MUSICGEN_SMALL_DECODER, **STEREO), False),
    "facebook/musicgen-stereo-medium": (T5_BASE, ENCODEC_32KHZ, dict(MEDIUM, **STEREO), False),
    "facebook/musicgen-stereo-large": (T5_BASE, ENCODEC_32KHZ, dict(LARGE, **STEREO), False),
    "facebook/musicgen-stereo-melody": (T5_BASE, ENCODEC_32KHZ, dict(MEDIUM, **STEREO), True),
    "facebook/musicgen-stereo-melody-large": (T5_BASE, ENCODEC_32KHZ, dict(LARGE, **STEREO), True),
    "facebook/audiogen-medium": (T5_LARGE, ENCODEC_16KHZ, MEDIUM, False),
}


def count(text: dict, codec: dict, decoder: dict, melody: bool) -> dict[str, int]:
    """Parameters of each part, and of the LM's linear layers (what int8 stores in one byte)."""
    import transformers
    from transformers import EncodecConfig, T5Config
    transformers.logging.set_verbosity_error()
    kind = "MusicgenMelody" if melody else "Musicgen"
    config = getattr(transformers, kind + "Config")(
        text_encoder=T5Config(**text).to_dict(), audio_encoder=EncodecConfig(**codec).to_dict(),
        decoder=getattr(transformers, kind + "DecoderConfig")(**decoder).to_dict())
    with torch.device("meta"):
        model = getattr(transformers, kind + "ForConditionalGeneration")(config)
    lm = model.decoder
    linear = sum(m.weight.numel() for m in lm.model.decoder.layers.modules() if isinstance(m, torch.nn.Linear))
    rows = sum(m.weight.shape[0] for m in lm.model.decoder.layers.modules() if isinstance(m, torch.nn.Linear))
    total = sum(p.numel() for p in model.parameters())
    return dict(total=total, lm=sum(p.numel() for p in lm.parameters()), linear=linear, rows=rows,
                text=sum(p.numel() for p in model.text_encoder.parameters()),
                codec=sum(p.numel() for p in model.audio_encoder.parameters()))


def main():
    print(f"{'model':40s} {'params':>8s} {'LM':>8s} {'float32':>8s} {'bfloat16':>9s} {'int8 LM':>8s}")
    for name, spec in MODELS.items():
        c = count(*spec)
        int8 = 4 * (c["total"] - c["linear"]) + c["linear"] + 4 * c["rows"]
        print(f"{name:40s} {c['total'] / 1e9:7.2f}B {c['lm'] / 1e9:7.2f}B {4 * c['total'] / 2**30:6.1f} GB "
              f"{2 * c['total'] / 2**30:6.1f} GB {int8 / 2**30:6.1f} GB")


if __name__ == "__main__":
    main()
