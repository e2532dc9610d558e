"""A transformer layer's decoding step in one call to ``kernels.c`` (CPU; float32, bfloat16 or int8 weights).

:class:`FastTransformerLayer` is the reference :class:`~minicraft.modules.transformer.TransformerLayer` whose
decoding steps, where they can, run as ``layer_step`` in C; :func:`minicraft.fast.accelerate` puts it in place.

Once the products read their weights at memory speed, what is left of a decoding step is the thirty-odd
small PyTorch operations per layer between them: norms, cache writes, attention, GELU, residual adds,
views. Each costs far more than its arithmetic (dispatch, a new tensor, and caches just flushed by the
product before it). ``layer_step`` in ``kernels.c`` does the whole layer for one position, the formula of
:meth:`TransformerLayer.forward <minicraft.modules.transformer.TransformerLayer.forward>`, rounding to bfloat16
where the layer stores a tensor. With float32 activations it matches PyTorch's layer to float32 rounding
(~1e-6: the same sums in another order, not the same bits); with bfloat16 ones it is as close to float32
as PyTorch's bfloat16 layer, but not the same trajectory (benchmarks/README.md).

Where a short text makes it cheaper, cross-attention does not multiply by its query and output
projections at all: the text's keys and values are fixed for a whole generation, so they are multiplied
into those projections once (:func:`fold_text`), and each step reads 2·H·L·D numbers per row instead of
Wq and Wo's 2·D·D. For musicgen-small and a 10-token prompt, that is 0.66 MB per row and layer instead
of 4 MB in bfloat16. The same sums in another order, rounded at other places (``kernels.c`` writes out the
algebra; tests/fast/test_layer_step.py checks it); a layer's ``fold_cross = False`` turns it off. Rows whose text is all
zeros (CFG's null condition: its cross-attention adds exactly 0) skip cross-attention altogether, so with
CFG only the prompt's row reads the folded text.

It takes over only where it computes exactly that layer: one new position, a :class:`StepCache`, float32
or bfloat16 (at most 4 rows) or int8 (at most 16) weights without biases, the kernels built. Elsewhere (the
prompt, a GPU, ``MINICRAFT_KERNELS=0``, no C compiler) the reference layer runs, whose float32 results are
the reference.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from minicraft.fast import kernels
from minicraft.modules.attention import KVCache
from minicraft.modules.transformer import TransformerLayer

i64, ptr = ctypes.c_int64, ctypes.c_void_p


@dataclass
class StepCache(KVCache):
    """A :class:`~minicraft.modules.attention.KVCache` that also keeps what ``layer_step`` prepared for its
    layer in this generation (``step_args``: None until the first step, False where it does not apply)."""
    step_args: object = None


class Prepared(NamedTuple):
    """What one layer's steps share for a whole generation (kept on its StepCache as ``step_args``)."""
    args: "LayerStep"              # the C arguments; only ``T`` changes from step to step
    alive: list                    # tensors the arguments point into (float32 norms, the mask)
    cross_mask: torch.Tensor | None


class Weight(ctypes.Structure):
    _fields_ = [("w", ptr), ("scale", ptr), ("O", i64), ("I", i64), ("f32", ctypes.c_int)]


class LayerStep(ctypes.Structure):
    """``LayerStep`` in kernels.c, field for field."""
    _fields_ = [("M", i64), ("D", i64), ("H", i64), ("F", i64), ("T", i64), ("max_len", i64), ("L", i64),
                ("cross_rows", i64), ("mem_sb", i64), ("mem_sh", i64), ("mem_sl", i64),
                ("act_bf16", ctypes.c_int), ("cross", ctypes.c_int), ("eps", ctypes.c_float),
                *[(name, ptr) for name in ("norm1_w", "norm1_b", "norm_cross_w", "norm_cross_b",
                                           "norm2_w", "norm2_b")],
                *[(name, Weight) for name in ("in_proj", "out_proj", "cross_q", "cross_out", "linear1", "linear2")],
                ("keys", ptr), ("values", ptr), ("mem_keys", ptr), ("mem_values", ptr), ("mem_mask", ptr),
                ("text_q", ptr), ("text_out", ptr)]


def linear_parts(module) -> tuple:
    """(weight, int8 scale or None, bias) of an nn.Linear or an Int8Linear."""
    return module.weight, getattr(module, "scale", None), module.bias


def in_proj_parts(attn) -> tuple:
    """The same for a MultiheadAttention's packed q/k/v projection."""
    if getattr(attn, "in_proj_int8", None) is not None:
        return linear_parts(attn.in_proj_int8)
    return attn.in_proj_weight, None, attn.in_proj_bias


def matrix(parts: tuple, rows: int | None = None) -> Weight | None:
    """The C view of a weight (its first ``rows`` rows), or None if layer_step cannot take it."""
    w, scale, bias = parts
    int8 = w.dtype == torch.int8 and scale is not None and scale.dtype == torch.float32
    floating = w.dtype in (torch.bfloat16, torch.float32)
    if bias is not None or not (int8 or floating) or not w.is_contiguous():
        return None
    rows = w.shape[0] if rows is None else rows
    return Weight(w.data_ptr(), scale.data_ptr() if int8 else None, rows, w.shape[1], w.dtype == torch.float32)


def dequantized(parts: tuple, rows: int) -> torch.Tensor:
    """The first ``rows`` rows of a weight as float32, int8 scales applied."""
    w, scale = parts[0][:rows].float(), parts[1]
    return w if scale is None else w * scale[:rows, None]


def fold_text(cross, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-attention's query and output projections folded into the text (``folded_cross_attention``).

    keys, values [M, H, L, Dh] -> A, B [M, H·L, D] in their dtype: A[m, h·L + l] = Wq_hᵀ k, B[m, h·L + l] = Wo_h v.
    """
    M, H, L, Dh = keys.shape
    D = H * Dh
    wq = dequantized(in_proj_parts(cross), D).view(H, Dh, D)                # q_h = wq[h] @ x
    wo = dequantized(linear_parts(cross.out_proj), D).view(D, H, Dh)        # out = Σ_h wo[:, h] @ att_h
    a = torch.einsum("mhlk,hkd->mhld", keys.float(), wq)
    b = torch.einsum("mhlk,dhk->mhld", values.float(), wo)
    return (a.reshape(M, H * L, D).to(keys.dtype).contiguous(), b.reshape(M, H * L, D).to(keys.dtype).contiguous())


def text_rows(keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None) -> int:
    """How many leading rows need cross-attention: the rows after them have all-zero text keys and values
    (CFG's null condition) and a visible position, so softmax spreads over zeros and adds exactly 0."""
    empty = (keys == 0).flatten(1).all(1) & (values == 0).flatten(1).all(1)          # [M]
    if mask is not None:
        empty &= mask.reshape(len(mask), -1).any(1)
    trailing = int(empty.flip(0).cumprod(0).sum())                                    # empty rows at the end
    return len(empty) - trailing


def prepare(layer, x: torch.Tensor, cross_mask: torch.Tensor | None, cache: StepCache,
            fold_cross: bool = True) -> Prepared | None:
    """The arguments that stay the same for a whole generation, or None if layer_step cannot run it."""
    attn, cross = layer.self_attn, layer.cross_attention
    M, _, D = x.shape
    H = attn.num_heads
    if not (cache.keys.dtype == x.dtype and cache.keys.shape[:2] == (M, H)
                             and cache.keys.is_contiguous() and cache.values.is_contiguous()):
        return None
    args, alive = LayerStep(M=M, D=D, H=H, F=layer.linear1.weight.shape[0], max_len=cache.keys.shape[2],
                            act_bf16=x.dtype == torch.bfloat16, cross=cross is not None, eps=layer.norm1.eps), []
    weights = {"in_proj": matrix(in_proj_parts(attn)), "out_proj": matrix(linear_parts(attn.out_proj)),
               "linear1": matrix(linear_parts(layer.linear1)), "linear2": matrix(linear_parts(layer.linear2))}
    norms = {"norm1": layer.norm1, "norm2": layer.norm2}
    if cross is not None:
        keys, values = cache.memory                                    # [M, H, L, Dh], any strides
        if not (keys.dtype == x.dtype and keys.shape[:2] == (M, H) and keys.stride() == values.stride()
                and keys.stride(-1) == 1):
            return None
        args.L, (args.mem_sb, args.mem_sh, args.mem_sl) = keys.shape[2], keys.stride()[:3]
        args.mem_keys, args.mem_values = keys.data_ptr(), values.data_ptr()
        if cross_mask is not None:                                     # [M, 1, 1, L] booleans
            if cross_mask.shape != (M, 1, 1, keys.shape[2]) or cross_mask.dtype != torch.bool:
                return None
            mask = cross_mask.reshape(M, -1).contiguous()
            args.mem_mask = mask.data_ptr()
            alive.append(mask)
        args.cross_rows = text_rows(keys, values, cross_mask)
        weights.update(cross_q=matrix(in_proj_parts(cross), rows=D), cross_out=matrix(linear_parts(cross.out_proj)))
        norms["norm_cross"] = layer.norm_cross
    if any(w is None for w in weights.values()) or any(n.weight is None or n.bias is None for n in norms.values()):
        return None
    if any(not w.scale for w in weights.values()) and M > kernels.MAX_ROWS:
        return None                     # float32 or bfloat16 weights and more rows: PyTorch's GEMM is faster
    for name, weight in weights.items():
        setattr(args, name, weight)
    for name, norm in norms.items():
        w, b = norm.weight.detach().float().contiguous(), norm.bias.detach().float().contiguous()
        setattr(args, name + "_w", w.data_ptr())
        setattr(args, name + "_b", b.data_ptr())
        alive += [w, b]
    args.keys, args.values = cache.keys.data_ptr(), cache.values.data_ptr()
    if cross is not None and fold_cross and args.cross_rows > 0:
        keys, values = cache.memory
        projections = D * D * (in_proj_parts(cross)[0].element_size() + cross.out_proj.weight.element_size())
        folded = 2 * args.cross_rows * H * keys.shape[2] * D * x.element_size()   # A and B: H·L vectors per row
        if folded < projections:                                   # fewer bytes per step than Wq and Wo
            text_q, text_out = fold_text(cross, keys[:args.cross_rows], values[:args.cross_rows])
            args.text_q, args.text_out = text_q.data_ptr(), text_out.data_ptr()
            alive += [text_q, text_out]
    return Prepared(args, alive, cross_mask)


def layer_step(layer, x: torch.Tensor, cross_mask: torch.Tensor | None, cache: KVCache | None,
               fold_cross: bool = True):
    """x [M, 1, D] -> the layer's output [M, 1, D], appending to ``cache``; None where it does not apply."""
    if type(cache) is not StepCache or cache.step_args is False:    # e.g. 8 rows: decided at its first step
        return None
    if not (x.shape[1] == 1 and x.shape[0] <= kernels.MAX_ROWS_INT8 and kernels.enabled and x.is_cpu
            and x.dtype in (torch.float32, torch.bfloat16) and not torch.is_grad_enabled()):
        return None
    if cache.memory is None and layer.cross_attention is not None:
        return None                                   # the first step: PyTorch projects the text's keys/values
    if cache.step_args is None:                       # the next one: prepare, or give up for this generation
        lib = kernels._library or kernels.library()
        cache.step_args = (lib is not None and prepare(layer, x, cross_mask, cache, fold_cross)) or False
        if cache.step_args is False:
            return None
    if cache.step_args.cross_mask is not cross_mask or cache.length >= cache.keys.shape[2]:
        return None
    args = cache.step_args.args
    args.T = cache.length
    x = x.contiguous()
    y = torch.empty_like(x)
    if kernels._library.layer_step(ctypes.byref(args), x.data_ptr(), y.data_ptr()) != 0:
        raise ValueError(f"layer_step refused a step of shape {tuple(x.shape)}")
    cache.length += 1
    return y


class EditedLayer(ValueError):
    """A fast layer whose reference parts were changed after :func:`minicraft.fast.accelerate`."""


class FastTransformerLayer(TransformerLayer):
    """The reference layer; its decoding steps run as one ``layer_step`` call wherever that applies.

    ``layer_step`` is the reference formula written out in C, GELU and LayerNorm included. If a learner
    swaps this layer's activation or a norm, the C copy would silently ignore it, so the layer refuses
    to run and says which modules the fast path replaced.
    """

    replaces = TransformerLayer
    what = "a decoding step of the whole layer in one C call (layer_step)"

    def adopt(self, name: str = "", fold_cross: bool = True):
        self.name = name            # its path in the model, for messages
        self.fold_cross = fold_cross  # False: cross-attention multiplies by Wq and Wo even where folding reads less

    # the parts the C code computes as the reference does: (attribute, the reference class)
    REFERENCE_PARTS = (("activation", nn.GELU), ("norm1", nn.LayerNorm), ("norm_cross", nn.LayerNorm),
                       ("norm2", nn.LayerNorm))

    def check_reference_parts(self):
        """A few dictionary reads at every call, so an edit made between two steps is caught too."""
        modules = self._modules                     # not getattr: nn.Module's lookup costs ~1 µs a part
        for part, kind in self.REFERENCE_PARTS:
            module = modules.get(part)
            if part == "norm_cross" and modules.get("cross_attention") is None:
                continue
            if type(module) is not kind or (kind is nn.GELU and module.approximate != "none"):
                raise EditedLayer(
                    f"{self.name or 'this layer'}.{part} is now {module!r}, but the layer was replaced by "
                    f"minicraft.fast ({type(self).__name__}: {self.what}), whose C code computes the reference "
                    f"{kind.__name__}. Edit a reference model instead (get_pretrained(..., fast=False)), or "
                    "undo the fast path first: minicraft.fast.restore(model).")

    def forward(self, x: torch.Tensor, cross: torch.Tensor | None = None,
                cross_mask: torch.Tensor | None = None, cache: KVCache | None = None) -> torch.Tensor:
        self.check_reference_parts()
        if (y := layer_step(self, x, cross_mask, cache, self.fold_cross)) is not None:
            return y
        return super().forward(x, cross, cross_mask, cache)
