"""The parameter-space explorer: prompts × a grid of sampling settings, each sample kept and measured.

    from minicraft.explorer.explore import explore
    explore({"prompts": {"melodies": ["a fast high chiptune melody"], "drums": ["a fast drum beat"]},
             "temperature": [0.5, 1.0], "cfg_coef": [1, 3], "duration": 1}, "my_run")

A run folder holds:

    run.json                        model, duration and dtype: what a resumed run must share
    samples/<prompt>/<settings>.wav the model's output, not normalised (its loudness is a measure)
    samples/<prompt>/<settings>.json its sidecar: every parameter, the seed, versions, device, timings, measures
    results.jsonl, results.csv      one row per sample: jsonl appended after every batch, both rewritten
                                    in grid order when the run ends
    report.html                     see report.py

**Resuming.** Each file is written to a temporary name and renamed, audio
first, sidecar last; a sample counts as done when its sidecar is valid. Run
the same spec into the same folder again and only the missing samples are
generated; extending the grid (more prompts, values or seeds) works the same way.

**Batching and seeds.** The prompts that share settings and a seed are one
batch (in spec order, ``batch_size`` at a time), generated right after
``torch.manual_seed(seed)``. A batch is the unit of work: a resumed run
regenerates a partly written batch whole and writes only what is missing, so
every file is what an uninterrupted run writes. To reproduce a sample, generate
its sidecar's ``batch`` prompts with its settings after that seed.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch

from minicraft import __version__, audio
from minicraft.api import resolve
from minicraft.explorer import measures
from minicraft.explorer.report import write_report
from minicraft.explorer.measures import MEASURES
from minicraft.explorer.spec import GRID, Point, Spec, SpecError, spec_from
from minicraft.files import write_text_atomic
from minicraft.progress import ProgressBar

LARGE_GRID = 10_000       # samples: a larger grid runs only when asked twice

# ---------------------------------------------------------------- files

def sidecar_path(out: Path, point: Point) -> Path:
    return out / "samples" / f"{point.id}.json"


def read_sidecar(out: Path, point: Point) -> dict | None:
    """The sample's sidecar if it is complete and describes this grid point, else None."""
    path = sidecar_path(out, point)
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if meta.get("id") != point.id or any(meta.get(k) != v for k, v in point.params().items()):
        return None
    return meta if (out / meta.get("audio", "")).is_file() else None


def write_results(out: Path, rows: list[dict]) -> list[dict]:
    """``results.jsonl`` and ``results.csv``: one row per sample, in the order given (the grid's)."""
    write_text_atomic(out / "results.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    columns = ["id", "group", "prompt", *GRID, "seed", *MEASURES, "target_class", "heard_class", "seconds", "audio"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, **row["measures"], "seconds": row["timings"]["seconds"]})
    write_text_atomic(out / "results.csv", buffer.getvalue())
    return rows


def read_results(out: str | Path) -> list[dict]:
    """The rows of a run's ``results.jsonl``."""
    path = Path(out) / "results.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results here; run explore into this folder first.")
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:            # a line a stopped run left half-written: its sample is in its sidecar
            continue
    return rows


def check_folder(out: Path, spec: Spec):
    """A run already in ``out`` must have the same model, duration and dtype (checked before any writing)."""
    if out.exists() and not out.is_dir():
        raise SpecError(f"{out} is a file, not a folder; choose another output folder.")
    path = out / "run.json"
    if path.is_file():
        try:
            before = json.loads(path.read_text())
        except ValueError:
            raise SpecError(f"{path} is damaged; choose another output folder.") from None
        for key, value in run_info(spec).items():
            if before.get(key) != value:
                raise SpecError(f"{out} holds a run with {key} {before.get(key)!r}, not {value!r}; "
                                "choose another output folder to keep both.")


def run_info(spec: Spec) -> dict:
    return dict(model=spec.model, duration=spec.duration, dtype=spec.dtype or "float32")


def prepare_folder(out: Path, spec: Spec):
    """Create the run folder and its ``run.json``; clear temporary files a killed run left."""
    try:
        (out / "samples").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SpecError(f"cannot create {out} ({e.strerror}); choose another output folder.") from None
    if not os.access(out, os.W_OK):
        raise SpecError(f"cannot write to {out}; choose another output folder.")
    if not (out / "run.json").is_file():
        write_text_atomic(out / "run.json", json.dumps(run_info(spec), indent=2) + "\n")
    for leftover in (out / "samples").rglob(".*.part"):
        leftover.unlink()


# ---------------------------------------------------------------- the run

def model_for(spec: Spec):
    """The model, with every grid setting checked against it (top-k within its vocabulary...)."""
    cls, source = resolve(spec.model)
    # float32 unless the spec says otherwise, not "auto": measures comparable from one CPU to another
    model = cls.get_pretrained(source, device=spec.device, dtype=spec.dtype, quantize=None, fast=True)
    for temperature, top_k, top_p, cfg_coef in spec.settings():
        model.set_generation_params(duration=spec.duration, temperature=temperature, top_k=top_k, top_p=top_p,
                                    cfg_coef=cfg_coef)
    return model


def check_runnable(spec: Spec, report: bool):
    """Everything that can be checked without loading the model."""
    resolve(spec.model)                                                # unknown names fail here
    if spec.goal().lstrip("-") == "adherence" and not spec.tiny:
        raise SpecError("the objective 'adherence' needs the tiny model (its classifier knows the toy world "
                        "only); choose another objective, e.g. -repetition.")
    if report:
        try:
            import matplotlib  # noqa: F401  (deferred: only to say early that the report cannot be drawn)
        except ImportError:
            raise SpecError("the report needs matplotlib: pip install matplotlib "
                            "(or pip install -e '.[notebooks]').") from None


def explore(spec: Spec | dict | str | Path, out: str | Path = "explore", *, max_samples: int | None = None,
            on_sample: Callable[[dict], None] | None = None, progress: bool = True,
            report: bool = True, yes: bool = False) -> list[dict]:
    """Generate, measure and keep every sample of the grid in ``out``, then write ``report.html``.

    ``spec``: a Spec, a mapping or a YAML/JSON file. Run it again with the same
    folder to continue an interrupted run; ``max_samples`` stops after that many
    new samples (the report then covers what is done). ``on_sample(sidecar)`` is
    called after each sample is written. A grid of more than ``LARGE_GRID`` samples runs only with
    ``yes=True`` (``--yes``). Returns the rows of ``results.jsonl``.
    """

    spec = spec if isinstance(spec, Spec) else spec_from(spec)
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int)
                                    or max_samples < 0):
        raise SpecError(f"max_samples must be a non-negative integer, got {max_samples!r}.")
    out = Path(out)
    if spec.size() > LARGE_GRID and not yes:
        raise SpecError(f"the grid has {spec.size():,} samples ({spec.size() * spec.duration / 3600:.1f} hours of "
                        f"audio), more than {LARGE_GRID:,}; add --yes (yes=True) to run it, or make it smaller.")
    check_runnable(spec, report)
    check_folder(out, spec)
    model = model_for(spec)
    prepare_folder(out, spec)
    log = (lambda text: print(text, file=sys.stderr)) if progress else (lambda text: None)
    dtype = str(next(model.lm.parameters()).dtype).replace("torch.", "")
    points = spec.points()
    by_id = {p.id: meta for p in points if (meta := read_sidecar(out, p)) is not None}   # read once
    done = set(by_id)
    if done:
        log(f"resuming: {len(done)} of {len(points)} samples are already in {out}")
    classifier = None
    if spec.tiny and len(done) < len(points):
        if not measures.classifier_cache().is_file():
            log(f"training the attribute classifier once (up to half a minute; kept in {measures.classifier_cache()})")
        classifier = measures.attribute_classifier()

    bar = ProgressBar(first=len(done), unit="samples") if progress else None
    written = 0
    write_results(out, [by_id[p.id] for p in points if p.id in by_id])
    try:
        for batch in spec.batches():
            if all(p.id in done for p in batch):
                continue
            if max_samples is not None and written >= max_samples:
                break
            if bar:
                model.set_custom_progress_callback(
                    lambda step, steps: bar(len(done), len(points), f"(batch at step {step}/{steps})  "))
            new_rows = []
            for point, meta in zip(batch, generate_batch(model, spec, batch, classifier)):
                if point.id in done:                  # written before the run was stopped: keep it
                    continue
                meta.update(model=spec.model, model_id=model.name, minicraft_version=__version__,
                            torch_version=torch.__version__, device=str(model.device), dtype=dtype)
                write_sample(out, meta)
                done.add(point.id)
                by_id[point.id] = meta
                new_rows.append(meta)
                written += 1
                if on_sample:
                    on_sample(meta)
                if bar:
                    bar(len(done), len(points), " " * 24)
                if max_samples is not None and written >= max_samples:
                    break
            with open(out / "results.jsonl", "a") as f:        # the table so far, without reading it back
                f.write("".join(json.dumps(row) + "\n" for row in new_rows))
    finally:
        model.set_custom_progress_callback(None)
        if bar:
            bar.close()
        rows = write_results(out, [by_id[p.id] for p in points if p.id in by_id])
    log(f"{len(rows)} of {len(points)} samples in {out} ({written} new)")
    if report:
        write_report(out, spec, rows)
        log(f"report: {out / 'report.html'}")
    return rows


def generate_batch(model, spec: Spec, batch: list[Point], classifier) -> list[dict]:
    """One seeded generate() call for the batch; a sidecar (without run-wide fields) per sample."""

    first = batch[0]
    model.set_generation_params(duration=spec.duration, temperature=first.temperature, top_k=first.top_k,
                                top_p=first.top_p, cfg_coef=first.cfg_coef, use_sampling=first.temperature > 0)
    prompts = [p.prompt for p in batch]
    torch.manual_seed(first.seed)
    start = time.perf_counter()
    wav, codes = model.generate(prompts, return_tokens=True)
    seconds = time.perf_counter() - start
    wav, codes = wav.float().cpu(), codes.cpu()
    mono = wav.mean(dim=1)                                                   # [B, T]
    heard = [(None, None)] * len(batch)
    if classifier is not None and model.sample_rate == 16000:
        heard = measures.adherence(classifier, mono, prompts)
    metas = []
    for i, point in enumerate(batch):
        start = time.perf_counter()
        values = measures.measure(mono[i], codes[i], model.sample_rate)
        values["adherence"] = heard[i][1]
        metas.append(dict(
            id=point.id, audio=f"samples/{point.id}.wav", **point.params(), use_sampling=point.temperature > 0,
            duration=spec.duration, sample_rate=model.sample_rate, channels=wav.shape[1],
            samples=wav.shape[-1], frames=codes.shape[-1], codebooks=codes.shape[1],
            target_class=measures.prompt_class(point.prompt) if spec.tiny else None, heard_class=heard[i][0],
            measures={k: None if v is None else round(float(v), 6) for k, v in values.items()},
            batch=prompts, timings=dict(batch_seconds=round(seconds, 4), batch_size=len(batch),
                                        seconds=round(seconds / len(batch), 4),
                                        measure_seconds=round(time.perf_counter() - start, 4)),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            _wav=wav[i]))
    return metas


def write_sample(out: Path, meta: dict):
    """The audio, then the sidecar: a sample whose sidecar exists is complete."""
    wav = meta.pop("_wav")
    path = out / meta["audio"]
    path.parent.mkdir(parents=True, exist_ok=True)
    audio.write(path, wav, meta["sample_rate"], strategy="none")
    write_text_atomic(out / "samples" / f"{meta['id']}.json", json.dumps(meta, indent=2) + "\n")
