"""The fast path gives the reference path's tokens in float32; reduced precision stays within its stated error;
a learner's edit runs on the reference path and is refused, with the replaced modules named, on the fast path.

The stated errors (docs/speed.md, "Precision of each path"; `benchmarks/generate.py precision`) are measured on
the shipped tiny model, 4 prompts one at a time (so bfloat16 and int8 layers run as layer_step calls), 100
greedy steps with CFG 3, logits teacher-forced through the KV cache; the bounds below leave room around those
measurements.
"""
from collections import Counter

import pytest
import torch

from minicraft import MusicGen
from minicraft.fast import accelerate, kernels, replacements, restore, summary
from minicraft.fast import layer_step as layerstep
from minicraft.fast.int8 import Int8Linear, quantize_rows
from minicraft.fast.precision import compare
from minicraft.modules import attention as attention_module

FLOAT32 = dict(dtype="float32", quantize=None)      # not "auto": the same setting on every CPU
PROMPTS = ["a fast high chiptune melody in major", "a medium mid plucked string melody in major",
           "a slow low flute melody in minor", "a fast drum beat"]


@pytest.fixture(scope="module")
def reference():
    return MusicGen.get_pretrained("tiny", device="cpu")


@pytest.fixture(scope="module")
def fast():
    return MusicGen.get_pretrained("tiny", device="cpu", fast=True, **FLOAT32)


def greedy(model, prompts=PROMPTS, duration=1.0):
    model.set_generation_params(duration=duration, use_sampling=False)
    _, tokens = model.generate(prompts, return_tokens=True)
    return tokens


def test_the_textbook_attention_gives_the_fused_tokens(reference, monkeypatch):
    fused = greedy(reference)
    monkeypatch.setattr(attention_module, "attention", attention_module.attention_plain)
    assert torch.equal(greedy(reference), fused)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_float32_fast_path_gives_the_reference_tokens(reference, fast, prompt):
    """One prompt (2 rows with CFG), so each float32 layer's step runs in kernels.c; against the reference."""
    assert torch.equal(greedy(fast, [prompt]), greedy(reference, [prompt]))


def test_a_learners_edit_runs_on_the_reference_path():
    model = MusicGen.get_pretrained("tiny", device="cpu")
    before = greedy(model)
    for layer in model.lm.transformer.layers:
        layer.activation = torch.nn.ReLU()
    assert not torch.equal(greedy(model), before)


def test_on_the_fast_path_an_edit_is_refused_naming_the_replaced_modules():
    model = MusicGen.get_pretrained("tiny", device="cpu", fast=True, **FLOAT32)
    model.lm.transformer.layers[1].activation = torch.nn.ReLU()
    with pytest.raises(layerstep.EditedLayer, match=r"lm\.transformer\.layers\.1\.activation is now ReLU\(\).*"
                       r"FastTransformerLayer.*restore\(model\)"):
        greedy(model)
    restore(model)                                   # the reference classes again: now the edit runs
    assert replacements(model) == [] and "reference path" in summary(model)
    assert not torch.equal(greedy(model), greedy(MusicGen.get_pretrained("tiny", device="cpu")))


def test_info_says_what_the_fast_path_replaced(fast, reference, capsys):
    fast.info()
    out = capsys.readouterr().out
    assert "FastTransformerLayer for TransformerLayer" in out and "lm.transformer.layers.0" in out
    assert "PolyphaseConvTranspose1d for ConvTranspose1d" in out and "codec.decoder" in out
    reference.info()
    assert "reference path" in capsys.readouterr().out
    names = {name for name, _ in replacements(fast)}
    assert {"lm", "lm.transformer.layers.3", "codec.decoder"} <= names
    assert not any(name.startswith("conditioner") for name in names)      # T5 runs once per prompt: as it is


def test_int8_cannot_be_restored():
    model = MusicGen.get_pretrained("tiny", device="cpu", quantize="int8")
    with pytest.raises(ValueError, match="int8 weights .* cannot be made float again"):
        restore(model)


def test_int8_fast_path_gives_the_dequantized_tokens():
    model = MusicGen.get_pretrained("tiny", device="cpu", quantize="int8")
    assert sum(isinstance(m, Int8Linear) for m in model.lm.modules()) == 4 * 6 + 4   # per layer 6, and 4 heads
    assert not any(p.dtype == torch.float32 and p.dim() == 2 and p.shape[0] == 3 * 192
                   for p in model.lm.parameters()), "the float in_proj weights must be gone"
    with_kernels = greedy(model)
    kernels.enabled = False                                  # dequantized, in PyTorch
    try:
        assert torch.equal(greedy(model), with_kernels)
    finally:
        kernels.enabled = True


def test_quantize_rows_error_is_half_a_step():
    w = torch.randn(64, 32) * torch.logspace(-3, 1, 64)[:, None]          # rows of very different scale
    q, scale = quantize_rows(w)
    assert q.dtype == torch.int8 and q.abs().max() <= 127
    assert ((q.float() * scale[:, None] - w).abs() <= scale[:, None] / 2 + 1e-7).all()


@pytest.mark.parametrize("kwargs, max_mean_diff, min_teacher_forced", [
    # measured on the tiny MusicGen of 2026-12-07 (instruments, trained on windows of scenes), C kernels, Intel
    # Xeon (PyTorch's kernels: 0.0524 / 94.8 %, 0.0119 / 98.9 %, 0.0538 / 94.5 %); the LM before it gave
    # 0.0545 / 92.8 %, 0.0129 / 98.1 %, 0.0561 / 92.4 %
    (dict(dtype="bfloat16"), 0.085, 0.86),                    # measured: 0.0521 std, 95.2 %
    (dict(quantize="int8"), 0.02, 0.96),                      # measured: 0.0119 std, 98.9 %
    (dict(dtype="bfloat16", quantize="int8"), 0.085, 0.86),   # measured: 0.0544 std, 95.2 %
])
@pytest.mark.parametrize("use_kernels", [True, False], ids=["C kernels", "pytorch kernels"])
def test_reduced_precision_within_stated_error(reference, kwargs, max_mean_diff, min_teacher_forced, use_kernels,
                                               monkeypatch):
    monkeypatch.setattr(kernels, "enabled", use_kernels)
    candidate = MusicGen.get_pretrained("tiny", device="cpu", fast=True, **{**FLOAT32, **kwargs})
    report = compare(reference, candidate, PROMPTS, steps=100)
    assert report.mean_logit_diff <= max_mean_diff
    assert report.teacher_forced_agreement >= min_teacher_forced
    assert 0 < report.greedy_agreement <= 1


def test_float32_against_itself_is_exact(reference):
    report = compare(reference, MusicGen.get_pretrained("tiny", device="cpu"), PROMPTS[:2], steps=20)
    assert (report.max_logit_diff, report.teacher_forced_agreement, report.greedy_agreement) == (0, 1, 1)


def test_unknown_quantization_is_refused():
    with pytest.raises(ValueError, match="int8"):
        MusicGen.get_pretrained("tiny", device="cpu", quantize="int4")


@pytest.mark.parametrize("settings", [dict(use_sampling=False), dict(use_sampling=False, two_step_cfg=True),
                                      dict(use_sampling=True, top_k=50), dict(use_sampling=True, cfg_coef=1.0)])
def test_static_cache_gives_the_plain_tokens(reference, settings):
    model = MusicGen.get_pretrained("tiny", device="cpu")
    tokens = {}
    for decoding in ("reference", "static"):
        if decoding == "static":
            accelerate(model, decoding="static")
        model.set_generation_params(duration=1.0, **settings)
        torch.manual_seed(0)
        _, tokens[decoding] = model.generate(PROMPTS[:2], return_tokens=True)
    assert torch.equal(tokens["reference"], tokens["static"])


def test_static_cache_continues_and_generates_unconditionally():
    model = MusicGen.get_pretrained("tiny", device="cpu", fast=True, **FLOAT32)
    tokens = {}
    prompt = torch.sin(torch.arange(8000) / 16000 * 2 * torch.pi * 440)[None, None]   # 0.5 s of A4
    for decoding in ("plain", "static"):
        accelerate(model, decoding=decoding)
        model.set_generation_params(duration=1.5)
        torch.manual_seed(1)
        _, continued = model.generate_continuation(prompt, 16000, ["a flute"], return_tokens=True)
        _, free = model.generate_unconditional(2, return_tokens=True)
        tokens[decoding] = continued, free
    assert all(torch.equal(a, b) for a, b in zip(tokens["plain"], tokens["static"]))


def test_cuda_graphs_need_cuda():
    model = MusicGen.get_pretrained("tiny", device="cpu")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        accelerate(model, decoding="cuda-graph")
    with pytest.raises(ValueError, match="decoding must be one of"):
        accelerate(model, decoding="fast")
    assert replacements(model) == []                  # refused before anything was replaced


@pytest.mark.skipif(kernels.library() is None, reason="no C compiler here")
def test_decoding_steps_use_the_kernels(monkeypatch):
    """Every layer of every step after the first runs in kernels.c's layer_step (so the float32 token tests above
    compare it with the plain path); with bfloat16/int8 weights every product does, alone or inside it."""
    products, layer_steps = Counter(), Counter()
    real_product, real_layer = kernels.kernel_linear, layerstep.layer_step

    def counting_product(x, weight, *args):
        products[weight.dtype] += 1
        return real_product(x, weight, *args)

    def counting_layer(layer, *args):
        y = real_layer(layer, *args)
        layer_steps[layer.linear1.weight.dtype] += y is not None
        return y

    monkeypatch.setattr(kernels, "kernel_linear", counting_product)
    monkeypatch.setattr(layerstep, "layer_step", counting_layer)
    model = MusicGen.get_pretrained("tiny", device="cpu", fast=True, **FLOAT32)       # float32: layer_step, PyTorch's heads
    model.set_generation_params(duration=0.2)
    model.generate(PROMPTS[:1])
    assert (products[torch.float32], layer_steps[torch.float32]) == (0, 12 * 4), (products, layer_steps)
    for kwargs, dtype in ((dict(dtype="bfloat16"), torch.bfloat16), (dict(quantize="int8"), torch.int8)):
        model = MusicGen.get_pretrained("tiny", device="cpu", fast=True, **{**FLOAT32, **kwargs})
        model.set_generation_params(duration=0.2)                       # 10 frames: 13 steps with the delays
        model.generate(PROMPTS[:1])
        # The first step projects the text in PyTorch, its 4 layers' 6 products each through the kernel;
        # the 12 after it run each layer in one layer_step. The 4 output heads always take the kernel.
        assert (products[dtype], layer_steps[dtype]) == (4 * 6 + 13 * 4, 12 * 4), (products, layer_steps)
