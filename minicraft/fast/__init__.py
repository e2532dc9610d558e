"""The fast path: the same models, faster, behind one switch (:func:`accelerate`).

C kernels for a CPU's decoding steps (``kernels.c``, ``kernels.py``, ``layer_step.py``), int8 weights
(``int8.py``), fixed-shape caches and CUDA graphs (``attention.py``, ``decoding.py``), the codec decoder's
polyphase convs and chunking (``codec.py``), and how far reduced precision strays (``precision.py``).
Nothing under :mod:`minicraft.modules` or :mod:`minicraft.models` imports this package.
"""
from minicraft.fast.accelerate import accelerate, replacements, restore, summary

__all__ = ["accelerate", "replacements", "restore", "summary"]
