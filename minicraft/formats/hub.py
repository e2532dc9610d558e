"""Files from the Hugging Face Hub, through ``huggingface_hub`` and its cache.

Everything goes through ``hf_hub_download``, so the usual behaviour comes for
free: the shared cache (``HF_HOME``/``HF_HUB_CACHE``), resumed downloads, and
``HF_HUB_OFFLINE=1`` to use only what is already cached. We fetch only the
files a model needs, never a whole repository.
"""
from __future__ import annotations

from pathlib import Path

from huggingface_hub import hf_hub_download
from huggingface_hub.errors import (EntryNotFoundError, HFValidationError, LocalEntryNotFoundError,
                                    RepositoryNotFoundError)

# audiocraft's xp.cfg names its text encoder the old way; these are the repositories today.
T5_REPOS = {name: f"google-t5/{name}" for name in ("t5-small", "t5-base", "t5-large", "t5-3b", "t5-11b")}
T5_REPOS.update({f"google/flan-t5-{s}": f"google/flan-t5-{s}" for s in ("small", "base", "large", "xl", "xxl")})

T5_FILES = ["config.json", "model.safetensors", "spiece.model"]


class ModelNotAvailable(FileNotFoundError):
    """A model's files are neither in the local cache nor downloadable now."""


def fetch(repo_id: str, filenames: list[str], optional: tuple[str, ...] = ()) -> Path:
    """Download (or find in the cache) ``filenames`` of ``repo_id``; return their folder.

    Files named in ``optional`` may be absent from the repository.
    """
    folder = None
    for name in filenames:
        try:
            folder = Path(hf_hub_download(repo_id, name)).parent
        except LocalEntryNotFoundError:    # before its parent class EntryNotFoundError
            if name in optional:
                continue
            raise ModelNotAvailable(
                f"{repo_id} ({name}) is not in the local Hugging Face cache and cannot be downloaded now "
                "(offline, or no network). Fetch it once with a network: "
                f"`minicraft download {repo_id}`, or point HF_HOME at a cache that has it.") from None
        except EntryNotFoundError:
            if name in optional:
                continue
            raise ModelNotAvailable(f"{repo_id} has no file {name!r}; is it the right repository?") from None
        except (RepositoryNotFoundError, HFValidationError):
            raise ModelNotAvailable(f"{repo_id}: no such model repository on the Hugging Face Hub "
                                    "(or it needs a login).") from None
    if folder is None:
        raise ModelNotAvailable(f"{repo_id}: none of {filenames} could be found.")
    return folder


def t5_folder(name: str) -> Path:
    """The folder holding the T5 encoder that an audiocraft checkpoint names (e.g. 't5-base')."""
    repo = T5_REPOS.get(name, name)
    return fetch(repo, T5_FILES)
