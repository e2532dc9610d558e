"""``report.html``: one page to listen through an exploration and see what each setting did.

Self-contained on purpose: the audio is embedded as base64 WAV and the
images as base64 PNG, with no script and no external style, so the file opens
offline, can be mailed, and shows the same thing in ten years. Sections:

1. **Best combinations**: per prompt group (content type), the settings with
   the best mean objective, and by how much they beat the runner-up and the
   average setting.
2. **Heat maps**: each measure's mean over every pair of grid parameters that
   vary (matplotlib, without pyplot so no display is needed).
3. **Samples**: per prompt, the grid as a table with players, spectrograms
   and measures.
4. **What the measures mean** (from ``measures.MEASURES``).
"""
from __future__ import annotations

import base64
import html
import io
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from minicraft.explorer.spec import GRID
from minicraft.audio import mel_spectrogram, read
from minicraft.files import write_text_atomic
from minicraft.explorer.measures import MEASURES

LABELS = {"temperature": "temperature", "top_k": "top-k", "top_p": "top-p", "cfg_coef": "cfg"}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; } h3 { margin-bottom: .3em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1.5em; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; vertical-align: middle; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
audio { width: 210px; height: 32px; } img.spec { width: 180px; height: 56px; image-rendering: pixelated; }
dt { font-weight: bold; margin-top: .5em; } .note { color: #555; font-size: .9em; } .best { background: #eaf6e4; }
"""


# ---------------------------------------------------------------- best combinations

@dataclass
class Best:
    """The settings with the best mean objective in one prompt group, and the margins that make it best."""
    group: str
    objective: str                 # a measure, "-measure" when lower is better
    ranking: list[tuple[dict, float, int]]   # (settings, mean score, samples), best first

    @property
    def measure(self) -> str:
        return self.objective.lstrip("-")

    def sentence(self) -> str:
        if not self.ranking:
            return f"{self.group}: no sample was scored on {MEASURES[self.measure].label}, so nothing can be ranked."
        settings, score, n = self.ranking[0]
        word = "lowest" if self.objective.startswith("-") else "highest"
        text = (f"{self.group}: {word} {MEASURES[self.measure].label} {fmt(score, self.measure)} "
                f"(mean of {n} sample{'s' * (n != 1)}) with {settings_text(settings)}")
        if len(self.ranking) == 1:
            return text + "; it was the only setting scored, so there is nothing to compare."
        ties = sum(1 for _, s, _ in self.ranking[1:] if math.isclose(s, score, abs_tol=1e-9))
        average = sum(s for _, s, _ in self.ranking) / len(self.ranking)
        if ties:
            return (text + f", tied with {ties} other setting{'s' * (ties != 1)}; "
                    f"the average of all {len(self.ranking)} settings is {fmt(average, self.measure)}. "
                    "More seeds or prompts may separate them.")
        runner = self.ranking[1][1]
        return (text + f": {fmt(abs(score - runner), self.measure)} better than the runner-up "
                f"({fmt(runner, self.measure)}, {settings_text(self.ranking[1][0])}) and "
                f"{fmt(abs(score - average), self.measure)} better than the average of all "
                f"{len(self.ranking)} settings ({fmt(average, self.measure)}).")


def best_settings(spec, rows: list[dict]) -> list[Best]:
    """Per prompt group, every setting ranked by its mean objective over prompts and seeds."""
    objective = spec.goal()
    measure, sign = objective.lstrip("-"), (-1 if objective.startswith("-") else 1)
    out = []
    for group in spec.prompts:
        scores: dict[tuple, list[float]] = {}
        for row in rows:
            value = row["measures"].get(measure)
            if row["group"] == group and value is not None:
                scores.setdefault(tuple(row[k] for k in GRID), []).append(value)
        ranking = [(dict(zip(GRID, key)), sum(v) / len(v), len(v)) for key, v in scores.items()]
        ranking.sort(key=lambda r: -sign * r[1])          # stable: grid order breaks ties
        out.append(Best(group, objective, ranking))
    return out


def settings_text(settings: dict) -> str:
    return ", ".join(f"{LABELS[k]} {settings[k]:g}" for k in GRID)


def fmt(value, measure: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if measure == "centroid":
        return f"{value:.0f}"
    if measure == "loudness":
        return f"{value:.1f}"
    return f"{value:.2f}"


# ---------------------------------------------------------------- pictures

def png(figure) -> bytes:
    """A matplotlib figure as PNG bytes (90 dpi: readable, and the page stays small)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return buffer.getvalue()


def varying(spec) -> list[str]:
    return [k for k in GRID if len(getattr(spec, k)) > 1]


def heat_map(spec, rows: list[dict], group: str, a: str, b: str | None):
    """One figure: for each measure, its mean per (a, b) cell over the group's prompts, seeds and other settings."""
    from matplotlib.figure import Figure      # deferred: matplotlib takes a second to import, and only reports need it
    xs = getattr(spec, a)
    ys = getattr(spec, b) if b else [None]
    names = [m for m in MEASURES if any(r["measures"].get(m) is not None for r in rows)]
    cols = min(4, len(names))
    fig = Figure(figsize=(2.9 * cols, (2.5 if b else 1.4) * math.ceil(len(names) / cols)), layout="constrained")
    for i, name in enumerate(names):
        grid = torch.full((len(ys), len(xs)), float("nan"))
        for yi, xi in itertools.product(range(len(ys)), range(len(xs))):
            values = [r["measures"][name] for r in rows if r["group"] == group and r[a] == xs[xi]
                      and (b is None or r[b] == ys[yi]) and r["measures"].get(name) is not None]
            if values:
                grid[yi, xi] = sum(values) / len(values)
        ax = fig.add_subplot(math.ceil(len(names) / cols), cols, i + 1)
        span = dict(vmin=0, vmax=1) if MEASURES[name].bounded else {}
        image = ax.imshow(grid.numpy(), cmap="viridis", aspect="auto", origin="lower", **span)
        for yi, xi in itertools.product(range(len(ys)), range(len(xs))):
            value = float(grid[yi, xi])
            bright = not math.isnan(value) and image.norm(value) > 0.6        # dark text on yellow cells
            ax.text(xi, yi, fmt(value, name), ha="center", va="center", fontsize=8,
                    color="black" if bright else ("grey" if math.isnan(value) else "white"))
        ax.set_title(f"{MEASURES[name].label} ({MEASURES[name].unit})", fontsize=9)
        ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs], fontsize=8)
        ax.set_xlabel(LABELS[a], fontsize=8)
        if b:
            ax.set_yticks(range(len(ys)), [f"{y:g}" for y in ys], fontsize=8)
            ax.set_ylabel(LABELS[b], fontsize=8)
        else:
            ax.set_yticks([])
    return fig


def spectrograms(out: Path, rows: list[dict]) -> dict[str, bytes]:
    """Sample id -> a small log-mel spectrogram as PNG, all on one colour scale (so louder looks brighter)."""
    from matplotlib.image import imsave       # deferred: as in heat_map

    mels = {}
    for row in rows:
        wav, rate = read(out / row["audio"])
        n_fft = 512 if rate <= 16000 else 1024
        hop = max(n_fft // 4, wav.shape[-1] // 240)
        mels[row["id"]] = mel_spectrogram(wav.mean(0), rate, n_fft, hop, 48)
    top = max((float(m.max()) for m in mels.values()), default=0.0)
    images = {}
    for key, mel in mels.items():
        buffer = io.BytesIO()
        imsave(buffer, mel.numpy(), cmap="magma", vmin=-5, vmax=max(top, -4), origin="lower", format="png")
        images[key] = buffer.getvalue()
    return images


def data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


# ---------------------------------------------------------------- the page, section by section

e = html.escape


def header(spec, rows: list[dict]) -> str:
    total, first = len(spec.points()), (rows[0] if rows else {})
    seconds = sum(r["timings"]["seconds"] for r in rows)
    grid = " · ".join(f"{LABELS[k]} {', '.join(f'{v:g}' for v in getattr(spec, k))}" for k in GRID)
    text = (f"<h1>Parameter explorer: {e(spec.model)}</h1>"
            f"<p>{len(rows)} of {total} samples · {len(spec.groups())} prompts in {len(spec.prompts)} "
            f"group{'s' * (len(spec.prompts) != 1)} · {spec.duration:g} s each · "
            f"seeds {', '.join(str(s) for s in spec.seeds)} · {grid}</p>"
            f"<p class='note'>minicraft {e(str(first.get('minicraft_version', '?')))}, device "
            f"{e(str(first.get('device', '?')))}, {e(str(first.get('dtype', '?')))}; {seconds:.1f} s of "
            "generation in all. Every sample's parameters, seed and timings are in its JSON sidecar and in "
            "results.jsonl / results.csv. <a href='#measures'>What each measure means</a> is at the end.</p>")
    if len(rows) < total:
        text += (f"<p><b>Incomplete:</b> {total - len(rows)} samples are missing; run the same command again "
                 "to finish (nothing done is redone).</p>")
    return text


def best_section(spec, rows: list[dict]) -> str:
    objective = spec.goal()
    label = MEASURES[objective.lstrip("-")].label
    verb = "minimise" if objective.startswith("-") else "maximise"
    bests = best_settings(spec, rows)
    parts = [f"<h2>Best combinations</h2><p>Objective: <b>{verb} {e(label)}</b>, averaged over each group's "
             "prompts and seeds.</p><ul>", *(f"<li>{e(b.sentence())}</li>" for b in bests), "</ul>"]
    for best in bests:
        if len(best.ranking) < 2:
            continue
        parts.append(f"<table><caption>{e(best.group)}: the top settings by {e(label)}</caption><tr>"
                     + "".join(f"<th>{LABELS[k]}</th>" for k in GRID) + "<th>score</th><th>samples</th></tr>")
        for i, (settings, score, n) in enumerate(best.ranking[:5]):
            parts.append(f"<tr{' class=best' if i == 0 else ''}>" + "".join(f"<td>{settings[k]:g}</td>" for k in GRID)
                         + f"<td>{fmt(score, best.measure)}</td><td>{n}</td></tr>")
        parts.append("</table>")
    return "".join(parts)


def measures_section() -> str:
    items = "".join(f"<dt>{e(m.label)} ({e(m.unit)})</dt><dd>{e(m.explanation)}</dd>" for m in MEASURES.values())
    return f"<h2 id='measures'>What the measures mean</h2><dl>{items}</dl>"


def heat_map_section(spec, rows: list[dict]) -> str:
    axes = varying(spec)
    pairs = list(itertools.combinations(axes, 2)) or [(a, None) for a in axes]
    if not rows or not pairs:
        return "<h2>Heat maps</h2><p class='note'>Only one setting was tried (seeds aside): nothing to map.</p>"
    parts = ["<h2>Heat maps</h2><p class='note'>Each cell: the mean over the group's prompts, the seeds and the "
             "grid's other parameters. Blank cells have no score.</p>"]
    for group in spec.prompts:
        for a, b in pairs:
            title = f"{group}: {LABELS[a]}" + (f" × {LABELS[b]}" if b else "")
            image = data_uri("image/png", png(heat_map(spec, rows, group, a, b)))
            parts.append(f"<h3>{e(title)}</h3><img alt='{e(title)} heat maps' src='{image}'>")
    return "".join(parts)


def samples_section(out: Path, spec, rows: list[dict]) -> str:
    images = spectrograms(out, rows)
    head = ("<tr>" + "".join(f"<th>{LABELS[k]}</th>" for k in GRID) + "<th>seed</th><th>audio</th>"
            "<th>spectrogram</th>" + "".join(f"<th>{e(MEASURES[m].label)}</th>" for m in MEASURES)
            + "<th class=l>heard</th></tr>")
    parts = ["<h2>Samples</h2><p class='note'>Spectrograms: log-mel power over time, low frequencies at the "
             "bottom, on one colour scale for the whole run.</p>"]
    for group, prompts in spec.prompts.items():
        for prompt in prompts:
            mine = [r for r in rows if r["prompt"] == prompt]
            target = next((r["target_class"] for r in mine if r.get("target_class")), None)
            parts.append(f"<h3>{e(prompt)}</h3><p class='note'>group {e(group)}"
                         + (f" · asks for: {e(target)}" if target else "") + f" · {len(mine)} samples</p>")
            if mine:
                parts.append("<table>" + head + "".join(sample_row(out, r, images[r["id"]]) for r in mine)
                             + "</table>")
    return "".join(parts)


def sample_row(out: Path, row: dict, spectrogram: bytes) -> str:
    return ("<tr>" + "".join(f"<td>{row[k]:g}</td>" for k in GRID) + f"<td>{row['seed']}</td>"
            f"<td><audio controls preload='metadata' src='{data_uri('audio/wav', (out / row['audio']).read_bytes())}'>"
            f"</audio></td><td><img class=spec alt='spectrogram' src='{data_uri('image/png', spectrogram)}'></td>"
            + "".join(f"<td>{fmt(row['measures'].get(m), m)}</td>" for m in MEASURES)
            + f"<td class=l>{e(str(row.get('heard_class') or '–'))}</td></tr>")


def build_report(out: str | Path, spec, rows: list[dict]) -> str:
    """The report's HTML, from a run folder and its rows (see ``explore.read_results``)."""
    out = Path(out)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>minicraft explorer: "
            f"{e(spec.model)}</title><style>{STYLE}</style></head><body>"
            + header(spec, rows) + best_section(spec, rows) + heat_map_section(spec, rows)
            + samples_section(out, spec, rows) + measures_section() + "</body></html>\n")


def write_report(out: str | Path, spec, rows: list[dict]) -> Path:
    """``out/report.html``, written atomically."""
    out = Path(out)
    return write_text_atomic(out / "report.html", build_report(out, spec, rows))
