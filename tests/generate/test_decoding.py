"""The sampler and the decoding loop against audiocraft's own outputs, on the reference LM and on the same LM
accelerated (fixtures ``lm``, ``refs``: conftest.py)."""
import pytest
import torch

from minicraft.fast import accelerate
from minicraft.generate.decoding import generate_codes


@pytest.fixture(scope="module", params=["reference", "fast"])
def lm(request, audiocraft_lm):
    """The tiny audiocraft LM as written, and a second copy with the fast path in place."""
    if request.param == "reference":
        return audiocraft_lm
    copy = type(audiocraft_lm)(audiocraft_lm.config).eval()
    copy.load_state_dict(audiocraft_lm.state_dict())
    return accelerate(copy)


def close(actual, expected):
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4, equal_nan=True)


def conditions(refs):
    cond = refs["cond.description.embeds"][:2]   # audiocraft's condition for P[:2]
    return cond, torch.zeros_like(cond)          # None prompts -> all-zero null condition


@pytest.mark.parametrize("name, kwargs", [
    ("gen.greedy_cfg3", dict(use_sampling=False)),
    ("gen.greedy_two_step", dict(use_sampling=False, two_step=True)),
])
def test_greedy_generation(lm, refs, name, kwargs):
    cond, null = conditions(refs)
    codes = generate_codes(lm, cond, null, 12, cfg_coef=3.0, **kwargs)
    assert torch.equal(codes, refs[name])


def test_prompted_generation_keeps_prompt(lm, refs):
    cond, null = conditions(refs)
    codes = generate_codes(lm, cond, null, 12, prompt=refs["gen.prompt"], use_sampling=False)
    assert torch.equal(codes, refs["gen.greedy_prompted"])
    assert torch.equal(codes[..., :4], refs["gen.prompt"])


@pytest.mark.parametrize("name, kwargs", [
    ("gen.topk5_seed1234", dict(temperature=1.0, top_k=5)),
    ("gen.topp0.8_seed1234", dict(temperature=0.7, top_p=0.8)),
])
def test_seeded_sampling(lm, refs, name, kwargs):
    cond, null = conditions(refs)
    torch.manual_seed(1234)
    codes = generate_codes(lm, cond, null, 12, use_sampling=True, **kwargs)
    assert torch.equal(codes, refs[name])


def test_unconditional_generation(lm, refs):
    zeros = torch.zeros(2, 1, 64)
    codes = generate_codes(lm, zeros, zeros, 12, use_sampling=False)
    assert torch.equal(codes, refs["gen.uncond_greedy"])


def test_kv_cache_equals_full_forward(lm, refs):
    """Feeding steps one by one through the cache gives the full forward's logits."""
    seq, cond = refs["lm.in.sequence"], refs["lm.in.cond"]
    with torch.no_grad():
        full = lm(seq, cond)
        caches = lm.new_caches(seq.shape[0], seq.shape[-1], cond)
        steps = [lm(seq[..., :3], cond, caches=caches)]
        steps += [lm(seq[..., s:s + 1], cond, caches=caches) for s in range(3, seq.shape[-1])]
    close(torch.cat(steps, dim=2), full)
