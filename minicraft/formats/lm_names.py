"""The LM's tensor names in audiocraft's layout (minicraft's own) and in a transformers MusicGen decoder."""
from __future__ import annotations

import torch

from minicraft.models.lm import LMConfig

# transformers' names for the parts of a layer that map one to one
LAYER_RENAMES = {"norm1": "self_attn_layer_norm", "norm_cross": "encoder_attn_layer_norm",
                 "norm2": "final_layer_norm", "linear1": "fc1", "linear2": "fc2",
                 "self_attn.out_proj": "self_attn.out_proj", "cross_attention.out_proj": "encoder_attn.out_proj"}


def hf_names(config: LMConfig, prefix: str = "decoder.") -> tuple[dict[str, str], dict[str, list[str]]]:
    """Our tensor names -> a transformers MusicGen decoder's.

    Returns the one-to-one names, and the packed projections: our
    ``in_proj_weight`` [3D, D] is transformers' ``q_proj``, ``k_proj`` and
    ``v_proj`` stacked. (Positional tables are not weights: minicraft computes
    the sinusoids, so transformers' ``embed_positions`` has no counterpart.)
    """
    dec = prefix + "model.decoder."
    single = {f"out_norm.{w}": f"{dec}layer_norm.{w}" for w in ("weight", "bias")}
    for k in range(config.num_codebooks):
        single[f"emb.{k}.weight"] = f"{dec}embed_tokens.{k}.weight"
        single[f"linears.{k}.weight"] = f"{prefix}lm_heads.{k}.weight"
    packed = {}
    for i in range(config.num_layers):
        ours, theirs = f"transformer.layers.{i}.", f"{dec}layers.{i}."
        for a, b in LAYER_RENAMES.items():
            single.update({f"{ours}{a}.{w}": f"{theirs}{b}.{w}" for w in ("weight", "bias")})
        for a, b in (("self_attn", "self_attn"), ("cross_attention", "encoder_attn")):
            packed[f"{ours}{a}.in_proj_weight"] = [f"{theirs}{b}.{p}_proj.weight" for p in "qkv"]
    return single, packed


def lm_state_from_hf(state: dict[str, torch.Tensor], config: LMConfig, prefix: str = "decoder.",
                     consume: bool = False) -> dict[str, torch.Tensor]:
    """Rename a transformers MusicGen decoder's tensors to minicraft/audiocraft names.

    ``consume`` removes q, k and v from ``state`` as each layer's are packed,
    so that loading never holds all the separate and all the packed copies.
    """
    single, packed = hf_names(config, prefix)
    out = {ours: state[theirs] for ours, theirs in single.items() if theirs in state}
    for ours, theirs in packed.items():
        if all(t in state for t in theirs):
            out[ours] = torch.cat([state.pop(t) if consume else state[t] for t in theirs])
    return out
