"""Every fast path gives the plain path's tokens in float32; reduced precision stays within its stated error.

The stated errors (docs/speed.md, "Precision of each path"; `benchmarks/generate.py precision`) are measured on
the shipped tiny model, 4 prompts one at a time (so bfloat16 and int8 layers run as layer_step calls), 100
greedy steps with CFG 3, logits teacher-forced through the KV cache; the bounds below leave room around those
measurements.
"""
from collections import Counter

import pytest
import torch

from minicraft import MusicGen, layerstep, matvec
from minicraft.attention import MultiheadAttention
from minicraft.precision import compare
from minicraft.quantize import Int8Linear, quantize_rows

PROMPTS = ["a fast high chiptune melody in major", "the sound of rain", "a slow low flute melody in minor",
           "ticking clock"]


@pytest.fixture(scope="module")
def reference():
    return MusicGen.get_pretrained("tiny", device="cpu")


def greedy(model, fast: bool):
    for module in model.lm.modules():
        if isinstance(module, (MultiheadAttention, Int8Linear)):
            module.fast = fast
    model.set_generation_params(duration=1.0, use_sampling=False)
    _, tokens = model.generate(PROMPTS, return_tokens=True)
    return tokens


def test_fused_attention_gives_the_plain_tokens(reference):
    try:
        assert torch.equal(greedy(reference, fast=True), greedy(reference, fast=False))
    finally:
        for module in reference.lm.modules():                 # the fixture is shared: back to the default
            if isinstance(module, MultiheadAttention):
                module.fast = True


@pytest.mark.parametrize("prompt", PROMPTS)
def test_float32_layer_step_gives_the_plain_tokens(reference, prompt, monkeypatch):
    """One prompt (2 rows with CFG), so each float32 layer's step runs in matvec.c; against PyTorch's layers."""
    reference.set_generation_params(duration=1.0, use_sampling=False)
    tokens = {}
    for enabled in (True, False):
        monkeypatch.setattr(layerstep, "enabled", enabled)
        _, tokens[enabled] = reference.generate([prompt], return_tokens=True)
    assert torch.equal(tokens[True], tokens[False])


def test_int8_fast_path_gives_the_dequantized_tokens():
    model = MusicGen.get_pretrained("tiny", device="cpu", quantize="int8")
    assert sum(isinstance(m, Int8Linear) for m in model.lm.modules()) == 4 * 6 + 4   # per layer 6, and 4 heads
    assert not any(p.dtype == torch.float32 and p.dim() == 2 and p.shape[0] == 3 * 192
                   for p in model.lm.parameters()), "the float in_proj weights must be gone"
    assert torch.equal(greedy(model, fast=True), greedy(model, fast=False))


def test_quantize_rows_error_is_half_a_step():
    w = torch.randn(64, 32) * torch.logspace(-3, 1, 64)[:, None]          # rows of very different scale
    q, scale = quantize_rows(w)
    assert q.dtype == torch.int8 and q.abs().max() <= 127
    assert ((q.float() * scale[:, None] - w).abs() <= scale[:, None] / 2 + 1e-7).all()


@pytest.mark.parametrize("kwargs, max_mean_diff, min_teacher_forced", [
    # measured on the tiny model whose LM was retrained on partly wrong captions (2026-12-06, later), matvec
    # kernels (the earlier 2026-12-06 LM: 0.055 / 90.9 %, 0.0131 / 97.5 %, 0.057 / 91.2 %)
    (dict(dtype="bfloat16"), 0.085, 0.86),                    # measured: 0.0545 std, 92.8 %
    (dict(quantize="int8"), 0.02, 0.96),                      # measured: 0.0129 std, 98.1 %
    (dict(dtype="bfloat16", quantize="int8"), 0.085, 0.86),   # measured: 0.0561 std, 92.4 %
])
@pytest.mark.parametrize("kernels", [True, False], ids=["matvec kernels", "pytorch kernels"])
def test_reduced_precision_within_stated_error(reference, kwargs, max_mean_diff, min_teacher_forced, kernels,
                                               monkeypatch):
    monkeypatch.setattr(matvec, "enabled", kernels)
    report = compare(reference, MusicGen.get_pretrained("tiny", device="cpu", **kwargs), PROMPTS, steps=100)
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
    tokens = {}
    for decoding in ("plain", "static"):
        reference.set_generation_params(duration=1.0, decoding=decoding, **settings)
        torch.manual_seed(0)
        _, tokens[decoding] = reference.generate(PROMPTS[:2], return_tokens=True)
    assert torch.equal(tokens["plain"], tokens["static"])


def test_static_cache_continues_and_generates_unconditionally(reference):
    tokens = {}
    prompt = torch.sin(torch.arange(8000) / 16000 * 2 * torch.pi * 440)[None, None]   # 0.5 s of A4
    for decoding in ("plain", "static"):
        reference.set_generation_params(duration=1.5, decoding=decoding)
        torch.manual_seed(1)
        _, continued = reference.generate_continuation(prompt, 16000, ["a flute"], return_tokens=True)
        _, free = reference.generate_unconditional(2, return_tokens=True)
        tokens[decoding] = continued, free
    assert all(torch.equal(a, b) for a, b in zip(tokens["plain"], tokens["static"]))
    reference.set_generation_params()


def test_cuda_graphs_need_cuda(reference):
    with pytest.raises(ValueError, match="needs a CUDA device"):
        reference.set_generation_params(decoding="cuda-graph")
    with pytest.raises(ValueError, match="decoding must be one of"):
        reference.set_generation_params(decoding="fast")


@pytest.mark.skipif(matvec.library() is None, reason="no C compiler here")
def test_decoding_steps_use_the_kernels(monkeypatch):
    """Every layer of every step after the first runs in matvec.c's layer_step (so the float32 token tests above
    compare it with the plain path); with bfloat16/int8 weights every product does, alone or inside it."""
    products, layer_steps = Counter(), Counter()
    real_product, real_layer = matvec.kernel_linear, layerstep.layer_step

    def counting_product(x, weight, *args):
        products[weight.dtype] += 1
        return real_product(x, weight, *args)

    def counting_layer(layer, *args):
        y = real_layer(layer, *args)
        layer_steps[layer.linear1.weight.dtype] += y is not None
        return y

    monkeypatch.setattr(matvec, "kernel_linear", counting_product)
    monkeypatch.setattr(layerstep, "layer_step", counting_layer)
    model = MusicGen.get_pretrained("tiny", device="cpu")                  # float32: layer_step, PyTorch's heads
    model.set_generation_params(duration=0.2)
    model.generate(PROMPTS[:1])
    assert (products[torch.float32], layer_steps[torch.float32]) == (0, 12 * 4), (products, layer_steps)
    for kwargs, dtype in ((dict(dtype="bfloat16"), torch.bfloat16), (dict(quantize="int8"), torch.int8)):
        model = MusicGen.get_pretrained("tiny", device="cpu", **kwargs)
        model.set_generation_params(duration=0.2)                       # 10 frames: 13 steps with the delays
        model.generate(PROMPTS[:1])
        # The first step projects the text in PyTorch, its 4 layers' 6 products each through the kernel;
        # the 12 after it run each layer in one layer_step. The 4 output heads always take the kernel.
        assert (products[dtype], layer_steps[dtype]) == (4 * 6 + 13 * 4, 12 * 4), (products, layer_steps)
