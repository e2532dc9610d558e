"""Checking what a user or a file gives before it is used: numbers and the fields of a config.

Every check raises a ValueError that says in one line what the value must be and what it was, so the API and
the command line can pass it on as it is.
"""
from __future__ import annotations

import math


def check_number(name: str, value, kind: type = float, low: float = -math.inf, high: float = math.inf,
                 meaning: str = ""):
    """``value`` as ``kind`` if it is one (ints count as floats) and lies in [low, high]; else a ValueError
    that says what it must be."""
    ok_types = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_types) or not math.isfinite(value):
        raise ValueError(f"{name} must be {'an integer' if kind is int else 'a finite number'}, got {value!r}.")
    if not low <= value <= high:
        if high == math.inf:
            span = f"an integer >= {low}" if kind is int else f">= {low:g}"
        elif kind is int:
            span = f"an integer from {low} to {high}"
        else:
            span = f"within [{low:g}, {high:g}]"
        raise ValueError(f"{name} must be {span}{meaning}, got {value!r}.")
    return kind(value)


def check_fields(config, source: str, positive: tuple[str, ...] = (), numbers: tuple[str, ...] = ()):
    """``config``'s ``positive`` fields are whole numbers >= 1 and its ``numbers`` finite; ``source`` names the
    file or class in the message. Run before any module is built, so a wrong size costs nothing."""
    for name in positive:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{source}: {name} must be a whole number >= 1, got {value!r}.")
        if value > 2**20:                 # no real model has a million of anything in one config field
            raise ValueError(f"{source}: {name} = {value} is beyond any real model (at most {2**20}).")
    for name in numbers:
        check_number(f"{source}: {name}", getattr(config, name))
