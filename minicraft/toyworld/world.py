"""The toy world: short synthetic clips with captions, made from known attributes.

Official MusicGen was trained on 20,000 hours of licensed music; our tiny
models learn from sounds we can synthesise in milliseconds and *describe
exactly*, so we can check whether a generated clip obeys its prompt.

- **music**: an instrument (sine flute, square chiptune, sawtooth synth,
  Karplus-Strong plucked string, FM bell, noise drums) playing a short tune
  with a tempo, a register, a melodic contour and a mode;
- **effects**: rain, wind, siren, engine hum, footsteps, bird chirps, a
  ticking clock.

Each clip comes with attributes and a caption drawn from several templates
and synonyms; some (template, synonym) combinations are kept for testing only,
so the text encoder must generalise to phrasings it never saw.

A clip renders at any length: ``render(clip)`` is its 2-second form (the
evaluation clips), ``render(clip, 8.0)`` the same sound going on for 8 s (the
melody continues, the rhythm keeps its tempo, the rain keeps falling). Its
first 2 s need not equal the 2-second render: a longer melody or rain shower
is normalised over its whole length, and its random draws differ after the
first.
A **scene** (``Scene``, ``sample_scenes``) is such a long clip, sometimes
followed at a stated second by another sound of the same family; the LMs
learn from 2-second windows cropped at random offsets of scenes, so they see
windows that start mid-note and sounds that go on past the window's end.

Everything is numpy, deterministic from a seed: ``render(clip_spec)`` gives
the same samples on every machine.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SAMPLE_RATE = 16_000
DURATION = 2.0

INSTRUMENTS = ["flute", "chiptune", "synth", "pluck", "bell", "drums"]
EFFECTS = ["rain", "wind", "siren", "engine", "footsteps", "birds", "clock"]
CLASSES = INSTRUMENTS + EFFECTS
TEMPOS = {"slow": 80, "medium": 120, "fast": 180}                 # beats per minute
REGISTERS = {"low": 45, "mid": 60, "high": 74}                    # MIDI note of the tonic
CONTOURS = ["rising", "falling", "arpeggio", "random"]
MODES = {"major": [0, 2, 4, 5, 7, 9, 11], "minor": [0, 2, 3, 5, 7, 8, 10]}

SYNONYMS = {
    "flute": ["flute", "sine flute", "soft flute", "whistle"],
    "chiptune": ["chiptune", "8-bit", "square wave", "retro game"],
    "synth": ["synth", "sawtooth synth", "buzzy synth", "analog synth"],
    "pluck": ["plucked string", "harp", "pluck", "guitar pluck"],
    "bell": ["bell", "fm bell", "chime", "glockenspiel"],
    "drums": ["drums", "drum beat", "percussion", "drum kit"],
    "rain": ["rain", "rainfall", "rain shower", "drizzle"],
    "wind": ["wind", "howling wind", "gusty wind", "breeze"],
    "siren": ["siren", "police siren", "ambulance siren", "alarm siren"],
    "engine": ["engine", "engine hum", "idling motor", "car engine"],
    "footsteps": ["footsteps", "walking", "steps", "someone walking"],
    "birds": ["birds", "bird chirps", "birdsong", "chirping birds"],
    "clock": ["clock", "ticking clock", "clock ticks", "tick tock"],
}
MUSIC_TEMPLATES = [
    "a {tempo} {register} {instrument} melody in {mode}",
    "{instrument} playing a {contour} {mode} tune, {tempo}",
    "{tempo} {instrument} music, {register} notes, {contour}",
    "a {mode} {contour} line on {instrument}, {register} and {tempo}",
]
EFFECT_TEMPLATES = [
    "the sound of {effect}",
    "{effect} recorded outside",
    "{effect}",
    "a recording of {effect} nearby",
]
# (template index, synonym index) pairs never used for training: the held-out phrasings.
HELD_OUT = {(3, 3), (2, 2), (1, 3)}


@dataclass
class Clip:
    kind: str                 # "music" or "effect"
    label: str                # instrument or effect: the class the evaluator checks
    seed: int
    attributes: dict = field(default_factory=dict)
    caption: str = ""
    phrasing: tuple[int, int] = (0, 0)   # (template, synonym) the caption was made from


def sample_clips(n: int, seed: int = 0, held_out: bool = False, classes: list[str] = CLASSES) -> list[Clip]:
    """``n`` clip specifications with captions; ``held_out`` picks only held-out phrasings.

    ``classes`` limits the draw (``INSTRUMENTS`` for MusicGen's world, ``EFFECTS`` for AudioGen's); with all
    of them, the same seed gives the same clips as it always has."""
    rng = np.random.default_rng(seed)
    clips = []
    while len(clips) < n:
        label = classes[rng.integers(len(classes))]
        template_i, synonym_i = int(rng.integers(4)), int(rng.integers(4))
        if ((template_i, synonym_i) in HELD_OUT) != held_out:
            continue
        name = SYNONYMS[label][synonym_i]
        if label in INSTRUMENTS:
            attrs = dict(tempo=str(rng.choice(list(TEMPOS))), register=str(rng.choice(list(REGISTERS))),
                         contour=str(rng.choice(CONTOURS)), mode=str(rng.choice(list(MODES))))
            if label == "drums":
                attrs.update(register="mid", mode="major")   # drums have no pitch; keep captions honest
                text = MUSIC_TEMPLATES[template_i].replace(" {register} notes,", "").replace(" {register}", "")
                text = text.replace(" in {mode}", "").replace(" {mode}", "").replace("{register} and ", "")
            else:
                text = MUSIC_TEMPLATES[template_i]
            caption = text.format(instrument=name, **attrs)
            clips.append(Clip("music", label, int(rng.integers(2**31)), attrs, caption, (template_i, synonym_i)))
        else:
            caption = EFFECT_TEMPLATES[template_i].format(effect=name)
            clips.append(Clip("effect", label, int(rng.integers(2**31)), {}, caption, (template_i, synonym_i)))
    return clips


# ---------------------------------------------------------------- music

def midi_to_hz(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def melody(attrs: dict, rng: np.random.Generator, duration: float = DURATION) -> list[tuple[float, float, float]]:
    """(start s, length s, frequency Hz) of each note: eighth notes at the tempo.

    Contours wrap around the octave, so a rising line keeps rising through ``duration`` (then starts again)."""
    step = 60.0 / TEMPOS[attrs["tempo"]] / 2
    count = int(duration / step)
    top = int(DURATION / step)                       # a falling line starts where the 2-second one did
    scale = MODES[attrs["mode"]]
    degrees = {"rising": list(range(count)), "falling": [top - i for i in range(count)],
               "arpeggio": [[0, 2, 4, 7, 4, 2][i % 6] for i in range(count)],
               "random": list(rng.integers(0, 8, count))}[attrs["contour"]]
    notes = []
    for i, d in enumerate(degrees):
        d = int(d) % 8
        semitone = scale[d % 7] + 12 * (d // 7)
        notes.append((i * step, step * 0.9, midi_to_hz(REGISTERS[attrs["register"]] + semitone)))
    return notes


def envelope(n: int, attack: float, decay: float) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    return np.minimum(t / attack, 1.0) * np.exp(-t / decay)


def note_wave(instrument: str, freq: float, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    if instrument == "flute":                        # sine with vibrato and a breathy attack
        phase = 2 * np.pi * freq * t + 0.02 * freq / 5 * np.sin(2 * np.pi * 5 * t)
        return np.sin(phase) * envelope(n, 0.05, 1.0) + 0.02 * rng.standard_normal(n) * envelope(n, 0.01, 0.05)
    if instrument == "chiptune":                     # square wave: odd harmonics, hard edges
        return 0.6 * np.sign(np.sin(2 * np.pi * freq * t)) * envelope(n, 0.002, 2.0)
    if instrument == "synth":                        # sawtooth: every harmonic, bright
        return 0.7 * (2 * ((freq * t) % 1.0) - 1) * envelope(n, 0.01, 0.6)
    if instrument == "pluck":                        # Karplus-Strong, one period at a time
        period = max(2, int(round(SAMPLE_RATE / freq)))
        out = np.empty(n + period)
        out[:period] = rng.uniform(-1, 1, period)
        for start in range(period, n + period, period):
            prev = out[start - period:start]
            stop = min(start + period, n + period)
            averaged = 0.5 * (prev + np.roll(prev, 1)) * 0.996
            out[start:stop] = averaged[:stop - start]
        return out[period:]
    if instrument == "bell":                         # FM: inharmonic partials, long decay
        modulator = 2.0 * envelope(n, 0.001, 0.4) * np.sin(2 * np.pi * freq * 1.4 * t)
        return np.sin(2 * np.pi * freq * t + modulator) * envelope(n, 0.002, 0.5)
    raise ValueError(instrument)


def drums(attrs: dict, rng: np.random.Generator, duration: float = DURATION) -> np.ndarray:
    n = int(duration * SAMPLE_RATE)
    out = np.zeros(n)
    step = 60.0 / TEMPOS[attrs["tempo"]] / 2
    for i in range(int(duration / step)):
        start = int(i * step * SAMPLE_RATE)
        length = min(int(0.15 * SAMPLE_RATE), n - start)
        t = np.arange(length) / SAMPLE_RATE
        if i % 4 == 0:      # kick: a falling sine thump
            hit = np.sin(2 * np.pi * (50 + 100 * np.exp(-t / 0.03)) * t) * np.exp(-t / 0.08)
        elif i % 4 == 2:    # snare: noise burst
            hit = 0.6 * rng.standard_normal(length) * np.exp(-t / 0.05)
        else:               # hi-hat: short, bright noise
            hit = 0.25 * np.diff(rng.standard_normal(length + 1)) * np.exp(-t / 0.015)
        out[start:start + length] += hit
    return out


def render_music(clip: Clip, duration: float = DURATION) -> np.ndarray:
    rng = np.random.default_rng(clip.seed)
    if clip.label == "drums":
        return drums(clip.attributes, rng, duration)
    n_total = int(duration * SAMPLE_RATE)
    out = np.zeros(n_total)
    for start, length, freq in melody(clip.attributes, rng, duration):
        a, n = int(start * SAMPLE_RATE), int(length * SAMPLE_RATE)
        n = min(n, n_total - a)
        wave = note_wave(clip.label, freq, n, rng)
        fade = min(64, n)
        wave[n - fade:] *= np.linspace(1, 0, fade)       # no click at the note's end
        out[a:a + n] += wave
    return out


# ---------------------------------------------------------------- effects

def lowpass(x: np.ndarray, cutoff: float) -> np.ndarray:
    """A brick-wall filter in the frequency domain (fine for noise textures)."""
    spectrum = np.fft.rfft(x)
    spectrum[np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE) > cutoff] = 0
    return np.fft.irfft(spectrum, len(x))


def render_effect(clip: Clip, duration: float = DURATION) -> np.ndarray:
    rng = np.random.default_rng(clip.seed)
    n = int(duration * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    per_window = duration / DURATION                 # events are counted per 2 seconds
    label = clip.label
    if label == "rain":                  # hiss plus many tiny droplets
        out = 0.15 * np.diff(rng.standard_normal(n + 1))
        for _ in range(int(int(rng.integers(40, 80)) * per_window)):
            a = int(rng.integers(0, n - 400))
            out[a:a + 400] += 0.5 * rng.standard_normal(400) * np.exp(-np.arange(400) / 40)
        return out
    if label == "wind":                  # low noise whose loudness swells slowly
        swell = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t + rng.uniform(0, 6))
        return 3 * lowpass(rng.standard_normal(n), rng.uniform(300, 600)) * swell
    if label == "siren":                 # a tone sweeping up and down
        rate = rng.uniform(0.6, 1.2)
        freq = 700 + 300 * np.sin(2 * np.pi * rate * t)
        return 0.6 * np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE)
    if label == "engine":                # low harmonics, pulsing at the firing rate
        f0 = rng.uniform(30, 45)
        tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
        return 0.4 * tone * (0.7 + 0.3 * np.sin(2 * np.pi * f0 / 2 * t))
    if label == "footsteps":             # dull thumps every ~0.5 s
        out = 0.01 * rng.standard_normal(n)
        period = rng.uniform(0.4, 0.6)
        for start in np.arange(rng.uniform(0, 0.2), duration, period):
            a, length = int(start * SAMPLE_RATE), int(0.08 * SAMPLE_RATE)
            length = min(length, n - a)
            burst = lowpass(rng.standard_normal(length), 400) * np.exp(-np.arange(length) / 300)
            out[a:a + length] += 3 * burst
        return out
    if label == "birds":                 # fast, high chirps sweeping down
        out = np.zeros(n)
        for _ in range(int(int(rng.integers(5, 10)) * per_window)):
            a, length = int(rng.integers(0, n - 2000)), int(rng.integers(600, 1600))
            tt = np.arange(length) / SAMPLE_RATE
            f = rng.uniform(2500, 4000) - rng.uniform(500, 1500) * tt / tt[-1]
            out[a:a + length] += 0.5 * np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE) * np.hanning(length)
        return out
    if label == "clock":                 # sharp clicks, alternating tick and tock
        out = np.zeros(n)
        for i, start in enumerate(np.arange(0.05, duration, 0.5)):
            a = int(start * SAMPLE_RATE)
            length = min(300, n - a)
            tt = np.arange(length) / SAMPLE_RATE
            out[a:a + length] += np.sin(2 * np.pi * (2000 if i % 2 else 1500) * tt) * np.exp(-tt / 0.004)
        return out
    raise ValueError(label)


def render(clip: Clip, duration: float = DURATION) -> np.ndarray:
    """The clip's samples: float32, ``duration`` s at ``SAMPLE_RATE``, peak 0.9."""
    wave = render_music(clip, duration) if clip.kind == "music" else render_effect(clip, duration)
    peak = np.abs(wave).max()
    return (0.9 * wave / peak if peak > 0 else wave).astype(np.float32)


def render_batch(clips: list[Clip]) -> np.ndarray:
    """[N, samples] for a list of clips."""
    return np.stack([render(c) for c in clips])


# ---------------------------------------------------------------- scenes: time in the toy world

SCENE_SECONDS = (6, 8, 10, 12)
FADE = 160                       # samples (10 ms) faded at a change, so it is a cut, not a click


@dataclass
class Scene:
    """One sound going on for ``duration`` s, or several in turn: ``parts[i]`` plays from ``starts[i]``."""
    parts: list[Clip]
    starts: list[float]
    duration: float

    @property
    def caption(self) -> str:
        """What a person would write: the first sound, and each change at its stated second."""
        return ", ".join([self.parts[0].caption] + [f"then {name_of(p)} after {t:g} seconds"
                                                    for p, t in zip(self.parts[1:], self.starts[1:])])

    def label_at(self, seconds: float) -> str:
        """The class playing at ``seconds``."""
        return [p for p, t in zip(self.parts, self.starts) if t <= seconds][-1].label

    def window_caption(self, start: float, end: float) -> str:
        """The caption of the window [start, end): only what plays in it, a change as "..., then X".

        Windows are captioned by what they hold: an LM taught that a sound may turn into another without
        the caption saying so would do the same in the middle of a long generation."""
        ends = self.starts[1:] + [self.duration]
        inside = [p for p, a, b in zip(self.parts, self.starts, ends) if a < end and b > start]
        return caption_of(inside)


def caption_of(parts: list[Clip]) -> str:
    """The caption of sounds heard in turn: the first's own caption, then each next one by name."""
    return ", ".join([parts[0].caption] + [f"then {name_of(p)}" for p in parts[1:]])


def name_of(clip: Clip) -> str:
    """The synonym the clip's caption uses for its class."""
    return SYNONYMS[clip.label][clip.phrasing[1]]


def sample_scenes(n: int, seed: int = 0, held_out: bool = False, classes: list[str] = CLASSES,
                  change_share: float = 0.2, seconds: tuple[int, ...] = SCENE_SECONDS) -> list[Scene]:
    """``n`` scenes of ``classes``: each one sound lasting 6-12 s, or (``change_share`` of them) that sound
    followed at a whole second by another class's, from the same family (music by music, effects by effects)."""
    rng = np.random.default_rng(seed)
    scenes = []
    for _ in range(n):
        first = sample_clips(1, seed=int(rng.integers(2**31)), held_out=held_out, classes=classes)[0]
        duration = float(rng.choice(seconds))
        parts, starts = [first], [0.0]
        if rng.random() < change_share:
            family = [c for c in classes if (c in INSTRUMENTS) == (first.label in INSTRUMENTS) and c != first.label]
            if family:
                second = sample_clips(1, seed=int(rng.integers(2**31)), held_out=held_out, classes=family)[0]
                parts.append(second)
                starts.append(float(rng.integers(2, int(duration) - 1)))
        scenes.append(Scene(parts, starts, duration))
    return scenes


def render_scene(scene: Scene) -> np.ndarray:
    """The scene's samples: float32, ``scene.duration`` s; each part rendered at its own length, peak 0.9."""
    out = np.zeros(int(round(scene.duration * SAMPLE_RATE)), dtype=np.float32)
    ends = scene.starts[1:] + [scene.duration]
    for part, start, end in zip(scene.parts, scene.starts, ends):
        a, b = int(round(start * SAMPLE_RATE)), int(round(end * SAMPLE_RATE))
        wave = render(part, (b - a) / SAMPLE_RATE)[:b - a]
        if a > 0:
            wave[:FADE] *= np.linspace(0, 1, FADE, dtype=np.float32)
        if b < len(out):
            wave[-FADE:] *= np.linspace(1, 0, FADE, dtype=np.float32)
        out[a:a + len(wave)] = wave
    return out
