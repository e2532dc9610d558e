"""A folder of one's own sounds -> captioned windows of codes, encoded once and cached.

Three layouts are read (the first that applies):

- an **audiocraft manifest**: DATA is a ``.jsonl`` / ``.jsonl.gz`` file, or a folder holding ``data.jsonl``
  (``.gz``), one JSON object per line with ``path`` (audiocraft also writes ``duration`` and ``sample_rate``;
  they are read from the file instead); each audio file's caption is the ``description`` of the ``.json``
  file beside it (``rain/01.wav`` -> ``rain/01.json``);
- a ``metadata.jsonl`` in the folder: per line ``file_name`` (relative to the folder) and the caption in
  ``text``, ``caption`` or ``description`` (the Hugging Face "audiofolder" layout);
- audio files anywhere under the folder, each captioned by the ``.txt`` file of the same name.

Audio is WAV, FLAC or OGG at any rate, mono or stereo, any length: read a window at a time (so a long file costs
one window of memory), resampled and mixed to the model's rate and channels, and cut into windows of the
model's length (a last, shorter part is kept if it lasts a second or more). Everything the user can fix is
found before anything is encoded or written, and said in one line.
"""
from __future__ import annotations

import gzip
import io
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import torch

from minicraft import audio
from minicraft.files import atomic_write

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
CAPTION_FIELDS = ("text", "caption", "description")
SILENT = 1e-5            # a file whose peak stays under this (-100 dBFS) holds nothing to learn from
MIN_SECONDS = 1.0        # a file's last part shorter than this is dropped (kept if it is the whole file)


@dataclass
class Example:
    path: Path
    caption: str


@dataclass
class Window:
    codes: torch.Tensor      # [K, frames] long
    caption: str
    source: str              # the file it was cut from


class DataError(ValueError):
    """Something about the data the user can fix: one line, before training starts."""


def find_examples(data: str | Path) -> tuple[list[Example], str]:
    """(audio files with their captions, the layout they were read in)."""
    data = Path(data).expanduser()
    if not data.exists():
        raise DataError(f"{data}: no such folder or file; give a folder of audio files with .txt captions, "
                        "a folder with metadata.jsonl, or an audiocraft data.jsonl manifest.")
    manifest = data if data.is_file() else next((data / n for n in ("data.jsonl", "data.jsonl.gz")
                                                 if (data / n).is_file()), None)
    if data.is_file() and not data.name.endswith((".jsonl", ".jsonl.gz")):
        raise DataError(f"{data}: a file that is not a .jsonl manifest; give the folder that holds your audio.")
    if manifest is not None:
        examples, layout = from_manifest(manifest), f"audiocraft manifest {manifest.name}"
    elif (data / "metadata.jsonl").is_file():
        examples, layout = from_metadata(data / "metadata.jsonl"), "metadata.jsonl"
    else:
        examples, layout = from_text_files(data), "audio files with .txt captions"
    if not examples:
        raise DataError(f"{data}: no audio files ({', '.join(AUDIO_SUFFIXES)}) found; put your sounds there, each "
                        "with a caption in a .txt file of the same name.")
    return examples, layout


def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.name.endswith(".gz") else open
    rows = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise ValueError("not a JSON object")
                    rows.append(row)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        where = f"line {number}" if "number" in locals() else "it"
        raise DataError(f"{path}: cannot read {where} as JSON lines ({str(e)[:80]}).") from None
    return rows


def from_manifest(path: Path) -> list[Example]:
    """audiocraft's ``data.jsonl``: ``path`` per line; captions in the ``.json`` beside each audio file."""
    examples = []
    for row in read_jsonl(path):
        if "path" not in row:
            raise DataError(f"{path}: a line without 'path' ({json.dumps(row)[:80]}); audiocraft manifests name "
                            "each audio file in 'path'.")
        file = Path(row["path"]).expanduser()
        file = file if file.is_absolute() or file.exists() else path.parent / file
        sidecar = file.with_suffix(".json")
        caption = None
        if sidecar.is_file():
            try:
                caption = json.loads(sidecar.read_text(encoding="utf-8")).get("description")
            except (ValueError, AttributeError, UnicodeDecodeError):
                raise DataError(f"{sidecar}: not a JSON object with a 'description'.") from None
        examples.append(Example(file, caption))
    return examples


def from_metadata(path: Path) -> list[Example]:
    examples = []
    for row in read_jsonl(path):
        name = row.get("file_name")
        if not isinstance(name, str):
            raise DataError(f"{path}: a line without 'file_name' ({json.dumps(row)[:80]}).")
        caption = next((row[f] for f in CAPTION_FIELDS if isinstance(row.get(f), str)), None)
        examples.append(Example(path.parent / name, caption))
    return examples


def from_text_files(folder: Path) -> list[Example]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    examples = []
    for file in files:
        txt = file.with_suffix(".txt")
        examples.append(Example(file, txt.read_text(encoding="utf-8", errors="replace") if txt.is_file() else None))
    return examples


def check_examples(examples: list[Example]) -> dict[Path, sf._SoundFileInfo]:
    """Every caption present and every file readable, before any work: {path: its header}."""
    uncaptioned = [e.path for e in examples if not (isinstance(e.caption, str) and e.caption.strip())]
    if uncaptioned:
        raise DataError(f"{len(uncaptioned)} of {len(examples)} audio files have no caption, e.g. {uncaptioned[0]}; "
                        f"write one in {uncaptioned[0].with_suffix('.txt').name} (or the manifest's field).")
    infos = {}
    for e in examples:
        try:
            infos[e.path] = audio.audio_info(e.path)
        except (ValueError, FileNotFoundError) as err:
            raise DataError(f"{err} Fix or remove it, then run again.") from None
    return infos


def spans(frames: int, window: int, minimum: int) -> list[tuple[int, int]]:
    """A file of ``frames`` samples -> (start, stop) windows of ``window`` samples, back to back; a last,
    shorter part is kept if it holds ``minimum`` samples (or is the whole file)."""
    starts = range(0, frames, window)
    return [(s, min(s + window, frames)) for s in starts if min(s + window, frames) - s >= minimum or s == 0]


def cache_key(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


@torch.no_grad()
def encode_file(codec, path: Path, info, seconds: float) -> list[torch.Tensor]:
    """One file -> codes [K, frames] per window (each read, resampled and encoded alone)."""
    window = max(1, round(seconds * info.samplerate))
    device = next(codec.parameters()).device
    dtype = next(codec.parameters()).dtype
    codes, peak = [], 0.0
    with sf.SoundFile(str(path)) as f:
        for start, stop in spans(info.frames, window, round(MIN_SECONDS * info.samplerate)):
            f.seek(start)
            data = torch.from_numpy(f.read(stop - start, dtype="float32", always_2d=True).T.copy())   # [C, T]
            if data.shape[-1] == 0:
                break
            peak = max(peak, float(data.abs().max()))
            wav = audio.convert(data, info.samplerate, codec.sample_rate, codec.channels)
            codes.append(codec.encode(wav[None].to(device, dtype))[0].cpu())
    if peak < SILENT:
        raise DataError(f"{path} is silent (its loudest sample is {20 * math.log10(max(peak, 1e-12)):.0f} dBFS); "
                        "remove it, then run again.")
    return codes


def encode_examples(codec, examples: list[Example], infos: dict, seconds: float, cache_path: Path | None,
                    model_name: str, log=print) -> tuple[list[Window], dict]:
    """Every window of every file as codes, reusing ``cache_path``'s entries for unchanged files.

    Returns (windows, the cache to save). Nothing is written here: the caller saves the cache once every file
    has passed. A file that fails while being decoded is reported and skipped; a silent one stops everything."""
    cache = load_cache(cache_path, model_name, seconds)
    fresh, windows, skipped = {}, [], []
    todo = [e for e in examples if cache_key(e.path) not in cache]
    if todo:
        log(f"encoding {len(todo)} of {len(examples)} files with the model's codec ...")
    for e in examples:
        key = cache_key(e.path)
        if key not in cache:
            try:
                cache[key] = encode_file(codec, e.path, infos[e.path], seconds)
            except DataError:
                raise
            except (RuntimeError, ValueError) as err:      # soundfile's errors are RuntimeErrors
                skipped.append(e.path)
                print(f"minicraft: skipping {e.path}: {str(err).splitlines()[0][:120]}", file=sys.stderr)
                continue
        fresh[key] = cache[key]
        windows.extend(Window(c, e.caption.strip(), str(e.path)) for c in fresh[key])
    if not windows:
        raise DataError("no file could be encoded; see the messages above.")
    return windows, dict(model=model_name, seconds=seconds, entries=fresh)


def load_cache(path: Path | None, model_name: str, seconds: float) -> dict:
    if path is None or not path.is_file():
        return {}
    try:
        saved = torch.load(path, weights_only=True)
    except Exception:                      # a damaged cache is rebuilt, not trusted
        return {}
    if saved.get("model") != model_name or saved.get("seconds") != seconds:
        return {}
    return dict(saved["entries"])


def save_cache(path: Path, cache: dict):
    buffer = io.BytesIO()
    torch.save(cache, buffer)
    with atomic_write(path) as f:
        f.write(buffer.getvalue())


def split(examples: list[Example], share: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(training, held-out) by file, so no held-out window shares a file with a training one. With fewer than
    10 files nothing is held out."""
    if len(examples) < 10 or share <= 0:
        return examples, []
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed)).tolist()
    count = max(1, int(len(examples) * share))
    held = set(order[:count])
    return [e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held]


def batch_of(windows: list[Window], rows: list[int], special: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Windows -> (codes [B, K, T] padded with ``special``, lengths [B], captions)."""
    chosen = [windows[i] for i in rows]
    T = max(w.codes.shape[-1] for w in chosen)
    codes = torch.full((len(chosen), chosen[0].codes.shape[0], T), special, dtype=torch.long)
    for b, w in enumerate(chosen):
        codes[b, :, :w.codes.shape[-1]] = w.codes
    return codes, torch.tensor([w.codes.shape[-1] for w in chosen]), [w.caption for w in chosen]
