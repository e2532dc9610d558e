"""The one switch between the reference path and the fast path.

:func:`accelerate` replaces, in place, the reference modules that have a faster equivalent by subclasses
that keep their parameters (:mod:`minicraft.fast.replace`): the LM's products and layer steps through the
C kernels, its caches (and CUDA graphs, if asked), the codec decoder's transposed convs and long-clip
chunking. :func:`replacements` lists what was replaced, read from the model itself; :func:`restore` puts
the reference classes back. The equivalence tests between the two paths are the contract
(``tests/fast/``).
"""
from __future__ import annotations

from collections import defaultdict

from torch import nn

from minicraft.fast import kernels
from minicraft.fast.attention import FastMultiheadAttention
from minicraft.fast.codec import ChunkedSEANetDecoder, PolyphaseConvTranspose1d
from minicraft.fast.decoding import FastLM, check_decoding
from minicraft.fast.layer_step import FastTransformerLayer
from minicraft.fast.replace import become, is_fast
from minicraft.models.codec import Encodec
from minicraft.models.stereo import StereoCodec
from minicraft.models.lm import LM
from minicraft.modules.attention import MultiheadAttention
from minicraft.modules.seanet import ConvTranspose1d, SEANetDecoder
from minicraft.modules.transformer import TransformerLayer

# what accelerate() turns each reference class of the LM into
LM_REPLACEMENTS = {nn.Linear: kernels.KernelLinear, MultiheadAttention: FastMultiheadAttention,
                   TransformerLayer: FastTransformerLayer}


def parts(model) -> dict[str, nn.Module]:
    """The model's modules by name: a MusicGen/AudioGen's lm, conditioner and codec, or an LM or codec alone."""
    if isinstance(model, nn.Module):
        return {"": model}
    return {name: getattr(model, name) for name in ("lm", "conditioner", "codec") if hasattr(model, name)}


def accelerate(model, decoding: str = "plain", chunk_frames: int = 100):
    """Put the fast path in place of the reference modules of ``model`` (a MusicGen/AudioGen, an LM or a
    codec), in place; returns ``model``.

    ``decoding``: "plain", "static" or, on CUDA, "cuda-graph" (:mod:`minicraft.fast.decoding`).
    ``chunk_frames``: the codec decodes longer inputs this many frames at a time.
    Calling it again changes these settings.
    """
    for part in parts(model).values():
        if isinstance(part, LM):
            check_decoding(decoding, next(part.parameters()).device)     # before anything is replaced
    for prefix, part in parts(model).items():
        lead = prefix + "." if prefix else ""
        if isinstance(part, LM):
            for name, module in list(part.named_modules()):
                fast = LM_REPLACEMENTS.get(type(module))
                if fast is FastTransformerLayer:
                    become(module, fast, name=lead + name)
                elif fast is not None:
                    become(module, fast)
            if type(part) is LM:
                become(part, FastLM, decoding=decoding)
            else:
                part.adopt(decoding=decoding)
        elif isinstance(part, (Encodec, StereoCodec)):
            part = part.mono if isinstance(part, StereoCodec) else part      # stereo: the one mono codec
            for module in part.decoder.modules():
                if type(module) is ConvTranspose1d:
                    become(module, PolyphaseConvTranspose1d)
            if type(part.decoder) is SEANetDecoder:
                become(part.decoder, ChunkedSEANetDecoder, chunk_frames=chunk_frames)
            else:
                part.decoder.adopt(chunk_frames=chunk_frames)
    return model


def replacements(model) -> list[tuple[str, type]]:
    """(name, fast class) of every module of ``model`` that is not the reference one."""
    found = []
    for prefix, part in parts(model).items():
        lead = prefix + "." if prefix else ""
        found += [((lead + name).rstrip("."), type(module)) for name, module in part.named_modules()
                  if is_fast(module)]
    return found


def summary(model) -> str:
    """What runs in place of the reference modules, one line per kind; says so when nothing does."""
    groups = defaultdict(list)
    for name, kind in replacements(model):
        groups[kind].append(name)
    if not groups:
        return "reference path: every module is the one minicraft/modules and minicraft/models define."
    lines = ["fast path (minicraft.fast) in place of the reference modules:"]
    for kind, names in groups.items():
        shown = ", ".join(names[:2]) + (f", … ({len(names)} in all)" if len(names) > 2 else "")
        lines.append(f"  {kind.__name__} for {kind.replaces.__name__}: {kind.what} [{shown}]")
    if not kernels.enabled or kernels.library() is None:
        lines.append("  (minicraft's C kernels are off or not built here: those steps run in PyTorch)")
    return "\n".join(lines)


def restore(model):
    """Put the reference classes back in place (the inverse of :func:`accelerate`); returns ``model``.

    int8 weights cannot go back to floats: for a model loaded with ``quantize="int8"``, load it again.
    """
    found = [(name, module) for prefix, part in parts(model).items() for name, module in part.named_modules()
             if is_fast(module)]
    int8 = [name for name, module in found
            if not isinstance(module, nn.Linear) and type(module).replaces is nn.Linear
            or getattr(module, "in_proj_int8", None) is not None]
    if int8:
        raise ValueError(f"{len(int8)} modules hold int8 weights ({int8[0]}, …): they cannot be made float "
                         "again; load the model without quantize='int8' for the reference path.")
    for _, module in found:
        for attribute in module.__dict__.pop("_adopted", ()):
            module.__dict__.pop(attribute, None)
        module.__class__ = type(module).replaces
    return model
