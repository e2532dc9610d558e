"""Int8 weight-only quantization of the LM's linear layers.

A decoding step multiplies one or two rows of activations by every weight of
the LM, so its time is mostly the time to *read* the weights: 4 bytes each in
float32, 2 in bfloat16, 1 in int8. Weight-only int8 keeps activations in
floating point and stores each weight row ``o`` as small integers and one
scale (symmetric, per output channel)::

    w[o, i] ≈ scale[o] · q[o, i],   q in [-127, 127],   scale[o] = max_i |w[o, i]| / 127

The rounding error is at most ``scale / 2`` per weight; the benchmark reports
what it does to the logits and the tokens. Only the LM is quantized: T5 runs
once per prompt and the codec once per clip, neither is on the per-step path.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from minicraft.fast import kernels
from minicraft.fast.attention import FastMultiheadAttention
from minicraft.fast.replace import become
from minicraft.modules.attention import MultiheadAttention


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[out, in] float -> (q [out, in] int8, scale [out] float32)."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


class Int8Linear(nn.Module):
    """A linear layer with int8 weights; ``forward(x, rows)`` may use a slice of its outputs.

    It replaces an ``nn.Linear`` for good (the float weights are gone): :func:`minicraft.fast.restore`
    cannot undo it.

    A decoding step's rows (up to 16, CPU) read the int8 weights directly with minicraft's own kernel
    (:mod:`minicraft.fast.kernels`). Otherwise (more rows, a GPU, no kernels) it dequantizes
    (``q · scale``) and calls an ordinary matmul, which any device can run. (PyTorch's own int8 CPU
    kernel, ``torch._weight_int8pack_mm``, was the fast path for more rows
    until it measured slower than dequantizing: benchmarks/README.md.)
    """

    replaces = nn.Linear
    what = "int8 weights (one scale per row), read by the C kernels"

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype):
        super().__init__()
        self.register_buffer("weight", q)                                  # [out, in] int8
        self.register_buffer("scale", scale.float())                       # [out], float32 whatever dtype
        self.register_buffer("bias", None if bias is None else bias.detach().to(dtype))

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None = None) -> "Int8Linear":
        if weight.is_meta:          # shapes only, for a checkpoint to fill (on meta, the arithmetic
            q = torch.empty(weight.shape, dtype=torch.int8, device="meta")   # would import torch._dynamo)
            return cls(q, torch.empty(weight.shape[0], device="meta"), bias, weight.dtype)
        q, scale = quantize_rows(weight)
        return cls(q.to(weight.device), scale.to(weight.device), bias, weight.dtype)

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    def forward(self, x: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
        """x [..., in] -> [..., out] (or the ``rows`` slice of the outputs)."""
        q, scale, bias = self.weight, self.scale, self.bias
        if rows is not None:
            q, scale = q[rows], scale[rows]
            bias = None if bias is None else bias[rows]
        if kernels.applies(x, q):
            return kernels.kernel_linear(x, q, bias, scale)
        return F.linear(x, q.to(x.dtype) * scale.to(x.dtype)[:, None], None if bias is None else bias.to(x.dtype))


def int8_modules(lm: nn.Module) -> dict[str, str]:
    """What :func:`quantize_lm_int8` replaces: {the new Int8Linear's name: the float weight's name}."""
    names = {}
    for path, module in lm.named_modules():
        prefix = path + "." if path else ""
        if isinstance(module, MultiheadAttention):
            names[prefix + "in_proj_int8"] = prefix + "in_proj_weight"
        names.update({prefix + name: f"{prefix}{name}.weight"
                      for name, child in module.named_children() if isinstance(child, nn.Linear)})
    return names


@torch.no_grad()
def quantize_lm_int8(lm: nn.Module) -> nn.Module:
    """Replace, in place, every per-step linear layer of an LM by an :class:`Int8Linear`.

    That is the attention projections (the packed ``in_proj_weight`` too),
    the feed-forward layers and the K output heads; embeddings, norms and
    the text projection stay as they are.
    """
    for name, weight in int8_modules(lm).items():
        owner, _, child = name.rpartition(".")
        owner = lm.get_submodule(owner)
        if child == "in_proj_int8":                               # a MultiheadAttention's packed q/k/v
            if type(owner) is MultiheadAttention:
                become(owner, FastMultiheadAttention)
            owner.in_proj_int8 = Int8Linear.from_weight(owner.in_proj_weight, owner.in_proj_bias)
            for float_name in ("in_proj_weight", "in_proj_bias"):  # free the float copies
                delattr(owner, float_name)
                setattr(owner, float_name, None)
        else:
            linear = getattr(owner, child)
            setattr(owner, child, Int8Linear.from_weight(linear.weight, linear.bias))
    return lm

