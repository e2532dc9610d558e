"""Property-based tests (hypothesis) for the readers of what users and files give: the resampler, the
safetensors header parser, the config checks and the prompt reader.

Derandomized (the same examples on every run and machine), with the example count stated on each test.
"""
import argparse
import json
import math
import struct

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from minicraft import audio
from minicraft.cli import UserError, read_prompts
from minicraft.formats.checkpoints import CheckpointError, tensor_layout
from minicraft.models.lm import LMConfig
from minicraft.modules.seanet import SEANetConfig

EINSUM = torch.einsum
SETTINGS = dict(derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
rates = st.integers(audio.MIN_RATE, audio.MAX_RATE)


@settings(max_examples=150, **SETTINGS)
@given(old=rates, new=rates, length=st.integers(1, 300))
def test_resampling_any_two_rates(old, new, length, monkeypatch):
    """Length new·T/old (reduced), DC gain 1, and never more than a block of gathered samples at once."""
    assume(new * length <= 50_000 * old)                 # outputs, not inputs, set the time: keep each example short
    largest = []

    def watched(equation, inputs, weights):
        largest.append(inputs.numel())
        return EINSUM(equation, inputs, weights)
    monkeypatch.setattr(torch, "einsum", watched)
    level = torch.full((2, length), 0.25)
    out = audio.resample(level, old, new)
    g = math.gcd(old, new)
    assert out.shape == (2, (new // g) * length // (old // g))
    if out.numel():
        torch.testing.assert_close(out, torch.full_like(out, 0.25), rtol=0, atol=1e-5)
    assert max(largest, default=0) <= 2 * audio.BLOCK


@settings(max_examples=40, **SETTINGS)
@given(rate=st.one_of(st.integers(-10, 0), st.integers(audio.MAX_RATE + 1, 2**40)))
def test_rates_out_of_range_are_one_line(rate):
    with pytest.raises(ValueError, match="from 1 to 1,000,000"):
        audio.resample(torch.zeros(1, 10), rate, 16000)


def safetensors_bytes(header, data: bytes) -> bytes:
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack("<Q", len(raw)) + raw + data


entries = st.fixed_dictionaries({"dtype": st.sampled_from(["F32", "F16", "BF16", "I8", "I64", "U8", "F64", "X"]),
                                 "shape": st.lists(st.integers(-2, 5), max_size=3),
                                 "data_offsets": st.lists(st.integers(-4, 200), min_size=0, max_size=3)})
headers = st.one_of(st.dictionaries(st.text(max_size=5), entries, max_size=4),
                    st.dictionaries(st.text(max_size=5), st.one_of(st.none(), st.integers(), st.text()), max_size=3),
                    st.lists(st.integers(), max_size=3), st.binary(max_size=40))


@settings(max_examples=300, **SETTINGS)
@given(header=headers, data=st.binary(max_size=200))
def test_any_safetensors_header_reads_correctly_or_says_why(tmp_path, header, data):
    path = tmp_path / "w.safetensors"
    path.write_bytes(safetensors_bytes(header, data))
    try:
        layout = tensor_layout(path)
    except CheckpointError as error:
        assert "\n" not in str(error)
        return
    body = len(data)
    for name, dtype, shape, begin, end in layout:      # a correct read: inside the file, sized as declared
        assert 0 <= begin <= end <= body
        assert end - begin == math.prod(shape) * dtype.itemsize


@settings(max_examples=200, **SETTINGS)
@given(fields=st.fixed_dictionaries({}, optional={
    name: st.one_of(st.integers(-3, 2**21), st.floats(allow_nan=True), st.text(max_size=3), st.booleans())
    for name in ("dim", "num_heads", "num_layers", "ffn_dim", "num_codebooks", "codebook_size")}))
def test_any_lm_config_is_valid_or_refused_in_one_line(fields):
    try:
        config = LMConfig(**fields, **({} if "num_codebooks" in fields else {}))
    except ValueError as error:
        assert "\n" not in str(error)
        return
    assert config.dim % config.num_heads == 0 and config.num_layers >= 1 and len(config.delays) == config.num_codebooks


@settings(max_examples=100, **SETTINGS)
@given(ratios=st.one_of(st.lists(st.integers(-2, 3000), max_size=5), st.text(max_size=4)),
       lstm=st.one_of(st.integers(-2, 100), st.floats()))
def test_any_seanet_config_is_valid_or_refused_in_one_line(ratios, lstm):
    try:
        config = SEANetConfig(ratios=ratios, lstm=lstm)
    except ValueError as error:
        assert "\n" not in str(error)
        return
    assert config.hop_length >= 1


@settings(max_examples=300, **SETTINGS)
@given(data=st.binary(max_size=300))
def test_any_bytes_as_a_prompt_file(tmp_path, data):
    (tmp_path / "p.txt").write_bytes(data)
    args = argparse.Namespace(prompts=[], prompt_file=str(tmp_path / "p.txt"), command="generate")
    try:
        prompts = read_prompts(args)
    except UserError as error:
        assert "\n" not in str(error)
        return
    assert prompts and all(p == p.strip() and p and "\n" not in p for p in prompts)
    assert data.decode("utf-8")                          # only valid UTF-8 gets this far
