"""What the explorer explores: a spec (prompts, a grid of sampling settings, seeds, the model), checked in
full before any model loads, and the grid points it stands for.

A spec is a YAML/JSON file or a mapping (:func:`spec_from`); docs/explorer.md lists its keys.
"""
from __future__ import annotations

import difflib
import hashlib
import itertools
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from minicraft.api import TINY, TINY_AUDIOGEN, resolve
from minicraft.explorer.measures import MEASURES
from minicraft.files import slug
from minicraft.checks import check_number
from minicraft.generate.sampling import check_setting

GRID = ("temperature", "top_k", "top_p", "cfg_coef")
MAX_DURATION = 60.0          # every sample is embedded in the report
MAX_GRID = 100_000           # samples in one spec: a larger grid is split into runs


class SpecError(ValueError):
    """A spec that cannot run, said in one line before any model is loaded."""


@dataclass
class Spec:
    """What to explore. Lists are the grid; a single value stands for a list of one.

    ``prompts`` is a list, or groups (content types) -> lists; the report names
    the best settings per group. ``objective`` is the measure the best settings
    maximise, or ``-measure`` to minimise (default: adherence for the tiny
    model, else -repetition).
    """
    prompts: dict[str, list[str]] | list[str]
    temperature: list[float] = field(default_factory=lambda: [1.0])
    top_k: list[int] = field(default_factory=lambda: [250])
    top_p: list[float] = field(default_factory=lambda: [0.0])
    cfg_coef: list[float] = field(default_factory=lambda: [3.0])
    seeds: list[int] = field(default_factory=lambda: [0])
    duration: float = 1.0
    model: str = "tiny"
    device: str | None = None
    dtype: str | None = None
    batch_size: int = 8
    objective: str | None = None

    def __post_init__(self):
        self.prompts = check_prompts(self.prompts)
        for name in GRID:                                # the model's codebook size is checked when it loads
            setattr(self, name, check_values(name, getattr(self, name), lambda v, n=name: check_setting(n, v)))
        self.seeds = check_values("seeds", self.seeds, lambda v: check_number("seeds", v, int, 0, 2**63 - 1))
        self.duration = spec_number("duration", self.duration, float, -math.inf, math.inf)
        if not 0 < self.duration <= MAX_DURATION:
            raise SpecError(f"duration must be > 0 and at most {MAX_DURATION:g} s, got {self.duration:g}.")
        self.batch_size = spec_number("batch_size", self.batch_size, int, 1, math.inf)
        if not isinstance(self.model, str) or not self.model:
            raise SpecError(f"model must be a name such as 'tiny' or 'small', got {self.model!r}.")
        for name in ("device", "dtype"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise SpecError(f"{name} must be a string such as 'cpu' or 'float32', got {getattr(self, name)!r}.")
        if self.objective is not None and (not isinstance(self.objective, str)
                                           or self.objective.lstrip("-") not in MEASURES):
            raise SpecError(f"objective must be a measure ({', '.join(MEASURES)}), with a leading '-' to "
                            f"minimise it, got {self.objective!r}.")
        if self.size() > MAX_GRID:
            raise SpecError(f"the grid has {self.size():,} samples, more than minicraft explores ({MAX_GRID:,}); "
                            "split it into several runs.")
        ids = [p.id for p in self.points()]
        if len(set(ids)) != len(ids):
            raise SpecError("two grid values print alike (e.g. 0.3 and 0.3000001); keep one of them.")

    @property
    def tiny(self) -> bool:
        """minicraft's own model, whose toy world the attribute classifier knows (adherence needs it)."""
        try:
            return resolve(self.model)[1] in (TINY, TINY_AUDIOGEN)
        except ValueError:                             # an unknown name: check_runnable says so
            return False

    def size(self) -> int:
        """How many samples the grid holds, counted without making them."""
        return (len(self.temperature) * len(self.top_k) * len(self.top_p) * len(self.cfg_coef) * len(self.seeds)
                * sum(len(prompts) for prompts in self.prompts.values()))

    def goal(self) -> str:
        """The objective actually used: the stated one, or the default for this model."""
        return self.objective or ("adherence" if self.tiny else "-repetition")

    def groups(self) -> dict[str, str]:
        """prompt -> its group, in spec order."""
        return {prompt: group for group, prompts in self.prompts.items() for prompt in prompts}

    def settings(self) -> list[tuple]:
        """Every (temperature, top_k, top_p, cfg_coef) of the grid."""
        return list(itertools.product(self.temperature, self.top_k, self.top_p, self.cfg_coef))

    def points(self) -> list[Point]:
        return [point for batch in self.batches() for point in batch]

    def batches(self) -> list[list[Point]]:
        """The units of work: per settings and seed, the prompts ``batch_size`` at a time."""
        groups = list(self.groups().items())
        out = []
        for setting in self.settings():
            for seed in self.seeds:
                for i in range(0, len(groups), self.batch_size):
                    chunk = groups[i:i + self.batch_size]
                    out.append([Point(prompt, group, *setting, seed) for prompt, group in chunk])
        return out


@dataclass(frozen=True)
class Point:
    """One sample of the grid."""
    prompt: str
    group: str
    temperature: float
    top_k: int
    top_p: float
    cfg_coef: float
    seed: int

    @property
    def id(self) -> str:
        """``<prompt slug>-<hash>/t…_k…_p…_cfg…_seed…``: readable, and unique per prompt text."""
        folder = f"{slug(self.prompt)[:40]}-{hashlib.sha1(self.prompt.encode()).hexdigest()[:6]}"
        return (f"{folder}/t{self.temperature:g}_k{self.top_k}_p{self.top_p:g}_cfg{self.cfg_coef:g}"
                f"_seed{self.seed}")

    def params(self) -> dict:
        return dict(prompt=self.prompt, group=self.group, temperature=self.temperature, top_k=self.top_k,
                    top_p=self.top_p, cfg_coef=self.cfg_coef, seed=self.seed)


def check_prompts(prompts) -> dict[str, list[str]]:
    if isinstance(prompts, (list, tuple, dict)) and not prompts:
        raise SpecError("the grid is empty: there are no prompts; give at least one.")
    if isinstance(prompts, (list, tuple)):
        prompts = {"all": list(prompts)}
    if not isinstance(prompts, dict):
        raise SpecError("prompts must be a list of strings, or groups such as "
                        "{music: [...], effects: [...]}.")
    seen, out = set(), {}
    for group, items in prompts.items():
        items = [items] if isinstance(items, str) else items
        if not isinstance(group, str) or not group:
            raise SpecError(f"prompt group names must be non-empty strings, got {group!r}.")
        if not isinstance(items, (list, tuple)) or not items:
            raise SpecError(f"the grid is empty: prompt group {group!r} has no prompts; give at least one.")
        for prompt in items:
            if not isinstance(prompt, str) or not prompt.strip():
                raise SpecError(f"every prompt must be a non-empty string, got {prompt!r} in {group!r}.")
            if prompt in seen:
                raise SpecError(f"the prompt {prompt!r} appears twice; keep one.")
            seen.add(prompt)
        out[group] = list(items)
    return out


def spec_number(name: str, value, kind: type, low: float, high: float):
    try:
        return check_number(name, value, kind, low, high)
    except ValueError as error:
        raise SpecError(str(error)) from None


def check_values(name: str, values, check) -> list:
    """A grid axis: one value or a list, each passed through ``check``; no repeats."""
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    if not values:
        raise SpecError(f"the grid is empty: {name} has no values; give at least one.")
    try:
        out = [check(v) for v in values]
    except ValueError as error:
        raise SpecError(str(error)) from None
    for v in out:
        if out.count(v) > 1:
            raise SpecError(f"{name} lists {v!r} twice; keep one.")
    return out


def spec_from(source: str | Path | dict | None = None, **overrides) -> Spec:
    """A Spec from a YAML/JSON file or a mapping, then ``overrides`` that are not None.

    An unknown key is an error (a typo would otherwise silently do nothing).
    """
    if source is None:
        data = {}
    elif isinstance(source, dict):
        data = dict(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise SpecError(f"{path}: no such spec file.")
        try:
            data = yaml.safe_load(path.read_text())        # YAML is a superset of JSON
        except yaml.YAMLError as e:
            raise SpecError(f"{path} is not valid YAML or JSON ({str(e).splitlines()[0]}).") from None
        if not isinstance(data, dict):
            raise SpecError(f"{path} must hold a mapping such as {{prompts: [...], temperature: [0.5, 1.0]}}.")
    data.update({k: v for k, v in overrides.items() if v is not None})
    known = [f.name for f in fields(Spec)]
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpecError(f"unknown parameter {key!r} in the spec{hint}; known: {', '.join(known)}.")
    if "prompts" not in data:
        raise SpecError("the grid is empty: there are no prompts; give some (in the spec, or as arguments).")
    return Spec(**data)
