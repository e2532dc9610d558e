"""The ``minicraft`` command: generate, continue, explore, finetune, download, info.

Every user mistake ends in one line on stderr that says what to do, and exit
code 2, before any model loads where it can be known then. ``generate`` runs its
prompts in batches and writes each batch's files as soon as they are done (whole
files only: Ctrl-C says which were written); ``explore`` keeps every finished
sample, so that it can resume.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path

import torch

from minicraft import audio
from minicraft.api import resolve
from minicraft.explorer.explore import explore
from minicraft.explorer.report import best_settings
from minicraft.explorer.spec import spec_from
from minicraft.files import slug
from minicraft.formats.checkpoints import CheckpointError
from minicraft.formats.loaders import fetch_model
from minicraft.info import describe, describe_device
from minicraft.models.adapters import TARGETS, AdapterConfig
from minicraft.tune.train import BASE_DTYPES, FinetuneConfig, finetune
from minicraft.progress import ProgressBar

EXAMPLES = """\
examples:
  minicraft generate "a fast high chiptune melody"           # the tiny model, offline, seconds
  minicraft generate "the sound of rain" --model audiogen-tiny --duration 8   # the tiny AudioGen: effects
  minicraft generate "lo-fi beat with mellow piano" --model small --duration 8
  minicraft generate "dog barking" "rain on a tin roof" --model audiogen-medium --out sounds/
  minicraft generate "calm ambient pads" --model small --quantize int8   # 4x smaller weights
  minicraft continue intro.wav "add drums" --duration 12 --out longer.wav
  minicraft download small          # fetch once, then generate offline (HF_HUB_OFFLINE=1)
  minicraft info small
  minicraft info --device                                 # this CPU, and what --dtype/--quantize auto pick
  minicraft explore "a slow low flute melody" --temperature 0.5 1 --cfg 1 3 --out grid/   # measured: grid/report.html
  minicraft explore --help          # the parameter explorer: grids, specs, resuming
  minicraft finetune my_sounds/ --out runs/mine          # LoRA on your own sounds; then --model runs/mine

Sampling, in one breath: temperature scales the randomness (0 = always the most
likely token); top-k keeps the k most likely tokens; top-p keeps the smallest set
whose probability reaches p (and wins over top-k); --cfg is classifier-free
guidance, how strongly the text steers (1 = off, 3 = default).
"""


EXPLORE_EXAMPLES = """\
examples:
  minicraft explore "a slow low flute melody" "a fast high chiptune melody" --temperature 0.5 1 1.5 --cfg 1 3
  minicraft explore "the sound of rain" "wind recorded outside" --model audiogen-tiny --cfg 1 3
  minicraft explore --spec grid.yaml --out grid/      # run it again to resume; then open grid/report.html

A spec file (YAML or JSON) holds the same fields, and groups prompts by content type:
  prompts: {melodies: ["a fast high chiptune melody"], drums: ["a fast drum beat"]}
  temperature: [0.5, 1.0]
  top_k: [50, 250]
  cfg_coef: [1, 3]
  seeds: [0, 1]
  duration: 1
  objective: adherence       # a measure to maximise; -repetition to minimise repetition
Flags override the spec's fields.
"""


FINETUNE_EXAMPLES = """\
examples:
  minicraft finetune my_sounds/ --model tiny --out runs/mine      # my_sounds/a.wav + a.txt (its caption), ...
  minicraft finetune my_sounds/ --model tiny --out runs/mine      # again: resumes (Ctrl-C saves first)
  minicraft generate "the caption of my sound" --model runs/mine  # the base with the adapter
  minicraft finetune my_sounds/ --model small --base-dtype bfloat16 --steps 2000 --merge

The run folder holds adapter.safetensors (the LoRA updates alone) with adapter_config.json, log.csv, loss.png
and checkpoint.pt; with --merge, merged/ is a whole model in the Hugging Face format.
"""


class UserError(Exception):
    """A mistake the user can fix; printed as one line, exit code 2."""


def output_paths(out: str | None, prompts: list[str], suffix: str, force: bool) -> list[Path]:
    """One file per prompt: ``--out`` names a file (one prompt) or a folder."""
    target = Path(out) if out else Path(".")
    if target.suffix and not target.is_dir() and target.suffix.lower() not in audio.FORMATS:
        raise UserError(f"--out {target}: not an audio file name ({', '.join(audio.FORMATS)}) nor a folder; "
                        "name a .wav/.flac/.ogg file, or a folder.")
    if target.suffix.lower() in audio.FORMATS:
        if target.is_dir():
            raise UserError(f"--out {target} is a folder; name a file that is not one, or give the folder "
                            "without the audio suffix.")
        if len(prompts) != 1:
            raise UserError(f"--out {target} is a single file but there are {len(prompts)} prompts; "
                            "give a folder instead.")
        paths = [target]
    else:
        names, paths = set(), []
        for prompt in prompts:
            stem, n = slug(prompt), 1
            while stem in names:
                n += 1
                stem = f"{slug(prompt)}_{n}"
            names.add(stem)
            paths.append(target / f"{stem}{suffix}")
    for path in paths:
        folder = path.parent
        if folder.exists() and not folder.is_dir():
            raise UserError(f"{folder} is a file, not a folder; choose another --out.")
        if path.is_dir():
            raise UserError(f"{path} is a folder; it cannot be replaced by a file. Choose another --out.")
        if path.exists() and not force:
            raise UserError(f"{path} already exists; add --force to replace it.")
    return paths


def check_writable(paths: list[Path]):
    for folder in {p.parent for p in paths}:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create {folder} ({e.strerror}); choose another --out.") from None
        if not os.access(folder, os.W_OK):
            raise UserError(f"cannot write to {folder}; choose another --out.")


def add_sampling_options(p: argparse.ArgumentParser, default_model: str):
    p.add_argument("--model", default=default_model,
                   help="tiny, small, medium, large, stereo-small/medium/large, melody, melody-large, stereo-melody, "
                        f"stereo-melody-large, audiogen-tiny, audiogen-medium, a Hub id or a local folder (default: "
                        f"{default_model})")
    p.add_argument("--duration", type=float, default=None, help="seconds of audio (default: the model's)")
    p.add_argument("--temperature", type=float, default=None,
                   help="randomness; 0 = greedy (default: the model's, 1.0; the tiny MusicGen's 0.7)")
    p.add_argument("--top-k", type=int, default=None,
                   help="sample among the k likeliest tokens (default 250, or the vocabulary if smaller)")
    p.add_argument("--top-p", type=float, default=0.0, help="nucleus sampling mass; 0 = off (default)")
    p.add_argument("--cfg", type=float, default=None, help="classifier-free guidance strength (default 3)")
    p.add_argument("--seed", type=int, default=None, help="random seed, for repeatable output")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    p.add_argument("--dtype", default="auto",
                   help="auto (default: on a CPU, the fastest setting this CPU computes accurately, measured once; "
                        "`minicraft info --device` shows it; float32 elsewhere), float32, bfloat16, or float16 on GPUs")
    p.add_argument("--quantize", default="auto", choices=["auto", "int8", "none"],
                   help="int8: the LM's weights in 8 bits, 4x smaller than float32; none: as stored; auto (default): "
                        "int8 where it measured faster on this CPU (docs/speed.md has the figures per CPU)")
    p.add_argument("--out", default=None, help="output folder, or a .wav/.flac file for one prompt")
    p.add_argument("--format", default="wav", choices=["wav", "flac"], help="file format in a folder")
    p.add_argument("--normalize", default="loudness", choices=["loudness", "peak", "rms", "clip", "none"],
                   help="how to scale the audio before writing (default: loudness, -14 LUFS)")
    p.add_argument("--force", action="store_true", help="replace existing output files")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minicraft", description="Text-to-music and text-to-sound with "
                                "MusicGen and AudioGen, from a small readable codebase.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    g = sub.add_parser("generate", help="text -> audio files", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("prompts", nargs="*", help="one or more text descriptions")
    g.add_argument("--prompts", dest="prompt_file", metavar="FILE",
                   help="more prompts, one per line, from a text file (- for stdin)")
    g.add_argument("--batch-size", type=int, default=None,
                   help="prompts generated together (default: what the device's memory holds, at most 16)")
    g.add_argument("--melody", metavar="FILE", default=None,
                   help="an audio file whose tune every prompt follows (melody models: --model melody, "
                        "stereo-melody, ...)")
    add_sampling_options(g, "tiny")
    c = sub.add_parser("continue", help="extend an audio file, optionally steered by text")
    c.add_argument("input", help="the audio file to continue (WAV/FLAC/OGG)")
    c.add_argument("prompts", nargs="*", help="a description (optional)")
    c.add_argument("--prompt-seconds", type=float, default=None,
                   help="continue from the file's last seconds (default: half the duration to generate)")
    add_sampling_options(c, "tiny")
    e = sub.add_parser("explore", help="a grid of sampling settings -> measured samples and an HTML report",
                       epilog=EXPLORE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("prompts", nargs="*", help="prompts (one group); or give them in --spec")
    e.add_argument("--spec", help="a YAML or JSON file with the grid (see below)")
    e.add_argument("--model", help="tiny (default), small, medium, large, audiogen-tiny, audiogen-medium, a Hub id or a folder")
    e.add_argument("--temperature", type=float, nargs="+", help="values to try (default 1)")
    e.add_argument("--top-k", type=int, nargs="+", help="values to try (default 250)")
    e.add_argument("--top-p", type=float, nargs="+", help="values to try (default 0 = off)")
    e.add_argument("--cfg", type=float, nargs="+", dest="cfg_coef", help="guidance values to try (default 3)")
    e.add_argument("--seeds", type=int, nargs="+", help="one sample per seed for every setting (default 0)")
    e.add_argument("--duration", type=float, help="seconds per sample (default 1)")
    e.add_argument("--batch-size", type=int, help="prompts generated together (default 8)")
    e.add_argument("--objective", help="the measure the best settings maximise; -name to minimise "
                   "(default: adherence with the tiny model, else -repetition)")
    e.add_argument("--device", help="cuda, mps or cpu (default: best available)")
    e.add_argument("--dtype", help="float32 (default), bfloat16, or float16 on GPUs")
    e.add_argument("--out", default="explore", help="the run folder; the same folder again resumes (default: explore)")
    e.add_argument("--max-samples", type=int, help="stop after this many new samples; run again to continue")
    e.add_argument("--yes", action="store_true", help="run a grid of more than 10 000 samples")
    f = sub.add_parser("finetune", help="teach a model your own sounds (LoRA adapters) -> a run folder to "
                       "generate from", epilog=FINETUNE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("data", help="a folder of WAV/FLAC/OGG files with same-name .txt captions, a folder with "
                                "metadata.jsonl (file_name, text), or an audiocraft data.jsonl manifest")
    f.add_argument("--model", default="tiny", help="the base: tiny (default), small, audiogen-tiny, audiogen-medium, "
                                                   "a Hub id or a folder")
    f.add_argument("--out", default="runs/mine",
                   help="the run folder; the same command again resumes (default: runs/mine)")
    f.add_argument("--steps", type=int, help=f"training steps (default {FinetuneConfig.steps})")
    f.add_argument("--batch-size", type=int, dest="batch", help=f"windows per step (default {FinetuneConfig.batch})")
    f.add_argument("--lr", type=float, help=f"peak learning rate (default {FinetuneConfig.lr:g})")
    f.add_argument("--warmup", type=int, help=f"steps of linear warm-up (default {FinetuneConfig.warmup})")
    f.add_argument("--rank", type=int, help=f"LoRA rank (default {AdapterConfig.rank})")
    f.add_argument("--alpha", type=float,
                   help=f"LoRA alpha: updates scaled by alpha / rank (default {AdapterConfig.alpha:g})")
    f.add_argument("--lora-dropout", type=float, help="dropout on the updates' input (default 0)")
    f.add_argument("--targets", nargs="+", choices=TARGETS, help="projections that get an update (default: all three)")
    f.add_argument("--layers", type=int, nargs="+", help="layers that get updates (default: all)")
    f.add_argument("--base-dtype", choices=sorted(BASE_DTYPES), help="how the frozen weights are held: float32 "
                   "(default), bfloat16 or int8 (less memory, for medium and large models on a laptop)")
    f.add_argument("--condition-dropout", type=float, help="share of captions dropped, so that guidance "
                   f"still works (default {FinetuneConfig.condition_dropout:g})")
    f.add_argument("--valid-share", type=float, help="share of files held out to measure the loss on "
                   f"(default {FinetuneConfig.valid_share:g}; none with fewer than 10 files)")
    f.add_argument("--keep-prompts", metavar="FILE", help="prompts (one per line) whose sound the model should keep: "
                   "the base model's own generations for them are mixed into training (prior preservation; without "
                   "it a fine-tune drifts every prompt towards your sounds)")
    f.add_argument("--keep-share", type=float, help=f"share of each batch from those generations "
                   f"(default {FinetuneConfig.keep_share:g})")
    f.add_argument("--keep-clips", type=int,
                   help=f"generations made once, before training (default {FinetuneConfig.keep_clips})")
    f.add_argument("--recompute", action="store_true", default=None, help="compute the activations again in the "
                   "backward pass instead of keeping them: far less memory per step, more time (docs/finetune.md)")
    f.add_argument("--segment", type=float, help="seconds per training window (default: the model's window)")
    f.add_argument("--checkpoint-every", type=int,
                   help=f"steps between checkpoints (default {FinetuneConfig.checkpoint_every})")
    f.add_argument("--seed", type=int, help="random seed (default 0)")
    f.add_argument("--device", help="cuda, mps or cpu (default: best available)")
    f.add_argument("--merge", action="store_true", help="also write the merged model to OUT/merged (Hugging Face "
                                                        "format: loads in minicraft and transformers)")
    d = sub.add_parser("download", help="fetch a model into the Hugging Face cache for offline use")
    d.add_argument("name", help="small, medium, large, stereo-small, melody, ... (README's model table), "
                                "audiogen-medium or a Hub id")
    i = sub.add_parser("info", help="what a model is (files, sizes, memory), or this CPU (--device)")
    i.add_argument("name", nargs="?", help="tiny, small, medium, large, audiogen-tiny, audiogen-medium, a Hub id or a folder")
    i.add_argument("--device", action="store_true", help="this CPU: its instruction sets, memory speed, what each "
                   "setting costs a step and what --dtype/--quantize auto pick (measured once, cached)")
    i.add_argument("--remeasure", action="store_true", help="with --device: measure again instead of the cache")
    return p


def model_from_args(args):
    cls, source = resolve(args.model)
    model = cls.get_pretrained(source, device=args.device, dtype=args.dtype,
                               quantize=None if args.quantize == "none" else args.quantize, fast=True)
    params = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, cfg_coef=args.cfg,
                  use_sampling=args.temperature != 0)       # None: the model's recommended temperature
    if args.duration is not None:
        params["duration"] = args.duration
    model.set_generation_params(**params)
    return model


MAX_SEED = 2**64 - 1


def read_prompts(args) -> list[str]:
    """The prompts of the command line, then those of ``--prompts FILE`` (one per line, blank lines skipped)."""
    prompts = list(args.prompts)
    if getattr(args, "prompt_file", None):
        if args.prompt_file == "-":
            lines = sys.stdin.buffer.read()
        else:
            path = Path(args.prompt_file)
            if path.is_dir():
                raise UserError(f"--prompts {path} is a folder; give a text file with one prompt per line.")
            if not path.is_file():
                raise UserError(f"--prompts {path}: no such file.")
            lines = path.read_bytes()
        try:
            text = lines.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"--prompts {args.prompt_file} is not UTF-8 text (byte {e.start}); save it as UTF-8.") from None
        prompts += [line.strip() for line in text.splitlines() if line.strip()]
    for i, prompt in enumerate(prompts, 1):
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(f"prompt {i} is not valid UTF-8 text; type it again, or give it in a UTF-8 file "
                            "with --prompts.") from None
    if args.command == "generate" and not prompts:
        raise UserError("no prompts: give one or more descriptions, or --prompts FILE.")
    return prompts


def check_seed(seed):
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed must be a whole number from 0 to 2^64 - 1 ({MAX_SEED}), got {seed}.")


def default_batch_size(model) -> int:
    """As many prompts as half the device's free memory holds, counting each one's KV caches (CFG doubles
    them) and its audio, from 1 to 16."""
    config = model.lm.config
    steps = int(min(model.duration, model.max_duration) * model.frame_rate) + config.num_codebooks
    width = next(p for p in model.lm.parameters() if p.is_floating_point()).element_size()
    per_prompt = 2 * 2 * config.num_layers * steps * config.dim * width           # CFG rows x (keys, values)
    per_prompt += 16 * 4 * int(model.duration * model.sample_rate)                   # the codec's largest tensors
    free = available_memory(model.device)
    return max(1, min(16, int(0.5 * free // per_prompt)))


def available_memory(device) -> int:
    """Bytes the device can still give: CUDA's free memory, else the system's available memory (Linux), else 4 GB."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30


def run_generation(args) -> int:
    continuing = args.command == "continue"
    prompts = read_prompts(args)
    check_seed(args.seed)
    if not continuing and args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}.")
    melody = getattr(args, "melody", None)
    if melody is not None:
        audio.audio_info(melody)                                # before the model loads: a bad file fails fast
    if continuing:
        info = audio.audio_info(args.input)                     # before the model loads: a bad file fails fast
        if args.prompt_seconds is not None and not 0 < args.prompt_seconds <= info.frames / info.samplerate:
            raise UserError(f"--prompt-seconds must be > 0 and at most the file's {info.frames / info.samplerate:.2f} s, "
                            f"got {args.prompt_seconds:g}.")
    suffix = "." + args.format
    names = prompts if not continuing else [Path(args.input).stem + "_continued"]
    paths = output_paths(args.out, names, suffix, args.force)
    check_writable(paths)
    model = model_from_args(args)
    if melody is not None:
        if model.melody is None:
            raise UserError(f"--melody needs a melody model (--model melody, melody-large, stereo-melody, "
                            f"stereo-melody-large); {args.model} has no melody conditioning.")
        melody_wav, melody_rate = audio.read(melody, first_seconds=model.melody_reach)     # what windows read
    if continuing:
        seconds = args.prompt_seconds or min(model.duration, model.max_duration) / 2
        wav_in, rate = audio.read(args.input, last_seconds=seconds)
        if info.frames / info.samplerate > seconds:
            print(f"minicraft: {args.input} is {info.frames / info.samplerate:.1f} s long; continuing from its last "
                  f"{seconds:g} s (--prompt-seconds).", file=sys.stderr)
    if args.seed is not None:
        torch.manual_seed(args.seed)
    batch = 1 if continuing else args.batch_size or default_batch_size(model)
    batches = [list(range(i, min(i + batch, len(paths)))) for i in range(0, len(paths), batch)]
    # the model's callback reports each window of a long generation on its own; the bar counts all of them
    steps = model.decoding_steps(round(wav_in.shape[-1] / rate * model.frame_rate) if continuing else 0)
    total = len(batches) * steps
    bar, written = ProgressBar(), []
    try:
        for number, indices in enumerate(batches):
            done = itertools.count(number * steps + 1)            # one callback per decoding step
            model.set_custom_progress_callback(lambda *_, done=done: bar(min(next(done), total), total))
            if continuing:
                wav = model.generate_continuation(wav_in[None], rate, prompts or None)
            elif melody is not None:
                wav = model.generate_with_chroma([prompts[i] for i in indices], [melody_wav] * len(indices),
                                                 melody_rate)
            else:
                wav = model.generate([prompts[i] for i in indices])
            for i, one in zip(indices, wav):
                audio.write(paths[i], one, model.sample_rate, strategy=args.normalize)
                written.append(paths[i])
                bar.close()
                print(f"wrote {paths[i]} ({one.shape[-1] / model.sample_rate:.1f} s, {model.sample_rate} Hz)")
    except KeyboardInterrupt:
        bar.close()                                          # the bar's line ends before the message
        done = f"wrote {len(written)} of {len(paths)} files" + (f" (the last: {written[-1]})" if written else "")
        print(f"minicraft: interrupted; {done}; no partial file was left.", file=sys.stderr)
        return 130
    finally:
        bar.close()
    return 0


def cmd_explore(args) -> int:
    fields = ("model", "temperature", "top_k", "top_p", "cfg_coef", "seeds", "duration", "batch_size",
              "objective", "device", "dtype")
    spec = spec_from(args.spec, prompts=args.prompts or None, **{k: getattr(args, k) for k in fields})
    try:
        rows = explore(spec, args.out, max_samples=args.max_samples, yes=args.yes)
    except KeyboardInterrupt:
        print(f"minicraft: interrupted; the finished samples are kept in {args.out}: run the same command "
              "again to continue.", file=sys.stderr)
        return 130
    for best in best_settings(spec, rows):
        print(best.sentence())
    print(f"wrote {Path(args.out) / 'report.html'} ({len(rows)} of {len(spec.points())} samples)")
    return 0


def cmd_download(args) -> int:
    cls, repo = resolve(args.name)
    if Path(repo).is_dir():
        print(f"{args.name} is a local model ({repo}); nothing to download.")
        return 0
    folder = fetch_model(repo, cls.KIND)
    print(f"{repo} is in the cache: {folder}")
    return 0


def cmd_finetune(args) -> int:
    options = {name: getattr(args, name) for name in (
        "steps", "batch", "lr", "warmup", "rank", "alpha", "lora_dropout", "targets", "layers", "base_dtype",
        "condition_dropout", "valid_share", "segment", "checkpoint_every", "seed", "device", "keep_share", "keep_clips",
        "recompute")}
    if args.keep_prompts is not None:
        try:
            lines = Path(args.keep_prompts).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"--keep-prompts {args.keep_prompts}: cannot read it ({e.__class__.__name__}).") from None
        options["keep_prompts"] = [line.strip() for line in lines if line.strip()] or None
        if options["keep_prompts"] is None:
            raise UserError(f"--keep-prompts {args.keep_prompts} holds no prompt; write one per line.")
    try:
        finetune(args.data, model=args.model, out=args.out, merge=args.merge, **options)
    except KeyboardInterrupt as stopped:      # saved by finetune: say where, and how to go on
        print(f"minicraft: {stopped}", file=sys.stderr)
        return 130
    return 0


def cmd_info(args) -> int:
    if args.device:
        print(describe_device(refresh=args.remeasure))
        if args.name is None:
            return 0
    elif args.name is None:
        raise UserError("say what to describe: a model (minicraft info small) or this CPU (minicraft info --device).")
    cls, source = resolve(args.name)
    print(describe(source, cls))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command in ("generate", "continue"):
            return run_generation(args)
        if args.command == "explore":
            return cmd_explore(args)
        if args.command == "finetune":
            return cmd_finetune(args)
        if args.command == "download":
            return cmd_download(args)
        return cmd_info(args)
    except (UserError, ValueError, FileNotFoundError, CheckpointError) as e:
        print(f"minicraft: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("minicraft: interrupted; nothing was written.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
