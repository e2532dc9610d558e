"""Generation speed and memory, measured side by side in one run.

    python benchmarks/generate.py tiny                      # real-time factor of the shipped tiny model
    python benchmarks/generate.py tiny --dtype bfloat16     # ... in bfloat16 (also --quantize int8)
    python benchmarks/generate.py compare --size small      # minicraft vs transformers, same weights
    python benchmarks/generate.py compare --dtype bfloat16 --quantize int8    # minicraft's int8 path
    python benchmarks/generate.py precision                 # bfloat16 / int8 error against float32
    python benchmarks/generate.py profile --dtype bfloat16 --quantize int8   # where a step's time goes
    python benchmarks/generate.py products                  # a step's matrix products alone: the floor,
                                                            # and whole LM steps with and without layer_step

`compare` builds random weights at the facebook/musicgen-{small,medium}
architecture with transformers' own MusicGen class and saves them once in the
official Hugging Face format. Then, in separate fresh processes on those same
files and settings (CFG 3, top-k 250, fixed seed, N threads), it times
minicraft and transformers alternately and prints, for each: milliseconds per
decoding step (median, min, max over runs of the per-run median), T5 and
EnCodec time, peak resident memory, and minicraft/transformers ratios.

Each worker prints one JSON line; the parent only schedules and summarises, so
neither implementation pays for the other's memory or warm caches.

`products` and `compare` first print the CPU, its vector instructions, the
kernels' build and the streaming bandwidth measured in the same run, and give
each figure as a share of its floor (the weights' bytes at that bandwidth).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ["lo-fi beat with mellow piano"]


def peak_rss() -> int:
    """This process's peak resident memory in bytes (VmHWM; Linux)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024
    return 0


def step_ms(stamps: list[float]) -> float:
    """Median gap between decoding steps, in ms; the first gap (prefill, warm-up) is left out."""
    gaps = [b - a for a, b in zip(stamps[1:], stamps[2:])]
    return 1000 * statistics.median(gaps)


# ---------------------------------------------------------------------------------------------- workers

def run_minicraft(folder: str, seconds: float, seed: int, dtype: str, quantize: str | None = None,
                  batch: int = 1) -> dict:
    from minicraft import MusicGen
    prompts = PROMPTS * batch
    t = time.perf_counter()
    model = MusicGen.get_pretrained(folder, device="cpu", dtype=as_dtype(dtype),
                                    quantize=quantize, fast=True)
    load = time.perf_counter() - t
    setting = setting_of(model)
    model.set_generation_params(duration=seconds, cfg_coef=3.0, top_k=250)
    t = time.perf_counter()
    model.conditioner(prompts + [None] * batch)
    t5 = time.perf_counter() - t
    stamps = []
    model.set_custom_progress_callback(lambda done, total: stamps.append(time.perf_counter()))
    torch.manual_seed(seed)
    t = time.perf_counter()
    tokens = model.generate_tokens(prompts, None)
    decode_start = time.perf_counter()
    model.generate_audio(tokens)
    end = time.perf_counter()
    return dict(load_s=load, t5_s=t5, step_ms=step_ms(stamps), steps=len(stamps), setting=setting,
                encodec_s=end - decode_start, total_s=end - t, peak_rss=peak_rss(), tokens=tokens.tolist())


def as_dtype(name: str):
    return name if name == "auto" else getattr(torch, name)


def setting_of(model) -> str:
    """The LM's setting as the machine profile names it: float32, bfloat16, int8 or int8 + bfloat16."""
    rows = next(p for p in model.lm.parameters() if p.is_floating_point()).dtype
    int8 = model.lm.transformer.layers[0].linear1.weight.dtype == torch.int8
    return {(False, torch.float32): "float32", (False, torch.bfloat16): "bfloat16",
            (True, torch.float32): "int8", (True, torch.bfloat16): "int8 + bfloat16"}[int8, rows]


def machine_header(threads: int) -> float:
    """Print the CPU, its vector instructions, the kernels' build and the streaming bandwidth (measured now);
    return that bandwidth in GB/s, the floor's denominator."""
    from minicraft.fast import kernels, machine
    torch.set_num_threads(threads)
    cpu, build, gbs = machine.cpu(), kernels.build_info(), machine.bandwidth()
    print(f"CPU: {cpu.model}; {' '.join(cpu.flags)}; native bfloat16: {'yes' if cpu.native_bf16 else 'no'}")
    print(f"minicraft's kernels: {build['isa'] + ', ' + str(build['threads']) + ' threads' if build else 'off'}"
          f"{' (MINICRAFT_MARCH=' + os.environ['MINICRAFT_MARCH'] + ')' if os.environ.get('MINICRAFT_MARCH') else ''}")
    print(f"streaming read: {gbs:.1f} GB/s (the fastest of 5 sums over 256 MiB, {threads} threads)\n")
    return gbs


def run_transformers(folder: str, seconds: float, seed: int, dtype: str, quantize: str | None = None,
                     batch: int = 1) -> dict:
    import transformers
    from minicraft.modules.tokenizer import T5Tokenizer
    from transformers import LogitsProcessor, LogitsProcessorList
    transformers.logging.set_verbosity_error()
    t = time.perf_counter()
    dtype = "float32" if dtype == "auto" else dtype                      # "auto" is minicraft's; transformers: float32
    model = transformers.MusicgenForConditionalGeneration.from_pretrained(folder, dtype=getattr(torch, dtype))
    model.eval()
    load = time.perf_counter() - t
    ids, mask = T5Tokenizer.from_dir(folder)(PROMPTS * batch)
    with torch.no_grad():
        t = time.perf_counter()
        model.text_encoder(input_ids=torch.cat([ids, torch.zeros_like(ids)]),
                           attention_mask=torch.cat([mask, torch.zeros_like(mask)]))
        t5 = time.perf_counter() - t
    stamps, decode_time, codes = [], {}, {}

    class Stamp(LogitsProcessor):
        def __call__(self, input_ids, scores):
            stamps.append(time.perf_counter())
            return scores

    decode = model.audio_encoder.decode

    def timed_decode(audio_codes, *args, **kwargs):
        start = time.perf_counter()
        out = decode(audio_codes, *args, **kwargs)
        decode_time["s"], codes["codes"] = time.perf_counter() - start, audio_codes
        return out

    model.audio_encoder.decode = timed_decode
    frames = int(seconds * model.config.audio_encoder.frame_rate)
    K = model.decoder.num_codebooks
    torch.manual_seed(seed)
    with torch.no_grad():
        t = time.perf_counter()
        model.generate(input_ids=ids, attention_mask=mask, do_sample=True, top_k=250, guidance_scale=3.0,
                       max_new_tokens=frames + K - 1, logits_processor=LogitsProcessorList([Stamp()]))
        end = time.perf_counter()
    return dict(load_s=load, t5_s=t5, step_ms=step_ms(stamps), steps=len(stamps), encodec_s=decode_time["s"],
                total_s=end - t, peak_rss=peak_rss(), tokens=codes["codes"][0].tolist())


# ---------------------------------------------------------------------------------------------- parent

def worker(impl: str, folder: Path, args) -> dict:
    cmd = [sys.executable, __file__, "worker", impl, str(folder), "--seconds", str(args.seconds),
           "--seed", str(args.seed), "--dtype", args.dtype, "--threads", str(args.threads),
           "--batch", str(args.batch)]
    if impl == "minicraft" and args.quantize:
        cmd += ["--quantize", args.quantize]
    env = dict(os.environ, MINICRAFT_KERNELS="0") if args.no_kernels else None
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{impl} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def build_weights(size: str, cache: Path) -> Path:
    """Random weights at the real architecture, saved once by transformers."""
    from hf_models import ENCODEC_32KHZ, MUSICGEN_SIZES, T5_BASE, build_musicgen, save_musicgen
    folder = cache / f"musicgen-{size}-random"
    if not (folder / "config.json").exists():
        print(f"building random musicgen-{size} weights in {folder} ...", file=sys.stderr)
        save_musicgen(build_musicgen(T5_BASE, ENCODEC_32KHZ, MUSICGEN_SIZES[size]), folder,
                      tokenizer=ROOT / "minicraft" / "assets" / "tiny")
    return folder


def summary(name: str, runs: list[dict]) -> dict:
    steps = [r["step_ms"] for r in runs]
    row = dict(step_median=statistics.median(steps), step_min=min(steps), step_max=max(steps),
               t5=statistics.median(r["t5_s"] for r in runs), encodec=statistics.median(r["encodec_s"] for r in runs),
               total=statistics.median(r["total_s"] for r in runs), peak=max(r["peak_rss"] for r in runs))
    print(f"{name:13s} {row['step_median']:8.1f} {row['step_min']:7.1f} {row['step_max']:7.1f} "
          f"{1000 * row['t5']:8.0f} {1000 * row['encodec']:9.0f} {row['total']:8.2f} {row['peak'] / 2**30:8.2f}")
    return row


def compare(args):
    folder = build_weights(args.size, Path(args.cache))
    runs = {"minicraft": [], "transformers": []}
    for i in range(args.repeats):                       # alternate, so drift hits both alike
        for impl in runs:
            runs[impl].append(worker(impl, folder, args))
            print(f"run {i + 1}/{args.repeats} {impl}: {runs[impl][-1]['step_ms']:.1f} ms/step", file=sys.stderr)
    gbs = machine_header(args.threads)
    setting = runs["minicraft"][0]["setting"]
    quantized = f", minicraft with {args.quantize} weights" if args.quantize else ""
    quantized += ", minicraft without its C kernels" if args.no_kernels else ""
    print(f"\nmusicgen-{args.size} (random weights), {args.dtype}{quantized}, {args.batch} x {args.seconds:g} s, "
          f"CFG 3, top-k 250, {args.threads} threads, {args.repeats} runs each")
    print(f"{'':13s} {'ms/step':>8s} {'min':>7s} {'max':>7s} {'T5 ms':>8s} {'EnCodec ms':>9s} "
          f"{'total s':>8s} {'peak GiB':>8s}")
    rows = {impl: summary(impl, r) for impl, r in runs.items()}
    m, t = rows["minicraft"], rows["transformers"]
    from minicraft.fast.machine import SIZES, step_megabytes
    megabytes = step_megabytes(*SIZES[args.size])
    floor = megabytes[setting] / gbs
    print(f"\nminicraft's setting: {setting} ({args.dtype} / {args.quantize}); its LM weights "
          f"{megabytes[setting]:.0f} MB a step, floor {floor:.1f} ms at {gbs:.1f} GB/s: minicraft's step is "
          f"{floor / m['step_median']:.0%} of it; transformers float32's floor {megabytes['float32'] / gbs:.1f} ms")
    print(f"\nminicraft / transformers: step time {m['step_median'] / t['step_median']:.2f}x "
          f"({t['step_median'] / m['step_median']:.2f}x faster), peak memory {m['peak'] / t['peak']:.2f}x")
    same = all(a["tokens"] == b["tokens"] for a, b in zip(runs["minicraft"], runs["transformers"]))
    print(f"sampled tokens identical (same seed): {same}")
    print(f"end to end: minicraft {m['total']:.1f} s, transformers {t['total']:.1f} s for {args.seconds:g} s of audio: "
          f"{t['total'] / m['total']:.2f}x faster, {args.seconds / m['total']:.2f}x real time")


def tiny(args):
    from minicraft import MusicGen
    torch.set_num_threads(args.threads)
    model = MusicGen.get_pretrained("tiny", device="cpu", dtype=as_dtype(args.dtype), quantize=args.quantize,
                                    fast=True)
    model.set_generation_params(duration=args.seconds)
    model.generate(["warm-up"])
    times = []
    for i in range(args.repeats):
        torch.manual_seed(i)
        t = time.perf_counter()
        model.generate(["a fast high chiptune melody in major"] * args.batch)
        times.append(time.perf_counter() - t)
    audio = args.seconds * args.batch
    best, median = min(times), statistics.median(times)
    weights = args.dtype + (", int8 weights" if args.quantize else "")
    print(f"tiny model ({weights}), {args.batch} x {args.seconds:g} s of audio, CFG 3, {args.threads} threads, "
          f"{args.repeats} runs: median {median:.3f} s ({audio / median:.1f}x real time), "
          f"best {best:.3f} s ({audio / best:.1f}x real time)")


def precision(args):
    """Each fast or reduced-precision variant against the plain float32 path, on the tiny model and musicgen-small."""
    from minicraft import MusicGen
    from minicraft.fast.precision import compare as measure
    torch.set_num_threads(args.threads)
    prompts = ["a fast high chiptune melody in major", "a medium mid plucked string melody in major",
               "a slow low flute melody in minor", "a fast drum beat"]
    variants = {"float32, fast paths (layer_step)": {},
                "bfloat16": dict(dtype="bfloat16"), "int8 (float32 activations)": dict(quantize="int8"),
                "int8 + bfloat16": dict(dtype="bfloat16", quantize="int8")}
    names = {"tiny": "tiny", f"musicgen-{args.size} (random weights)": str(build_weights(args.size, Path(args.cache)))}
    print(f"{args.steps} greedy steps, CFG 3, {len(prompts)} prompts; logit differences against the plain float32 "
          "path (every layer in PyTorch), in units of its logits' standard deviation\n")
    print("| model | variant | max logit diff | mean logit diff | same argmax (teacher forced) | "
          "same greedy tokens |\n|---|---|---|---|---|---|")
    for title, name in names.items():
        reference = MusicGen.get_pretrained(name, device="cpu")      # the reference path: every layer in PyTorch
        for variant, kwargs in variants.items():
            candidate = MusicGen.get_pretrained(name, device="cpu", fast=True,
                                                **{"dtype": "float32", "quantize": None, **kwargs})
            r = measure(reference, candidate, prompts, args.steps)
            print(f"| {title} | {variant} | {r.max_logit_diff:.3g} | {r.mean_logit_diff:.3g} | "
                  f"{100 * r.teacher_forced_agreement:.1f} % | {100 * r.greedy_agreement:.1f} % |", flush=True)


def profile(args):
    """torch.profiler over a short generation: the operators that take a decoding step's time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler
    from minicraft import MusicGen
    torch.set_num_threads(args.threads)
    model = MusicGen.get_pretrained(str(build_weights(args.size, Path(args.cache))), device="cpu",
                                    dtype=as_dtype(args.dtype), quantize=args.quantize, fast=True)
    model.set_generation_params(duration=args.seconds, cfg_coef=3.0, top_k=250)
    model.generate_tokens(PROMPTS, None)                                   # warm-up
    stamps = []
    model.set_custom_progress_callback(lambda done, total: stamps.append(time.perf_counter()))
    with profiler(activities=[ProfilerActivity.CPU]) as prof:
        model.generate_tokens(PROMPTS, None)
    steps = len(stamps)
    print(f"musicgen-{args.size} (random weights), {args.dtype}{', int8 weights' if args.quantize else ''}, "
          f"{steps} steps, {step_ms(stamps):.1f} ms per step (median); per step, by operator:")
    for event in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:10]:
        print(f"  {event.key:55s} {event.self_cpu_time_total / 1000 / steps:7.2f} ms  {event.count / steps:6.1f} calls")


def products(args):
    """A decoding step's matrix products alone, on musicgen-small's shapes, 2 rows (CFG): a floor.

    The 148 products of one step (q/k/v, attention output, cross-attention query and output, the two
    feed-forward layers of 24 layers, and 4 heads), random weights, timed back to back so that every
    weight comes from memory as in a real step. What a step costs beyond this is everything else.
    """
    import torch.nn.functional as F
    from minicraft.fast import kernels, machine
    from minicraft.fast.int8 import quantize_rows
    gbs = machine_header(args.threads)
    torch.manual_seed(0)
    D, H, V = 1024, 4096, 2048
    shapes = machine.layer_shapes(D, H) * 24 + [(V, D)] * 4
    weights = [torch.randn(o, i) * i ** -0.5 for o, i in shapes]
    x32 = {i: torch.randn(2, i) for i in (D, H)}
    x16 = {i: x.bfloat16() for i, x in x32.items()}

    def run(name, ws, product):
        matrices = [w[0] if isinstance(w, tuple) else w for w in ws]          # int8: (q, scale) pairs
        size = sum(m.numel() * m.element_size() for m in matrices)
        times = []
        with torch.inference_mode():
            for _ in range(args.repeats + 1):
                t = time.perf_counter()
                for w in ws:
                    product(w)
                times.append(time.perf_counter() - t)
        ms = 1000 * statistics.median(times[1:])
        floor = size / gbs / 1e6
        print(f"  {name:48s} {ms:6.1f} ms per step (min {1000 * min(times[1:]):5.1f})  "
              f"{size / 1e6:5.0f} MB  {size / ms / 1e6:5.1f} GB/s  floor {floor:5.1f} ms: {floor / ms:4.0%} of it")

    print(f"one decoding step's matrix products, musicgen-small shapes, 2 rows, {args.threads} threads, "
          f"median of {args.repeats}:")
    run("float32 weights (PyTorch, MKL)", weights, lambda w: F.linear(x32[w.shape[1]], w))
    if kernels.library() is not None:
        run("float32 weights (minicraft kernel)", weights, lambda w: kernels.kernel_linear(x32[w.shape[1]], w))
    bf16 = [w.bfloat16() for w in weights]
    run("bfloat16 weights and rows (PyTorch)", bf16, lambda w: F.linear(x16[w.shape[1]], w))
    if kernels.library() is not None:
        run("bfloat16 weights and rows (minicraft kernel)", bf16, lambda w: kernels.kernel_linear(x16[w.shape[1]], w))
    del bf16
    int8 = [quantize_rows(w) for w in weights]
    del weights
    if hasattr(torch, "_weight_int8pack_mm"):
        run("int8 weights, float32 rows (PyTorch)", int8,
            lambda qs: torch._weight_int8pack_mm(x32[qs[0].shape[1]], qs[0], qs[1]))
    if kernels.library() is not None:
        run("int8 weights, float32 rows (minicraft kernel)", int8,
            lambda qs: kernels.kernel_linear(x32[qs[0].shape[1]], qs[0], None, qs[1]))
        run("int8 weights, bfloat16 rows (minicraft kernel)", int8,          # 16-bit integers on VNNI CPUs
            lambda qs: kernels.kernel_linear(x16[qs[0].shape[1]], qs[0], None, qs[1]))
    del int8
    print("the rest of a step: one LM step of 2 rows at cache length 125, every product replaced by zeros "
          "of its shape, each layer's other operations in PyTorch:")
    for dtype, quantize in (("float32", None), ("bfloat16", None), ("float32", "int8")):
        print(f"  {dtype + (', int8 weights' if quantize else ''):48s} "
              f"{lm_step_ms(args, dtype, quantize, products=False, whole_layers=False):6.1f} ms")
    print("whole LM steps (products included), 2 rows at cache length 125, each layer in one layer_step call "
          "(kernels.c) against each layer in PyTorch:")
    for dtype, quantize in (("float32", None), ("bfloat16", None), ("float32", "int8"), ("bfloat16", "int8")):
        fused, plain = (lm_step_ms(args, dtype, quantize, whole_layers=w) for w in (True, False))
        print(f"  {dtype + (', int8 weights' if quantize else ''):48s} {fused:6.1f} ms  (in PyTorch: {plain:5.1f})")
    print("the same with cross-attention's projections not folded into the 12-position text (a layer's fold_cross):")
    for dtype, quantize in (("float32", None), ("bfloat16", None), ("bfloat16", "int8")):
        folded, unfolded = (lm_step_ms(args, dtype, quantize, fold=f) for f in (True, False))
        print(f"  {dtype + (', int8 weights' if quantize else ''):48s} {folded:6.1f} ms folded, "
              f"{unfolded:6.1f} ms not")


def lm_step_ms(args, dtype: str, quantize: str | None, products: bool = True, whole_layers: bool = True,
               length: int = 125, fold: bool = True) -> float:
    """Median ms of one LM decoding step (see ``products``); ``products=False`` replaces them by zeros."""
    from minicraft import MusicGen
    from minicraft.fast import kernels
    from minicraft.models.lm import LM
    model = MusicGen.get_pretrained(str(build_weights("small", Path(args.cache))), device="cpu",
                                    dtype=getattr(torch, dtype), quantize=quantize, fast=True)
    lm, rows = model.lm, 2
    act = next(p for p in lm.parameters() if p.is_floating_point()).dtype
    cond = torch.randn(rows, 12, lm.config.dim, dtype=act)
    for layer in lm.transformer.layers:
        layer.fold_cross = fold                                   # read when the layers prepare, below
    # the fast path's caches let each layer's step run in C; the reference caches leave layers to PyTorch
    caches = lm.new_caches(rows, length + 1, cond) if whole_layers else LM.new_caches(lm, rows, length + 1, cond)
    step = torch.full((rows, lm.config.num_codebooks, 1), 5)
    no_product = lambda x, weight, *rest: x.new_zeros(x.shape[:-1] + (weight.shape[0],))   # noqa: E731
    saved = kernels.linear, kernels.kernel_linear
    times = []
    with torch.inference_mode():
        for _ in range(length):                                   # fill the cache with real steps
            lm(step, cond, caches=caches)
        if not products:
            kernels.linear = kernels.kernel_linear = no_product    # every product of the LM goes through these
        try:
            for _ in range(30):
                for cache in caches:
                    cache.length = length
                t = time.perf_counter()
                lm(step, cond, caches=caches)
                times.append(time.perf_counter() - t)
        finally:
            kernels.linear, kernels.kernel_linear = saved
    return 1000 * statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="minicraft vs transformers on the same official-format weights")
    c.add_argument("--size", default="small", choices=["small", "medium"])
    c.add_argument("--cache", default=str(ROOT / "benchmarks" / ".weights"))
    c.add_argument("--repeats", type=int, default=3)
    c.add_argument("--quantize", default=None, choices=["int8", "auto"], help="minicraft's int8 weights (auto: "
                   "where they measured faster on this CPU)")
    e = sub.add_parser("precision", help="bfloat16 and int8 against float32: logits and greedy tokens")
    e.add_argument("--size", default="small", choices=["small", "medium"])
    e.add_argument("--cache", default=str(ROOT / "benchmarks" / ".weights"))
    e.add_argument("--steps", type=int, default=100)
    e.add_argument("--threads", type=int, default=2)
    f = sub.add_parser("profile", help="the operators that take a decoding step's time (minicraft)")
    f.add_argument("--size", default="small", choices=["small", "medium"])
    f.add_argument("--cache", default=str(ROOT / "benchmarks" / ".weights"))
    f.add_argument("--quantize", default=None, choices=["int8"])
    m = sub.add_parser("products", help="a decoding step's matrix products alone (the floor under a step)")
    m.add_argument("--repeats", type=int, default=5)
    m.add_argument("--threads", type=int, default=2)
    m.add_argument("--cache", default=str(ROOT / "benchmarks" / ".weights"))
    t = sub.add_parser("tiny", help="real-time factor of the shipped tiny model")
    t.add_argument("--batch", type=int, default=1)
    t.add_argument("--repeats", type=int, default=5)
    t.add_argument("--quantize", default=None, choices=["int8"], help="int8 weights")
    w = sub.add_parser("worker")
    w.add_argument("impl", choices=["minicraft", "transformers"])
    w.add_argument("folder")
    w.add_argument("--quantize", default=None, choices=["int8", "auto"])
    for q in (c, w):
        q.add_argument("--batch", type=int, default=1, help="prompts per generation")
    for q in (c, e, t, f):
        q.add_argument("--no-kernels", action="store_true",
                       help="minicraft without its C kernels (PyTorch's instead)")
    for q in (c, t, w, f):
        q.add_argument("--seconds", type=float, default={t: 2.0, f: 1.0}.get(q, 5.0))
        q.add_argument("--threads", type=int, default=2)
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "auto"])
    args = p.parse_args()
    if getattr(args, "no_kernels", False):
        from minicraft.fast import kernels
        kernels.enabled = False
    if args.command == "worker":
        torch.set_num_threads(args.threads)
        run = run_minicraft if args.impl == "minicraft" else run_transformers
        print(json.dumps(run(args.folder, args.seconds, args.seed, args.dtype, args.quantize, args.batch)))
    elif args.command == "compare":
        compare(args)
    elif args.command == "precision":
        precision(args)
    elif args.command == "profile":
        profile(args)
    elif args.command == "products":
        products(args)
    else:
        tiny(args)


if __name__ == "__main__":
    main()
