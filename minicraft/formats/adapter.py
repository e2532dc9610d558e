"""A fine-tune's LoRA adapter on disk: ``adapter.safetensors`` (the updates) and ``adapter_config.json``.

The config names the base model the adapter belongs to (a short name such as "tiny", a Hub id or a folder), its
family (musicgen or audiogen), the LoRA settings and the LM's shape, so that loading the folder loads the base and
applies the adapter (``MusicGen.get_pretrained("runs/mine")``), and an adapter is refused by an LM of another
shape before any weight is touched.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from minicraft.files import atomic_write, write_text_atomic
from minicraft.formats.checkpoints import CheckpointError
from minicraft.models.adapters import AdapterConfig, add_adapters, load_adapter_state, merge_adapters
from minicraft.models.lm import LM, LMConfig

CONFIG = "adapter_config.json"
WEIGHTS = "adapter.safetensors"
FORMAT = "minicraft-lora"


def lm_shape(config: LMConfig) -> dict:
    return dict(dim=config.dim, num_layers=config.num_layers, num_heads=config.num_heads, ffn_dim=config.ffn_dim,
                num_codebooks=config.num_codebooks, codebook_size=config.codebook_size)


def is_adapter(folder: str | Path) -> bool:
    return (Path(folder).expanduser() / CONFIG).is_file()


def save_adapter(folder: str | Path, state: dict[str, torch.Tensor], config: AdapterConfig, base: str, kind: str,
                 lm_config: LMConfig) -> Path:
    """Write the adapter (each file whole or not at all); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_write(folder / WEIGHTS) as f:
        f.write(save({k: v.detach().cpu().contiguous() for k, v in state.items()}, metadata={"format": FORMAT}))
    meta = dict(format=FORMAT, version=1, base=base, kind=kind, lora=config.to_dict(), lm=lm_shape(lm_config))
    write_text_atomic(folder / CONFIG, json.dumps(meta, indent=2) + "\n")
    return folder


def read_adapter_config(folder: str | Path) -> dict:
    path = Path(folder).expanduser() / CONFIG
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read this adapter config ({e}).") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{path}: not a minicraft LoRA adapter (format {found!r}).")
    return meta


def read_adapter(folder: str | Path, lm_config: LMConfig) -> tuple[AdapterConfig, dict[str, torch.Tensor]]:
    """The adapter's settings and updates, checked against the LM they are for."""
    folder = Path(folder).expanduser()
    meta = read_adapter_config(folder)
    if meta["lm"] != lm_shape(lm_config):
        raise CheckpointError(f"{folder}: this adapter was trained on an LM shaped {meta['lm']}, not this one "
                              f"({lm_shape(lm_config)}); load it with its base model, {meta['base']!r}.")
    if not (folder / WEIGHTS).is_file():
        raise CheckpointError(f"{folder}: {WEIGHTS} is missing (the fine-tune has not saved an adapter yet?).")
    return AdapterConfig(**meta["lora"]), load_file(str(folder / WEIGHTS))


def apply_adapter(lm: LM, folder: str | Path, merge: bool = False) -> LM:
    """Give ``lm`` the adapter saved in ``folder`` (in place): as LoRA modules beside its frozen weights, or,
    with ``merge``, folded into them (a plain LM again, as fast as the base)."""
    config, state = read_adapter(folder, lm.config)
    add_adapters(lm, config, base_dtype=lm.out_norm.weight.dtype)
    load_adapter_state(lm, state)
    return merge_adapters(lm) if merge else lm
