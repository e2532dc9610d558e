"""minicraft's C kernels: matrix-vector products for decoding on a CPU (bfloat16, int8 and float32 weights).

A decoding step multiplies one or two rows of activations by every weight of
the LM, so it lasts as long as reading the weights takes. PyTorch's CPU kernels
read float32 weights at memory speed but bfloat16 and int8 ones more slowly, which
undoes much of what the smaller weights were for (``benchmarks/README.md`` has the
figures). ``kernels.c`` is a plain loop that reads them at memory speed; this module compiles it once with the system's C compiler
(``cc -O3 -march=native -fopenmp``, cached under ``~/.cache/minicraft``) and
calls it through ctypes. ``MINICRAFT_MARCH`` sets the target instead of ``native`` (``x86-64-v3``: AVX2 and
FMA, no AVX-512), and the cache key holds what the compiler made of the target, so a shared home directory
serves nodes of different CPUs, each its own build. A compiler that cannot build it (none, or no OpenMP as
with Apple's clang) means PyTorch's kernels, said once in one line on stderr.

:func:`linear` is ``F.linear`` with that shortcut: it takes the kernel only
when it applies (CPU tensors, bfloat16 weights with at most 4 rows or int8
ones with at most 16, contiguous) and ``enabled`` is true, and otherwise calls PyTorch. Without a C
compiler everything still works, through PyTorch. A float32 product alone goes
to PyTorch, which already reads float32 weights at memory speed; float32 layers
take the float32 loop only inside ``layer_step`` (below).

With bfloat16 activations, int8 weights are multiplied as 16-bit integers where the CPU has AVX-512 VNNI
(each activation row scaled by a power of two; ``kernels.c`` states the error), because in float32 the
conversions, not memory, set the pace on two cores.

``kernels.c`` also holds ``layer_step``, a whole transformer layer's decoding step in one call, built on
the same products (and a float32 one); :mod:`minicraft.fast.layer_step` says when it takes over.
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


def _fallback(reason: str) -> None:
    """Say once, in one line, why products go to PyTorch instead of the kernels."""
    global _warned
    if not _warned:
        print(f"minicraft: {reason}; using PyTorch's kernels instead (slower on a CPU).",
              file=sys.stderr)
        _warned = True


def compile_kernels() -> Path | None:
    """Build kernels.c for this CPU (once per source, compiler and target); None if impossible."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None or sys.platform == "win32":
        _fallback("minicraft's CPU kernels are not built on Windows" if sys.platform == "win32"
                  else "no C compiler found (cc, gcc, clang or $CC) to build minicraft's CPU kernels")
        return None
    target = target_flags()
    macros = target_macros(compiler, target)
    if macros is None:
        _fallback(f"the C compiler {compiler!r} does not run or does not accept {' '.join(target)}")
        return None
    flags = ["-O3", *target, "-fPIC", "-shared", "-fopenmp"]
    key = hashlib.sha256(b"\0".join([SOURCE.read_bytes(), " ".join([compiler, *flags]).encode(),
                                      macros.encode()])).hexdigest()[:16]
    target_path = cache_dir() / f"kernels-{key}.so"
    if target_path.is_file():
        return target_path
    try:
        target_path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target_path.parent) as tmp:
            out = Path(tmp) / target_path.name
            done = subprocess.run([compiler, *flags, str(SOURCE), "-o", str(out), "-lm"], capture_output=True,
                                  text=True)
            if done.returncode != 0 or not out.is_file():
                # Without OpenMP (Apple's clang) the kernels would run on one thread: PyTorch is faster then.
                first = (done.stderr.strip().splitlines() or ["no library written"])[0]
                _fallback(f"{compiler} could not build minicraft's CPU kernels with OpenMP ({first})")
                return None
            out.replace(target_path)                                    # atomic: never a half-written library
    except OSError as error:                                            # unwritable cache, CC not runnable
        _fallback(f"minicraft's CPU kernels could not be built in {cache_dir()} ({error})")
        return None
    return target_path


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
    return _library or None


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
