"""minicraft's C kernels: matrix-vector products for decoding on a CPU (float32, bfloat16 and int8 weights).

A decoding step multiplies one or two rows of activations by every weight of
the LM, so it lasts as long as reading the weights takes. ``kernels.c`` reads
them at close to memory speed with the vector instructions of the CPU it runs
on: AVX-512, AVX2 with FMA, or ARM64 NEON (plain C elsewhere). This module
compiles it once, on the user's machine, for the CPU that machine reports
(``cc -O3 -march=native -fopenmp``, cached under ``~/.cache/minicraft``) and
calls it through ctypes. ``MINICRAFT_MARCH`` names another target instead
(``x86-64-v3``: AVX2 and FMA, no AVX-512), and the cache key holds what the
compiler made of the target, so a home directory shared by nodes of different
CPUs serves each its own build. A compiler without OpenMP (Apple's clang)
builds the same loops for one thread, said in one line on stderr; without a
compiler at all, everything runs through PyTorch, also said in one line.

:func:`linear` is ``F.linear`` with that shortcut: it takes the kernel only
when it applies (CPU tensors, bfloat16 weights with at most 4 rows or int8
ones with at most 16, contiguous) and ``enabled`` is true, and otherwise calls PyTorch. A float32 product
alone goes to PyTorch; float32 layers take the float32 loop inside ``layer_step`` (below).

With bfloat16 activations, int8 weights are multiplied as 16-bit integers (each activation row scaled by a
power of two; ``kernels.c`` states the error), because in float32 the conversions, not memory, can set the pace.

``kernels.c`` also holds ``layer_step``, a whole transformer layer's decoding step in one call, built on
the same products; :mod:`minicraft.fast.layer_step` says when it takes over. :func:`build_info` says
which instruction set and how many threads this machine's build uses.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from minicraft.files import cache_dir

SOURCE = Path(__file__).with_name("kernels.c")
MAX_ROWS = 4            # bfloat16 weights: from 8 rows on, PyTorch's own GEMM is faster (benchmarks/README.md)
MAX_ROWS_INT8 = 16      # int8 weights: below this PyTorch has nothing nearly as fast (kernels.c takes up to 16)
enabled = os.environ.get("MINICRAFT_KERNELS", "1") != "0"   # False: always PyTorch (the plain path)
_library = None          # the loaded kernels; False once we know they cannot be built here
_warned = False          # the fallback has been announced (once per process)


def target_flags() -> list[str]:
    """The code-generation target: this CPU unless ``MINICRAFT_MARCH`` names another (``x86-64-v3``, ...)."""
    return [f"-march={os.environ.get('MINICRAFT_MARCH') or 'native'}"]


def targets() -> list[list[str]]:
    """Targets to try in order: ``target_flags()``; without MINICRAFT_MARCH, also ``-mcpu=native`` and the
    compiler's own default, for compilers that know no ``-march=native`` (older clang on ARM64, where NEON is
    in every target anyway)."""
    if os.environ.get("MINICRAFT_MARCH"):
        return [target_flags()]
    return [target_flags(), ["-mcpu=native"], []]


def target_macros(compiler: str, target: list[str]) -> str | None:
    """What ``target`` means to this compiler on this CPU: its predefined macros (``__AVX512F__``...).

    ``-march=native`` names a different instruction set on every CPU, so the flags alone cannot key the cache:
    a library built on an AVX-512 node would crash an AVX2 node sharing the same home directory.
    """
    try:
        done = subprocess.run([compiler, *target, "-dM", "-E", "-x", "c", os.devnull],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = sorted(done.stdout.splitlines())
    return "\n".join(lines) if done.returncode == 0 and lines else None


def _fallback(reason: str, instead: bool = True) -> None:
    """Say once, in one line, why products go to PyTorch instead of the kernels (or run on one thread)."""
    global _warned
    if not _warned:
        suffix = "; using PyTorch's kernels instead (slower on a CPU)" if instead else ""
        print(f"minicraft: {reason}{suffix}.", file=sys.stderr)
        _warned = True


def compile_kernels() -> Path | None:
    """Build kernels.c for this CPU (once per source, compiler and target); None if impossible."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None or sys.platform == "win32":
        _fallback("minicraft's CPU kernels are not built on Windows" if sys.platform == "win32"
                  else "no C compiler found (cc, gcc, clang or $CC) to build minicraft's CPU kernels")
        return None
    for target in targets():
        macros = target_macros(compiler, target)
        if macros is not None:
            break
    else:
        _fallback(f"the C compiler {compiler!r} does not run or does not accept {' '.join(target_flags())}")
        return None

    def path(threads: list[str]) -> tuple[list[str], Path]:
        flags = ["-O3", *target, "-fPIC", "-shared", *threads]
        key = hashlib.sha256(b"\0".join([SOURCE.read_bytes(), " ".join([compiler, *flags]).encode(),
                                          macros.encode()])).hexdigest()[:16]
        return flags, cache_dir() / f"kernels-{key}.so"

    (flags, parallel), (single_flags, single) = path(["-fopenmp"]), path([])
    one_thread = f"{compiler} has no OpenMP, so minicraft's CPU kernels run on one thread"
    if parallel.is_file():
        return parallel
    if single.is_file():                          # an earlier run found no OpenMP here
        _fallback(one_thread, instead=False)
        return single
    try:
        error = _build(compiler, flags, parallel)
        if error is None:
            return parallel
        if _build(compiler, single_flags, single) is None:     # Apple's clang: the same loops, one thread
            _fallback(f"{one_thread} ({error})", instead=False)
            return single
    except OSError as failure:                                  # unwritable cache, CC not runnable
        _fallback(f"minicraft's CPU kernels could not be built in {cache_dir()} ({failure})")
        return None
    _fallback(f"{compiler} could not build minicraft's CPU kernels ({error})")
    return None


def _build(compiler: str, flags: list[str], target_path: Path) -> str | None:
    """Compile into ``target_path`` (atomically: never a half-written library); the compiler's first error line."""
    target_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target_path.parent) as tmp:
        out = Path(tmp) / target_path.name
        done = subprocess.run([compiler, *flags, str(SOURCE), "-o", str(out), "-lm"], capture_output=True, text=True)
        if done.returncode != 0 or not out.is_file():
            return (done.stderr.strip().splitlines() or ["no library written"])[0]
        out.replace(target_path)
    return None


def library():
    """The compiled kernels, or None (no compiler, not a CPU we can build for)."""
    global _library
    if _library is None:
        # Loaded after torch: its OpenMP runtime (libgomp.so.1 in torch/lib on Linux) is already in the
        # process, so the kernels' parallel loops share PyTorch's threads and torch.set_num_threads.
        _library = False
        for attempt in range(2):                          # a damaged file in the cache is rebuilt once
            path = compile_kernels()
            try:
                _library = ctypes.CDLL(str(path)) if path else False
                break
            except OSError as error:
                if attempt:
                    _fallback(f"the kernels built in {path} do not load ({error})")
                else:
                    with contextlib.suppress(OSError):
                        path.unlink()
        if _library:
            i64, ptr, flag = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
            _library.linear_bf16.argtypes = [ptr, flag, ptr, ptr, ptr, flag, i64, i64, i64]
            _library.linear_f32.argtypes = [ptr, ptr, ptr, ptr, i64, i64, i64]
            _library.linear_int8.argtypes = [ptr, flag, ptr, ptr, ptr, ptr, flag, i64, i64, i64]
            _library.layer_step.argtypes = [ptr, ptr, ptr]
            _library.gelu.argtypes = [ptr, ptr, i64, flag]
            _library.kernel_isa.restype = ctypes.c_char_p
            _library.kernel_threads.restype = ctypes.c_int
    return _library or None


def build_info() -> dict | None:
    """This machine's build: its instruction set and integer form (``isa``), threads, and file; None if none."""
    lib = library() if enabled else None
    if lib is None:
        return None
    return dict(isa=lib.kernel_isa().decode(), threads=lib.kernel_threads(), path=lib._name)


def applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """The kernel handles this product: CPU, bfloat16 (≤ 4 rows) or int8 (≤ 16) weights, float32/bfloat16 x."""
    rows = MAX_ROWS_INT8 if weight.dtype == torch.int8 else MAX_ROWS
    return (enabled and x.is_cpu and weight.is_cpu
            and weight.dtype in (torch.bfloat16, torch.int8) and x.dtype in (torch.float32, torch.bfloat16)
            and x.numel() <= rows * x.shape[-1] and weight.is_contiguous()
            and not torch.is_grad_enabled() and (_library or library()) is not None)


def kernel_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  scale: torch.Tensor | None = None) -> torch.Tensor:
    """x [..., in] @ weight[out, in]ᵀ (· scale[out]) + bias[out], through kernels.c. See :func:`applies`.

    Written for few Python operations: a decoding step calls it ~150 times, so every slice or
    conversion here is paid on every product.
    """
    out_features, in_features = weight.shape
    x = x.contiguous()                                                     # [..., in]: M rows in a row
    y = x.new_empty(x.shape[:-1] + (out_features,))                       # [..., out]
    lib = _library or library()
    if bias is not None and (bias.dtype != torch.float32 or not bias.is_contiguous()):
        bias = bias.float().contiguous()                                   # kept alive across the call
    bias_ptr = None if bias is None else bias.data_ptr()
    is_bf16 = x.dtype == torch.bfloat16
    if weight.dtype == torch.int8:
        if scale.dtype != torch.float32 or not scale.is_contiguous():
            scale = scale.float().contiguous()
        status = lib.linear_int8(x.data_ptr(), is_bf16, weight.data_ptr(), scale.data_ptr(), bias_ptr,
                                 y.data_ptr(), is_bf16, x.numel() // in_features, out_features, in_features)
    elif weight.dtype == torch.float32:                                    # float32 x and weight
        status = lib.linear_f32(x.data_ptr(), weight.data_ptr(), bias_ptr, y.data_ptr(),
                                x.numel() // in_features, out_features, in_features)
    else:
        status = lib.linear_bf16(x.data_ptr(), is_bf16, weight.data_ptr(), bias_ptr,
                                 y.data_ptr(), is_bf16, x.numel() // in_features, out_features, in_features)
    if status != 0:
        raise ValueError(f"kernel refused {tuple(x.shape)} @ {tuple(weight.shape)}")
    return y


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear``, through kernels.c when it applies (bfloat16 weights, few rows)."""
    if weight.dtype == x.dtype == torch.bfloat16 and applies(x, weight):
        return kernel_linear(x, weight, bias)
    return F.linear(x, weight, bias)


class KernelLinear(torch.nn.Linear):
    """``nn.Linear`` (same parameters, same checkpoint keys) whose decoding steps use :func:`linear`."""

    replaces = torch.nn.Linear
    what = "bfloat16 products of a decoding step in C"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
