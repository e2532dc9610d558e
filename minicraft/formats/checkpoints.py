"""Reading checkpoint files safely, and putting their tensors into modules.

Two official formats exist (docs/design.md, "Two checkpoint formats"):

- audiocraft: ``state_dict.bin`` / ``compression_state_dict.bin``, torch pickles
  holding ``{'best_state': ..., 'xp.cfg': <YAML with ${...} references>}``;
- Hugging Face: ``model.safetensors`` (maybe sharded) next to ``config.json``.

This module only knows *files*: it never unpickles code (``weights_only=True``),
it memory-maps safetensors so loading does not hold a second copy of the
weights, and every mismatch becomes one :class:`CheckpointError` that names the
file and the first offending keys. Mapping key names from one format to the
other is the job of each model module (``codec.py``, ``lm.py``), next to the
parameters it names.
"""
from __future__ import annotations

import ctypes
import json
import math
import pickle
import re
import struct
import sys
import zipfile
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, unsafe or does not fit the model."""


# ---------------------------------------------------------------- safetensors

_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}


def read_safetensors(path: str | Path, dtype: torch.dtype | None = None,
                     int8: dict[str, list[str]] | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file as views into a memory map of it.

    The format is an 8-byte little-endian header length, a JSON header
    ``{name: {dtype, shape, data_offsets: [begin, end]}}`` and the raw bytes.
    Mapping the file privately means pages are read from disk when touched and
    nothing is copied unless the model writes to a weight.

    With a ``dtype`` other than the file's, tensors are instead read one at a
    time and floating ones converted: a mapped float32 file would stay
    resident while its bfloat16 copy is made, so the peak would hold both;
    this way it holds the converted model plus one tensor.

    ``int8`` maps a module's name to the file's weights that become its int8
    ``.weight`` and float32 ``.scale`` (quantized per output row as they are
    read, see :mod:`minicraft.fast.int8`; several are stacked along dim 0, as
    packed q/k/v projections are). Their float copies never exist together,
    so the peak is the quantized model plus one tensor.
    """
    path = Path(path)
    layout = tensor_layout(path)
    if int8 or (dtype is not None and any(t.is_floating_point and t != dtype for _, t, _, _, _ in layout)):
        return read_converted(path, layout, dtype, int8 or {})
    # One private (copy-on-write) memory map of the whole file, viewed as bytes.
    storage = torch.UntypedStorage.from_file(str(path), shared=False, nbytes=path.stat().st_size)
    file_bytes = torch.empty(0, dtype=torch.uint8).set_(storage)
    tensors = {}
    for name, stored, shape, begin, end in layout:
        raw = file_bytes[begin:end]
        if begin % stored.itemsize:  # unaligned: the only case that copies
            raw = raw.clone()
        tensors[name] = raw.view(stored).reshape(shape)
    return tensors


def release_file_pages(files: list[Path]) -> int:
    """Let Linux drop the resident pages of our private, read-only-in-practice maps of ``files``.

    Loading reads some mapped tensors once and copies them (q, k and v are
    packed into one tensor; weight norm is folded). Their pages would stay
    resident, and count in the process's memory, as long as the map lives.
    ``MADV_DONTNEED`` on an unmodified private file map drops the pages; a
    later read faults them in again from the file, so the weights still in
    use are unaffected. Returns the bytes released (0 off Linux).
    """
    if not sys.platform.startswith("linux"):
        return 0
    names = {str(Path(f).resolve()) for f in files}
    libc = ctypes.CDLL(None, use_errno=True)
    released = 0
    for line in open("/proc/self/maps"):
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].strip() in names and fields[1].endswith("p"):   # private maps only
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), 4) == 0:  # 4: MADV_DONTNEED
                released += end - start
    return released


def tensor_layout(path: Path) -> list[tuple[str, torch.dtype, list[int], int, int]]:
    """(name, dtype, shape, first byte, end byte) of each tensor, every header field checked before any data
    is touched: the dtype is known, the byte count is the shape's, and the tensors lie inside the file, in
    order, without overlapping. The one reader of safetensors headers (loading, ``minicraft info``)."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > size - 8:
                raise ValueError("header longer than the file")
            header = json.loads(f.read(header_len))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (struct.error, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a valid safetensors file ({e}).") from None
    header.pop("__metadata__", None)
    data_start = 8 + header_len
    layout, previous_end = [], 0
    for name, info in sorted(header.items(), key=lambda item: _offsets(item[1]) or (-1, -1)):
        def bad(why: str):
            return CheckpointError(f"{path}: not a valid safetensors file (tensor {name!r}: {why}).")
        if not isinstance(info, dict):
            raise bad(f"{info!r} is not a JSON object")
        stored = _SAFETENSORS_DTYPES.get(info.get("dtype"))
        if stored is None:
            raise bad(f"unsupported or missing dtype {info.get('dtype')!r}")
        shape, offsets = info.get("shape"), _offsets(info)
        if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)):
            raise bad(f"shape {shape!r} is not a list of sizes")
        if offsets is None or offsets[0] < previous_end or offsets[1] < offsets[0]:
            raise bad(f"data_offsets {info.get('data_offsets')!r} are negative, reversed or overlapping")
        if offsets[1] - offsets[0] != math.prod(shape) * stored.itemsize:
            raise bad(f"{offsets[1] - offsets[0]} bytes for shape {shape} of {info['dtype']}")
        begin, end = data_start + offsets[0], data_start + offsets[1]
        if end > size:
            raise CheckpointError(f"{path}: file is truncated (tensor {name!r} ends past the end).")
        layout.append((name, stored, shape, begin, end))
        previous_end = offsets[1]
    return layout


def _offsets(info) -> tuple[int, int] | None:
    """A header entry's ``data_offsets`` as two ints, or None when they are not that."""
    offsets = info.get("data_offsets") if isinstance(info, dict) else None    # (sorting runs before the checks)
    if isinstance(offsets, list) and len(offsets) == 2 and all(type(n) is int for n in offsets):
        return offsets[0], offsets[1]
    return None


BLOCK_BYTES = 4 * 2**20     # read_converted reads, converts and quantizes this much of a tensor at a time


def read_converted(path: Path, layout: list, dtype: torch.dtype | None,
                   int8: dict[str, list[str]] | None = None) -> dict[str, torch.Tensor]:
    """Read each tensor a block of rows at a time into its output: converted to ``dtype``
    (floating tensors), quantized (the sources in ``int8``, see :func:`read_safetensors`)
    or as stored.

    Outputs are allocated before their blocks are read through one small reused
    buffer, and every int8 weight is a view of one allocation: temporaries freed
    between long-lived tensors leave holes the allocator does not give back (for
    musicgen-small's int8 LM, a noticeable share of the model: benchmarks/README.md, load peaks).
    """
    int8 = int8 or {}
    stored_as = {name: (shape, end - begin) for name, _, shape, begin, end in layout}

    def stackable(sources: list[str]) -> bool:
        """Matrices of this file, all as wide. Anything else is read as it is (load_into names the misfit)."""
        shapes = [stored_as.get(s, ([], 0))[0] for s in sources]
        return all(len(shape) == 2 and shape[1] == shapes[0][1] for shape in shapes)

    int8 = {module: sources for module, sources in int8.items() if stackable(sources)}
    pool = torch.empty(sum(stored_as[s][0][0] * stored_as[s][0][1] for sources in int8.values() for s in sources),
                       dtype=torch.int8)
    tensors, into, used = {}, {}, 0            # into: source name -> (int8 rows, scale rows) it fills
    for module, sources in int8.items():
        rows, cols = sum(stored_as[s][0][0] for s in sources), stored_as[sources[0]][0][1]
        q = tensors[module + ".weight"] = pool[used:used + rows * cols].view(rows, cols)
        scale = tensors[module + ".scale"] = torch.empty(rows, dtype=torch.float32)
        used, first = used + rows * cols, 0
        for s in sources:
            n = stored_as[s][0][0]
            into[s] = (q[first:first + n], scale[first:first + n])
            first += n

    widest_row = max(((size // shape[0]) if shape and shape[0] else size for shape, size in stored_as.values()),
                     default=0)
    scratch = torch.empty(max(BLOCK_BYTES, widest_row), dtype=torch.uint8)
    work = torch.empty(scratch.numel() // 2 if int8 else 0, dtype=torch.float32)   # quantizing in place
    rounded = torch.empty(work.numel() if int8 and dtype is not None else 0, dtype=dtype)   # ... what dtype keeps
    with open(path, "rb") as f:
        for name, stored, shape, begin, end in layout:
            f.seek(begin)
            converts = dtype is not None and stored.is_floating_point and stored != dtype
            if name not in into and not converts:                    # as stored: straight into its memory
                tensors[name] = torch.empty(shape, dtype=stored)
                f.readinto(tensors[name].view(-1).view(torch.uint8).numpy())
                continue
            rows = shape[0] if shape else 1
            if name in into:
                q, scale = into[name]
            else:
                tensors[name] = torch.empty(shape, dtype=dtype)
                out = tensors[name].view(rows, -1)                   # [rows, everything else]
            row_bytes = (end - begin) // max(rows, 1)
            step = max(1, BLOCK_BYTES // max(row_bytes, 1))
            for r in range(0, rows, step):
                n = min(step, rows - r)
                raw = scratch[:n * row_bytes]
                f.readinto(raw.numpy())
                block = raw.view(stored).view(n, -1)
                if name in into:
                    quantize_block(block, work, q[r:r + n], scale[r:r + n], rounded if converts else None)
                else:
                    out[r:r + n] = block                             # converts as it copies
    return tensors


def quantize_block(block: torch.Tensor, work: torch.Tensor, q: torch.Tensor, scale: torch.Tensor,
                   rounded: torch.Tensor | None = None) -> None:
    """:func:`minicraft.fast.int8.quantize_rows` of ``block``, computed in place in the float32 buffer
    ``work`` and written into ``q`` and ``scale``: the same numbers, no temporaries. With ``rounded``
    (a buffer of the model's dtype), from the values that dtype keeps: the same int8 as quantizing after
    loading in that dtype."""
    if rounded is not None:
        block = rounded[:block.numel()].view(block.shape).copy_(block)
    w = work[:block.numel()].view(block.shape).copy_(block)
    torch.linalg.vector_norm(w, float("inf"), dim=1, out=scale)      # max |w| per row
    scale.clamp_(min=1e-12).div_(127)
    q.copy_(w.div_(scale[:, None]).round_().clamp_(-127, 127))      # integral already: the cast is exact


# ---------------------------------------------------------------- torch pickles

def read_torch_file(path: str | Path) -> dict:
    """``torch.load`` restricted to tensors and plain containers (no code runs).

    Zip-format files (every torch >= 1.6 save) are memory-mapped.
    """
    path = Path(path)
    mmap = zipfile.is_zipfile(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: refused to load. The file asks to run code or build objects that are not "
            f"plain tensors ({first_line}). Only load checkpoints from sources you trust; "
            "minicraft never unpickles arbitrary objects.") from None
    except Exception as e:  # a damaged file can fail in many ways inside the unpickler
        detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"{path}: cannot read this checkpoint; it looks corrupt or truncated "
                              f"({type(e).__name__}: {detail}). Delete it and download it again.") from None


def read_state_dict(path: str | Path, dtype: torch.dtype | None = None,
                    int8: dict[str, list[str]] | None = None) -> dict[str, torch.Tensor]:
    """Tensors of one weights file: ``.safetensors``, a sharded index, or a torch file.

    ``dtype`` converts safetensors' floating tensors while reading, and ``int8``
    quantizes some of them while reading (see :func:`read_safetensors`).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file.")
    if path.name.endswith(".safetensors.index.json"):
        try:
            weight_map = json.loads(path.read_text())["weight_map"]
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"{path}: not a valid safetensors index ({e}).") from None
        tensors = {}
        for shard in sorted(set(weight_map.values())):
            tensors.update(read_safetensors(path.parent / shard, dtype, int8))
        missing = sorted(set(weight_map) - set(tensors))
        if missing:
            raise CheckpointError(f"{path}: shards lack tensors listed in the index, e.g. {missing[:3]}.")
        return tensors
    if path.suffix == ".safetensors":
        return read_safetensors(path, dtype, int8)
    if int8:
        raise ValueError("quantizing while reading is only done for safetensors files")
    data = read_torch_file(path)
    if isinstance(data, dict) and "best_state" in data:
        data = data["best_state"]
    if isinstance(data, dict) and "state_dict" in data:
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: expected a dictionary of tensors, found {type(data).__name__}.")
    return data


# ---------------------------------------------------------------- audiocraft's xp.cfg

_REF = re.compile(r"\$\{([^}]+)\}")


def resolve_config(config: dict) -> dict:
    """Resolve OmegaConf-style ``${a.b}`` references in a loaded YAML config.

    A value that is exactly one reference takes the referenced value (keeping
    its type); references inside longer strings are replaced by text.
    """
    def lookup(path: str, seen: tuple):
        if path in seen:
            raise CheckpointError(f"xp.cfg: circular reference ${{{path}}}.")
        node = config
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                raise CheckpointError(f"xp.cfg: reference ${{{path}}} points nowhere.")
            node = node[part]
        return resolve(node, seen + (path,))

    def resolve(node, seen=()):
        if isinstance(node, dict):
            return {k: resolve(v, seen) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v, seen) for v in node]
        if isinstance(node, str):
            whole = _REF.fullmatch(node)
            if whole:
                return lookup(whole.group(1), seen)
            return _REF.sub(lambda m: str(lookup(m.group(1), seen)), node)
        return node

    return resolve(config)


def read_audiocraft(path: str | Path) -> tuple[dict | None, dict[str, torch.Tensor] | None, dict]:
    """An audiocraft ``*.bin``: (resolved xp.cfg, state dict, the raw package).

    The pointer form ``{'pretrained': 'facebook/encodec_32khz'}`` comes back
    with ``None`` for config and state; the caller follows the pointer.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file.")
    package = read_torch_file(path)
    if not isinstance(package, dict):
        raise CheckpointError(f"{path}: not an audiocraft checkpoint (found {type(package).__name__}).")
    if "pretrained" in package:
        return None, None, package
    if "best_state" not in package or "xp.cfg" not in package:
        raise CheckpointError(f"{path}: not an audiocraft checkpoint: expected keys 'best_state' and "
                              f"'xp.cfg', found {sorted(package)[:5]}.")
    try:
        config = yaml.safe_load(package["xp.cfg"])
    except yaml.YAMLError as e:
        raise CheckpointError(f"{path}: its xp.cfg is not valid YAML ({e}).") from None
    return resolve_config(config), package["best_state"], package


# ---------------------------------------------------------------- weight norm

def fold_pair(g: torch.Tensor, v: torch.Tensor, rows: int = 64) -> torch.Tensor:
    """``g * v / ||v||`` in float32 whatever the dtype, a few output channels at a time: a float32 copy of a
    whole bfloat16 codec weight would be a transient twice its size."""
    out = torch.empty_like(v)
    dims = tuple(range(1, v.dim()))
    for r in range(0, v.shape[0], rows):
        v32, g32 = v[r:r + rows].float(), g[r:r + rows].float()
        out[r:r + rows] = v32 * (g32 / v32.norm(dim=dims, keepdim=True))
    return out


def fold_weight_norm(state: dict[str, torch.Tensor], consume: bool = False) -> dict[str, torch.Tensor]:
    """Replace weight-norm pairs (g, v) by the plain weight ``g * v / ||v||``.

    Two spellings exist: ``X.weight_g``/``X.weight_v`` (old ``nn.utils.weight_norm``)
    and ``X.parametrizations.weight.original0``/``original1`` (the newer
    parametrization API). Both normalise over every dim but the first.
    Inference needs only the product, so minicraft's modules hold plain weights.
    ``consume`` empties ``state`` as it goes, so each pair can be freed once
    folded instead of all pairs and all products being held at once.
    """
    spellings = (("weight_g", "weight_v"),
                 ("parametrizations.weight.original0", "parametrizations.weight.original1"))
    out = {}
    for key in list(state):
        if key not in state:
            continue                                         # a v already folded with its g
        tensor = state[key]
        for g_name, v_name in spellings:
            if key == g_name or key.endswith("." + g_name):
                prefix = key[:-len(g_name)]                  # "" or "module.path."
                v = state.pop(prefix + v_name) if consume else state[prefix + v_name]
                out[prefix + "weight"] = fold_pair(tensor, v)
                break
            if key == v_name or key.endswith("." + v_name):
                break  # folded together with its g (the v stays until then)
        else:
            out[key] = tensor
        if consume and not any(key == v or key.endswith("." + v) for _, v in spellings):
            del state[key]
    return out


# ---------------------------------------------------------------- into a module

@contextmanager
def on_meta():
    """Build modules on the ``meta`` device (shapes, no memory) for a checkpoint to be assigned to.

    Random initialization is skipped: the checkpoint overwrites it, and on meta tensors
    ``normal_`` (nn.Embedding's init) runs PyTorch's Python reference kernels, whose first use
    imports torch._dynamo and sympy, tens of megabytes and a noticeable delay (benchmarks/README.md).
    """
    normal = nn.init.normal_
    nn.init.normal_ = lambda tensor, *args, **kwargs: (tensor if tensor.is_meta
                                                       else normal(tensor, *args, **kwargs))
    try:
        with torch.device("meta"):
            yield
    finally:
        nn.init.normal_ = normal


def load_into(module: nn.Module, state: dict[str, torch.Tensor], source: str | Path,
              dtype: torch.dtype | None = None) -> nn.Module:
    """Check ``state`` against ``module`` and assign its tensors as parameters.

    Every key must match exactly, in name and shape; otherwise one error
    lists the first few culprits. Tensors are *assigned*, not copied, so a
    module built on the ``meta`` device costs no memory until loaded and a
    memory-mapped file stays mapped. ``dtype`` converts floating tensors one
    by one (peak memory: the final model plus one tensor).
    """
    expected = {k: v.shape for k, v in module.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} (file {tuple(state[k].shape)}, model {tuple(expected[k])})"
             for k in expected if k in state and state[k].shape != expected[k]]
    if missing or unexpected or wrong:
        problems = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrongly shaped", wrong)):
            if keys:
                more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
                problems.append(f"{len(keys)} {label}: {', '.join(keys[:3])}{more}")
        raise CheckpointError(f"{source}: checkpoint does not fit {type(module).__name__}: "
                              + "; ".join(problems) + ". Is it the right file for this model?")
    if dtype is not None:
        state = convert(state, dtype, source)
    module.load_state_dict(state, strict=True, assign=True)
    return module


def quantize_mapped(state: dict[str, torch.Tensor], int8: dict[str, str], dtype: torch.dtype | None,
                    source: str | Path) -> dict[str, torch.Tensor]:
    """What reading with ``int8`` does (see :func:`read_safetensors`), for a state already in memory or
    memory-mapped (a torch file): ``int8`` maps a module's name to the weight that becomes its int8
    ``.weight`` and float32 ``.scale``. The other tensors are converted to ``dtype`` (:func:`convert`)."""
    int8 = {module: name for module, name in int8.items() if name in state and state[name].dim() == 2}
    pool = torch.empty(sum(state[w].numel() for w in int8.values()), dtype=torch.int8)   # one allocation
    work = torch.empty(BLOCK_BYTES // 4, dtype=torch.float32)
    rounded = None if dtype is None else torch.empty(work.numel(), dtype=dtype)
    out, used, unreleased = {}, 0, 0
    mapped = Path(source).is_file()
    for module, name in int8.items():
        weight = state.pop(name)                                     # [rows, cols]
        rows, cols = weight.shape
        q = pool[used:used + weight.numel()].view(rows, cols)
        scale = torch.empty(rows, dtype=torch.float32)
        used += weight.numel()
        step = max(1, work.numel() // cols)
        converts = dtype is not None and weight.dtype != dtype
        for r in range(0, rows, step):
            quantize_block(weight[r:r + step], work, q[r:r + step], scale[r:r + step], rounded if converts else None)
        out[module + ".weight"], out[module + ".scale"] = q, scale
        unreleased += weight.nbytes
        if mapped and unreleased >= RELEASE_EVERY:
            release_file_pages([Path(source)])
            unreleased = 0
    out.update(state if dtype is None else convert(state, dtype, source))
    return out


RELEASE_EVERY = 64 * 2**20      # convert() hands a mapped file's pages back after this many bytes read


def convert(state: dict[str, torch.Tensor], dtype: torch.dtype, source: str | Path) -> dict[str, torch.Tensor]:
    """Floating tensors to ``dtype``, one at a time.

    When they are views of a memory-mapped ``source`` (a torch file read by
    :func:`read_torch_file`), reading them brings the file's pages into memory, and
    those would stay beside the converted copies: a float32 file converted to
    bfloat16 would peak at three times the final model. So the pages are handed
    back (:func:`release_file_pages`) every ``RELEASE_EVERY`` bytes.
    """
    out, unreleased = {}, 0
    mapped = isinstance(source, (str, Path)) and Path(source).is_file()
    for key, tensor in state.items():
        if tensor.is_floating_point() and tensor.dtype != dtype:
            out[key] = tensor.to(dtype)
            unreleased += tensor.nbytes
            if mapped and unreleased >= RELEASE_EVERY:
                release_file_pages([Path(source)])
                unreleased = 0
        else:
            out[key] = tensor
    if mapped and unreleased:
        release_file_pages([Path(source)])
    return out


def read_json(path: str | Path) -> dict:
    """A ``config.json``, with a clear error if it is missing or broken."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; a Hugging Face checkpoint needs its config.json.")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({str(e)[:120]}).") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: holds a {type(data).__name__}, not the object of settings a config is.")
    return data


def tensor_names(path: Path) -> list[str]:
    """The names of the tensors in a weights file or a sharded index, from its header: nothing else read."""
    if path.name.endswith(".safetensors.index.json"):
        weight_map = read_json(path).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{path}: not a valid safetensors index (no weight_map object).")
        return list(weight_map)
    return [name for name, *_ in tensor_layout(path)]


def check_counts(source, config: dict[str, int], names: list[str], patterns: dict[str, str]):
    """Each count a config gives (layers, codebooks) against the numbered tensors the weights hold, before
    anything is built for them: ``patterns`` maps a count to a regex whose group 1 is the index."""
    for what, pattern in patterns.items():
        regex = re.compile(pattern)
        found = {int(m.group(1)) for name in names if (m := regex.match(name))}
        held = max(found) + 1 if found else 0
        if held != config[what]:
            raise CheckpointError(f"{source}: the config says {what} = {config[what]!r}, but the weights hold "
                                  f"{held}; the config and the weights do not belong together.")
