"""musicgen-melody's conditioner: the chroma's length rules, the null melody, and Demucs only where it is."""
import math
import sys
import types

import torch

from minicraft.models import melody as melody_module
from minicraft.models.melody import MelodyConditioner, find_demucs
from minicraft.modules.chroma import chroma


def notes(seconds: float, rate: int = 32000, pitches=(60, 62, 64, 65, 67)) -> torch.Tensor:
    """[1, T]: the pitches in turn, each for 0.5 s, repeating."""
    t = torch.arange(int(seconds * rate)) / rate
    pitch = torch.tensor(pitches)[(t / 0.5).long() % len(pitches)]
    return 0.5 * torch.sin(2 * math.pi * 440 * 2 ** ((pitch - 69) / 12) * t)[None]


def conditioner(frames: int = 235) -> MelodyConditioner:
    torch.manual_seed(0)
    return MelodyConditioner(dim=8, frames=frames)


def test_no_melody_is_a_held_c():
    m = conditioner()
    out = m.chroma([None], 32000)
    assert out.shape == (1, 235, 12) and (out[..., 0] == 1).all() and out[..., 1:].sum() == 0
    prefix = m([None], 32000)
    torch.testing.assert_close(prefix[0], (m.output_proj.weight[:, 0] + m.output_proj.bias).expand(235, -1))


def test_a_long_melody_is_cut_and_reading_only_its_start_changes_nothing():
    """A 40-s melody: the LM sees its first 235 frames; the conditioner reads ~30.5 s of it, exactly."""
    wav = notes(40.0)
    full = chroma(wav[None], 32000)[:, :235]
    assert torch.equal(conditioner().chroma([wav], 32000), full)


def test_a_short_melody_repeats():
    wav = notes(2.0)                                           # 2 s -> 16 chroma frames, tiled to 235
    once = chroma(wav[None], 32000)
    out = conditioner().chroma([wav], 32000)
    assert once.shape[1] == 16
    assert torch.equal(out[0, :16], once[0]) and torch.equal(out[0, 16:32], once[0])


def test_each_melody_is_its_own_length_in_a_batch():
    """A short melody next to a long one gives what it gives alone (audiocraft would pad it with silence)."""
    m = conditioner()
    short, long = notes(2.0), notes(8.0, pitches=(69, 71))
    assert torch.equal(m.chroma([short, long, None], 32000)[0], m.chroma([short], 32000)[0])


def test_stereo_and_other_rates():
    m = conditioner()
    wav = notes(3.0, rate=44100)
    stereo = torch.cat([wav, 0.5 * wav])
    torch.testing.assert_close(m.chroma([stereo], 44100), m.chroma([0.75 * wav], 44100))
    assert torch.equal(m.chroma([wav], 44100).argmax(-1)[0, :3], torch.tensor([0, 0, 0]))   # C (60) first


def test_demucs_is_used_only_with_its_package_and_weights(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "demucs", None)           # not installed: the mix, no download attempted
    assert find_demucs() is None

    fake = types.SimpleNamespace(samplerate=44100, audio_channels=2, sources=["drums", "bass", "other", "vocals"],
                                 eval=lambda: fake)
    pretrained = types.ModuleType("demucs.pretrained")
    pretrained.get_model = lambda name: fake
    monkeypatch.setitem(sys.modules, "demucs", types.ModuleType("demucs"))
    monkeypatch.setitem(sys.modules, "demucs.pretrained", pretrained)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert find_demucs() is None                               # installed, but its weights are not here
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / melody_module.HTDEMUCS_WEIGHTS).write_bytes(b"")
    assert find_demucs() is fake

    def apply_model(model, wav, device):                       # stems: drums, bass, other, vocals
        assert model is fake and wav.shape[1] == 2
        return torch.stack([torch.zeros_like(wav), torch.zeros_like(wav), wav, torch.zeros_like(wav)], dim=1)
    apply = types.ModuleType("demucs.apply")
    apply.apply_model = apply_model
    monkeypatch.setitem(sys.modules, "demucs.apply", apply)
    m = conditioner()
    m.demucs = fake
    wav = notes(3.0)
    torch.testing.assert_close(m.chroma([wav], 32000), conditioner().chroma([wav], 32000))   # "other" is the tune
