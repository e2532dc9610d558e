"""minicraft's decoding kernels (kernels.c) against float64 arithmetic, and the fallbacks around them."""
import os
import platform
import shutil
import subprocess
import sys

import pytest
import torch

from minicraft.fast import kernels
from minicraft.fast.int8 import Int8Linear, quantize_rows

needs_kernels = pytest.mark.skipif(kernels.library() is None, reason="no C compiler here")
each_target = pytest.mark.usefixtures("kernel_target")     # the test runs on each build this CPU runs (conftest.py)


def reference(x, weight, bias=None, scale=None):
    y = x.double() @ weight.double().t()
    if scale is not None:
        y = y * scale.double()
    return y if bias is None else y + bias.double()


# Shapes with every kind of tail: outputs not a multiple of the 4-row block, inputs not a multiple of
# 16 weights (one vector) or of a 64-byte line, and 1-4 activation rows (int8: up to 16).
SHAPES = [(4096, 1024), (1024, 4096), (7, 33), (3, 5), (5, 80), (9, 100)]


@needs_kernels
@pytest.mark.parametrize("rows", [1, 2, 3, 4])
@pytest.mark.parametrize("out_features, in_features", SHAPES)
@each_target
def test_bf16_kernel_is_the_product_rounded_once(rows, out_features, in_features):
    g = torch.Generator().manual_seed(out_features * 7 + in_features + rows)
    x = torch.randn(rows, in_features, generator=g).bfloat16()
    w = (torch.randn(out_features, in_features, generator=g) * 0.05).bfloat16()
    b = torch.randn(out_features, generator=g).bfloat16()
    with torch.inference_mode():
        y = kernels.kernel_linear(x, w, b)
    assert y.dtype == torch.bfloat16 and y.shape == (rows, out_features)
    exact = reference(x, w, b)
    # float32 accumulation, then one rounding to bfloat16 (relative 2^-8) of the result
    assert ((y.double() - exact).abs() <= exact.abs() * 2 ** -8 + 1e-4 * in_features ** 0.5).all()


@needs_kernels
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 7, 16])                # int8: up to 16 rows (4 prompts' CFG and more)
@pytest.mark.parametrize("out_features, in_features", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@each_target
def test_int8_kernel_matches_the_dequantized_product(rows, out_features, in_features, dtype):
    g = torch.Generator().manual_seed(out_features + 3 * in_features + rows)
    x = torch.randn(rows, in_features, generator=g).to(dtype)
    q, scale = quantize_rows(torch.randn(out_features, in_features, generator=g))
    b = torch.randn(out_features, generator=g)
    with torch.inference_mode():
        y = kernels.kernel_linear(x, q, b, scale)
    assert y.dtype == dtype
    exact = reference(x, q, b, scale)
    tolerance = 1e-5 * in_features ** 0.5 if dtype == torch.float32 else 2 ** -8
    assert ((y.double() - exact).abs() <= exact.abs() * tolerance + 1e-4 * in_features ** 0.5).all()



@needs_kernels
@pytest.mark.parametrize("in_features", [100, 1024, 8192, 8193])        # 8192+: several 2048-input chunks
@each_target
def test_int8_with_bfloat16_rows_within_the_integer_forms_bound(in_features):
    """Where the build has integer vectors (AVX-512 VNNI, AVX2, NEON), bfloat16 rows meet int8 weights as 16-bit
    integers (kernels.c): each value is rounded by at most max|x|·2^-15, and the result once more to bfloat16."""
    g = torch.Generator().manual_seed(in_features)
    x = torch.randn(4, in_features, generator=g) * torch.logspace(-4, 2, in_features)[torch.randperm(
        in_features, generator=g)]                                         # values over six decades
    x = x.bfloat16()
    q, scale = quantize_rows(torch.randn(64, in_features, generator=g))
    with torch.inference_mode():
        y = kernels.kernel_linear(x, q, None, scale)
    exact = reference(x, q, None, scale)
    w = (q.double().abs() * scale.double()[:, None]).sum(1)                       # Σ|w| per output
    bound = exact.abs() * 2 ** -8 + x.double().abs().amax(dim=1, keepdim=True) * 2 ** -15 * w + 1e-30
    assert ((y.double() - exact).abs() <= bound).all()


@needs_kernels
@each_target
def test_int8_with_bfloat16_rows_keeps_infinities_nans_and_tiny_rows():
    q, scale = quantize_rows(torch.randn(8, 64))
    x = torch.randn(3, 64).bfloat16()
    x[0, 5], x[1, 7] = float("nan"), float("inf")
    with torch.inference_mode():
        y = kernels.kernel_linear(x, q, None, scale)
    assert y[0].isnan().all() and not y[1].isfinite().any() and y[2].isfinite().all()
    tiny = x[2:] * 2.0 ** -120                                  # under 2^-112: too small to scale to integers
    with torch.inference_mode():
        y = kernels.kernel_linear(tiny, q, None, scale)
    exact = reference(tiny, q, None, scale)
    assert ((y.double() - exact).abs() <= exact.abs() * 2 ** -7 + 2.0 ** -130).all() and y.abs().max() > 0


@needs_kernels
def test_linear_takes_the_kernel_only_where_it_applies():
    w = torch.randn(8, 16).bfloat16()
    with torch.inference_mode():
        assert kernels.applies(torch.randn(2, 16).bfloat16(), w)
        assert kernels.applies(torch.randn(1, 4, 16).bfloat16(), w)             # 4 rows
        assert not kernels.applies(torch.randn(5, 16).bfloat16(), w)            # prefill: PyTorch's GEMM
        q, _ = quantize_rows(torch.randn(8, 16))
        assert kernels.applies(torch.randn(16, 16), q)                          # int8: up to 16 rows
        assert not kernels.applies(torch.randn(17, 16), q)
        assert not kernels.applies(torch.randn(2, 16), w.float())               # float32: PyTorch, unchanged
        assert not kernels.applies(torch.randn(2, 16).bfloat16(), w.t().contiguous().t())   # strided weight
    assert not kernels.applies(torch.randn(2, 16).bfloat16(), w)                # autograd on: PyTorch
    x = torch.randn(3, 16).bfloat16()
    with torch.inference_mode():
        torch.testing.assert_close(kernels.linear(x, w), torch.nn.functional.linear(x, w), rtol=2e-2, atol=2e-2)


def test_disabled_kernels_leave_pytorch_results_untouched(monkeypatch):
    monkeypatch.setattr(kernels, "enabled", False)
    layer = kernels.KernelLinear(16, 8).bfloat16()
    x = torch.randn(2, 16).bfloat16()
    with torch.inference_mode():
        assert torch.equal(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))
        int8 = Int8Linear.from_weight(torch.randn(8, 16))
        assert not kernels.applies(torch.randn(2, 16), int8.weight)          # int8 goes to PyTorch's kernel


def test_no_compiler_means_pytorch(monkeypatch, tmp_path):
    monkeypatch.setattr(kernels, "_library", None)
    monkeypatch.setenv("MINICRAFT_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    assert kernels.compile_kernels() is None and kernels.library() is None
    assert list(tmp_path.iterdir()) == []                      # nothing half-built left behind
    w = torch.randn(8, 16).bfloat16()
    with torch.inference_mode():
        x = torch.randn(2, 16).bfloat16()
        assert not kernels.applies(x, w)
        assert torch.equal(kernels.linear(x, w), torch.nn.functional.linear(x, w))
    monkeypatch.setattr(kernels, "_library", None)               # the next user compiles again


@needs_kernels
def test_kernels_compile_once_into_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MINICRAFT_CACHE", str(tmp_path))
    first = kernels.compile_kernels()
    assert first is not None and first.parent == tmp_path
    mtime = first.stat().st_mtime_ns
    assert kernels.compile_kernels() == first and first.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [first.name]   # no temporary left


@needs_kernels
@each_target
def test_layer_steps_gelu_is_within_its_stated_error():
    """kernels.c's vectorised GELU (polynomials for erf): within 1e-7·|x| of float64 and its own rounding."""
    x = torch.cat([torch.linspace(-12, 12, 200_001), torch.tensor([0.0, -0.0, 1e-30, 3e38, float("inf")])])
    y, rounded = torch.empty_like(x), torch.empty_like(x)
    kernels.library().gelu(x.data_ptr(), y.data_ptr(), x.numel(), 0)
    kernels.library().gelu(x.data_ptr(), rounded.data_ptr(), x.numel(), 1)          # rounded to bfloat16
    exact = torch.nn.functional.gelu(x.double())
    exact[-2:] = x[-2:].double()                                                     # GELU(x) = x up there
    assert y[-1] == float("inf")
    y, x, exact = y[:-1], x[:-1], exact[:-1]
    assert ((y.double() - exact).abs() <= 1e-7 * x.double().abs() + 2 ** -24 * exact.abs()).all()
    assert torch.equal(rounded[:-1], y.bfloat16().float())
    nan = torch.tensor([float("nan")] * 17)
    kernels.library().gelu(nan.data_ptr(), nan.data_ptr(), 17, 0)
    assert nan.isnan().all()


@needs_kernels
def test_the_cache_key_holds_the_cpu_the_library_was_built_for(monkeypatch, tmp_path):
    """A home directory shared by an AVX-512 node and an AVX2 node: each loads only its own build."""
    monkeypatch.setenv("MINICRAFT_CACHE", str(tmp_path))
    monkeypatch.setattr(kernels, "_library", None)
    real = kernels.target_macros
    monkeypatch.setattr(kernels, "target_macros", lambda cc, target: real(cc, target).replace("1", "2"))
    forged = kernels.compile_kernels()                     # "built on another CPU": its macros differ
    forged.write_bytes(b"built for another CPU")          # loading this would crash (or, here, fail)
    monkeypatch.setattr(kernels, "target_macros", real)
    mine = kernels.compile_kernels()
    assert mine != forged and mine.parent == forged.parent
    assert kernels.library() is not None and forged.read_bytes() == b"built for another CPU"
    monkeypatch.setattr(kernels, "_library", None)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 targets")
@needs_kernels
def test_minicraft_march_builds_for_another_target(monkeypatch, tmp_path):
    """MINICRAFT_MARCH=x86-64-v3 (AVX2, no AVX-512) is its own cache entry, and its products equal the native ones."""
    monkeypatch.setenv("MINICRAFT_CACHE", str(tmp_path))
    native = kernels.compile_kernels()
    monkeypatch.setenv("MINICRAFT_MARCH", "x86-64-v3")
    assert "__AVX512F__" not in kernels.target_macros(os.environ.get("CC") or "cc", kernels.target_flags())
    avx2 = kernels.compile_kernels()
    assert avx2 is not None and avx2 != native
    w, x = torch.randn(64, 256).bfloat16(), torch.randn(2, 256).bfloat16()
    results = []
    for path in (native, avx2):
        monkeypatch.setattr(kernels, "_library", None)
        monkeypatch.setattr(kernels, "compile_kernels", lambda path=path: path)   # library() loads this one
        with torch.inference_mode():
            results.append(kernels.kernel_linear(x.float(), w))
    reference = torch.nn.functional.linear(x.float(), w.float())
    for y in results:
        torch.testing.assert_close(y, reference, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(kernels, "_library", None)


@needs_kernels
def test_a_damaged_cache_entry_is_rebuilt(monkeypatch, tmp_path):
    monkeypatch.setenv("MINICRAFT_CACHE", str(tmp_path))
    monkeypatch.setattr(kernels, "_library", None)
    path = kernels.compile_kernels()
    path.write_bytes(b"")                                  # truncated, e.g. by a full disk
    assert kernels.library() is not None and path.stat().st_size > 0
    monkeypatch.setattr(kernels, "_library", None)


GENERATE = """
import torch
from minicraft import MusicGen
from minicraft.fast import kernels
model = MusicGen.get_pretrained("tiny", fast=True, dtype="float32", quantize=None)
model.set_generation_params(duration=0.2, use_sampling=False)
print(tuple(model.generate(["a slow low flute melody"]).shape))
print(kernels.build_info())
"""


@pytest.mark.parametrize("compiler", ["false", "no-openmp"])
def test_a_compiler_that_cannot_build_falls_back_in_one_line(tmp_path, compiler):
    """CC=false: one warning line, PyTorch's kernels, and generation works. A compiler without -fopenmp
    (Apple's clang): one line saying the kernels run on one thread, and they do."""
    if compiler == "no-openmp":
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            pytest.skip("no C compiler here")
        wrapper = tmp_path / "cc-without-openmp"
        wrapper.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = -fopenmp ] && '
                           '{ echo "clang: error: unsupported option \'-fopenmp\'" >&2; exit 1; }; done\n'
                           f'exec {cc} "$@"\n')
        wrapper.chmod(0o755)
        compiler = str(wrapper)
    env = dict(os.environ, CC=compiler, MINICRAFT_CACHE=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", GENERATE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    shape, build = done.stdout.strip().splitlines()
    assert shape == "(1, 1, 3200)"                           # 0.2 s at 16 kHz
    warnings = [line for line in done.stderr.splitlines() if line.startswith("minicraft:")]
    assert len(warnings) == 1, done.stderr
    if compiler == "false":
        assert "using PyTorch's kernels instead" in warnings[0] and build == "None"
        assert not list((tmp_path / "cache").glob("*.so"))
    else:
        assert "no OpenMP, so minicraft's CPU kernels run on one thread" in warnings[0], warnings
        assert "'threads': 1" in build and len(list((tmp_path / "cache").glob("*.so"))) == 1
