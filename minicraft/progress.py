"""A one-line progress bar on stderr (no dependency), for generation and training."""
from __future__ import annotations

import sys
import time


class ProgressBar:
    """A one-line bar on stderr, drawn only once a second has passed."""

    def __init__(self, stream=sys.stderr, first: int = 0, unit: str = "steps"):
        self.stream, self.start, self.drawn = stream, time.monotonic(), False
        self.first = first          # steps already done before this run (a resumed training)
        self.unit = unit

    def __call__(self, done: int, total: int, note: str = ""):
        elapsed = time.monotonic() - self.start
        if elapsed < 1.0 and not self.drawn:
            return
        self.drawn = True
        width = 30
        filled = int(width * done / max(total, 1))
        eta = f"{elapsed / (done - self.first) * (total - done):.0f} s" if done > self.first else "?"
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {self.unit}, "
                          f"{elapsed:.1f} s, ETA {eta} {note}")
        self.stream.flush()

    def close(self):
        """End the bar's line (before other output, or at the end); a later call draws it again."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False
