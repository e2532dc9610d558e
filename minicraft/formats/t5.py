"""The T5 encoder from a transformers checkpoint (an encoder-only or a full T5, alone or inside MusicGen)."""
from __future__ import annotations

from pathlib import Path

import torch

from minicraft.formats.checkpoints import CheckpointError, load_into, on_meta, read_json, read_state_dict
from minicraft.modules.t5 import T5Config, T5Encoder


def encoder_state(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """The encoder's tensors from a T5 state dict (encoder-only or full), prefix removed.

    Skipped on purpose: a full T5's ``decoder.*`` and ``lm_head.*``. The token
    embedding is stored as ``shared.weight`` and/or (tied) ``encoder.embed_tokens.weight``.
    """
    out = {}
    for key, tensor in state.items():
        if not key.startswith(prefix):
            continue
        key = key[len(prefix):]
        if key.startswith(("decoder.", "lm_head.")):
            continue
        if key == "encoder.embed_tokens.weight":
            out.setdefault("shared.weight", tensor)
            continue
        out[key] = tensor
    return out


def t5_from_state(state: dict, config: dict, prefix: str = "", source="T5 checkpoint",
                  dtype: torch.dtype | None = None) -> T5Encoder:
    """Build the encoder from an already read state dict (e.g. MusicGen's ``text_encoder.``)."""
    with on_meta():
        model = T5Encoder(T5Config.from_hf(config))
    return load_into(model, encoder_state(state, prefix), source, dtype).eval()


def load_t5_encoder(folder: str | Path, dtype: torch.dtype | None = None) -> T5Encoder:
    """A transformers T5 folder (``config.json`` + weights), encoder-only or full."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such T5 folder.")
    config = read_json(folder / "config.json")
    for name in ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return t5_from_state(read_state_dict(folder / name), config, source=folder / name, dtype=dtype)
    raise CheckpointError(f"{folder}: no T5 weights (model.safetensors or pytorch_model.bin).")
