"""minicraft tried as a careless or hostile user would: every bad input ends in one line (exit 2, no traceback,
nothing written, nothing changed), every odd but valid one in a result, and every command's peak memory is set
by the work asked (the tiny model: under 2 GiB), never by an input's quirks.

Each case runs the command line in a child process and reads the child's own peak resident memory (wait4).
"""
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from minicraft.api import TINY

GIB = 2**30
LIMIT = 2 * GIB              # a learner's laptop runs more than minicraft


# The child reports its own peak: the kernel's per-process figure (ru_maxrss) starts from the parent's at fork,
# while VmHWM belongs to the address space the child got at exec.
CHILD = """
import atexit, os, runpy, sys
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            open(os.environ["PEAK_FILE"], "w").write(line.split()[1])
atexit.register(peak)
sys.argv = ["minicraft", *sys.argv[1:]]
runpy.run_module("minicraft", run_name="__main__", alter_sys=True)
"""


def run(*args, cwd=None, stdin=None, env=None):
    """``minicraft *args`` in a child: (exit code, stdout, stderr, the child's peak resident bytes)."""
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak"
        done = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=cwd, capture_output=True, input=stdin,
                              env=dict(os.environ, PYTHONWARNINGS="ignore", PEAK_FILE=str(peak_file), **(env or {})),
                              timeout=600)
        peak = int(peak_file.read_text()) * 1024 if peak_file.is_file() else 0
    return done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"), peak


def one_line(stderr: str, *words: str):
    lines = [line for line in stderr.splitlines() if line.startswith("minicraft:")]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def refused(args, *words, cwd=None, stdin=None):
    code, _, err, peak = run(*args, cwd=cwd, stdin=stdin)
    assert code == 2, err
    one_line(err, *words)
    assert 0 < peak < LIMIT
    return err


def wav(path: Path, seconds: float, rate: int, amplitude: float = 0.3):
    t = np.arange(int(seconds * rate)) / rate
    sf.write(str(path), amplitude * np.sin(2 * np.pi * 220 * t), rate)
    return path


# ---------------------------------------------------------------- audio to continue

@pytest.mark.parametrize("rate", [44101, 8001])
def test_rates_sharing_few_factors_continue_in_little_memory(tmp_path, rate):
    wav(tmp_path / "in.wav", 1.0, rate)
    code, out, err, peak = run("continue", "in.wav", "--duration", "1.5", "--out", "out.wav", cwd=tmp_path)
    assert code == 0, err
    assert 0 < peak < LIMIT and sf.info(str(tmp_path / "out.wav")).frames == 24000


def test_a_header_claiming_two_gigahertz_is_refused(tmp_path):
    path = wav(tmp_path / "in.wav", 0.5, 16000)
    data = bytearray(path.read_bytes())
    data[24:28] = struct.pack("<I", 2_000_000_000)
    path.write_bytes(bytes(data))
    refused(["continue", "in.wav", "--out", "out.wav"], "sample rate", "1,000,000", cwd=tmp_path)
    assert not (tmp_path / "out.wav").exists()


def test_a_one_hertz_file_continues(tmp_path):
    sf.write(str(tmp_path / "in.wav"), np.random.default_rng(0).uniform(-0.5, 0.5, 16000), 1)
    code, _, err, peak = run("continue", "in.wav", "--out", "out.wav", cwd=tmp_path)
    assert code == 0, err
    assert 0 < peak < LIMIT and "continuing from its last" in err


def test_a_long_file_gives_its_last_seconds(tmp_path):
    wav(tmp_path / "in.wav", 600, 32000)                          # 10 minutes: 77 MB of samples, read in part
    code, _, err, peak = run("continue", "in.wav", "--prompt-seconds", "0.5", "--out", "out.wav", cwd=tmp_path)
    assert code == 0, err
    one_line(err, "600.0 s long", "last 0.5 s")
    assert 0 < peak < LIMIT


@pytest.mark.parametrize("make, words", [
    (lambda p: p.mkdir(), ("is a folder",)),
    (lambda p: p.write_bytes(b"RIFF"), ("cannot read this audio file",)),
    (lambda p: sf.write(str(p), np.zeros((0, 1)), 16000), ("holds no audio",)),
    (lambda p: sf.write(str(p), np.zeros(8000), 16000), ("silent",)),
])
def test_audio_that_cannot_serve_is_refused(tmp_path, make, words):
    make(tmp_path / "in.wav")
    refused(["continue", "in.wav", "--out", "out.wav"], *words, cwd=tmp_path)
    assert not (tmp_path / "out.wav").exists()


def test_a_truncated_wav_is_said(tmp_path):
    path = wav(tmp_path / "in.wav", 1.0, 16000)
    path.write_bytes(path.read_bytes()[:20000])
    code, _, err, _ = run("continue", "in.wav", "--out", "out.wav", cwd=tmp_path)
    assert code == 0, err
    one_line(err, "shorter than its header says")


def test_a_prompt_as_long_as_the_window_says_what_to_do():
    from minicraft import MusicGen
    model = MusicGen.get_pretrained("tiny", device="cpu")
    model.set_generation_params(duration=2.0)
    with pytest.raises(ValueError, match="leaves nothing to generate.*--prompt-seconds"):
        model.generate_continuation(torch.rand(1, 32000) - 0.5, 16000)
    with pytest.raises(ValueError, match="int16; give floating-point samples"):
        model.generate_continuation((torch.rand(1, 8000) * 6000).short(), 16000)


# ---------------------------------------------------------------- prompts

def test_a_100_kb_prompt_is_cut_to_512_tokens(tmp_path):
    code, _, err, peak = run("generate", "rain " * 20_000, "--duration", "0.2", "--out", "out.wav", cwd=tmp_path)
    assert code == 0, err
    one_line(err, "cut to T5's 512")
    assert 0 < peak < LIMIT


def test_many_prompts_run_in_batches_from_a_file(tmp_path):
    prompts = [f"a fast high chiptune melody number {i}" for i in range(48)]
    (tmp_path / "prompts.txt").write_text("\n".join(prompts) + "\n\n")
    code, out, err, peak = run("generate", "--prompts", "prompts.txt", "--batch-size", "16", "--duration", "0.2",
                               "--out", "out", cwd=tmp_path)
    assert code == 0, err
    assert len(list((tmp_path / "out").glob("*.wav"))) == 48 and out.count("wrote ") == 48
    assert 0 < peak < LIMIT
    code, out, err, _ = run("generate", "--prompts", "-", "--duration", "0.2", "--out", "stdin", cwd=tmp_path,
                            stdin="the sound of rain\nticking clock\n".encode())
    assert code == 0 and len(list((tmp_path / "stdin").glob("*.wav"))) == 2, err


def test_ctrl_c_leaves_whole_files_and_says_which(tmp_path):
    (tmp_path / "prompts.txt").write_text("\n".join(f"rain {i}" for i in range(200)))
    # Python's own Ctrl-C handler first: a suite started in the background (`pytest &`) hands its children
    # SIGINT ignored, and a child that inherits that never sees the Ctrl-C this test sends.
    command = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
               "from minicraft.cli import main; sys.exit(main())")
    child = subprocess.Popen([sys.executable, "-c", command, "generate", "--prompts", "prompts.txt",
                              "--batch-size", "1", "--duration", "0.5", "--out", "out"], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not list((tmp_path / "out").glob("*.wav")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    line = one_line(err.decode(), "interrupted; wrote")
    files = list((tmp_path / "out").iterdir())
    assert f"wrote {len(files)} of 200 files" in line
    for f in files:                                          # only complete files, no temporaries
        assert f.suffix == ".wav" and sf.info(str(f)).frames == 8000


@pytest.mark.parametrize("args, words", [
    (["generate", b"\xff\xfe".decode("utf-8", "surrogateescape")], ("not valid UTF-8",)),
    (["generate", "rain", "--seed", str(2**64)], ("--seed", "2^64")),
    (["generate", "rain", "--seed", "-1"], ("--seed",)),
    (["generate", "rain", "--out", "notes.txt"], ("not an audio file name",)),
    (["generate", "rain", "--batch-size", "0"], ("--batch-size",)),
    (["generate"], ("no prompts",)),
    (["generate", "--prompts", "missing.txt"], ("no such file",)),
    (["info", ""], ("model name is empty",)),
    (["info", "/etc"], ("not a model folder",)),
    (["explore", "rain", "--temperature", *[str(t / 100) for t in range(1, 101)], "--top-k", *map(str, range(1, 101)),
      "--seeds", "0", "1"], ("20,000 samples", "--yes")),
])
def test_bad_arguments_end_in_one_line(tmp_path, args, words):
    refused(args, *words, cwd=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_out_naming_a_folder_is_refused_before_generating(tmp_path):
    (tmp_path / "x.wav").mkdir()
    refused(["generate", "rain", "--out", "x.wav", "--force"], "is a folder", cwd=tmp_path)
    assert (tmp_path / "x.wav").is_dir()


def test_a_prompt_file_that_is_not_text(tmp_path):
    (tmp_path / "p.txt").write_bytes(b"rain\n\xff\xfe\x00")
    refused(["generate", "--prompts", "p.txt"], "not UTF-8 text", cwd=tmp_path)


# ---------------------------------------------------------------- models and their files

@pytest.fixture
def tiny_copy(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(TINY, folder)
    return folder


def edit_config(folder: Path, change):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(change(config)))


@pytest.mark.parametrize("change, words", [
    (lambda c: {**c, "decoder": {**c["decoder"], "num_attention_heads": 0}}, ("num_heads", ">= 1")),
    (lambda c: {**c, "decoder": {**c["decoder"], "num_hidden_layers": 10**6}}, ("num_hidden_layers", "weights hold 4")),
    (lambda c: {**c, "decoder": {**c["decoder"], "num_codebooks": 10**6}}, ("num_codebooks",)),
    (lambda c: {**c, "decoder": {**c["decoder"], "vocab_size": "256"}}, ("codebook_size", "whole number")),
    (lambda c: {**c, "audio_encoder": {**c["audio_encoder"], "sampling_rate": 0}}, ("sampling_rate",)),
    (lambda c: {**c, "audio_encoder": {**c["audio_encoder"], "upsampling_ratios": [0]}}, ("ratios",)),
    (lambda c: {k: v for k, v in c.items() if k != "decoder"}, ("no 'decoder' section",)),
    (lambda c: [c], ("holds a list",)),
])
def test_broken_configs_are_refused_before_anything_is_built(tiny_copy, tmp_path, change, words):
    edit_config(tiny_copy, change)
    start = time.monotonic()
    refused(["generate", "rain", "--model", str(tiny_copy), "--out", "out.wav"], *words, cwd=tmp_path)
    assert time.monotonic() - start < 60 and not (tmp_path / "out.wav").exists()


def test_a_corrupt_tokenizer_is_one_line(tiny_copy, tmp_path):
    (tiny_copy / "spiece.model").write_bytes(b"not a sentencepiece model")
    refused(["generate", "rain", "--model", str(tiny_copy), "--out", "out.wav"], "not a SentencePiece model",
            cwd=tmp_path)


@pytest.mark.parametrize("header", [b"[]", b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}}',
                                    b'{"w": {"shape": [2], "data_offsets": [0, 8]}}'])
def test_info_on_damaged_weights_is_one_line(tiny_copy, tmp_path, header):
    (tiny_copy / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    refused(["info", str(tiny_copy)], "model.safetensors", cwd=tmp_path)


def test_info_on_a_huge_header_length_and_a_four_byte_file(tiny_copy, tmp_path):
    (tiny_copy / "model.safetensors").write_bytes(struct.pack("<Q", 2**60) + b"{}")
    refused(["info", str(tiny_copy)], "model.safetensors", cwd=tmp_path)
    (tiny_copy / "model.safetensors").write_bytes(b"abcd")
    refused(["info", str(tiny_copy)], "model.safetensors", cwd=tmp_path)


# ---------------------------------------------------------------- the explorer

def test_explore_three_samples_into_a_new_folder_in_little_memory(tmp_path):
    """A fresh cache: the attribute classifier is trained here, its features a batch of clips at a time."""
    from minicraft.fast import kernels
    (tmp_path / "cache").mkdir()
    for built in kernels.cache_dir().glob("kernels-*.so"):           # only the classifier is new here
        shutil.copy(built, tmp_path / "cache" / built.name)
    code, out, err, peak = run("explore", "rain", "ticking clock", "a fast high chiptune melody", "--duration", "0.5",
                               "--out", "grid", cwd=tmp_path, env={"MINICRAFT_CACHE": str(tmp_path / "cache")})
    assert code == 0, err
    assert "(3 of 3 samples)" in out
    assert 0 < peak < 1.5 * GIB, peak / GIB
