import platform

import pytest

from minicraft.fast import kernels, machine

# The kernels' builds this machine runs: its own CPU's, and AVX2 + FMA where the CPU has more (as most
# learners' CPUs build it). test_kernel_targets.py covers plain x86-64 and ARM64 (emulated) too.
TARGETS = ["native"] + (["x86-64-v3"] if platform.machine() in ("x86_64", "AMD64")
                        and {"avx2", "fma", "f16c", "avx512f"} <= set(machine.cpu().flags) else [])


@pytest.fixture(params=TARGETS)
def kernel_target(request, monkeypatch):
    """Run the test with the kernels built for each of TARGETS in turn."""
    if request.param == "native":
        monkeypatch.delenv("MINICRAFT_MARCH", raising=False)
    else:
        monkeypatch.setenv("MINICRAFT_MARCH", request.param)
    monkeypatch.setattr(kernels, "_library", None)        # the previous library comes back afterwards
    if kernels.library() is None:
        pytest.skip("no C compiler here")
    return request.param
