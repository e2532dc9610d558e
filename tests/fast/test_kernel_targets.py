"""kernels.c built for every instruction set this machine can run or emulate, checked by kernel_check.c.

Natively: this CPU (``-march=native``), AVX2 + FMA (``x86-64-v3``) and plain x86-64 where the CPU runs them,
and a build without OpenMP (Apple's clang). Emulated: ARM64 NEON, cross-compiled with Debian's
``gcc-aarch64-linux-gnu`` and run under ``qemu-user`` (with CI set, missing tools fail instead of skipping;
``.ci/run`` installs them). Each build's products and GELU must be within their stated bounds of double
arithmetic, and its layer steps must equal the native build's, which test_layer_step.py checks against
PyTorch. Emulation says nothing about ARM speed.
"""
import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from minicraft.fast import kernels, machine

CHECK = Path(__file__).with_name("kernel_check.c")
CC = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
X86 = platform.machine() in ("x86_64", "AMD64")


TARGETS = {   # name: (compiler, flags, what the CPU must have to run it natively, runner)
    "native": (CC, ["-march=native", "-fopenmp"], set(), []),
    "native, no OpenMP": (CC, ["-march=native"], set(), []),
    "x86-64-v3 (AVX2+FMA)": (CC, ["-march=x86-64-v3", "-fopenmp"], {"avx2", "fma", "f16c"} if X86 else None, []),
    "x86-64 (no vectors of ours)": (CC, ["-march=x86-64", "-fopenmp"], set() if X86 else None, []),
    "aarch64 NEON (qemu)": ("aarch64-linux-gnu-gcc", ["-static", "-fopenmp"], "emulated", ["qemu-aarch64"]),
}


def run_check(tmp_path: Path, compiler: str, flags: list[str], runner: list[str]) -> str:
    binary = tmp_path / "kernel_check"
    subprocess.run([compiler, "-O2", *flags, "-I", str(kernels.SOURCE.parent), str(CHECK), "-o", str(binary), "-lm"],
                   check=True, capture_output=True, text=True)
    done = subprocess.run([*runner, str(binary)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def layer_outputs(text: str) -> dict[str, list[float]]:
    return {line.split()[1]: [float(v) for v in line.split()[2:]]
            for line in text.splitlines() if line.startswith("layer_step")}


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    if CC is None:
        pytest.skip("no C compiler here")
    return run_check(tmp_path_factory.mktemp("native"), CC, ["-march=native", "-fopenmp"], [])


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_build_is_within_its_bounds_and_equals_the_native_one(name, native, tmp_path):
    compiler, flags, needs, runner = TARGETS[name]
    if needs is None:
        pytest.skip(f"{name}: not this machine's architecture")
    if needs == "emulated":
        missing = [tool for tool in (compiler, *runner) if shutil.which(tool) is None]
        if missing:
            if os.environ.get("CI"):
                pytest.fail(f"{', '.join(missing)} missing: .ci/run installs gcc-aarch64-linux-gnu and qemu-user")
            pytest.skip(f"{', '.join(missing)} not installed (Debian: gcc-aarch64-linux-gnu qemu-user)")
    elif not needs <= set(machine.cpu().flags):
        pytest.skip(f"this CPU lacks {', '.join(sorted(needs - set(machine.cpu().flags)))}")
    out = run_check(tmp_path, compiler, flags, runner)
    checks = [line.split() for line in out.splitlines() if line.startswith("check ")]
    assert len(checks) == 97
    failed = [f"{name} {error} > {bound}" for _, name, error, bound in checks if float(error) > float(bound)]
    assert not failed, failed
    isa = out.splitlines()[0]
    expected = {"x86-64-v3": "AVX2+FMA", "x86-64 (": "scalar", "aarch64": "NEON"}
    for prefix, vectors in expected.items():
        if name.startswith(prefix):
            assert vectors in isa, isa
    mine, reference = layer_outputs(out), layer_outputs(native)
    assert mine.keys() == reference.keys() and len(mine) == 4
    for kind, values in mine.items():
        rows = "bf16rows" if kind.startswith("bf16rows") else "f32rows"
        tolerance = 2 ** -7 if rows == "bf16rows" else 1e-5                 # one bfloat16 step; float32 sums
        for a, b in zip(values, reference[kind]):
            assert abs(a - b) <= tolerance * (abs(b) + 1e-2), (kind, a, b)
