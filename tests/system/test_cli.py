"""The ``minicraft`` command, run as a user runs it (a subprocess), against an offline cache."""
import os
import re
import subprocess
import sys

import pytest
import soundfile as sf
import torch

from hfcache import put_folder_in_cache
from hf_models import save_musicgen, tiny_musicgen


@pytest.fixture(scope="module")
def saved_small(tmp_path_factory):
    return save_musicgen(tiny_musicgen(), tmp_path_factory.mktemp("small"))


@pytest.fixture
def cache(hf_cache, saved_small):
    put_folder_in_cache(hf_cache, "facebook/musicgen-small", saved_small)
    return hf_cache


def run(*args, cwd=None):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "minicraft", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def assert_user_error(result, message):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert message in result.stderr


def test_help_teaches():
    result = run("--help")
    assert result.returncode == 0
    for word in ("generate", "continue", "download", "info", "examples:", "temperature"):
        assert word in result.stdout
    assert "--top-p" in run("generate", "--model", "small", "--help").stdout


def test_generate_writes_one_file_per_prompt(cache, tmp_path):
    result = run("generate", "--model", "small", "dog barking", "calm piano", "--duration", "0.2", "--seed", "1",
                 "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "out").iterdir())
    assert [f.name for f in files] == ["calm_piano.wav", "dog_barking.wav"]
    for f in files:
        assert f"wrote {f}" in result.stdout
        info = sf.info(str(f))
        assert (info.samplerate, info.channels, info.frames) == (32000, 1, 10 * 640)


def test_seed_makes_files_identical(cache, tmp_path):
    for name in ("a.wav", "b.wav"):
        assert run("generate", "--model", "small", "dog barking", "--duration", "0.2", "--seed", "3", "--out",
                   str(tmp_path / name)).returncode == 0
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


def test_the_progress_bar_counts_every_window_of_a_long_generation(tmp_path):
    # 120 s: the bar is drawn once a second has passed, and on a fast CPU the tiny model made 40 s in less
    result = run("generate", "a fast drum beat", "--duration", "120", "--seed", "1", "--out", str(tmp_path / "d.wav"))
    assert result.returncode == 0, result.stderr
    bars = [(int(a), int(b)) for a, b in re.findall(r"(\d+)/(\d+) steps", result.stderr)]
    assert bars, result.stderr
    assert all(done <= total for done, total in bars) and bars[-1][0] == bars[-1][1], bars[-3:]


def test_int8_with_the_tiny_model(tmp_path):
    result = run("generate", "the sound of rain", "--dtype", "bfloat16", "--quantize", "int8", "--duration", "0.5",
                 "--seed", "1", "--out", str(tmp_path / "rain.wav"))
    assert result.returncode == 0, result.stderr
    assert sf.info(str(tmp_path / "rain.wav")).frames == 8000
    result = run("generate", "rain", "--quantize", "int4", "--out", str(tmp_path / "x.wav"))
    assert result.returncode == 2 and "int8" in result.stderr and not (tmp_path / "x.wav").exists()


def test_existing_file_needs_force(cache, tmp_path):
    target = tmp_path / "x.wav"
    target.write_bytes(b"keep me")
    assert_user_error(run("generate", "--model", "small", "dog", "--duration", "0.2", "--out", str(target)), "add --force")
    assert target.read_bytes() == b"keep me"
    assert run("generate", "--model", "small", "dog", "--duration", "0.2", "--out", str(target), "--force").returncode == 0
    assert sf.info(str(target)).frames == 10 * 640


def test_continue(cache, tmp_path):
    t = torch.arange(8000) / 44100
    sf.write(str(tmp_path / "in.wav"), (0.3 * torch.sin(2 * torch.pi * 440 * t)).numpy(), 44100)
    result = run("continue", "--model", "small", str(tmp_path / "in.wav"), "calm piano", "--duration", "0.5",
                 "--temperature", "0", "--out", str(tmp_path / "longer.flac"))
    assert result.returncode == 0, result.stderr
    assert sf.info(str(tmp_path / "longer.flac")).frames == 25 * 640


def test_info_and_download(cache):
    result = run("info", "small")
    assert result.returncode == 0, result.stderr
    assert "facebook/musicgen-small" in result.stdout and "model.safetensors" in result.stdout
    assert "parameters" in result.stdout
    assert run("download", "small").returncode == 0


def test_download_offline_says_what_to_do(hf_cache):
    result = run("download", "medium")
    assert_user_error(result, "not in the local Hugging Face cache")
    assert "minicraft download facebook/musicgen-medium" in result.stderr
    assert "not in the local cache" in run("info", "large").stdout


@pytest.mark.parametrize("args, message", [
    (["--top-p", "2"], "top_p must be within [0, 1]"),
    (["--temperature", "-1"], "temperature must be >= 0"),
    (["--duration", "0"], "duration must be > 0"),
    (["--top-k", "5000"], "top_k must be an integer from 0 to 32 (0 = off"),
    (["--cfg", "-1"], "cfg_coef must be >= 0"),
    (["--device", "cuda"], "'cuda' is not available"),
    (["--model", "./nowhere"], "no such folder"),
])
def test_bad_options_exit_2_and_write_nothing(cache, tmp_path, args, message):
    out = tmp_path / "out"
    assert_user_error(run("generate", "--model", "small", "dog", "--duration", "0.2", *args, "--out", str(out)), message)
    assert not out.exists() or not any(out.iterdir())


def test_bad_paths(cache, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    assert_user_error(run("generate", "--model", "small", "dog", "--out", str(tmp_path / "file" / "x.wav")), "is a file, not a folder")
    assert_user_error(run("continue", "--model", "small", str(tmp_path / "missing.wav"), "x"), "no such audio file")
    (tmp_path / "silent.wav").write_bytes(b"")
    sf.write(str(tmp_path / "silent.wav"), torch.zeros(3200).numpy(), 32000)
    assert_user_error(run("continue", "--model", "small", str(tmp_path / "silent.wav"), "x", "--duration", "0.5",
                          "--out", str(tmp_path / "o.wav")), "silent")
    assert not (tmp_path / "o.wav").exists()
    assert_user_error(run("generate", "--model", "small", "a", "b", "--out", str(tmp_path / "one.wav")), "give a folder instead")
    assert run("generate").returncode == 2          # argparse: a prompt is required


def test_unwritable_output(cache):
    """/proc accepts no new folders, even from root (CI runs as root)."""
    assert_user_error(run("generate", "--model", "small", "dog", "--out", "/proc/minicraft-out/"), "cannot create /proc/minicraft-out")
