"""A LoRA fine-tuning step at musicgen-small's size: seconds per step and peak memory, for each way of holding
the frozen weights (float32, bfloat16, int8), and with the activations recomputed in the backward pass, side by
side in one run.

    python benchmarks/finetune_step.py                   # batch 2, 5-second windows, 4 timed steps each
    python benchmarks/finetune_step.py --seconds 10 --batch 1

The weights are random, written by transformers at facebook/musicgen-small's architecture (T5-base, EnCodec
32 kHz, a 24-layer decoder of width 1024): a step costs what it costs with the real ones. Each setting runs in
its own process, so that its peak memory is its own; memory is the resident set (VmHWM), reset after loading:
what the steps add on top of the model as it is held for training.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def resident_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_setting(folder: str, base_dtype: str, batch: int, seconds: float, steps: int, recompute: bool = False) -> dict:
    from minicraft import MusicGen
    from minicraft.models.adapters import AdapterConfig, add_adapters, count_parameters
    from minicraft.tune.train import BASE_DTYPES, lm_loss, recompute_activations
    model = MusicGen.get_pretrained(folder, device="cpu", dtype=None, quantize=None)
    add_adapters(model.lm, AdapterConfig(), BASE_DTYPES[base_dtype]).train()
    recompute_activations(model.lm, recompute)
    params = [p for p in model.lm.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    frames = int(seconds * model.frame_rate)
    codes = torch.randint(0, 2048, (batch, 4, frames))
    lengths = torch.full((batch,), frames)
    captions = ["lo-fi beat with mellow piano"] * batch
    held = resident_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")          # VmHWM := VmRSS: the steps' peak from here
    times = []
    for _ in range(steps + 1):                             # the first step warms up and is not timed
        start = time.perf_counter()
        loss = lm_loss(model, codes, lengths, captions)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    trainable, total = count_parameters(model.lm)
    return dict(base_dtype=base_dtype + (", recomputed" if recompute else ""), held_mib=held,
                peak_mib=resident_mib("VmHWM"),
                seconds_per_step=sorted(times[1:])[len(times[1:]) // 2], trainable=trainable, total=total)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--one", nargs=3, metavar=("FOLDER", "DTYPE", "RECOMPUTE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(one_setting(args.one[0], args.one[1], args.batch, args.seconds, args.steps,
                                     args.one[2] == "recompute")))
        return
    from hf_models import ENCODEC_32KHZ, MUSICGEN_SMALL_DECODER, T5_BASE, build_musicgen, save_musicgen
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    flags = Path("/proc/cpuinfo").read_text()
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
    print(f"{cpu} ({', '.join(isa)}), {args.threads} threads, torch {torch.__version__}; batch {args.batch} "
          f"x {args.seconds:g} s windows, median of {args.steps} steps")
    with tempfile.TemporaryDirectory() as tmp:
        save_musicgen(build_musicgen(T5_BASE, ENCODEC_32KHZ, MUSICGEN_SMALL_DECODER), Path(tmp) / "small")
        print("| frozen weights | seconds per step | memory held for training (MiB) | peak during steps (MiB) |")
        print("|---|---|---|---|")
        for dtype, recompute in [("float32", ""), ("bfloat16", ""), ("int8", ""), ("float32", "recompute"),
                                 ("int8", "recompute")]:
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
            out = subprocess.run([sys.executable, __file__, "--one", str(Path(tmp) / "small"), dtype,
                                  recompute or "keep",
                                  "--batch", str(args.batch), "--seconds", str(args.seconds),
                                  "--steps", str(args.steps), "--threads", str(args.threads)],
                                 capture_output=True, text=True, env=env, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {r['base_dtype']} | {r['seconds_per_step']:.2f} | {r['held_mib']:.0f} | {r['peak_mib']:.0f} |")
        print(f"LoRA rank 8 on every projection: {r['trainable']:,} of {r['total']:,} LM parameters train")


if __name__ == "__main__":
    main()
