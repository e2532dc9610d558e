"""LoRA adapters on an LM: which projections get one, what trains, and folding them back in.

:func:`add_adapters` replaces, in the chosen layers, the attention modules and the feed-forward ``linear1`` /
``linear2`` by their LoRA versions (:mod:`minicraft.modules.lora`) and freezes everything else; the LM's code
does not change, only the modules it calls. :func:`adapter_state` is what a fine-tune saves (the updates
alone), :func:`merge_adapters` turns an adapted LM back into a plain one, its weights ``W + ΔW``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from minicraft.models.lm import LM
from minicraft.modules.attention import MultiheadAttention
from minicraft.modules.lora import LoRAAttention, LoRALinear

TARGETS = ("self_attn", "cross_attention", "ffn")


@dataclass
class AdapterConfig:
    rank: int = 8
    alpha: float = 16.0                  # the update is scaled by alpha / rank
    dropout: float = 0.0                 # on the update's input, during training
    targets: list[str] = field(default_factory=lambda: list(TARGETS))    # which projections of a layer
    layers: list[int] | None = None      # which layers (None: all)

    def __post_init__(self):
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"LoRA rank must be a whole number >= 1, got {self.rank!r}.")
        if not isinstance(self.alpha, (int, float)) or isinstance(self.alpha, bool) or self.alpha <= 0:
            raise ValueError(f"LoRA alpha must be a number > 0, got {self.alpha!r}.")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout!r}.")
        unknown = sorted(set(self.targets) - set(TARGETS))
        if unknown or not self.targets:
            raise ValueError(f"LoRA targets {unknown or self.targets!r}: choose among {', '.join(TARGETS)}.")

    def to_dict(self) -> dict:
        return asdict(self)


def chosen_layers(lm: LM, config: AdapterConfig) -> list[int]:
    count = len(lm.transformer.layers)
    layers = list(range(count)) if config.layers is None else list(config.layers)
    bad = [i for i in layers if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < count]
    if bad or not layers:
        raise ValueError(f"LoRA layers {bad or layers!r}: this LM has layers 0 to {count - 1}.")
    return layers


def add_adapters(lm: LM, config: AdapterConfig, base_dtype: torch.dtype = torch.float32) -> LM:
    """Freeze ``lm`` and give the chosen projections LoRA updates (in place); returns ``lm``.

    ``base_dtype``: float32, bfloat16 or int8, how the adapted projections keep their frozen weights."""
    lm.requires_grad_(False)
    settings = dict(rank=config.rank, alpha=config.alpha, dropout=config.dropout, base_dtype=base_dtype)
    for i in chosen_layers(lm, config):
        layer = lm.transformer.layers[i]
        for name in ("self_attn", "cross_attention"):
            attention = getattr(layer, name)
            if name in config.targets and isinstance(attention, MultiheadAttention):
                setattr(layer, name, LoRAAttention(attention, **settings))
        if "ffn" in config.targets:
            for name in ("linear1", "linear2"):
                linear = getattr(layer, name)
                setattr(layer, name, LoRALinear(linear.weight, linear.bias, 1, **settings))
    device = next(lm.parameters()).device
    return lm.to(device)


def adapter_state(lm: LM) -> dict[str, torch.Tensor]:
    """The trainable updates only: {name: tensor} (``...loras.{j}.A`` and ``.B``)."""
    return {name: p.detach() for name, p in lm.named_parameters() if ".loras." in name}


def load_adapter_state(lm: LM, state: dict[str, torch.Tensor]):
    """Put saved updates into an LM that :func:`add_adapters` prepared with the same config."""
    mine = dict(lm.named_parameters())
    missing = sorted(set(k for k in mine if ".loras." in k) - set(state))
    unexpected = sorted(set(state) - set(mine))
    if missing or unexpected:
        raise ValueError(f"the adapter does not fit this LM ({len(missing)} updates missing, e.g. "
                         f"{missing[:1]}; {len(unexpected)} unknown, e.g. {unexpected[:1]}).")
    with torch.no_grad():
        for name, tensor in state.items():
            if mine[name].shape != tensor.shape:
                raise ValueError(f"the adapter's {name} is {tuple(tensor.shape)}, this LM needs "
                                 f"{tuple(mine[name].shape)}: it was trained on another model.")
            mine[name].copy_(tensor)


def merge_adapters(lm: LM) -> LM:
    """Fold every update into its weight (in place): the LM is plain again, in the dtype of its other weights."""
    dtype = lm.out_norm.weight.dtype
    for layer in lm.transformer.layers:
        for name, child in list(layer.named_children()):
            if isinstance(child, (LoRAAttention, LoRALinear)):
                setattr(layer, name, child.merged().to(next(child.buffers()).device, dtype))
    return lm


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(trainable, all) parameters, frozen buffers of the adapted projections counted as parameters."""
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
    frozen += sum(b.numel() for name, b in module.named_buffers() if name.endswith((".base.weight", ".base.bias")))
    return trainable, trainable + frozen
