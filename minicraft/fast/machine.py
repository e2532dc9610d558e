"""This CPU: what it is, how fast it reads memory, and which setting decodes fastest on it.

A decoding step reads every weight of the LM once, so its time is the weights' bytes over the memory's
speed, if the products keep up. Whether int8 weights (a quarter of float32's bytes, but a conversion per
weight) or bfloat16 activations pay off depends on the CPU: on one without native bfloat16 arithmetic,
bfloat16 rows cost conversions that float32 rows do not; on one whose cores convert int8 slowly, int8 saves
less than it reads. So ``dtype="auto"`` and ``quantize="auto"`` (the CLI's and ``get_pretrained``'s defaults
on a CPU with the fast path) are chosen by measuring, once per machine: :func:`profile` times each setting's
products on one model's shapes and caches the figures beside the kernels. ``minicraft info --device`` prints them.

The candidates are the settings the precision tests accept (tests/fast/test_fast_paths.py): float32; int8
weights with float32 rows; and, only where the CPU computes bfloat16 natively, bfloat16 and int8 weights with
bfloat16 rows. A candidate must beat float32 by ``MARGIN`` to be chosen: a close call stays with float32, the
reference numbers.
"""
from __future__ import annotations

import hashlib
import json
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from minicraft.fast import kernels
from minicraft.fast.int8 import quantize_rows
from minicraft.files import cache_dir, write_text_atomic

# The flags that matter here, as Linux's /proc/cpuinfo names them (x86 "flags", ARM "Features").
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512_vnni",
                "avx512_bf16", "amx_bf16", "amx_int8", "asimd", "asimddp", "bf16", "i8mm", "sve")
NATIVE_BF16 = {"avx512_bf16", "amx_bf16", "bf16"}       # bfloat16 arithmetic in hardware (x86, ARM)
MARGIN = 0.9             # another setting is chosen only at under 90 % of float32's time
SETTINGS = {             # name: (dtype, quantize)
    "float32": ("float32", None),
    "int8": ("float32", "int8"),
    "bfloat16": ("bfloat16", None),
    "int8 + bfloat16": ("bfloat16", "int8"),
}
SIZES = {"small": (1024, 4096, 24), "medium": (1536, 6144, 48)}   # width, feed-forward width, layers
SMALL = SIZES["small"]     # info --device's shapes


@dataclass
class CPU:
    model: str
    flags: list[str]                    # the VECTOR_FLAGS this CPU reports
    native_bf16: bool


@dataclass
class Profile:
    """One machine's figures for one model's shapes (``dim``, ``ffn``, ``layers``), two rows (CFG)."""
    cpu: CPU
    kernels: str                        # the kernels' instruction set, or why PyTorch's run instead
    threads: int
    bandwidth_gbs: float                # streaming read, GB/s
    dim: int
    ffn: int
    layers: int
    step_mb: dict[str, float] = field(default_factory=dict)     # setting: MB of weights a step reads
    step_ms: dict[str, float] = field(default_factory=dict)     # setting: ms of a step's products
    choice: str = "float32"
    reason: str = ""

    def floor_ms(self, setting: str) -> float:
        """The time reading the setting's weights takes at the measured bandwidth."""
        return self.step_mb[setting] / self.bandwidth_gbs


def cpu() -> CPU:
    """The CPU's model and vector instruction sets, from /proc/cpuinfo (Linux) or sysctl (macOS)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key.strip() in ("flags", "Features"):
                flags |= set(value.split())
    except OSError:
        pass
    if sys.platform == "darwin":                             # Apple silicon: NEON always, bf16 from the M2 on
        model = _sysctl("machdep.cpu.brand_string") or model
        flags.add("asimd")
        flags |= {name for name, key in (("bf16", "hw.optional.arm.FEAT_BF16"), ("asimddp", "hw.optional.arm.FEAT_DotProd"),
                                         ("i8mm", "hw.optional.arm.FEAT_I8MM")) if _sysctl(key) == "1"}
    found = [flag for flag in VECTOR_FLAGS if flag in flags]
    return CPU(model=model, flags=found, native_bf16=bool(NATIVE_BF16 & flags))


def _sysctl(key: str) -> str:
    try:
        return subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def bandwidth(mib: int = 256, repeats: int = 5) -> float:
    """Streaming read speed in GB/s: the best of ``repeats`` sums over ``mib`` MiB (PyTorch's threads)."""
    x = torch.ones(mib * 2**20 // 4)
    best = float("inf")
    for _ in range(repeats + 1):
        t = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t)
    return x.numel() * 4 / best / 1e9


def layer_shapes(dim: int, ffn: int) -> list[tuple[int, int]]:
    """[out, in] of one layer's products: q/k/v, self-attention output, cross-attention q and output, FFN."""
    return [(3 * dim, dim), (dim, dim), (dim, dim), (dim, dim), (ffn, dim), (dim, ffn)]


def time_products(dim: int, ffn: int, layers: int, repeats: int = 5, budget_mb: int = 400) -> dict[str, float]:
    """ms of one step's products for each setting in SETTINGS, two rows, weights read from memory.

    At most ``budget_mb`` of float32 weights are made (one setting at a time); a model with more layers
    than that holds is timed on the layers that fit and scaled to all of them.
    """
    shapes = layer_shapes(dim, ffn)
    per_layer = sum(o * i for o, i in shapes) * 4 / 1e6
    made = max(1, min(layers, int(budget_mb // per_layer)))
    generator = torch.Generator().manual_seed(0)
    rows = {i: torch.randn(2, i, generator=generator) for i in (dim, ffn)}
    costs = {}
    for name, (dtype, quantize) in SETTINGS.items():
        act = getattr(torch, dtype)
        convert = quantize_rows if quantize else (lambda w: w.to(act))    # each float matrix freed at once
        weights = [convert(torch.randn(o, i, generator=generator) * i ** -0.5) for o, i in shapes * made]
        x = {i: r.to(act) for i, r in rows.items()}
        times = []
        with torch.inference_mode():
            for _ in range(repeats + 1):
                t = time.perf_counter()
                for w in weights:
                    q, scale = w if quantize else (w, None)
                    if kernels.library() is not None and kernels.enabled:
                        kernels.kernel_linear(x[q.shape[1]], q, None, scale)
                    else:                                               # PyTorch: int8 is dequantized
                        torch.nn.functional.linear(x[q.shape[1]], q.to(act) * scale[:, None] if quantize else q)
                times.append(time.perf_counter() - t)
        costs[name] = 1000 * statistics.median(times[1:]) * layers / made
        del weights
    return costs


def step_megabytes(dim: int, ffn: int, layers: int) -> dict[str, float]:
    values = sum(o * i for o, i in layer_shapes(dim, ffn)) * layers / 1e6
    return {name: values * (1 if quantize else 2 if dtype == "bfloat16" else 4)
            for name, (dtype, quantize) in SETTINGS.items()}


def choose(costs: dict[str, float], machine: CPU, allowed=SETTINGS) -> tuple[str, str]:
    """The fastest allowed setting that the CPU computes natively, and why, in words."""
    fixed = [name for name in allowed if name in costs]
    candidates = [name for name in fixed if machine.native_bf16 or SETTINGS[name][0] != "bfloat16"]
    if not candidates:
        return fixed[0], "the only setting asked for"
    base = candidates[0]                                       # float32 (or the dtype given), the reference
    best = min(candidates, key=costs.get)
    skipped = "" if machine.native_bf16 else "; bfloat16 rows not considered: this CPU has no native bfloat16"
    if best != base and costs[best] < MARGIN * costs[base]:
        return best, f"{best} {costs[best]:.3g} ms a step against {base}'s {costs[base]:.3g}{skipped}"
    return base, f"nothing beats {base} ({costs[base]:.3g} ms a step) by {100 - 100 * MARGIN:.0f} %{skipped}"


def profile(dim: int = SMALL[0], ffn: int = SMALL[1], layers: int = SMALL[2], refresh: bool = False) -> Profile:
    """This machine's figures for these shapes: measured once (a few seconds), then read from the cache."""
    machine, build = cpu(), kernels.build_info()
    kernel_name = build["isa"] if build else "none: PyTorch's kernels"
    threads = build["threads"] if build else torch.get_num_threads()
    threads = min(threads, torch.get_num_threads())
    key = hashlib.sha256(json.dumps([asdict(machine), kernel_name, build and Path(build["path"]).name, threads,
                                     dim, ffn, layers]).encode()).hexdigest()[:16]
    path = cache_dir() / f"machine-{key}.json"
    if path.is_file() and not refresh:
        try:
            data = json.loads(path.read_text())
            return Profile(**{**data, "cpu": CPU(**data["cpu"])})
        except (ValueError, TypeError, KeyError):
            pass                                               # damaged or from another version: measure again
    print(f"minicraft: measuring this CPU once, for --dtype/--quantize auto (a few seconds; cached in "
          f"{cache_dir()})", file=sys.stderr)
    result = Profile(cpu=machine, kernels=kernel_name, threads=threads, bandwidth_gbs=bandwidth(),
                     dim=dim, ffn=ffn, layers=layers, step_mb=step_megabytes(dim, ffn, layers),
                     step_ms=time_products(dim, ffn, layers))
    if build is None:
        result.choice, result.reason = "float32", "without minicraft's kernels PyTorch reads float32 fastest"
    else:
        result.choice, result.reason = choose(result.step_ms, machine)
    try:
        write_text_atomic(path, json.dumps(asdict(result), indent=1))
    except OSError:
        pass                                                   # an unwritable cache: measured again next time
    return result


def auto_setting(dtype, quantize, dim: int, ffn: int, layers: int) -> tuple[str, str | None]:
    """Resolve "auto" in ``dtype`` and ``quantize`` for a model of these shapes on this CPU's fast path."""
    allowed = {name: setting for name, setting in SETTINGS.items()
               if dtype in ("auto", setting[0]) and quantize in ("auto", setting[1])}
    if not allowed:
        return dtype, quantize
    if len(allowed) == 1:
        return next(iter(allowed.values()))
    if kernels.build_info() is None:                     # PyTorch reads float32 fastest: nothing to measure
        return SETTINGS["float32" if "float32" in allowed else next(iter(allowed))]
    name, _ = choose(profile(dim, ffn, layers).step_ms, cpu(), allowed)
    return SETTINGS[name]
