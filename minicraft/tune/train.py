"""Fine-tune a MusicGen or AudioGen on one's own sounds: LoRA updates on the LM, everything else frozen.

    minicraft finetune my_sounds/ --model tiny --out runs/mine
    minicraft generate "..." --model runs/mine

The recipe is audiocraft's LM training, restricted to the adapters: the codes of each window are predicted from
the caption with teacher forcing (the delay pattern's loss, :func:`~minicraft.models.lm.codebook_cross_entropy`),
a share of captions dropped so that classifier-free guidance still has an unconditional model to compare with,
AdamW with a linear warm-up and a cosine decay. The run folder holds the adapter (saved at every checkpoint,
so a run stopped early is usable), ``checkpoint.pt`` (the same command resumes from it), ``log.csv``,
``loss.png`` (with matplotlib) and ``run.json`` (what was asked, so a folder is never reused by another model).
"""
from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from torch.utils.checkpoint import checkpoint

from minicraft.api import resolve
from minicraft.files import atomic_write, write_text_atomic
from minicraft.tune.data import (DataError, Window, batch_of, check_examples, encode_examples, find_examples,
                                     save_cache, split)
from minicraft.formats.adapter import save_adapter
from minicraft.formats.export import export_musicgen
from minicraft.models.adapters import AdapterConfig, add_adapters, adapter_state, count_parameters, \
    load_adapter_state, merge_adapters
from minicraft.models.codec import Encodec
from minicraft.models.conditioning import text_mask
from minicraft.models.lm import codebook_cross_entropy
from minicraft.modules.transformer import TransformerLayer
from minicraft.progress import ProgressBar

BASE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "int8": torch.int8}


@dataclass
class FinetuneConfig:
    model: str = "tiny"                  # what the CLI's --model takes: tiny, small, audiogen-tiny, a Hub id, a folder
    steps: int = 500
    batch: int = 8
    lr: float = 2e-4                     # 5e-4 and 1e-3 overfit 20 files of a new sound (docs/finetune.md)
    warmup: int = 50
    weight_decay: float = 0.0
    condition_dropout: float = 0.2       # captions replaced by "no text", as audiocraft trains (for guidance)
    segment: float | None = None         # seconds per window (None: the model's own window)
    valid_share: float = 0.1             # files held out to measure the loss on (none with fewer than 10)
    checkpoint_every: int = 100
    seed: int = 0
    base_dtype: str = "float32"          # the frozen weights of the adapted projections: float32, bfloat16, int8
    # prior preservation (as DreamBooth): the base model's own generations for these prompts are mixed into every
    # batch, so that what it did before the fine-tune it still does after
    keep_prompts: list[str] | None = None
    keep_share: float = 0.75             # share of each batch drawn from those generations
    keep_clips: int = 128                # generations made once, before training (the prompts in turn)
    recompute: bool = False              # activations computed again in the backward pass, not kept: less memory
    device: str | None = None
    lora: AdapterConfig = field(default_factory=AdapterConfig)

    def __post_init__(self):
        if isinstance(self.lora, dict):
            self.lora = AdapterConfig(**self.lora)
        for name in ("steps", "batch", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}.")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"warmup must be a whole number >= 0, got {self.warmup!r}.")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < 1):
            raise ValueError(f"lr must be a number between 0 and 1, got {self.lr!r}.")
        if self.keep_prompts is not None and (not isinstance(self.keep_prompts, list) or not self.keep_prompts
                                              or not all(isinstance(p, str) and p.strip() for p in self.keep_prompts)):
            raise ValueError("keep_prompts must be a list of non-empty prompts (one per line in --keep-prompts FILE).")
        if isinstance(self.keep_clips, bool) or not isinstance(self.keep_clips, int) or self.keep_clips < 1:
            raise ValueError(f"keep_clips must be a whole number >= 1, got {self.keep_clips!r}.")
        for name in ("condition_dropout", "valid_share", "keep_share"):
            if not (isinstance(getattr(self, name), (int, float)) and 0 <= getattr(self, name) < 1):
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}.")
        if self.segment is not None and not (isinstance(self.segment, (int, float)) and self.segment >= 1):
            raise ValueError(f"segment must be at least 1 second, got {self.segment!r}.")
        if self.base_dtype not in BASE_DTYPES:
            raise ValueError(f"base_dtype {self.base_dtype!r}: use one of {', '.join(BASE_DTYPES)}.")

    def recipe(self) -> dict:
        """What a resumed run must share with the run it resumes (the rest may change, e.g. ``steps``)."""
        return dict(model=self.model, lora=self.lora.to_dict(), segment=self.segment, base_dtype=self.base_dtype,
                    keep_prompts=self.keep_prompts, keep_clips=self.keep_clips)


class RecomputedLayer(TransformerLayer):
    """A transformer layer whose activations are not kept for the backward pass but computed again during it
    (activation checkpointing): a training step then holds one layer's activations at a time, plus each layer's
    input, instead of every layer's. Decoding (with a cache) and inference run the reference layer unchanged."""

    def forward(self, x, cross=None, cross_mask=None, cache=None):
        if cache is not None or not torch.is_grad_enabled():
            return super().forward(x, cross, cross_mask, cache)
        return checkpoint(super().forward, x, cross, cross_mask, None, use_reentrant=False)


def recompute_activations(lm, on: bool = True):
    """Make every layer of ``lm`` a :class:`RecomputedLayer` (or, ``on=False``, a plain one again), in place."""
    for layer in lm.transformer.layers:
        layer.__class__ = RecomputedLayer if on else TransformerLayer
    return lm


def delay_mask(lengths: torch.Tensor, delays: list[int], frames: int) -> torch.Tensor:
    """[B, K, T]: the codes whose prediction reads only real frames. Codebook k's code at frame t is predicted
    ``delays[k]`` steps later, when frames up to ``t + delays[k]`` have been read; past a window's end those
    are padding (and in an unpadded window, audiocraft leaves out the same last codes)."""
    t = torch.arange(frames)[None, None, :]
    return t < (lengths[:, None, None] - torch.tensor(delays)[None, :, None])


def lm_loss(model, codes: torch.Tensor, lengths: torch.Tensor, captions: list[str | None]) -> torch.Tensor:
    """The fine-tune's loss on a batch: codes [B, K, T] (padded), lengths [B], captions (None: no text)."""
    cond, mask = model.conditioner(captions)             # frozen: computed without a graph
    cond = cond.clone()                                  # (an inference tensor cannot be saved for backward)
    logits, valid = model.lm.compute_predictions(codes.to(model.device), cond, text_mask(mask))
    valid = valid & delay_mask(lengths, model.lm.config.delays, codes.shape[-1]).to(valid.device)
    return codebook_cross_entropy(logits, codes.to(model.device), valid)


def warmup_cosine(optimizer, warmup: int, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate: linear warm-up over ``warmup`` steps, then a cosine decay to zero at ``steps``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(warmup, 1)) * 0.5 * (
        1 + math.cos(math.pi * min(s, steps) / steps)))


def take_step(loss: torch.Tensor, params: list, optimizer, schedule, clip: float = 1.0):
    """One optimizer step on ``loss``, its gradient norm clipped at ``clip``."""
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, clip)
    optimizer.step()
    schedule.step()


class Run:
    """The run folder: what it holds, and writing each file whole."""

    def __init__(self, folder: Path):
        self.folder = Path(folder).expanduser()
        self.meta, self.checkpoint = self.folder / "run.json", self.folder / "checkpoint.pt"
        self.log, self.plot, self.cache = self.folder / "log.csv", self.folder / "loss.png", self.folder / "codes.pt"
        self.kept = self.folder / "kept.pt"

    def check(self, config: FinetuneConfig):
        """Refuse a folder that holds something else, or another model's run, before any work."""
        if self.folder.exists() and not self.folder.is_dir():
            raise DataError(f"--out {self.folder} is a file; name a folder for the run.")
        if self.meta.is_file():
            saved = json.loads(self.meta.read_text())
            if saved.get("recipe") != config.recipe():
                raise DataError(f"{self.folder} holds a run of {saved.get('recipe', {}).get('model')!r} with other "
                                f"settings ({_difference(saved.get('recipe', {}), config.recipe())}); use another "
                                "--out, or the same settings to resume it.")
        elif self.folder.is_dir() and any(self.folder.iterdir()):
            raise DataError(f"{self.folder} is not empty and holds no minicraft run; name a new folder for --out.")

    def start(self, config: FinetuneConfig, data: Path, layout: str):
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.meta.is_file():
            write_text_atomic(self.meta, json.dumps(dict(recipe=config.recipe(), config=_as_dict(config),
                                                         data=str(data), layout=layout), indent=2) + "\n")

    def save(self, step: int, lm, optimizer, schedule, generator, adapter: tuple[AdapterConfig, str, str]):
        """The adapter ((its config, base model, family)) and everything a resumed run needs."""
        config, base, kind = adapter
        save_adapter(self.folder, adapter_state(lm), config, base, kind, lm.config)
        buffer = io.BytesIO()
        torch.save(dict(step=step, adapter=adapter_state(lm), optimizer=optimizer.state_dict(),
                        schedule=schedule.state_dict(), generator=generator.get_state(),
                        rng=torch.get_rng_state()), buffer)
        with atomic_write(self.checkpoint) as f:
            f.write(buffer.getvalue())

    def resume(self, lm, optimizer, schedule, generator) -> int:
        if not self.checkpoint.is_file():
            return 0
        state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        load_adapter_state(lm, state["adapter"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["rng"])
        return state["step"]

    def log_rows(self, up_to: int) -> list[dict]:
        """The log's rows up to step ``up_to`` (rows past a resumed checkpoint are dropped)."""
        if not self.log.is_file():
            return []
        with open(self.log, newline="") as f:
            return [row for row in csv.DictReader(f) if int(row["step"]) <= up_to]

    def write_log(self, rows: list[dict]):
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["step", "loss", "valid_loss", "lr", "seconds"])
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(self.log, buffer.getvalue())
        plot_loss(rows, self.plot)


def _as_dict(config: FinetuneConfig) -> dict:
    return {f.name: (getattr(config, f.name).to_dict() if f.name == "lora" else getattr(config, f.name))
            for f in fields(config)}


def _difference(saved: dict, asked: dict) -> str:
    return ", ".join(f"{k}: {saved.get(k)!r} there, {asked.get(k)!r} now" for k in asked
                     if saved.get(k) != asked.get(k))


def plot_loss(rows: list[dict], path: Path):
    """loss.png, if matplotlib is installed (``pip install matplotlib``); the CSV holds the same numbers."""
    try:
        from matplotlib.figure import Figure     # deferred: optional (the notebooks' extra), and slow to import
    except ImportError:
        return
    fig = Figure(figsize=(6, 3.5))               # not pyplot: a notebook's own plots keep their backend
    ax = fig.subplots()
    ax.plot([int(r["step"]) for r in rows], [float(r["loss"]) for r in rows], label="training batch", lw=0.8)
    held = [r for r in rows if r["valid_loss"] not in ("", None)]
    if held:
        ax.plot([int(r["step"]) for r in held], [float(r["valid_loss"]) for r in held], "o-", label="held-out files")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per code)")
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    with atomic_write(path) as f:
        f.write(buffer.getvalue())


@torch.no_grad()
def held_out_loss(model, windows, batch: int) -> float | None:
    if not windows:
        return None
    total, count = 0.0, 0
    for start in range(0, len(windows), batch):
        rows = list(range(start, min(start + batch, len(windows))))
        codes, lengths, captions = batch_of(windows, rows, model.lm.special_token)
        total += lm_loss(model, codes, lengths, captions).item() * len(rows)
        count += len(rows)
    return total / count


@torch.no_grad()
def base_generations(model, prompts: list[str], clips: int, seconds: float, path: Path, seed: int) -> list[Window]:
    """The base model's own codes for ``prompts`` (in turn, ``clips`` in all), made once and kept in ``path``."""
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        return [Window(c, t, "kept") for c, t in zip(saved["codes"], saved["captions"])]
    captions = [prompts[i % len(prompts)] for i in range(clips)]
    model.set_generation_params(duration=seconds)
    torch.manual_seed(seed)
    print(f"generating {clips} windows with the base model for {len(prompts)} prompts to keep ...")
    codes = torch.cat([model.generate_tokens(captions[i:i + 16], None) for i in range(0, clips, 16)]).cpu()
    buffer = io.BytesIO()
    torch.save(dict(codes=list(codes), captions=captions), buffer)
    with atomic_write(path) as f:
        f.write(buffer.getvalue())
    return [Window(c, t, "kept") for c, t in zip(codes, captions)]


def finetune(data: str | Path, model: str = "tiny", out: str | Path = "runs/mine", merge: bool = False,
             progress: bool = True, **options) -> Path:
    """Fine-tune ``model`` on the sounds in ``data`` into the run folder ``out``; returns ``out``.

    ``options`` are :class:`FinetuneConfig`'s fields (``steps``, ``batch``, ``lr``, ``base_dtype``, ...) and the
    LoRA settings ``rank``, ``alpha``, ``lora_dropout``, ``targets``, ``layers``. The same call again resumes;
    with ``merge`` the merged model is also written to ``out/merged`` in the Hugging Face format. Every mistake
    in the data or the settings raises ValueError (or FileNotFoundError) before anything is written.
    """
    lora = {k: options.pop(k) for k in ("rank", "alpha", "targets", "layers") if options.get(k) is not None}
    if options.get("lora_dropout") is not None:
        lora["dropout"] = options.pop("lora_dropout")
    options = {k: v for k, v in options.items() if v is not None and k != "lora_dropout"}
    config = FinetuneConfig(model=model, lora=AdapterConfig(**lora), **options)
    run = Run(Path(out))
    run.check(config)
    cls, source = resolve(model)                     # an unknown model name fails here, before the data is read
    examples, layout = find_examples(data)
    infos = check_examples(examples)
    train_examples, valid_examples = split(examples, config.valid_share, config.seed)

    torch.manual_seed(config.seed)
    loaded = cls.get_pretrained(source, device=config.device, dtype=None, quantize=None)
    if merge and (not isinstance(loaded.codec, Encodec) or loaded.melody is not None):
        raise DataError(f"{model}: --merge writes a Hugging Face MusicGen folder, which holds mono models without "
                        "a melody conditioner only; run without --merge (the adapter alone).")
    seconds = config.segment or loaded.max_duration
    windows, cache = encode_examples(loaded.codec, train_examples + valid_examples, infos, seconds,
                                     run.cache, f"{model}|{loaded.codec.sample_rate}", log=print)
    held = {str(e.path) for e in valid_examples}
    train = [w for w in windows if w.source not in held]
    valid = [w for w in windows if w.source in held]
    if not train:
        raise DataError("every file that could be encoded is held out; add files, or pass valid_share=0.")
    run.start(config, Path(data), layout)
    save_cache(run.cache, cache)

    kept = [] if config.keep_prompts is None else base_generations(
        loaded, config.keep_prompts, config.keep_clips, seconds, run.kept, config.seed)
    lm = add_adapters(loaded.lm, config.lora, BASE_DTYPES[config.base_dtype]).train()
    if config.recompute:
        recompute_activations(lm)
    params = [p for p in lm.parameters() if p.requires_grad]
    trainable, total = count_parameters(lm)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    schedule = warmup_cosine(optimizer, config.warmup, config.steps)
    generator = torch.Generator().manual_seed(config.seed)
    step = run.resume(lm, optimizer, schedule, generator)
    rows = run.log_rows(step)
    adapter = (config.lora, source_name(model, cls), cls.KIND)
    print(f"{layout}: {len(train)} windows of up to {seconds:g} s from {len(train_examples)} files for training, "
          f"{len(valid)} from {len(valid_examples)} held out; LoRA rank {config.lora.rank} trains "
          f"{trainable:,} of {total:,} LM parameters" + (f"; resuming at step {step}" if step else ""))
    if step >= config.steps:
        print(f"{run.folder}: already trained for {step} steps; give more steps to go on.")
    bar = ProgressBar(first=step) if progress else None
    started = time.monotonic() - (float(rows[-1]["seconds"]) if rows else 0.0)
    try:
        while step < config.steps:
            keep = round(config.batch * config.keep_share) if kept else 0
            pick = torch.randint(len(train), (config.batch - keep,), generator=generator).tolist()
            pool = train + kept
            pick += (len(train) + torch.randint(len(kept), (keep,), generator=generator)).tolist() if keep else []
            codes, lengths, captions = batch_of(pool, pick, lm.special_token)
            drop = torch.rand(config.batch, generator=generator) < config.condition_dropout
            captions = [None if d else c for c, d in zip(captions, drop.tolist())]
            loss = lm_loss(loaded, codes, lengths, captions)
            take_step(loss, params, optimizer, schedule)
            step += 1
            last = step == config.steps
            if step % config.checkpoint_every == 0 or last:
                lm.eval()
                held_loss = held_out_loss(loaded, valid, config.batch)
                lm.train()
            else:
                held_loss = None
            rows.append(dict(step=step, loss=f"{loss.item():.5f}", lr=f"{schedule.get_last_lr()[0]:.3g}",
                             valid_loss="" if held_loss is None else f"{held_loss:.5f}",
                             seconds=f"{time.monotonic() - started:.1f}"))
            if step % config.checkpoint_every == 0 or last:
                run.save(step, lm, optimizer, schedule, generator, adapter)
                run.write_log(rows)
            if bar:
                bar(step, config.steps, f"loss {loss.item():.3f}")
    except KeyboardInterrupt:
        if bar:
            bar.close()
        run.save(step, lm, optimizer, schedule, generator, adapter)
        run.write_log(rows)
        raise KeyboardInterrupt(f"stopped at step {step}; saved in {run.folder}: run the same command to resume.")
    if bar:
        bar.close()
    if not rows or not run.checkpoint.is_file():
        run.save(step, lm, optimizer, schedule, generator, adapter)
    if merge:
        merged = run.folder / "merged"
        export_musicgen(merged, merge_adapters(lm.eval()), loaded.conditioner, loaded.codec, loaded.max_duration,
                        temperature=loaded.recommended.get("temperature"))     # sampled as its base is
        print(f"merged weights: {merged} (loads in minicraft and in transformers)")
    print(f"adapter: {run.folder} ({trainable:,} parameters); try: minicraft generate \"...\" --model {run.folder}")
    return run.folder


def source_name(model: str, cls) -> str:
    """The base as the adapter records it: a short name of its family, a Hub id, or an absolute folder."""
    short = model[len("audiogen-"):] if model.lower().startswith("audiogen-") else model
    if short in cls.NAMES:
        return short
    folder = Path(model).expanduser()
    return str(folder.resolve()) if folder.is_dir() else model
