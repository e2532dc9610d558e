"""layer_step (one decoding step of a whole layer in kernels.c) against the reference layer in PyTorch.

The layers here are reference ``TransformerLayer``s, which never call ``layer_step`` themselves: each test
calls it directly on a copy of the cache, and the layer on the other."""
import copy

import pytest
import torch

from minicraft.fast import kernels
from minicraft.fast import layer_step as layerstep
from minicraft.fast.attention import StaticKVCache
from minicraft.fast.int8 import quantize_lm_int8
from minicraft.fast.layer_step import StepCache
from minicraft.modules.attention import KVCache
from minicraft.modules.transformer import TransformerLayer

pytestmark = [pytest.mark.skipif(kernels.library() is None, reason="no C compiler here"),
              pytest.mark.usefixtures("kernel_target")]          # each build this CPU runs (conftest.py)

D, H, F, L = 64, 4, 160, 5            # Dh = 16; F not a multiple of the kernels' 4-row blocks


def layer_in(weights: str, act: torch.dtype, cross: bool = True) -> TransformerLayer:
    torch.manual_seed(0)
    layer = TransformerLayer(D, H, F, cross_attention=cross).eval()
    for p in layer.parameters():                            # norms away from 1 and 0, to be tested too
        p.data.add_(torch.randn_like(p) * 0.1)
    layer.to(torch.bfloat16 if weights == "bfloat16" or act == torch.bfloat16 else torch.float32)
    return quantize_lm_int8(layer) if weights == "int8" else layer


def warm_cache(layer, act, rows: int, steps: int, cross_mask=None) -> tuple[StepCache, torch.Tensor]:
    """A cache holding ``steps`` positions, with the text projected, as a generation's first pass leaves it."""
    cache = StepCache.empty(rows, H, 12, D // H, act, "cpu")
    text = torch.randn(rows, L, D).to(act)
    with torch.inference_mode():
        layer(torch.randn(rows, steps, D).to(act), text, cross_mask, cache)
    return cache, text


def both_ways(layer, act, rows=2, steps=3, cross_mask=None, fold=True):
    cache, text = warm_cache(layer, act, rows, steps, cross_mask)
    plain_cache = copy.deepcopy(cache)
    x = torch.randn(rows, 1, D).to(act)
    with torch.inference_mode():
        fused = layerstep.layer_step(layer, x, cross_mask, cache, fold)
        plain = layer(x, text, cross_mask, plain_cache)
    return fused, plain, cache, plain_cache


KINDS = [("float32", torch.float32), ("bfloat16", torch.bfloat16), ("int8", torch.float32), ("int8", torch.bfloat16)]


@pytest.mark.parametrize("weights, act, rows", [(w, a, rows) for w, a in KINDS for rows in (1, 2, 4)]
                         + [("int8", torch.float32, 16), ("int8", torch.bfloat16, 16)])   # float32, bfloat16: <= 4 rows
def test_layer_step_equals_the_layer(weights, act, rows):
    fused, plain, cache, plain_cache = both_ways(layer_in(weights, act), act, rows)
    assert fused is not None and fused.dtype == act and fused.shape == (rows, 1, D)
    # float32 activations: only the order of additions differs; bfloat16: also one rounding here and there
    tol = dict(atol=1e-5, rtol=1e-5) if act == torch.float32 else dict(atol=0.05, rtol=0.02)
    torch.testing.assert_close(fused, plain, **tol)
    assert cache.length == plain_cache.length == 4
    torch.testing.assert_close(cache.keys, plain_cache.keys, **tol)          # the new slot, written the same
    torch.testing.assert_close(cache.values, plain_cache.values, **tol)


def test_masked_text_positions_are_ignored():
    act = torch.float32
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)[:, None, None]   # [2, 1, 1, L]
    fused, plain, *_ = both_ways(layer_in("int8", act), act, cross_mask=mask)
    torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("weights", ["bfloat16", "int8"])
@pytest.mark.parametrize("masked", [False, True])
def test_cross_attention_folded_into_the_text(weights, masked):
    """bfloat16 activations and a short text: the step reads A = Wq_hᵀk and B = Wo_h v instead of Wq and Wo.

    Against float32 arithmetic on the same weights and inputs, it is no further off than the unfolded step.
    """
    act, rows = torch.bfloat16, 1        # one row: the folded text (2·H·L·D) is smaller even than int8 Wq and Wo
    mask = torch.tensor([[1, 1, 0, 1, 0]], dtype=torch.bool)[:, None, None] if masked else None
    base = layer_in("bfloat16", act)
    layer = quantize_lm_int8(copy.deepcopy(base)) if weights == "int8" else base
    steps = {}
    for fold in (True, False):
        torch.manual_seed(1)
        steps[fold], _, cache, _ = both_ways(layer, act, rows, cross_mask=mask, fold=fold)
        assert bool(cache.step_args.args.text_q) == fold
    torch.manual_seed(1)                 # both_ways' inputs again (text, three earlier positions, x), in float32
    text, earlier, x = (torch.randn(rows, n, D).to(act).float() for n in (L, 3, 1))
    reference, cache = copy.deepcopy(base).float(), KVCache.empty(rows, H, 12, D // H, torch.float32, "cpu")
    with torch.inference_mode():
        reference(earlier, text, mask, cache)
        expected = reference(x, text, mask, cache)
    folded, unfolded = ((steps[f].float() - expected).abs().max().item() for f in (True, False))
    assert folded <= 1.5 * unfolded + 0.01, (folded, unfolded)
    torch.testing.assert_close(steps[True], steps[False], atol=0.05, rtol=0.02)


@pytest.mark.parametrize("fold", [True, False])
def test_float32_cross_attention_folded_or_not_is_the_layer(fold):
    """In float32 the folded text is the same sums in another order: within float32 rounding of PyTorch's layer."""
    fused, plain, cache, _ = both_ways(layer_in("float32", torch.float32), torch.float32, rows=1, fold=fold)
    assert bool(cache.step_args.args.text_q) == fold
    torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("weights, act", KINDS)
def test_rows_whose_text_is_all_zeros_skip_cross_attention(weights, act):
    """CFG's null condition: zero keys and values, so its cross-attention adds exactly 0 and is not computed."""
    layer = layer_in(weights, act)
    cache, text = warm_cache(layer, act, 3, 3)
    with torch.inference_mode():                         # rows 1 and 2: the null condition
        for t in (*cache.memory, text):
            t[1:] = 0
    plain_cache = copy.deepcopy(cache)
    x = torch.randn(3, 1, D).to(act)
    with torch.inference_mode():
        fused = layerstep.layer_step(layer, x, None, cache)
        plain = layer(x, text, None, plain_cache)
    assert cache.step_args.args.cross_rows == 1
    tol = dict(atol=1e-5, rtol=1e-5) if act == torch.float32 else dict(atol=0.05, rtol=0.02)
    torch.testing.assert_close(fused, plain, **tol)


def test_a_layer_without_cross_attention():
    fused, plain, *_ = both_ways(layer_in("int8", torch.float32, cross=False), torch.float32)
    torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-5)


def test_it_stays_out_where_it_would_not_be_the_same_layer():
    act = torch.float32
    fp32 = layer_in("float32", act)
    rows5, _ = warm_cache(fp32, act, 5, 3)
    x = torch.randn(2, 1, D)
    with torch.inference_mode():
        assert layerstep.layer_step(fp32, torch.randn(5, 1, D), None, rows5) is None     # float32: <= 4 rows
        int8 = layer_in("int8", act)
        cache, _ = warm_cache(int8, act, 2, 3)
        assert layerstep.layer_step(int8, torch.randn(2, 2, D), None, cache) is None      # two positions
        assert layerstep.layer_step(int8, torch.randn(17, 1, D), None, cache) is None     # 17 rows
        bf16 = layer_in("bfloat16", torch.bfloat16)
        rows5, _ = warm_cache(bf16, torch.bfloat16, 5, 3)
        assert layerstep.layer_step(bf16, torch.randn(5, 1, D).bfloat16(), None, rows5) is None   # bfloat16: <= 4
        static = StaticKVCache.empty(2, H, 12, D // H, act, "cpu")
        assert layerstep.layer_step(int8, x, None, static) is None                       # a CUDA-graph cache
        reference = KVCache.empty(2, H, 12, D // H, act, "cpu")
        int8(torch.randn(2, 3, D), torch.randn(2, L, D), None, reference)
        assert layerstep.layer_step(int8, x, None, reference) is None                    # a reference cache
        unprojected = StepCache.empty(2, H, 12, D // H, act, "cpu")
        assert layerstep.layer_step(int8, x, None, unprojected) is None                  # text not projected
    with torch.enable_grad():
        assert layerstep.layer_step(layer_in("int8", act), x, None, warm_cache(int8, act, 2, 3)[0]) is None


def test_a_full_cache_is_left_to_pytorch_to_refuse():
    act = torch.float32
    layer = layer_in("int8", act)
    cache, text = warm_cache(layer, act, 2, 12)
    with torch.inference_mode():
        assert layerstep.layer_step(layer, torch.randn(2, 1, D), None, cache) is None
        with pytest.raises(ValueError, match="KV cache holds 12 steps"):
            layer(torch.randn(2, 1, D), text, None, cache)
