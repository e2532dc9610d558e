"""Lay files out in a Hugging Face cache exactly as ``huggingface_hub`` does after a download.

``<cache>/models--org--name/blobs/<etag>`` holds the bytes (sha256 for LFS
files such as weights, the git blob sha1 for small text files),
``snapshots/<commit>/<file>`` are relative symlinks to those blobs, and
``refs/main`` holds the commit hash. With ``HF_HUB_OFFLINE=1``, ``hf_hub_download``
then finds the files without any network.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

LFS_SUFFIXES = (".safetensors", ".bin", ".model", ".pt")


def etag(data: bytes, name: str) -> str:
    if name.endswith(LFS_SUFFIXES):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def put_in_cache(cache: Path, repo_id: str, files: dict[str, Path | bytes],
                 commit: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
    """Store ``files`` (name -> path or bytes) for ``repo_id``; return the snapshot folder."""
    repo = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    for name, content in files.items():
        data = Path(content).read_bytes() if isinstance(content, (str, Path)) else content
        blob = repo / "blobs" / etag(data, name)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


def put_folder_in_cache(cache: Path, repo_id: str, folder: Path) -> Path:
    """Every file of a ``save_pretrained`` folder, under ``repo_id``."""
    folder = Path(folder)
    return put_in_cache(cache, repo_id, {p.relative_to(folder).as_posix(): p
                                         for p in sorted(folder.rglob("*")) if p.is_file()})
