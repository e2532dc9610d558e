"""--dtype auto / --quantize auto: the CPU's description, its measured figures (cached), and the choice."""
import json

import pytest
import torch

from minicraft import MusicGen, cli
from minicraft.fast import kernels, machine
from minicraft.fast.int8 import Int8Linear

AVX2 = machine.CPU("an AVX2 laptop", ["avx2", "fma", "f16c"], native_bf16=False)
BF16 = machine.CPU("a CPU with bfloat16", ["avx512f", "avx512_bf16"], native_bf16=True)


def test_the_cpu_is_described_from_what_it_reports():
    cpu = machine.cpu()
    assert cpu.model and set(cpu.flags) <= set(machine.VECTOR_FLAGS)
    assert cpu.native_bf16 == bool(machine.NATIVE_BF16 & set(cpu.flags))


def test_bfloat16_rows_only_where_the_cpu_computes_bfloat16():
    costs = {"float32": 100, "int8": 40, "bfloat16": 20, "int8 + bfloat16": 10}
    assert machine.choose(costs, AVX2)[0] == "int8"
    assert "no native bfloat16" in machine.choose(costs, AVX2)[1]
    assert machine.choose(costs, BF16)[0] == "int8 + bfloat16"


def test_int8_only_where_it_clearly_beats_float32():
    assert machine.choose({"float32": 100, "int8": 95, "bfloat16": 1, "int8 + bfloat16": 1}, AVX2)[0] == "float32"
    assert machine.choose({"float32": 100, "int8": 120, "bfloat16": 1, "int8 + bfloat16": 1}, AVX2)[0] == "float32"
    assert machine.choose({"float32": 100, "int8": 85, "bfloat16": 1, "int8 + bfloat16": 1}, AVX2)[0] == "int8"


class Fake:
    """Made-up figures for the profile, and the shapes each measurement was asked for."""
    def __init__(self):
        self.costs = {"float32": 100.0, "int8": 30.0, "bfloat16": 60.0, "int8 + bfloat16": 25.0}
        self.calls = []

    def time_products(self, dim, ffn, layers, **kwargs):
        self.calls.append((dim, ffn, layers))
        return dict(self.costs)


@pytest.fixture
def measured(monkeypatch, tmp_path):
    """A machine profile with made-up figures (an AVX2 CPU at 20 GB/s) in an empty cache."""
    monkeypatch.setenv("MINICRAFT_CACHE", str(tmp_path))
    fake = Fake()
    monkeypatch.setattr(machine, "time_products", fake.time_products)
    monkeypatch.setattr(machine, "bandwidth", lambda: 20.0)
    monkeypatch.setattr(machine, "cpu", lambda: AVX2)
    return fake


def test_measured_once_then_read_from_the_cache(measured, tmp_path, capsys):
    first = machine.profile(64, 256, 2)
    assert len(measured.calls) == 1 and "measuring this CPU once" in capsys.readouterr().err
    again = machine.profile(64, 256, 2)
    assert len(measured.calls) == 1 and again == first
    machine.profile(128, 256, 2)                                     # other shapes: measured for themselves
    assert len(measured.calls) == 2
    for path in tmp_path.glob("machine-*.json"):
        path.write_text("{not json")                                 # damaged: measured again, not a traceback
    machine.profile(64, 256, 2)
    rewritten = max(tmp_path.glob("machine-*.json"), key=lambda path: path.stat().st_mtime_ns)   # not the 128's
    assert len(measured.calls) == 3 and json.loads(rewritten.read_text())["choice"]


@pytest.mark.skipif(kernels.library() is None, reason="no C compiler here")
def test_auto_is_the_measured_choice_on_the_cpu_fast_path_only(measured):
    model = MusicGen.get_pretrained("tiny", device="cpu", fast=True)            # int8 measured fastest (30 < 90)
    assert isinstance(model.lm.transformer.layers[0].linear1, Int8Linear)
    assert model.lm.emb[0].weight.dtype == torch.float32                        # float32 rows: no native bf16
    assert measured.calls == [(model.lm.config.dim, model.lm.config.ffn_dim, model.lm.config.num_layers)]
    reference = MusicGen.get_pretrained("tiny", device="cpu")                   # the course's path: float32
    assert not isinstance(reference.lm.transformer.layers[0].linear1, Int8Linear)
    pinned = MusicGen.get_pretrained("tiny", device="cpu", fast=True, quantize=None)
    assert not isinstance(pinned.lm.transformer.layers[0].linear1, Int8Linear)
    assert len(measured.calls) == 1                                              # the cache served the rest


@pytest.mark.skipif(kernels.library() is None, reason="no C compiler here")
def test_a_close_call_stays_float32(measured):
    measured.costs["int8"] = 97.0
    model = MusicGen.get_pretrained("tiny", device="cpu", fast=True)
    assert not isinstance(model.lm.transformer.layers[0].linear1, Int8Linear)


def test_info_device_prints_the_figures_and_the_choice(measured, capsys):
    assert cli.main(["info", "--device"]) == 0
    out = capsys.readouterr().out
    assert "CPU: an AVX2 laptop" in out and "avx2 fma f16c" in out and "native bfloat16: no" in out
    assert "20.0 GB/s" in out
    for name in machine.SETTINGS:
        assert f"  {name} " in out
    assert "pick int8 (--dtype float32 --quantize int8)" in out and "no native bfloat16" in out
    floor = machine.step_megabytes(1024, 4096, 24)["int8"] / 20.0
    assert f"{floor:.1f}" in out                                               # the floor at the bandwidth


def test_info_without_a_model_or_device_says_what_to_give(capsys):
    assert cli.main(["info"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "minicraft info --device" in err[0]
