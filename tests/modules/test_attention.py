"""Attention: the plain formula, the fused kernel, masks and the KV cache."""
import pytest
import torch

from minicraft.modules.attention import (KVCache, MultiheadAttention, attention, attention_plain, causal_mask,
                                 padding_mask)


def test_causal_mask_with_and_without_past():
    assert torch.equal(causal_mask(3, 3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool))
    # Two new queries after two cached steps: they sit at positions 2 and 3.
    assert torch.equal(causal_mask(2, 4), torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("tq, tk", [(5, 5), (1, 6), (3, 7)])
def test_plain_equals_fused(causal, tq, tk):
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, tq, 8), torch.randn(2, 3, tk, 8), torch.randn(2, 3, tk, 8)
    pad = padding_mask(torch.tensor([[1] * tk, [1] * (tk - 1) + [0]]))
    for mask in (None, pad):
        torch.testing.assert_close(attention_plain(q, k, v, mask, causal), attention(q, k, v, mask, causal),
                                   atol=1e-6, rtol=1e-5)


def test_masked_keys_get_no_weight():
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 1, 2, 4), torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4)
    mask = padding_mask(torch.tensor([[1, 1, 0]]))
    changed = v.clone()
    changed[..., 2, :] = 100.0      # the padded key's value must not matter
    torch.testing.assert_close(attention_plain(q, k, v, mask), attention_plain(q, k, changed, mask))


def test_cache_gives_same_result_as_full_sequence():
    torch.manual_seed(0)
    attn = MultiheadAttention(16, 4)
    torch.nn.init.normal_(attn.in_proj_weight, std=0.3)
    x = torch.randn(2, 6, 16)
    full = attn(x, causal=True)
    cache = KVCache.empty(2, 4, 6, 4, x.dtype, x.device)
    steps = [attn(x[:, :2], cache=cache, causal=True)]
    steps += [attn(x[:, t:t + 1], cache=cache, causal=True) for t in range(2, 6)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-6, rtol=1e-5)
    assert cache.length == 6
    with pytest.raises(ValueError, match="holds 6 steps"):
        attn(x[:, :1], cache=cache)


def test_cross_attention_uses_memory():
    torch.manual_seed(0)
    attn = MultiheadAttention(8, 2)
    torch.nn.init.normal_(attn.in_proj_weight)
    x, memory = torch.randn(1, 3, 8), torch.randn(1, 5, 8)
    out = attn(x, memory=memory)
    assert out.shape == (1, 3, 8)
    assert not torch.allclose(out, attn(x, memory=memory * 2))
