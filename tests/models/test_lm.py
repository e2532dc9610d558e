"""The LM and the delay pattern against audiocraft's own outputs (fixtures ``lm``, ``refs``: conftest.py)."""

import pytest
import torch

from minicraft.modules import attention as attention_module
from minicraft.models.patterns import delay_pattern, flat_pattern, parallel_pattern


def close(actual, expected):
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4, equal_nan=True)


def test_config_read_from_xp_cfg(lm):
    config = lm.config
    assert (config.dim, config.num_heads, config.num_layers, config.ffn_dim) == (64, 4, 2, 256)
    assert (config.num_codebooks, config.codebook_size, config.delays, config.cfg_coef) == (4, 32, [0, 1, 2, 3], 3.0)
    assert config.cross_attention  # enforced by the fuser's "cross" entry, as audiocraft does


def test_forward_equals_audiocraft(lm, refs):
    with torch.no_grad():
        logits = lm(refs["lm.in.sequence"], refs["lm.in.cond"])
    close(logits, refs["lm.out.logits"])
    close(logits, refs["hf.lm.logits"])


def test_plain_attention_equals_fused(lm, refs, monkeypatch):
    """The textbook formula in place of PyTorch's fused kernel, as a learner would swap it: same logits."""
    with torch.no_grad():
        fused = lm(refs["lm.in.sequence"], refs["lm.in.cond"])
        monkeypatch.setattr(attention_module, "attention", attention_module.attention_plain)
        plain = lm(refs["lm.in.sequence"], refs["lm.in.cond"])
    close(plain, fused)


def test_compute_predictions(lm, refs):
    with torch.no_grad():
        logits, mask = lm.compute_predictions(refs["lm.cp.codes"], refs["lm.in.cond"])
    assert torch.equal(mask, refs["lm.cp.mask"])
    close(logits, refs["lm.cp.logits"])


def test_delay_pattern_round_trip(refs):
    codes = refs["lm.cp.codes"]
    pattern = delay_pattern(4, codes.shape[-1], [0, 1, 2, 3])
    sequence, mask = pattern.build(codes, special=32)
    assert torch.equal(sequence, refs["pattern.seq"])
    assert torch.equal(mask, refs["pattern.mask"])
    back, back_mask = pattern.revert(sequence, special=-1)
    assert torch.equal(back, codes) and back_mask.all()


@pytest.mark.parametrize("make", [parallel_pattern, flat_pattern, delay_pattern])
def test_teaching_patterns_round_trip(make):
    codes = torch.randint(0, 8, (2, 3, 5))
    pattern = make(3, 5)
    sequence, mask = pattern.build(codes, special=8)
    assert sequence.shape[-1] == pattern.num_steps
    assert int(mask.sum()) == 3 * 5           # every code placed exactly once
    assert torch.equal(pattern.revert(sequence, special=-1)[0], codes)
