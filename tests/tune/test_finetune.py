"""``minicraft finetune`` as a user meets it: the three data layouts, the run folder, Ctrl-C and resuming,
generating from the result, and every bad input refused in one line before anything is written."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

import minicraft
from minicraft.cli import main
from minicraft.tune import train as tune_train
from minicraft.tune.data import find_examples

CAPTION = "a telephone ringing"


def ring(seconds: float, rate: int, seed: int) -> np.ndarray:
    """A telephone ring (440 + 480 Hz, 0.4 s on, 0.2 s off), a sound the toy world does not have."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    detune = 1 + 0.02 * rng.standard_normal()
    return (0.3 * ((t % 0.6) < 0.4) * (np.sin(2 * np.pi * 440 * detune * t) + np.sin(2 * np.pi * 480 * detune * t))
            ).astype(np.float32)


def write_sounds(folder, count: int = 12, captions: bool = True):
    """Files as users have them: several rates, mono and stereo, 1.5 to 4.5 s."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rate = (22050, 44100, 16000, 48000)[i % 4]
        wav = ring(1.5 + 3 * (i % 3) / 2, rate, i)
        sf.write(folder / f"ring_{i:02d}.wav", np.stack([wav, 0.8 * wav], 1) if i % 3 == 0 else wav, rate)
        if captions:
            (folder / f"ring_{i:02d}.txt").write_text(CAPTION + "\n")
    return folder


SMALL_RUN = ["--steps", "6", "--batch-size", "4", "--checkpoint-every", "3"]


def test_finetune_interrupt_resume_generate(tmp_path, monkeypatch, capsys):
    """Ctrl-C at step 4 saves; the same command resumes and ends where an uninterrupted run ends; then
    ``generate --model RUN`` loads the base with the adapter."""
    data = write_sounds(tmp_path / "sounds")
    assert main(["finetune", str(data), "--out", str(tmp_path / "straight"), *SMALL_RUN]) == 0

    class StopAtStep4(tune_train.ProgressBar):
        def __call__(self, done, total, note=""):
            if done == 4:
                raise KeyboardInterrupt
    monkeypatch.setattr(tune_train, "ProgressBar", StopAtStep4)
    run = tmp_path / "run"
    assert main(["finetune", str(data), "--out", str(run), *SMALL_RUN]) == 130
    assert "stopped at step 4" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["finetune", str(data), "--out", str(run), *SMALL_RUN]) == 0
    assert "resuming at step 4" in capsys.readouterr().out

    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(run / "checkpoint.pt", weights_only=True)
    assert resumed["step"] == straight["step"] == 6
    for name, tensor in straight["adapter"].items():
        torch.testing.assert_close(resumed["adapter"][name], tensor)
    rows = (run / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["step", "1", "2", "3", "4", "5", "6"]
    assert {p.name for p in run.iterdir()} >= {"adapter.safetensors", "adapter_config.json", "checkpoint.pt",
                                               "log.csv", "loss.png", "run.json", "codes.pt"}
    assert json.loads((run / "run.json").read_text())["layout"] == "audio files with .txt captions"

    out = tmp_path / "ring.wav"
    assert main(["generate", CAPTION, "--model", str(run), "--duration", "0.5", "--seed", "0", "--out", str(out)]) == 0
    assert sf.info(str(out)).frames == 8000


def test_python_api_merge_and_cache(tmp_path, capsys):
    """``minicraft.finetune``; the merged folder loads like any model; a changed file alone is re-encoded."""
    data = write_sounds(tmp_path / "sounds", count=4)
    run = minicraft.finetune(data, model="audiogen-tiny", out=tmp_path / "run", steps=2, batch=2, merge=True,
                             progress=False)
    assert "encoding 4 of 4 files" in capsys.readouterr().out
    merged = minicraft.AudioGen.get_pretrained(str(run / "merged"), device="cpu")
    adapted = minicraft.AudioGen.get_pretrained(str(run), device="cpu")
    codes = torch.randint(0, 256, (1, 4, 10))
    with torch.no_grad():
        cond, _ = merged.conditioner([CAPTION])
        torch.testing.assert_close(merged.lm(codes, cond), adapted.lm(codes, cond), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="trained on an AudioGen; load it with AudioGen.get_pretrained"):
        minicraft.MusicGen.get_pretrained(str(run), device="cpu")      # the tiny MusicGen has the same shapes
    sf.write(data / "ring_01.wav", ring(2.0, 16000, 99), 16000)
    minicraft.finetune(data, model="audiogen-tiny", out=tmp_path / "run", steps=3, batch=2, progress=False)
    assert "encoding 1 of 4 files" in capsys.readouterr().out


def test_metadata_and_audiocraft_manifest_layouts(tmp_path):
    data = write_sounds(tmp_path / "meta", count=3, captions=False)
    (data / "metadata.jsonl").write_text("".join(json.dumps({"file_name": f"ring_{i:02d}.wav", "text": CAPTION}) + "\n"
                                                 for i in range(3)))
    examples, layout = find_examples(data)
    assert layout == "metadata.jsonl" and [e.caption for e in examples] == [CAPTION] * 3

    egs = write_sounds(tmp_path / "egs", count=3, captions=False)
    lines = []
    for i in range(3):
        path = egs / f"ring_{i:02d}.wav"
        info = sf.info(str(path))
        lines.append(json.dumps(dict(path=str(path), duration=info.duration, sample_rate=info.samplerate)))
        path.with_suffix(".json").write_text(json.dumps({"description": CAPTION, "title": "", "bpm": ""}))
    (egs / "data.jsonl").write_text("\n".join(lines) + "\n")
    examples, layout = find_examples(egs)
    assert layout == "audiocraft manifest data.jsonl" and len(examples) == 3
    assert find_examples(egs / "data.jsonl")[0] == examples


def bad(tmp_path, case):
    data = tmp_path / "data"
    if case == "empty folder":
        data.mkdir()
    elif case == "no caption":
        write_sounds(data, count=3)
        (data / "ring_01.txt").unlink()
    elif case == "unreadable audio":
        write_sounds(data, count=3)
        (data / "ring_02.wav").write_bytes(b"RIFF not really a wav file")
    elif case == "silent audio":
        write_sounds(data, count=3)
        sf.write(data / "ring_02.wav", np.zeros(16000, np.float32), 16000)
    else:
        write_sounds(data, count=3)
    return data


@pytest.mark.parametrize("case, message", [
    ("empty folder", "no audio files"),
    ("no caption", "1 of 3 audio files have no caption"),
    ("unreadable audio", "ring_02.wav: cannot read this audio file"),
    ("silent audio", "ring_02.wav is silent"),
    ("unknown model", "unknown model name 'smal'"),
    ("another model's run", "holds a run of 'tiny' with other settings"),
    ("a folder of other things", "is not empty and holds no minicraft run"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, case, message):
    data = bad(tmp_path, case)
    out = tmp_path / "run"
    args = ["finetune", str(data), "--out", str(out), *SMALL_RUN]
    if case == "another model's run":
        assert main(args[:-6] + ["--steps", "1", "--batch-size", "2"]) == 0
        before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
        args += ["--model", "audiogen-tiny"]
    if case == "a folder of other things":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    if case == "unknown model":
        args += ["--model", "smal"]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    if case == "another model's run":
        assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    elif case == "a folder of other things":
        assert [p.name for p in out.iterdir()] == ["notes.txt"]
    else:
        assert not out.exists()


def test_a_file_that_fails_while_decoded_is_reported_and_skipped(tmp_path, monkeypatch, capsys):
    from minicraft.tune import data as tune_data
    sounds = write_sounds(tmp_path / "sounds", count=4)
    real = tune_data.encode_file

    def flaky(codec, path, info, seconds):
        if path.name == "ring_02.wav":
            raise RuntimeError("Error: unexpected end of data in the middle of the file")
        return real(codec, path, info, seconds)
    monkeypatch.setattr(tune_data, "encode_file", flaky)
    run = minicraft.finetune(sounds, out=tmp_path / "run", steps=2, batch=2, progress=False)
    err = capsys.readouterr().err
    assert "minicraft: skipping" in err and "ring_02.wav: Error: unexpected end of data" in err
    assert (run / "adapter.safetensors").is_file()
    assert len(torch.load(run / "codes.pt", weights_only=True)["entries"]) == 3      # the other three, cached


def test_a_merged_tiny_musicgen_is_sampled_as_its_base(tmp_path):
    """The merged folder's generation_config.json keeps the base's recommended temperature (0.7)."""
    run = minicraft.finetune(write_sounds(tmp_path / "sounds", count=4), model="tiny", out=tmp_path / "run", steps=1,
                             batch=2, merge=True, progress=False)
    assert json.loads((run / "merged" / "generation_config.json").read_text())["temperature"] == 0.7
    assert minicraft.MusicGen.get_pretrained(str(run / "merged"), device="cpu").generation_params["temperature"] == 0.7
