"""Files minicraft writes: each whole or absent (every write goes through here), and named from prompts.

A write interrupted half-way (Ctrl-C, a full disk, a crash) must never leave a truncated WAV, checkpoint or
report under the real name, where the next run would take it for a finished one. So the bytes go to a hidden
temporary file in the same folder, and only a complete file is renamed over the target, which the operating
system does in one step. The new file gets the permissions a plain ``open()`` would give it (the umask), or
the old file's when it replaces one.
"""
from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator


def _new_file_mode(path: Path) -> int:
    """The replaced file's permissions, else what the umask allows for a new file (0644 by default)."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(path.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """``with atomic_write(path) as f: f.write(...)``: ``path`` appears, complete, only if the block succeeds."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``path.write_text(text)`` (UTF-8), whole or not at all."""
    with atomic_write(path) as f:
        f.write(text.encode("utf-8"))
    return Path(path)


def slug(text: str) -> str:
    """A prompt as a file name: lowercase words joined by ``_``, at most 60 characters ("audio" if none)."""
    words = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return words[:60].rstrip("_") or "audio"


def cache_dir() -> Path:
    """Where minicraft keeps what it builds once per machine (the C kernels, the explorer's classifier):
    ``$MINICRAFT_CACHE``, else ``~/.cache/minicraft``. Deleting it is safe: everything is rebuilt."""
    return Path(os.environ.get("MINICRAFT_CACHE") or Path.home() / ".cache" / "minicraft")
