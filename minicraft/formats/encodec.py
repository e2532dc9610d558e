"""EnCodec from either official format: audiocraft's ``compression_state_dict.bin`` (whose names
minicraft's modules share) or a transformers ``EncodecModel`` (renamed by :func:`encodec_state_from_hf`)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from minicraft.formats.checkpoints import (CheckpointError, fold_weight_norm, load_into, on_meta, read_audiocraft,
                                           read_json, read_state_dict)
from minicraft.models.codec import Encodec, EncodecConfig
from minicraft.modules.seanet import ConvTranspose1d

TRAINING_ONLY = ("inited", "cluster_size", "embed_avg")   # RVQ's EMA statistics, unused at inference


def build(config: EncodecConfig, state: dict, source, dtype=None) -> Encodec:
    if config.renormalize:
        raise CheckpointError(f"{source}: EnCodec with renormalize=True is not supported "
                              "(its decode needs the per-clip scale that MusicGen/AudioGen never use).")
    state = {k: v for k, v in fold_weight_norm(state, consume=True).items()
             if k.rsplit(".", 1)[-1] not in TRAINING_ONLY}
    with on_meta():
        codec = Encodec(config)
    for i, layer in enumerate(codec.decoder.model):   # transposed convs, named as audiocraft names them
        if isinstance(layer, ConvTranspose1d):
            old_prefix, new_prefix = f"decoder.model.{i}.conv.conv.", f"decoder.model.{i}.convtr.convtr."
            state = {new_prefix + k[len(old_prefix):] if k.startswith(old_prefix) else k: v
                     for k, v in state.items()}
    load_into(codec, state, source, dtype)
    codec.encoder.apply(_flatten_lstm)
    codec.decoder.apply(_flatten_lstm)
    return codec.eval()


def _flatten_lstm(module: nn.Module):
    """Assigned LSTM weights are not in cuDNN's packed layout yet; repack them (GPU only)."""
    if isinstance(module, nn.LSTM):
        module.flatten_parameters()


def load_encodec_audiocraft(path: str | Path, dtype: torch.dtype | None = None,
                            resolve_pointer: Callable[..., "Encodec"] | None = None) -> Encodec:
    """An audiocraft ``compression_state_dict.bin``.

    Official MusicGen files may hold just ``{'pretrained': 'facebook/encodec_32khz'}``;
    ``resolve_pointer(repo_id, dtype=...)`` then loads that repository.
    """
    config, state, package = read_audiocraft(path)
    if config is None:
        pointer = package["pretrained"]
        if resolve_pointer is None:
            raise CheckpointError(f"{path}: points to {pointer!r}, and no way to fetch it was given.")
        return resolve_pointer(pointer, dtype=dtype)
    if config.get("compression_model", "encodec") != "encodec":
        raise CheckpointError(f"{path}: compression model {config.get('compression_model')!r} is not EnCodec.")
    return build(EncodecConfig.from_audiocraft(config), state, path, dtype)


_HF_RENAMES = [
    (r"^quantizer\.layers\.(\d+)\.codebook\.", r"quantizer.vq.layers.\1._codebook."),
    (r"^(encoder|decoder)\.layers\.(\d+)\.lstm\.", r"\1.model.\2.lstm."),
    (r"^(encoder|decoder)\.layers\.(\d+)\.block\.(\d+)\.conv\.", r"\1.model.\2.block.\3.conv.conv."),
    (r"^(encoder|decoder)\.layers\.(\d+)\.shortcut\.conv\.", r"\1.model.\2.shortcut.conv.conv."),
    (r"^(encoder|decoder)\.layers\.(\d+)\.conv\.", r"\1.model.\2.conv.conv."),
]


def encodec_state_from_hf(state: dict[str, torch.Tensor], prefix: str = "",
                          consume: bool = False) -> dict[str, torch.Tensor]:
    """Rename a transformers EnCodec state dict to minicraft/audiocraft names
    (``consume``: moving the tensors out of ``state``, so the result is their only holder).

    transformers calls every convolution ``layers.{i}.conv``; audiocraft says
    ``model.{i}.conv.conv``, or ``model.{i}.convtr.convtr`` for the decoder's
    transposed convolutions. Which decoder layers those are is known only from
    the model's structure, so :func:`build` finishes that part.
    """
    out = {}
    for key in [k for k in state if k.startswith(prefix)]:
        tensor = state.pop(key) if consume else state[key]
        key = key[len(prefix):]
        for pattern, replacement in _HF_RENAMES:
            new = re.sub(pattern, replacement, key)
            if new != key:
                key = new
                break
        out[key] = tensor
    return out


def load_encodec_hf(source, prefix: str = "", dtype: torch.dtype | None = None, source_name=None) -> Encodec:
    """A transformers EnCodec: a folder (``config.json`` + ``model.safetensors``),
    or ``(config dict, state dict)`` with ``prefix`` (MusicGen's ``audio_encoder.``); that form moves the
    codec's tensors out of the state dict, so each can be freed once folded and loaded."""
    if isinstance(source, (str, Path)):
        folder = Path(source)
        config = read_json(folder / "config.json")
        weights = folder / "model.safetensors"
        state = read_state_dict(weights)
        source_name = source_name or weights
    else:
        config, state = source
        source_name = source_name or "EnCodec state"
    state = encodec_state_from_hf(state, prefix, consume=True)
    return build(EncodecConfig.from_hf(config), state, source_name, dtype)
