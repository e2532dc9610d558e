"""The repository is self-contained: a clone anywhere has everything its tests and notebooks read."""
import re
import subprocess

from paths import ROOT

# Spelled in pieces so that this file does not match itself.
OUTSIDE = re.compile(rb"\.\./" + rb"shared|[\"']shared[\"'] */|/ *[\"']shared[\"']")


def tracked_files():
    done = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if done.returncode == 0:
        return [ROOT / name for name in done.stdout.decode().split("\0") if name]
    return [p for p in ROOT.rglob("*") if p.is_file() and not {".git", ".venv", ".ci-venv"} & set(p.parts)]


def test_no_file_refers_to_a_folder_beside_the_repository():
    files = tracked_files()
    assert any(p.name == "README.md" for p in files)
    offenders = [str(p.relative_to(ROOT)) for p in files if p.is_file() and OUTSIDE.search(p.read_bytes())]
    assert offenders == [], f"these files read a folder outside the repository: {offenders}"


def test_the_audiocraft_fixtures_are_in_the_repository():
    from paths import FIXTURES
    for name in ("refs.pt", "musicgen_tiny/state_dict.bin", "musicgen_tiny/compression_state_dict.bin",
                 "audiogen_tiny/state_dict.bin", "t5_tiny/model.safetensors", "t5_tiny/spiece.model"):
        assert (FIXTURES / name).is_file(), name
