"""The resampler before and after it made its weights a block of outputs at a time: time and peak memory.

    python benchmarks/resample.py            # 10 s of mono audio, 44 100 and 44 101 Hz -> 16 000 Hz

"before" is the dense method minicraft used until 2026-12-07, reproduced here: one sinc kernel per output
phase, all phases in one table of [new, old + 2·width] numbers (16 000 x 44 241 for 44 101 -> 16 000 Hz).
Each run is a fresh process; its peak resident memory is the process's, PyTorch included.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def dense_resample(wav: torch.Tensor, old_rate: int, new_rate: int, zeros: int = 24, rolloff: float = 0.945):
    g = math.gcd(old_rate, new_rate)
    old, new = old_rate // g, new_rate // g
    cutoff = min(old, new) * rolloff
    width = math.ceil(zeros * old / cutoff)
    taps = torch.arange(-width, width + old, dtype=torch.float64)
    phases = torch.arange(new, dtype=torch.float64)[:, None] / new
    t = ((taps[None, :] / old - phases) * cutoff).clamp(-zeros, zeros) * math.pi
    kernels = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t) * torch.cos(t / zeros / 2) ** 2
    kernels = (kernels / kernels.sum(dim=-1, keepdim=True)).to(wav.dtype)
    x = F.pad(wav.reshape(-1, 1, wav.shape[-1]), (width, width + old), mode="replicate")
    y = F.conv1d(x, kernels[:, None, :], stride=old).transpose(1, 2).reshape(x.shape[0], -1)
    return y[:, :new * wav.shape[-1] // old]


def worker(method: str, old: int, new: int, seconds: float) -> dict:
    from minicraft import audio
    wav = torch.randn(1, int(old * seconds), generator=torch.Generator().manual_seed(0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    out = (dense_resample if method == "before" else audio.resample)(wav, old, new)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return dict(seconds=elapsed, peak_mib=peak / 1024, extra_mib=(peak - before) / 1024, samples=out.shape[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        method, old, new = args.worker
        print(json.dumps(worker(method, int(old), int(new), args.seconds)))
        return
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    print(f"{args.seconds:g} s of mono float32 audio, {cpu}, {torch.get_num_threads()} threads\n")
    print("| rates | method | time | peak resident memory (process) | added by the call |\n|---|---|---|---|---|")
    for old, new in ((44100, 16000), (44101, 16000)):
        for method in ("before", "after"):
            done = subprocess.run([sys.executable, __file__, "--seconds", str(args.seconds), "--worker", method,
                                   str(old), str(new)], capture_output=True, text=True)
            if done.returncode:
                print(f"| {old} -> {new} | {method} | failed: {done.stderr.strip().splitlines()[-1][:80]} | | |")
                continue
            r = json.loads(done.stdout)
            print(f"| {old} -> {new} | {method} | {r['seconds']:.2f} s | {r['peak_mib']:.0f} MiB | "
                  f"{r['extra_mib']:.0f} MiB |", flush=True)


if __name__ == "__main__":
    main()
