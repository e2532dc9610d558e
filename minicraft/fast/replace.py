"""How the fast path replaces a reference module: in place, by a subclass that keeps its parameters.

Every fast class names the reference class it ``replaces`` and says ``what`` it does differently, so
:func:`minicraft.fast.replacements` can list them from the model itself, and :func:`minicraft.fast.restore`
can put the reference classes back.
"""
from __future__ import annotations

from torch import nn


def become(module: nn.Module, fast: type, **settings) -> nn.Module:
    """Turn ``module`` (an instance of ``fast.replaces``) into a ``fast`` one; ``settings`` go to its ``adopt``."""
    if not isinstance(module, fast.replaces):
        raise TypeError(f"{type(module).__name__} is not a {fast.replaces.__name__}")
    before = set(module.__dict__)
    module.__class__ = fast
    if hasattr(fast, "adopt"):
        module.adopt(**settings)
    module.__dict__["_adopted"] = set(module.__dict__) - before     # what restore() removes
    return module


def is_fast(module: nn.Module) -> bool:
    return hasattr(type(module), "replaces") and hasattr(type(module), "what")
