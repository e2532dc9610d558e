"""Choosing where to run (cuda -> mps -> cpu) and in which number format.

Only the CPU is exercised by this repository's tests; see docs/speed.md for
what has and has not been verified on CUDA and Apple MPS.
"""
from __future__ import annotations

import torch

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, checked; or the best one present."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:1' or 'mps'.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' is not available on this machine (no CUDA GPU or a CPU-only "
                         "PyTorch build); use --device cpu, or leave it out to pick automatically.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {device} does not exist: this machine has {torch.cuda.device_count()} GPU(s).")
    if device.type == "mps" and not mps_available():
        raise ValueError("device 'mps' is not available (it needs Apple silicon and macOS 12.3+); "
                         "use --device cpu, or leave it out to pick automatically.")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {device.type!r} is not supported; use 'cpu', 'cuda' or 'mps'.")
    return device


def pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """float32 by default; half precision only where the device computes it."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; use float32, float16 or bfloat16.")
        dtype = DTYPES[dtype]
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"dtype {dtype} is not supported; use float32, float16 or bfloat16.")
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError("float16 is slow and poorly supported on CPU; use bfloat16 or float32 there.")
    if dtype == torch.bfloat16 and device.type == "mps" and not _mps_bf16():
        raise ValueError("this macOS/PyTorch does not support bfloat16 on MPS; use float16 or float32.")
    return dtype


def _mps_bf16() -> bool:
    try:
        torch.zeros(1, dtype=torch.bfloat16, device="mps")
        return True
    except (RuntimeError, TypeError):
        return False
