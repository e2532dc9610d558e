"""Checkers for the notebooks' exercises.

Each ``check_*`` function takes the learner's function and tries it on a few
cases. Three outcomes:

- the function is still the stub (it raises ``NotImplementedError``): a hint
  names the file with the worked solution, and nothing fails, so a notebook
  with unsolved exercises still runs top to bottom;
- a wrong answer: ``AssertionError`` saying what is wrong and, for the usual
  mistakes, why;
- right: prints ``correct!``.

One section per notebook, in course order; later chapters append theirs.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from minicraft.generate.decoding import generate_codes
from minicraft.generate.sampling import top_k_filter
from minicraft.models.lm import LM, LMConfig
from minicraft.models.patterns import delay_pattern
from minicraft.modules.attention import causal_mask
from minicraft.modules.t5 import FeedForward, T5Config, relative_position_bucket
from minicraft.modules.transformer import TransformerLayer


def _checker(notebook: str):
    """Turn ``check(candidate)`` (raises AssertionError if wrong) into a learner-facing checker."""
    def decorate(check):
        @functools.wraps(check)
        def run(candidate) -> None:
            try:
                check(candidate)
            except NotImplementedError:
                print(f"not solved yet — see notebooks/solutions/{notebook}.py")
                return
            print("correct!")
        return run
    return decorate


def _is_tensor(got, what: str) -> None:
    assert isinstance(got, torch.Tensor), f"{what}: expected a torch.Tensor, got {type(got).__name__}."


def _same_shape(got: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    _is_tensor(got, what)
    assert got.shape == expected.shape, \
        f"{what}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}."


def _close(got: torch.Tensor, expected: torch.Tensor, what: str, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Same shape (asserted) and values within tolerance (returned, so callers can explain a miss)."""
    _same_shape(got, expected, what)
    return torch.allclose(got.float(), expected.float(), atol=atol, rtol=rtol)


def _max_diff(got: torch.Tensor, expected: torch.Tensor) -> str:
    return f"{(got.float() - expected.float()).abs().max().item():.3g}"


def _expect(got, expected, case: str) -> None:
    assert got == expected, f"{case}: expected {expected!r}, got {got!r}."


def _near(got, expected, case: str) -> None:
    """Numbers or tensors equal within float tolerance."""
    got, expected = torch.as_tensor(got), torch.as_tensor(expected)
    assert _close(got, expected, case), f"{case}: expected {expected.tolist()}, got {got.tolist()}."


# --- 00 tour ---

@_checker("00_tour")
def check_frames_for_duration(fn):
    _expect(fn(2.0, 50), 100, "2 s at 50 frames/s")
    _expect(fn(30, 50), 1500, "30 s at 50 frames/s")
    _expect(fn(0.5, 50), 25, "0.5 s at 50 frames/s")


@_checker("00_tour")
def check_tokens_generated(fn):
    _expect(fn(2.0, 50, 4), 400, "2 s, 50 frames/s, 4 codebooks (one integer per codebook per frame)")
    _expect(fn(30, 50, 4), 6000, "30 s, 50 frames/s, 4 codebooks")


@_checker("00_tour")
def check_count_parameters(fn):
    layer = torch.nn.Linear(3, 2)
    _expect(fn(layer), 8, "nn.Linear(3, 2): a 2x3 weight and 2 biases")
    stack = torch.nn.Sequential(torch.nn.Linear(4, 4, bias=False), torch.nn.LayerNorm(4))
    _expect(fn(stack), 24, "Linear(4, 4, bias=False) + LayerNorm(4) (weight and bias)")


# --- 01 tokenization ---

_PIECES_CASES = [
    (["▁dog", "▁bark", "ing", "</s>"], "dog barking"),
    (["▁the", "▁", "s", "o", "u", "n", "d", "▁of", "▁rain", "</s>"], "the sound of rain"),
    (["▁a", "▁fast", "▁", "8", "-", "bit", "▁tune"], "a fast 8-bit tune"),
    (["</s>"], ""),
]


@_checker("01_tokenization")
def check_pieces_to_text(pieces_to_text) -> None:
    """pieces_to_text(pieces: list[str]) -> str, the text SentencePiece pieces spell."""
    for pieces, expected in _PIECES_CASES:
        got = pieces_to_text(list(pieces))
        assert isinstance(got, str), f"pieces_to_text({pieces}) should return a str, got {type(got).__name__}."
        if got == expected:
            continue
        hint = ""
        if "</s>" in got:
            hint = " The end-of-sequence marker '</s>' is not text: drop it."
        elif "▁" in got:
            hint = " '▁' marks the start of a word: turn it back into a space."
        elif got == " " + expected:
            hint = (" There is a leading space: the first piece's '▁' only says a word starts there; "
                    "remove the space it leaves at the very beginning.")
        elif got.replace(" ", "") == expected.replace(" ", ""):
            hint = " The spaces are wrong: a space goes exactly where a piece starts with '▁'."
        raise AssertionError(f"pieces_to_text({pieces}) should give {expected!r}, got {got!r}.{hint}")


def _toy_encode(text: str) -> list[str]:
    """A stand-in tokenizer: every word becomes '▁' + word cut into chunks of three characters."""
    pieces = []
    for word in text.split():
        word = "▁" + word
        pieces += [word[i:i + 3] for i in range(0, len(word), 3)]
    return pieces


@_checker("01_tokenization")
def check_fertility(fertility) -> None:
    """fertility(encode, texts) -> pieces per word over the whole corpus."""
    texts = ["dog barking", "a glockenspiel arpeggio in minor", "rain"]
    pieces = sum(len(_toy_encode(t)) for t in texts)
    words = sum(len(t.split()) for t in texts)
    expected = pieces / words
    got = fertility(_toy_encode, texts)
    assert isinstance(got, (int, float)) or (isinstance(got, torch.Tensor) and got.numel() == 1), \
        f"fertility should return a number, got {type(got).__name__}."
    got = float(got)
    if math.isclose(got, expected, rel_tol=1e-6):
        return
    per_text = sum(len(_toy_encode(t)) / len(t.split()) for t in texts) / len(texts)
    chars = sum(len(t.replace(" ", "")) for t in texts) / words
    hint = ""
    if math.isclose(got, per_text, rel_tol=1e-6):
        hint = (" That is the average of the per-text ratios, where a one-word text weighs as much as a long one: "
                "divide the total number of pieces by the total number of words instead.")
    elif math.isclose(got, (pieces + len(texts)) / words, rel_tol=1e-6):
        hint = " The pieces given by `encode` are all the pieces: do not add an EOS per text."
    elif math.isclose(got, words / pieces, rel_tol=1e-6):
        hint = " That is words per piece: fertility is pieces per word (1.0 = every word is one piece)."
    elif math.isclose(got, chars, rel_tol=1e-6):
        hint = " That counts characters: count the pieces `encode` returns."
    raise AssertionError(f"for {texts} the toy tokenizer makes {pieces} pieces for {words} words, so fertility "
                         f"{expected:.3f}; got {got:.3f}.{hint}")


@_checker("01_tokenization")
def check_mask_from_ids(mask_from_ids) -> None:
    """mask_from_ids(ids [B, L]) -> mask [B, L] (long): 1 for real tokens, all zeros for an empty prompt."""
    ids = torch.tensor([[27, 30, 1, 0, 0],       # "dog barking"
                        [1, 0, 0, 0, 0],         # "" or None: no text
                        [14, 3, 4, 59, 1],       # fills the row: no padding
                        [3, 2, 1, 0, 0]])        # an unknown character (2) is still a real token
    expected = torch.tensor([[1, 1, 1, 0, 0],
                             [0, 0, 0, 0, 0],
                             [1, 1, 1, 1, 1],
                             [1, 1, 1, 0, 0]])
    got = mask_from_ids(ids.clone())
    _same_shape(got, expected, "mask_from_ids")
    if torch.equal(got.long(), expected):
        return
    if torch.equal(got.long(), (ids != 0).long()):
        hint = (" Row 1 is only EOS: that is an empty (or None) prompt, which T5's conditioner marks as "
                "'no text' with an all-zero mask row.")
    elif torch.equal(got.long(), ((ids != 0) & (ids != 1)).long()):
        hint = " EOS (id 1) is a real token the encoder reads: keep it in the mask (except for an empty prompt)."
    elif torch.equal(got.long(), (ids > 2).long()) or torch.equal(got.long(), ((ids != 0) & (ids != 2)).long()):
        hint = " The unknown id 2 stands for a character of the prompt: it is a real token."
    else:
        hint = " 1 where the id is a real token (EOS included), 0 for padding (id 0)."
    raise AssertionError(f"for ids\n{ids}\nthe mask should be\n{expected}\ngot\n{got}.{hint}")


# --- 02 attention ---

@_checker("02_attention")
def check_softmax(my_softmax) -> None:
    """my_softmax(x) -> softmax over the last dimension, safe for large scores."""
    g = torch.Generator().manual_seed(0)
    cases = {
        "random scores [3, 5]": torch.randn(3, 5, generator=g) * 3,
        "a batch of score matrices [2, 3, 4]": torch.randn(2, 3, 4, generator=g),
        "a masked score (-inf)": torch.tensor([[0.5, float("-inf"), 1.0, -2.0]]),
    }
    for what, x in cases.items():
        got = my_softmax(x.clone())
        expected = x.softmax(dim=-1)
        if _close(got, expected, f"my_softmax on {what}"):
            continue
        if torch.allclose(got.sum(dim=-1), torch.ones(x.shape[:-1]), atol=1e-5):
            hint = " The rows sum to 1 but the values differ: softmax is exp(x) divided by the row's sum of exp(x)."
        else:
            hint = " Each row (the last dimension) should sum to 1: take the max and the sum with dim=-1, keepdim=True."
        raise AssertionError(f"my_softmax on {what} is off by {_max_diff(got, expected)}.{hint}")
    big = torch.tensor([[1000.0, 1001.0, 999.0], [-1000.0, -1001.0, -1002.0]])
    got = my_softmax(big.clone())
    _same_shape(got, big, "my_softmax on large scores")
    assert torch.isfinite(got).all(), (
        "my_softmax gives NaN or inf for scores around ±1000: exp(1000) overflows and exp(-1000) underflows to 0. "
        "Subtract each row's maximum before exp; it does not change the result, since softmax(x) = softmax(x - c).")
    assert _close(got, big.softmax(dim=-1), "my_softmax on large scores"), \
        f"my_softmax on scores around ±1000 is off by {_max_diff(got, big.softmax(dim=-1))}."


@_checker("02_attention")
def check_causal_mask(my_causal_mask) -> None:
    """my_causal_mask(num_queries, num_keys) -> [Tq, Tk] booleans, the queries being the last positions."""
    for tq, tk in [(4, 4), (1, 1), (1, 5), (2, 5), (3, 4)]:
        got = my_causal_mask(tq, tk)
        expected = causal_mask(tq, tk)
        _same_shape(got, expected, f"my_causal_mask({tq}, {tk})")
        assert got.dtype == torch.bool, (f"my_causal_mask({tq}, {tk}) has dtype {got.dtype}: return booleans, "
                                         "True where the query may look at the key.")
        if torch.equal(got, expected):
            continue
        if torch.equal(got, ~expected):
            hint = " It is inverted: True means 'may look', so a query's own position and the past are True."
        elif tq != tk and torch.equal(got, torch.ones(tq, tk, dtype=torch.bool).tril()):
            hint = (f" With a cache there are {tk - tq} past keys before the new queries: query i sits at position "
                    f"num_keys - num_queries + i = {tk - tq} + i and may see every key up to it.")
        elif torch.equal(got, torch.arange(tk)[None, :] < torch.arange(tk - tq, tk)[:, None]):
            hint = " A query may look at its own position: the key at the query's position is True."
        else:
            hint = ""
        raise AssertionError(f"my_causal_mask({tq}, {tk}) should be\n{expected.int()}\ngot\n{got.int()}.{hint}")


@_checker("02_attention")
def check_merge_heads(merge_heads) -> None:
    """merge_heads(x [B, H, T, Dh]) -> [B, T, H·Dh], the inverse of MultiheadAttention.split_heads."""
    B, H, T, Dh = 2, 3, 4, 5
    x = torch.arange(B * H * T * Dh, dtype=torch.float32).view(B, H, T, Dh)
    expected = x.transpose(1, 2).reshape(B, T, H * Dh)
    got = merge_heads(x.clone())
    _same_shape(got, expected, f"merge_heads on [B, H, T, Dh] = {[B, H, T, Dh]}")
    if torch.equal(got, expected):
        return
    if torch.equal(got, x.reshape(B, T, H * Dh)):
        hint = (" The shape is right but the numbers are scrambled: reshape reads memory in order, which is head by "
                "head. Move the head axis next to the feature axis first (transpose(1, 2)), then reshape.")
    elif torch.equal(got, x.permute(0, 2, 3, 1).reshape(B, T, H * Dh)):
        hint = " Each position should hold head 0's features, then head 1's, ...: not the features interleaved."
    else:
        hint = " Position t should hold x[:, 0, t], then x[:, 1, t], ... concatenated."
    raise AssertionError(f"merge_heads puts values in the wrong place.{hint}")


# --- 03 transformer and T5 ---

@_checker("03_transformer_t5")
def check_gated_ffn(gated_ffn) -> None:
    """gated_ffn(x, wi_0, wi_1, wo) -> flan-T5's feed-forward: wo(gelu_tanh(wi_0 x) * wi_1 x)."""
    g = torch.Generator().manual_seed(0)
    D, FF = 8, 12
    x = torch.randn(2, 3, D, generator=g) * 2
    wi_0, wi_1 = torch.randn(FF, D, generator=g) / D ** 0.5, torch.randn(FF, D, generator=g) / D ** 0.5
    wo = torch.randn(D, FF, generator=g) / FF ** 0.5
    ffn = FeedForward(T5Config(d_model=D, d_ff=FF, gated=True))
    ffn.load_state_dict({"wi_0.weight": wi_0, "wi_1.weight": wi_1, "wo.weight": wo})
    with torch.no_grad():
        expected = ffn(x)
    try:
        got = gated_ffn(x.clone(), wi_0, wi_1, wo)
    except NotImplementedError:         # a RuntimeError too: leave it to the stub hint
        raise
    except RuntimeError as e:
        raise AssertionError(f"gated_ffn raised RuntimeError ({e}). The weights are stored as nn.Linear stores them, "
                             f"[out, in] (wi_0 is {list(wi_0.shape)}): use x @ w.T or F.linear(x, w).") from None
    if _close(got, expected, "gated_ffn"):
        return
    exact_gelu = (F.gelu(x @ wi_0.T) * (x @ wi_1.T)) @ wo.T
    swapped = (F.gelu(x @ wi_1.T, approximate="tanh") * (x @ wi_0.T)) @ wo.T
    relu = F.relu(x @ wi_0.T) @ wo.T
    if torch.allclose(got, exact_gelu, atol=1e-5):
        hint = " Close: flan-T5 uses the tanh approximation of GELU, F.gelu(..., approximate='tanh')."
    elif torch.allclose(got, swapped, atol=1e-5):
        hint = " The GELU goes on wi_0's output; wi_1's output is the linear part it multiplies."
    elif torch.allclose(got, relu, atol=1e-5):
        hint = (" That is the original T5's relu FFN: the gated one multiplies gelu(wi_0 x) by a second "
                "projection, wi_1 x.")
    else:
        hint = ""
    raise AssertionError(f"gated_ffn is off by {_max_diff(got, expected)}.{hint}")


def _decoder_bucket(relative: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    distance = (-relative).clamp(min=0)
    exact = num_buckets // 2
    log_ratio = torch.log(distance.float().clamp(min=1) / exact) / math.log(max_distance / exact)
    far = (exact + (log_ratio * (num_buckets - exact)).long()).clamp(max=num_buckets - 1)
    return torch.where(distance < exact, distance, far)


@_checker("03_transformer_t5")
def check_decoder_bucket(decoder_bucket) -> None:
    """decoder_bucket(relative, num_buckets, max_distance): T5's one-directional buckets (relative = key - query)."""
    relative = torch.arange(-300, 11)
    for num_buckets, max_distance in [(32, 128), (8, 20)]:
        expected = _decoder_bucket(relative, num_buckets, max_distance)
        got = decoder_bucket(relative.clone(), num_buckets, max_distance)
        what = f"decoder_bucket(relative, {num_buckets}, {max_distance})"
        _same_shape(got, expected, what)
        if torch.equal(got.long(), expected):
            continue
        wrong = (got.long() != expected).nonzero()[0].item()
        example = (f" First difference: relative {relative[wrong].item()} should be bucket "
                   f"{expected[wrong].item()}, got {got[wrong].item()}.")
        if torch.equal(got.long(), relative_position_bucket(relative, num_buckets, max_distance)):
            hint = (" That is the encoder's two-sided version. The decoder never sees keys after the query, so it "
                    "does not halve the buckets by direction: all of them go to past keys.")
        elif (got[relative > 0] != 0).any():
            hint = " Keys after the query (relative > 0) are hidden by the causal mask anyway: give them bucket 0."
        elif got.max() > num_buckets - 1:
            hint = f" Bucket ids must stay below num_buckets = {num_buckets}: clamp the far ones."
        else:
            hint = ""
        raise AssertionError(f"{what} is wrong.{example}{hint}")


@_checker("03_transformer_t5")
def check_masked_mean(masked_mean) -> None:
    """masked_mean(hidden [B, L, D], mask [B, L]) -> [B, D], the average over real tokens (zeros if none)."""
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 4, 5, generator=g)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]])
    expected = torch.stack([hidden[0].mean(0), hidden[1, :2].mean(0), torch.zeros(5)])
    got = masked_mean(hidden.clone(), mask.clone())
    _same_shape(got, expected, "masked_mean")
    if not torch.isfinite(got).all():
        raise AssertionError("masked_mean gives NaN or inf for the row whose mask is all zeros (an empty prompt): "
                             "it has no token to average; return zeros (divide by max(count, 1)).")
    if _close(got, expected, "masked_mean"):
        return
    if torch.allclose(got[:2], hidden[:2].mean(1), atol=1e-5):
        hint = " Padded positions were averaged in: average only where mask is 1."
    elif torch.allclose(got[:2], (hidden * mask[..., None])[:2].sum(1), atol=1e-5):
        hint = " That is the sum over real tokens: divide by their number."
    elif torch.allclose(got[:2], (hidden * mask[..., None])[:2].mean(1), atol=1e-5):
        hint = " Padding was zeroed but still counted: divide by the number of real tokens, not by L."
    else:
        hint = ""
    raise AssertionError(f"masked_mean is off by {_max_diff(got, expected)}.{hint}")


# --- 04 codec ---

@_checker("04_codec")
def check_frames_for(fn):
    _expect(fn(32000, 320), 100, "32000 samples, hop 320")
    _expect(fn(32001, 320), 101, "32001 samples, hop 320: a partial frame still makes a frame (round up)")
    _expect(fn(1, 640), 1, "1 sample, hop 640")


@_checker("04_codec")
def check_bitrate(fn):
    _expect(fn(50, 4, 2048), 2200, "MusicGen: 50 frames/s x 4 codebooks x log2(2048) = 11 bits")
    _expect(fn(50, 4, 256), 1600, "the tiny codec: 50 x 4 x 8 bits")


@_checker("04_codec")
def check_rvq_encode(fn):
    g = torch.Generator().manual_seed(0)
    latent = torch.randn(30, 8, generator=g)
    codebooks = [torch.randn(16, 8, generator=g) * s for s in (1.0, 0.5, 0.25)]
    codes = torch.as_tensor(fn(latent, codebooks))
    assert codes.shape == (3, 30), f"codes should be [K, frames] = (3, 30), got {tuple(codes.shape)}"
    first = torch.cdist(latent, codebooks[0]).argmin(1)
    assert torch.equal(codes[0], first), "codebook 0 should pick the code vector nearest to each latent frame"
    residual, expected = latent.clone(), []
    for book in codebooks:
        index = torch.cdist(residual, book).argmin(1)
        expected.append(index)
        residual = residual - book[index]
    assert torch.equal(codes, torch.stack(expected)), \
        "codebooks after the first should quantize the residual (latent minus the vectors chosen so far)"


# --- 05 language model ---

@_checker("05_language_model")
def check_delay_layout(fn):
    for K, T, delays in [(4, 6, [0, 1, 2, 3]), (2, 3, [0, 2]), (3, 5, [0, 0, 0])]:
        got = torch.as_tensor(fn(K, T, delays))
        want = delay_pattern(K, T, delays).layout
        assert got.shape == want.shape, \
            f"K={K}, T={T}, delays={delays}: layout should be [K, S] = {tuple(want.shape)} (S = T + max delay + 1)" \
            f", got {tuple(got.shape)}"
        assert torch.equal(got, want), f"K={K}, T={T}, delays={delays}: expected\n{want}\ngot\n{got}"


@_checker("05_language_model")
def check_flat_steps(fn):
    _expect(fn(4, 6), 25, "K=4, T=6: one step per code, plus the initial empty step")
    _expect(fn(4, 1500), 6001, "K=4, T=1500 (30 s)")


@_checker("05_language_model")
def check_masked_loss(fn):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, 7, generator=g)
    codes = torch.randint(0, 7, (2, 3, 5), generator=g)
    valid = torch.rand(2, 3, 5, generator=g) > 0.3
    logits[~valid] = float("nan")                      # as compute_predictions leaves them
    got = fn(logits, codes, valid)
    want = F.cross_entropy(logits[valid], codes[valid])
    assert torch.isfinite(torch.as_tensor(got)), "the loss is NaN: leave out the positions where valid is False"
    _near(got, want, "the mean cross-entropy over valid positions")


# --- 06 sampling ---

@_checker("06_sampling")
def check_softmax_with_temperature(fn):
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    for t in (1.0, 0.5, 2.0):
        _near(fn(logits, t), torch.softmax(logits / t, -1), f"temperature {t}: softmax(logits / temperature)")
    _near(fn(torch.tensor([1000.0, 999.0]), 1.0), torch.softmax(torch.tensor([1000.0, 999.0]), -1),
          "large logits (subtract the max before exp to avoid overflow)")


@_checker("06_sampling")
def check_top_k_probs(fn):
    probs = torch.tensor([0.1, 0.4, 0.2, 0.2, 0.1])
    _near(fn(probs, 1), torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0]), "k=1 keeps only the likeliest")
    _near(fn(probs, 2), top_k_filter(probs, 2), "k=2 with a tie at the boundary: keep both tied codes, renormalise")
    _near(fn(probs, 5), probs, "k = vocabulary size changes nothing")


@_checker("06_sampling")
def check_top_p_kept(fn):
    probs = torch.tensor([0.05, 0.5, 0.3, 0.15])
    _expect(sorted(torch.as_tensor(fn(probs, 0.0)).tolist()), [1], "p=0 keeps only the likeliest code")
    _expect(sorted(torch.as_tensor(fn(probs, 0.6)).tolist()), [1, 2],
           "p=0.6: 0.5 is not enough, 0.5 + 0.3 reaches it")
    _expect(sorted(torch.as_tensor(fn(probs, 0.85)).tolist()), [1, 2, 3],
           "p=0.85: keep a code if the mass *before* it is <= p (0.15 comes after 0.5 + 0.3 = 0.8)")
    _expect(sorted(torch.as_tensor(fn(probs, 1.0)).tolist()), [0, 1, 2, 3], "p=1 keeps everything")


# --- 07 generation loop ---

@_checker("07_generation_loop")
def check_cfg_mix(fn):
    cond, uncond = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    _near(fn(cond, uncond, 1.0), cond, "coef 1 is the conditional logits")
    _near(fn(cond, uncond, 0.0), uncond, "coef 0 is the unconditional logits")
    _near(fn(cond, uncond, 3.0), torch.tensor([4.0, -2.0]), "coef 3: uncond + 3 (cond - uncond)")


@_checker("07_generation_loop")
def check_kv_cache_bytes(fn):
    # 1 s at 50 frames/s, 4 codebooks: 50 + 3 delay + 1 initial = 54 steps
    _expect(fn(4, 192, 1, 1.0, 50, 4), 2 * 4 * 2 * 54 * 192 * 4,
           "4 layers, dim 192, one prompt with CFG (2 rows), 1 s: keys and values for 54 steps")
    _expect(fn(24, 1024, 1, 30.0, 50, 4, cfg=False), 2 * 24 * 1 * 1504 * 1024 * 4, "musicgen-small, no CFG, 30 s")
    _expect(fn(24, 1024, 2, 10.0, 50, 4, bytes_per_number=2), 2 * 24 * 4 * 504 * 1024 * 2,
           "musicgen-small, 2 prompts with CFG, 10 s, bfloat16")


@_checker("07_generation_loop")
def check_greedy_by_hand(fn):
    torch.manual_seed(0)
    lm = LM(LMConfig(dim=16, num_heads=2, num_layers=2, ffn_dim=32, codebook_size=8)).eval()
    for p in lm.parameters():
        p.data.normal_(0, 0.5)
    cond = torch.randn(2, 3, 16)
    cond[1] = 0                                       # the null condition
    mask = torch.ones(2, 1, 1, 3, dtype=torch.bool)
    got = torch.as_tensor(fn(lm, cond, mask, 10))
    want = generate_codes(lm, cond[:1], cond[1:], 10, use_sampling=False, cfg_coef=3.0)
    assert got.shape == want.shape, f"codes should be [B, K, frames] = {tuple(want.shape)}, got {tuple(got.shape)}"
    assert torch.equal(got, want), "the codes differ from minicraft.generate.decoding.generate_codes (greedy, cfg 3)"


# --- 08 official MusicGen ---

@_checker("08_official_musicgen")
def check_decoder_layer_params(fn):
    for dim, ffn in [(64, 256), (1024, 4096)]:
        with torch.device("meta"):
            want = sum(p.numel() for p in TransformerLayer(dim, dim // 16 or 1, ffn).parameters())
        _expect(fn(dim, ffn), want, f"dim {dim}, ffn {ffn}: 2 x (3D·D + D·D) attention, 2·D·ffn, 3 x 2D norms")


@_checker("08_official_musicgen")
def check_hf_to_minicraft(fn):
    pairs = {"decoder.model.decoder.layers.3.fc1.weight": "transformer.layers.3.linear1.weight",
             "decoder.model.decoder.layers.0.encoder_attn_layer_norm.bias": "transformer.layers.0.norm_cross.bias",
             "decoder.model.decoder.embed_tokens.2.weight": "emb.2.weight",
             "decoder.lm_heads.1.weight": "linears.1.weight",
             "decoder.model.decoder.layer_norm.weight": "out_norm.weight"}
    for theirs, ours in pairs.items():
        _expect(fn(theirs), ours, theirs)


@_checker("08_official_musicgen")
def check_weights_gib(fn):
    n = 2**30
    _near(fn(n, torch.float32), 4.0, "2^30 parameters in float32 (4 bytes each)")
    _near(fn(n, torch.bfloat16), 2.0, "bfloat16: 2 bytes each")
    _near(fn(n, torch.int8), 1.0, "int8: 1 byte each")


# --- 09 AudioGen ---

@_checker("09_audiogen")
def check_samples_per_frame(fn):
    _expect(fn(16000, 50), 320, "AudioGen: 16 kHz at 50 frames/s")
    _expect(fn(32000, 50), 640, "MusicGen: 32 kHz at 50 frames/s")


@_checker("09_audiogen")
def check_nyquist(fn):
    _near(fn(16000), 8000, "16 kHz: half the sample rate")
    _near(fn(32000), 16000, "32 kHz")


@_checker("09_audiogen")
def check_audio_seconds_per_window(fn):
    _near(fn(10, 2), 2, "AudioGen: a 10 s window advancing by 2 s adds 2 new seconds")
    _near(fn(30, 18), 18, "MusicGen: 30 s window, stride 18 s")


# --- 10 long generation ---

def _windows(duration, max_duration, stride):
    starts, t = [], 0.0
    while True:
        starts.append(t)
        if t + max_duration >= duration - 1e-9:
            return starts
        t += stride


@_checker("10_long_generation")
def check_num_windows(fn):
    for args in [(6, 2, 1), (60, 30, 18), (5, 10, 2), (10, 10, 2)]:
        _expect(fn(*args), len(_windows(*args)),
               f"duration {args[0]} s, window {args[1]} s, stride {args[2]} s (windows until one reaches the end)")


@_checker("10_long_generation")
def check_window_starts(fn):
    for args in [(6, 2, 1), (60, 30, 18), (5, 10, 2)]:
        got = [float(x) for x in fn(*args)]
        _expect(got, _windows(*args), f"duration {args[0]} s, window {args[1]} s, stride {args[2]} s")


@_checker("10_long_generation")
def check_keep_prompt(fn):
    tokens = torch.arange(2 * 4 * 10).reshape(2, 4, 10)
    got = torch.as_tensor(fn(tokens, 3))
    assert torch.equal(got, tokens[..., 3:]), "keep every codebook of the frames after the prompt: tokens[..., 3:]"


# --- 11 memory and speed ---

@_checker("11_memory_and_speed")
def check_bytes_per_step(fn):
    _expect(fn(1000, torch.float32), 4000, "1000 float32 weights")
    _expect(fn(1000, torch.bfloat16), 2000, "1000 bfloat16 weights")
    _expect(fn(1000, torch.int8), 1000, "1000 int8 weights")


@_checker("11_memory_and_speed")
def check_flops_per_byte(fn):
    _near(fn(2, 4), 1.0, "2 rows (CFG), float32: 2 FLOPs x 2 rows / 4 bytes")
    _near(fn(1, 2), 1.0, "1 row, bfloat16")
    _near(fn(16, 1), 32.0, "16 rows, int8")


@_checker("11_memory_and_speed")
def check_max_steps_per_second(fn):
    _near(fn(1e9, 4, 40), 10.0, "1 B float32 weights at 40 GB/s: 4 GB per step")
    _near(fn(420e6, 2, 30), 30e9 / 840e6, "420 M bfloat16 weights at 30 GB/s")
