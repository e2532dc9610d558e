"""Every snippet in the README's Usage section runs, as a new user would run it."""
import os
import re
import shlex
import subprocess
import sys

import pytest
import soundfile as sf
import torch

from hfcache import put_folder_in_cache
from hf_models import save_musicgen, tiny_musicgen
from paths import FIXTURES, ROOT, T5_TINY
from minicraft.toyworld.new_sound import write_clips

README = ROOT / "README.md"


def usage_blocks(language: str) -> list[str]:
    text = README.read_text()
    usage = text.split("\n## Usage\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", usage, flags=re.S)


@pytest.fixture
def user(hf_cache, tmp_path):
    """A user's folder, with the models already downloaded (here: tiny ones under the official ids)."""
    put_folder_in_cache(hf_cache, "facebook/musicgen-small", save_musicgen(tiny_musicgen(), tmp_path / "small"))
    put_folder_in_cache(hf_cache, "facebook/audiogen-medium", FIXTURES / "audiogen_tiny")
    put_folder_in_cache(hf_cache, "google-t5/t5-large", T5_TINY)
    home = tmp_path / "user"
    home.mkdir()
    t = torch.arange(32000) / 32000
    sf.write(str(home / "intro.wav"), (0.3 * torch.sin(2 * torch.pi * 220 * t)).numpy(), 32000)
    write_clips(home / "my_sounds", 20)           # telephone rings, each with a .txt caption
    return home


def test_python_snippets(user):
    blocks = usage_blocks("python")
    assert blocks
    for code in blocks:
        result = subprocess.run([sys.executable, "-c", code], cwd=user, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stderr
        for expected in re.findall(r"# (torch\.Size\(.*)$", code, flags=re.M):
            assert expected.strip() in result.stdout
    assert sf.info(str(user / "lofi.wav")).frames == 8 * 32000


def test_command_line_snippets(user):
    commands = [line for block in usage_blocks("bash") for line in block.splitlines()
                if line.startswith("minicraft ")]
    assert len(commands) >= 4
    for command in commands:
        args = shlex.split(command, comments=True)[1:]
        result = subprocess.run([sys.executable, "-m", "minicraft", *args], cwd=user, capture_output=True,
                                text=True, timeout=600, env=dict(os.environ, PYTHONWARNINGS="ignore"))
        assert result.returncode == 0, (command, result.stderr)
    assert sorted(p.name for p in (user / "sounds").iterdir()) == ["dog_barking.wav", "rain_on_a_tin_roof.wav"]
    assert sf.info(str(user / "longer.wav")).frames == 12 * 32000
    tiny = sorted((user / "tiny").iterdir())                  # minicraft's own MusicGen and AudioGen, 16 kHz
    assert [p.name for p in tiny] == ["a_slow_low_flute_melody_in_minor.wav", "the_sound_of_rain.wav"]
    assert [(sf.info(str(p)).samplerate, sf.info(str(p)).frames) for p in tiny] == [(16000, 160000)] * 2
    assert (user / "runs" / "mine" / "adapter.safetensors").is_file() and sf.info(str(user / "mine.wav")).frames > 0
