"""The toy world the tiny model was trained on: the synthetic clips, training and evaluation (a lab, not
the library: nothing below imports it)."""
