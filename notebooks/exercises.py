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

from types import SimpleNamespace

from minicraft.api import MusicGen
from minicraft.generate.sampling import classifier_free_guidance, top_k_filter
from minicraft.models.patterns import delay_pattern
from minicraft.modules.attention import causal_mask
from minicraft.modules.rvq import ResidualVectorQuantizer
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
def check_bitrate(fn):
    _expect(fn(50, 4, 2048), 2200, "MusicGen: 50 frames/s x 4 codebooks x log2(2048) = 11 bits")
    _expect(fn(50, 4, 256), 1600, "the tiny codec: 50 x 4 x 8 bits")


def _rvq_case():
    """A small residual quantizer of the package's (3 codebooks of 16 vectors in 8-D), a latent, and its codes."""
    g = torch.Generator().manual_seed(0)
    latent = torch.randn(30, 8, generator=g)                                   # [frames, D]
    codebooks = [torch.randn(16, 8, generator=g) * s for s in (1.0, 0.5, 0.25)]
    rvq = ResidualVectorQuantizer(num_codebooks=3, codebook_size=16, dim=8)
    for codebook, table in zip(rvq.codebooks, codebooks):
        codebook.embed.data.copy_(table)
    codes = rvq.encode(latent.T[None])[0]                                      # [K, frames]
    return latent, codebooks, codes, rvq


def _call_with_codes(fn, what, *args):
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except IndexError as e:
        raise AssertionError(f"{what} raised IndexError ({e}). There are fewer rows of codes than codebooks: "
                             "row j of the codes indexes codebooks[j], and codebooks past the codes' rows "
                             "are not used (zip(codes, codebooks)).") from None


@_checker("04_codec")
def check_rvq_decode(rvq_decode):
    """rvq_decode(codes [k, frames], codebooks) -> [frames, D], the latent the first k codebooks reconstruct."""
    latent, codebooks, codes, rvq = _rvq_case()
    for k in (3, 1, 2):
        expected = rvq.decode(codes[None, :k])[0].T                            # [frames, D]
        what = f"rvq_decode with the codes of {k} codebook(s)"
        got = _call_with_codes(rvq_decode, what, codes[:k].clone(), codebooks)
        _is_tensor(got, what)
        if got.shape == (k, *expected.shape):
            raise AssertionError(f"{what} has shape {tuple(got.shape)}, one vector per codebook: RVQ decodes a "
                                 f"frame into one vector [frames, D] = {tuple(expected.shape)}, the *sum* of the "
                                 "chosen vectors.")
        if _close(got, expected, what):
            continue
        chosen = [codebooks[j][codes[j]] for j in range(k)]                     # [frames, D] each
        if torch.allclose(got, expected / k, atol=1e-5):
            hint = (" That is their average: decoding *sums* the chosen vectors, since each codebook encoded "
                    "what the ones before it left over.")
        elif torch.allclose(got, chosen[-1], atol=1e-5):
            hint = " That is the last codebook's vector alone: add up the vectors of all the codebooks."
        elif torch.allclose(got, chosen[0], atol=1e-5):
            hint = " That is the first codebook's vector alone: add up the vectors of all the codebooks."
        elif torch.allclose(got, sum(codebooks[0][codes[j]] for j in range(k)), atol=1e-5):
            hint = " Each codebook has its own table: look row j of the codes up in codebooks[j]."
        else:
            hint = " Frame f decodes to codebooks[0][codes[0, f]] + codebooks[1][codes[1, f]] + ..."
        raise AssertionError(f"{what} is off by {_max_diff(got, expected)}.{hint}")


@_checker("04_codec")
def check_rvq_residual(rvq_residual):
    """rvq_residual(latent, codes, codebooks, k) -> [frames, D], what is left of the latent after k codebooks."""
    latent, codebooks, codes, rvq = _rvq_case()
    for k in (2, 0, 1, 3):
        expected = latent - rvq.decode(codes[None, :k])[0].T if k else latent    # [frames, D]
        what = f"rvq_residual after {k} codebook(s)"
        got = _call_with_codes(rvq_residual, what, latent.clone(), codes.clone(), codebooks, k)
        if _close(got, expected, what):
            continue
        if k == 0:
            hint = " After 0 codebooks nothing has been explained yet: the residual is the latent itself."
        elif torch.allclose(got, latent - codebooks[k - 1][codes[k - 1]], atol=1e-5):
            hint = (" Only codebook k's vector was subtracted. The residual is cumulative: the latent minus the "
                    "vectors of *all* the first k codebooks (minus their decoded sum).")
        elif torch.allclose(got, latent - expected, atol=1e-5):
            hint = " That is the reconstruction of the first k codebooks: the residual is the latent minus it."
        elif k < len(codebooks) and torch.allclose(got, expected - codebooks[k][codes[k]], atol=1e-5):
            hint = " That subtracts k + 1 codebooks: after k codebooks, use codes[:k] (rows 0 .. k-1)."
        elif torch.allclose(got, expected + codebooks[k - 1][codes[k - 1]], atol=1e-5):
            hint = " That subtracts k - 1 codebooks: after k codebooks, use codes[:k] (rows 0 .. k-1)."
        else:
            hint = ""
        raise AssertionError(f"{what} is off by {_max_diff(got, expected)}.{hint}")


# --- 05 language model ---

def _delayed_by_mistake(codes, delays, special, first_step, length_extra):
    """The delay build with another start step or length: where the usual mistakes put the codes."""
    B, K, T = codes.shape
    S = T + max(delays) + length_extra
    out = torch.full((B, K, S), special, dtype=codes.dtype)
    for k, d in enumerate(delays):
        for t in range(T):
            if 0 <= t + first_step + d < S:
                out[:, k, t + first_step + d] = codes[:, k, t]
    return out


@_checker("05_language_model")
def check_build_delayed(build_delayed):
    """build_delayed(codes [B, K, T], delays, special) -> the delay pattern's sequence [B, K, S]."""
    for K, T, delays in [(4, 6, [0, 1, 2, 3]), (2, 3, [0, 2]), (3, 5, [0, 0, 0]), (4, 1, [0, 1, 2, 3])]:
        codes = torch.tensor([[[10 * k + t + 50 * b for t in range(T)] for k in range(K)] for b in range(2)])
        special = 999
        expected, _ = delay_pattern(K, T, delays).build(codes, special)       # [B, K, S]
        what = f"build_delayed for K={K}, T={T}, delays={delays}"
        got = build_delayed(codes.clone(), list(delays), special)
        _is_tensor(got, what)
        if got.shape == expected.shape[1:]:
            raise AssertionError(f"{what}: got shape {tuple(got.shape)}, one sequence; the codes hold a batch of "
                                 f"B = 2, so the result is [B, K, S] = {tuple(expected.shape)}.")
        if got.dim() == 3 and got.shape[:2] == expected.shape[:2] and got.shape[2] != expected.shape[2]:
            hint = ""
            if got.shape[2] == expected.shape[2] - 1:
                hint = (" Every pattern starts with one empty step (the first prediction needs an input): "
                        "S = T + max(delays) + 1.")
            elif got.shape[2] == T + sum(delays) + 1 or got.shape[2] == T + K:
                hint = " The longest delay sets the length: S = T + max(delays) + 1."
            raise AssertionError(f"{what}: expected S = {expected.shape[2]} steps (shape {tuple(expected.shape)}), "
                                 f"got shape {tuple(got.shape)}.{hint}")
        _same_shape(got, expected, what)
        if torch.equal(got, expected):
            continue
        empty = expected == special
        if not torch.equal(got[~empty], expected[~empty]):
            if torch.equal(got, _delayed_by_mistake(codes, delays, special, 0, 1)):
                hint = (" Step 0 is the empty step: frame t of codebook k sits at step t + 1 + delays[k] "
                        "(step s holds frame s - 1 - delays[k]).")
            elif torch.equal(got, _delayed_by_mistake(codes, delays[::-1], special, 1, 1)):
                hint = " The delays are reversed: codebook k is shifted right by delays[k]."
            else:
                hint = " Codebook k is shifted right by delays[k], after the empty step 0."
            b, k, s = (got != expected).nonzero()[0].tolist()
            raise AssertionError(f"{what}: expected\n{expected[0]}\ngot\n{got[0]}\n(first difference at batch "
                                 f"{b}, codebook {k}, step {s}).{hint}")
        raise AssertionError(f"{what}: the codes are in place, but the empty cells should hold the special token "
                             f"({special} here), got {sorted(set(got[empty].tolist()))}. The LM embeds every cell, "
                             "so an empty one needs a token of its own: not -1 (no embedding) and not a real "
                             "code like 0.")


@_checker("05_language_model")
def check_masked_loss(fn):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, 7, generator=g)
    codes = torch.randint(0, 7, (2, 3, 5), generator=g)
    valid = torch.rand(2, 3, 5, generator=g) > 0.3
    logits[~valid] = float("nan")                      # as compute_predictions leaves them
    got = fn(logits.clone(), codes, valid)
    want = F.cross_entropy(logits[valid], codes[valid])
    assert torch.isfinite(torch.as_tensor(got)), "the loss is NaN: leave out the positions where valid is False"
    all_positions = F.cross_entropy(logits.nan_to_num().flatten(0, 2), codes.flatten())
    if torch.allclose(torch.as_tensor(got).float(), all_positions, atol=1e-5):
        raise AssertionError(f"the loss is {float(got):.4f}, averaged over every position: the ones where valid "
                             "is False have no prediction (their logits are NaN); leave them out rather than "
                             f"zero them, to get {float(want):.4f}.")
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


def _top_p_reference(logits: torch.Tensor, p: float) -> torch.Tensor:
    """The distribution minicraft.generate.sampling.sample_top_p draws from, in token order."""
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    kept = sorted_probs * (mass_before <= p)
    return torch.zeros_like(probs).scatter(-1, order, kept / kept.sum(dim=-1, keepdim=True))


@_checker("06_sampling")
def check_top_p_filter(top_p_filter):
    """top_p_filter(logits [..., V], p) -> probabilities [..., V]: the nucleus, renormalised, in token order."""
    probs = torch.tensor([0.05, 0.5, 0.3, 0.15])
    g = torch.Generator().manual_seed(0)
    cases = [(probs, 0.6, "p=0.6 (0.5 is not enough, 0.5 + 0.3 reaches it)"),
             (probs, 0.0, "p=0 (only the likeliest code)"),
             (probs, 0.85, "p=0.85"),
             (torch.tensor([0.2, 0.4, 0.2, 0.2]), 0.5, "p=0.5 with three tied codes at the cut"),
             (probs, 1.0, "p=1 (every code)"),
             (torch.randn(2, 3, 32, generator=g) * 2, 0.9, "a batch of logits [2, 3, 32], p=0.9")]
    for weights, p, what in cases:
        logits = weights.log() if weights.dim() == 1 else weights              # probs -> logits with that softmax
        expected = _top_p_reference(logits, p)
        what = f"top_p_filter on {what}"
        got = top_p_filter(logits.clone(), p)
        _same_shape(got, expected, what)
        got = got.float()
        tied = weights.dim() == 1 and len(set(weights.tolist())) < len(weights)
        if tied:    # which of the tied codes survive depends on the sort; the kept values may not
            if torch.allclose(got.sort().values, expected.sort().values, atol=1e-5):
                continue
        elif torch.allclose(got, expected, atol=1e-5):
            continue
        kept = expected > 0
        if not torch.isfinite(got).all():
            hint = (" Some values are NaN: nothing was kept, so the renormalisation divided 0 by 0. The likeliest "
                    "code is always kept: a code stays when the mass *before* it is <= p.")
        elif (got < 0).any() or (got > 1 + 1e-5).any():
            hint = " These are not probabilities: the input is logits, turn them into probabilities (softmax) first."
        elif tied and (got > 0).sum() > kept.sum():
            hint = (" All the tied codes were kept. Nucleus sampling keeps the smallest set of codes whose mass "
                    "reaches p, so of the codes tied at the cut only as many are kept as are needed (here one); "
                    "unlike top-k, which keeps every code as likely as the k-th.")
        elif not torch.allclose(got.sum(-1), torch.ones(got.shape[:-1]), atol=1e-5):
            hint = " The kept probabilities should sum to 1: renormalise (divide by their sum)."
        elif ((got > 0) != kept).any() and ((got > 0) & ~kept).sum() == 0 and kept.sum() > (got > 0).sum():
            hint = (" The code that crosses p is missing. Keep a code while the mass *before* it is <= p "
                    "(cumsum - prob), not while the mass including it is: the kept mass must reach p.")
        elif torch.allclose(got.sort(-1, descending=True).values, expected.sort(-1, descending=True).values,
                            atol=1e-5):
            hint = (" The right probabilities, in the wrong places: return them in token order (scatter the sorted "
                    "values back with the indices the sort gave).")
        else:
            hint = ""
        raise AssertionError(f"{what}: expected {expected.tolist() if expected.dim() == 1 else 'another result'}, "
                             f"got {got.tolist() if got.dim() == 1 else 'off by ' + _max_diff(got, expected)}.{hint}")


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
def check_guided_probs(guided_probs):
    """guided_probs(logits [2B, K, V], cfg_coef, temperature, top_k) -> [B, K, V]: what the next codes come from."""
    g = torch.Generator().manual_seed(0)
    random_logits = torch.randn(4, 3, 16, generator=g) * 2                      # B = 2 prompts, K = 3, V = 16
    tied = torch.tensor([[[3.0, 2.0, 1.0, 1.0, 0.0]], [[1.0, 1.0, 0.0, 0.0, 0.0]]])   # mixed at coef 3: 7 4 3 3 0
    cases = [(random_logits, 3.0, 1.0, 5, "B=2 prompts, K=3, cfg 3, temperature 1, top-k 5"),
             (random_logits, 1.0, 0.7, 16, "cfg 1 (no guidance), temperature 0.7, top-k 16 (all)"),
             (random_logits, 3.0, 1.5, 4, "cfg 3, temperature 1.5, top-k 4"),
             (tied, 3.0, 1.0, 3, "guided logits [7, 4, 3, 3, 0] (a tie at the 3rd), top-k 3")]
    for logits, coef, temperature, top_k, what in cases:
        B = logits.shape[0] // 2
        cond, uncond = logits.split(B)
        package = lambda c, u, t=temperature: top_k_filter(                  # noqa: E731
            torch.softmax(classifier_free_guidance(c, u, coef) / t, dim=-1), top_k)
        expected = package(cond, uncond)                                       # [B, K, V]
        what = f"guided_probs on {what}"
        got = guided_probs(logits.clone(), coef, temperature, top_k)
        _is_tensor(got, what)
        if got.shape == logits.shape:
            raise AssertionError(f"{what}: got shape {tuple(got.shape)}, one row per row of the doubled batch. The "
                                 f"first B rows (prompts) and the last B (null condition) mix into one distribution "
                                 f"per prompt: [B, K, V] = {tuple(expected.shape)}.")
        if _close(got, expected, what):
            continue
        cond_p, uncond_p = torch.softmax(cond / temperature, -1), torch.softmax(uncond / temperature, -1)
        mixed_probs = uncond_p + coef * (cond_p - uncond_p)
        if torch.allclose(got, package(uncond, cond), atol=1e-5):
            hint = (" The halves are swapped: the first B rows are the prompts' (conditional) logits, the last B "
                    "the null condition's.")
        elif torch.allclose(got, top_k_filter(mixed_probs.clamp(min=0), top_k), atol=1e-5) or \
                torch.allclose(got, mixed_probs, atol=1e-5) or (got < -1e-6).any():
            hint = (" Guidance mixes the *logits* (log-probabilities), then one softmax turns the guided logits into "
                    "probabilities; mixing probabilities gives negative values and is not what the package does.")
        elif torch.allclose(got, package(cond, uncond, 1 / temperature), atol=1e-5):
            hint = " Divide the guided logits by the temperature (T > 1 flattens), do not multiply."
        elif torch.allclose(got, top_k_filter(torch.softmax((cond + coef * (cond - uncond)) / temperature, -1),
                                              top_k), atol=1e-5):
            hint = (" The guidance formula is uncond + coef · (cond − uncond): coef 1 must give the conditional "
                    "logits.")
        elif not torch.allclose(got.sum(-1), torch.ones(got.shape[:-1]), atol=1e-5):
            hint = " Each distribution should sum to 1: renormalise after cutting to the top k."
        elif ((expected > 0) & (got == 0)).any():
            hint = (" A code the package keeps was cut: top-k keeps every code at least as likely as the k-th, ties "
                    "included (minicraft.generate.sampling.top_k_filter).")
        else:
            hint = ""
        raise AssertionError(f"{what} is off by {_max_diff(got, expected)}.{hint}")


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

def _window_plan(duration, max_duration, stride, frame_rate=50):
    """minicraft.api's sliding window for these settings: (prompt frames, frames in all) per window."""
    settings = SimpleNamespace(duration=duration, max_duration=max_duration, extend_stride=stride,
                               frame_rate=frame_rate)
    return MusicGen.window_plan(settings)


@_checker("10_long_generation")
def check_num_windows(fn):
    for args in [(6, 2, 1), (60, 30, 18), (5, 10, 2), (10, 10, 2), (3, 2, 1.5)]:
        _expect(fn(*args), len(_window_plan(*args)),
               f"duration {args[0]} s, window {args[1]} s, stride {args[2]} s (windows until one reaches the end)")


@_checker("10_long_generation")
def check_extend_once(extend_once):
    """extend_once(tokens, generate, duration, max_duration, extend_stride, frame_rate) -> the tokens one window on."""
    B, K = 2, 3
    for duration, max_duration, stride, frame_rate in [(6, 2, 1, 50), (60, 30, 18, 50), (3, 2, 1.5, 50),
                                                       (7, 2, 0.5, 10)]:
        plan = _window_plan(duration, max_duration, stride, frame_rate)
        settings = f"duration {duration} s, window {max_duration} s, stride {stride} s, {frame_rate} frames/s"
        step = int(stride * frame_rate)
        counter = [0]

        def new_codes(n):                  # distinct values, so a frame kept twice or lost shows
            counter[0] += n
            return torch.arange(counter[0] - n, counter[0]).expand(B, K, n)

        window = new_codes(plan[0][1])                         # the first window [B, K, frames], no prompt
        tokens = window.clone()                                # everything so far
        for i, (given, frames) in enumerate(plan[1:], start=2):
            calls = []

            def generate(prompt, n):
                out = torch.cat([prompt, new_codes(n - prompt.shape[-1])], dim=-1)    # [B, K, n]
                calls.append((prompt.clone(), n, out.clone()))
                return out

            got = extend_once(tokens.clone(), generate, duration, max_duration, stride, frame_rate)
            what = f"{settings}: window {i} of {len(plan)}"
            assert len(calls) == 1, f"{what}: call generate(prompt, frames) once per window, not {len(calls)} times."
            prompt, n, window_out = calls[0]
            if prompt.shape[-1] != given:
                if prompt.shape[-1] == step:
                    hint = (f" That is the stride. The window advances by the stride ({stride:g} s), so the prompt "
                            f"is what it overlaps: the last max_duration - extend_stride = "
                            f"{max_duration - stride:g} s.")
                else:
                    hint = f" The prompt is the last max_duration - extend_stride = {max_duration - stride:g} s."
                raise AssertionError(f"{what}: the prompt should have {given} frames, got {prompt.shape[-1]}.{hint}")
            if not torch.equal(prompt, window[..., step:]):    # the package: the last window minus its first stride
                raise AssertionError(f"{what}: the prompt has the right length but not the right frames: it is the "
                                     f"*end* of the tokens so far, tokens[..., -{given}:].")
            if n != frames:
                if n == frames - given:
                    hint = (" That counts only the new frames: generate's frames is the whole window, the prompt "
                            "included (the window starts with it).")
                elif n == int(max_duration * frame_rate):
                    hint = (f" That is a full window, past the end: the last window makes only the frames still "
                            f"missing to reach {duration:g} s.")
                else:
                    hint = ""
                raise AssertionError(f"{what}: generate should be asked for {frames} frames, got {n}.{hint}")
            expected = torch.cat([tokens, window_out[..., given:]], dim=-1)            # the package's chunks
            _is_tensor(got, what)
            if got.shape != expected.shape:
                hint = ""
                if got.shape[-1] == expected.shape[-1] + given:
                    hint = (" The new window starts with its prompt, which the tokens already hold: append only "
                            "the frames after it.")
                elif got.shape[-1] == frames:
                    hint = " Return everything so far followed by the new frames, not the new window alone."
                raise AssertionError(f"{what}: expected the tokens so far plus {frames - given} new frames, shape "
                                     f"{tuple(expected.shape)}; got {tuple(got.shape)}.{hint}")
            if not torch.equal(got, expected):
                raise AssertionError(f"{what}: the result has the right shape but not the right frames: the tokens "
                                     "so far, unchanged, then the window's frames after its prompt.")
            tokens, window = expected, window_out
        assert tokens.shape[-1] == int(duration * frame_rate)


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


# --- 00b_audio_fundamentals ---

def _alias(f, sample_rate):
    return abs(f - round(f / sample_rate) * sample_rate)


@_checker("00b_audio_fundamentals")
def check_alias_frequency(fn):
    """alias_frequency(f, sample_rate) -> the frequency (Hz, 0..Nyquist) a tone of f Hz is heard at."""
    cases = [(1000, 8000), (4000, 8000), (12_500, 8000), (7000, 8000), (5000, 8000), (8000, 8000), (9000, 8000),
             (17_000, 8000), (30_000.5, 44_100), (440, 16_000), (15_000, 16_000)]
    for f, sample_rate in cases:
        got, expected = fn(f, sample_rate), _alias(f, sample_rate)
        if abs(float(got) - expected) < 1e-6:
            continue
        nyquist = sample_rate / 2
        hint = ""
        if float(got) < 0:
            hint = " A frequency is never negative: a tone just below a multiple of the sample rate folds to the" \
                   " distance from it, so take the absolute value."
        elif float(got) > nyquist:
            hint = (f" A sampled tone is always heard between 0 and Nyquist ({nyquist:g} Hz here). Removing whole"
                    " multiples of the sample rate (f % sample_rate, or f - sample_rate) is only half of it: a"
                    " frequency between Nyquist and the sample rate folds back down, to sample_rate minus it"
                    " (sin(2π(sr − f)n/sr) = −sin(2πfn/sr)). In one step: |f − round(f / sr) · sr|.")
        raise AssertionError(f"a {f:g} Hz tone sampled at {sample_rate} Hz is heard at {expected:g} Hz, "
                             f"got {got!r}.{hint}")


def _htk_mel(f):
    return 2595 * math.log10(1 + f / 700)


@_checker("00b_audio_fundamentals")
def check_hz_to_mel(fn):
    """hz_to_mel(f) -> the HTK mel value of f Hz, 2595 · log10(1 + f / 700)."""
    for f in [1000.0, 0.0, 700.0, 4000.0, 8000.0, 123.4]:
        got, expected = float(fn(f)), _htk_mel(f)
        if abs(got - expected) < 1e-6 * max(1.0, expected):
            continue
        hint = ""
        if f > 0 and abs(got / expected - math.log(10)) < 1e-6:
            hint = " That is ln, the natural log: the constant 2595 goes with log10 (with ln it would be 1127)."
        elif abs(got - 2595 * math.log10(1 + f / 1000)) < 1e-6 * max(1.0, expected):
            hint = " The corner frequency of the HTK formula is 700 Hz, not 1000: 2595 · log10(1 + f / 700)."
        elif f == 0 or not math.isfinite(got) or abs(got - 2595 * math.log10(f / 700)) < 1e-6 * expected:
            hint = " 0 Hz must be 0 mel: the formula is log10(1 + f / 700), with the 1 inside the log."
        raise AssertionError(f"hz_to_mel({f:g}) should be {expected:.4f} mel, got {got:.4f}.{hint}")


@_checker("00b_audio_fundamentals")
def check_stft_frames(fn):
    """stft_frames(num_samples, n_fft, hop, center) -> the number of frames torch.stft makes."""
    for num_samples, n_fft, hop in [(32_000, 1024, 256), (16_000, 400, 160), (1000, 512, 128), (3000, 1024, 300)]:
        x = torch.zeros(num_samples)
        for center in [True, False]:
            expected = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), center=center,
                                  return_complex=True).shape[-1]
            got = fn(num_samples, n_fft, hop, center)
            if got == expected:
                continue
            hint = ""
            if center and got == num_samples // hop or not center and got == (num_samples - n_fft) // hop:
                hint = " Count the first frame too: frames start at 0, hop, 2·hop, ..., so it is 1 + (how many hops fit)."
            elif center and got == 1 + (num_samples - n_fft) // hop:
                hint = (" With center=True the signal is first padded by n_fft // 2 on each side, so that frame m is"
                        " centred on sample m · hop: 1 + num_samples // hop frames.")
            elif not center and got in (1 + num_samples // hop, num_samples // hop):
                hint = " Without centring nothing is padded, and the last frame must fit whole: 1 + (T − n_fft) // hop."
            raise AssertionError(f"{num_samples} samples, n_fft {n_fft}, hop {hop}, center={center}: torch.stft "
                                 f"makes {expected} frames, got {got!r}.{hint}")


# --- 04b_codec_from_primitives ---

def _seeded_like(module: torch.nn.Module, g: torch.Generator) -> torch.nn.Module:
    """Give a package module seeded random weights (the global RNG untouched)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.4)
    return module.eval()


def _same_length_conv(h, w, b, dilation, mode):
    total = (w.shape[-1] - 1) * dilation                      # keep the length; the larger half on the left
    if total:
        h = F.pad(h, (total - total // 2, total // 2), mode=mode)
    return F.conv1d(h, w, b, dilation=dilation)


@_checker("04b_codec_from_primitives")
def check_seanet_block(fn):
    """seanet_block(x, w1, b1, w2, b2, dilation) == seanet.ResidualBlock (non-causal, reflect, identity skip)."""
    from minicraft.modules.seanet import ResidualBlock, SEANetConfig
    g = torch.Generator().manual_seed(0)
    for dim, dilation, length in [(8, 1, 20), (6, 2, 25), (4, 4, 30)]:
        block = _seeded_like(ResidualBlock(dim, 3, dilation, SEANetConfig()), g)
        c1, c2 = block.block[1].conv["conv"], block.block[3].conv["conv"]
        w1, b1, w2, b2 = (t.detach().clone() for t in (c1.weight, c1.bias, c2.weight, c2.bias))
        x = torch.randn(2, dim, length, generator=g)
        with torch.no_grad():
            expected = block(x)
            got = fn(x.clone(), w1, b1, w2, b2, dilation)
        case = f"seanet_block on x [2, {dim}, {length}], dilation {dilation}"
        _is_tensor(got, case)
        if got.shape != expected.shape:
            hint = ""
            if tuple(got.shape[:2]) == tuple(expected.shape[:2]):
                hint = (f" The block must keep the length (the skip adds x to it): before the 3-tap conv pad "
                        f"(3 − 1)·dilation = {2 * dilation} samples in all, {dilation} on each side, by reflection; "
                        f"the 1x1 conv needs none.")
            raise AssertionError(f"{case}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}.{hint}")
        if _close(got, expected, case):
            continue
        conv = lambda h, w, b, d=1, mode="reflect": _same_length_conv(h, w, b, d, mode)   # noqa: E731
        d = dilation
        mistakes = [
            (conv(F.elu(conv(F.elu(x), w1, b1, d)), w2, b2),
             " Add the input back: the block returns x + conv1x1(...), the skip connection."),
            (x + F.elu(conv(F.elu(conv(x, w1, b1, d)), w2, b2)),
             " The activation goes before each convolution, not after: x + conv1x1(ELU(conv3(ELU(x))))."),
            (x + conv(F.elu(conv(x, w1, b1, d)), w2, b2),
             " The activation goes before each convolution: ELU(x) first, then ELU between the two convs."),
            (x + conv(conv(F.elu(x), w1, b1, d), w2, b2),
             " The activation goes before each convolution: an ELU before the 1x1 conv too."),
            (x + conv(F.elu(conv(F.elu(x), w1, b1, 1)), w2, b2),
             f" The dilation is not applied: the 3 taps are {d} samples apart (F.conv1d(..., dilation={d})), "
             f"with {d} samples of padding on each side."),
            (x + conv(F.elu(conv(F.elu(x), w1, b1, d, "constant")), w2, b2, 1, "constant"),
             " Pad by reflection (F.pad(..., mode='reflect')), as the package does, not with zeros: the samples "
             "near the edges differ."),
        ]
        hint = next((h for wrong, h in mistakes if torch.allclose(got.float(), wrong, atol=1e-5, rtol=1e-4)), "")
        raise AssertionError(f"{case}: wrong values (max difference {_max_diff(got, expected)} from "
                             f"seanet.ResidualBlock).{hint}")


def _no_conv_transpose(*args, **kwargs):
    raise AssertionError("conv_transpose_by_hand: write the transposed convolution by hand (each input frame adds "
                         "a copy of the kernel at t·stride), without F.conv_transpose1d.")


@_checker("04b_codec_from_primitives")
def check_conv_transpose_by_hand(fn):
    """conv_transpose_by_hand(x, weight, bias, stride, causal) == seanet.ConvTranspose1d, by overlap-add."""
    from minicraft.modules.seanet import ConvTranspose1d
    g = torch.Generator().manual_seed(1)
    for cin, cout, kernel, stride, causal, frames in [(3, 2, 4, 2, False, 5), (2, 3, 5, 2, False, 6),
                                                      (4, 3, 10, 5, False, 7), (2, 3, 4, 2, True, 6),
                                                      (3, 2, 16, 8, True, 4)]:
        layer = _seeded_like(ConvTranspose1d(cin, cout, kernel, stride, causal=causal), g)
        conv = layer.convtr["convtr"]
        weight, bias = conv.weight.detach().clone(), conv.bias.detach().clone()
        x = torch.randn(2, cin, frames, generator=g)
        with torch.no_grad():
            expected = layer(x)
            full = F.conv_transpose1d(x, weight, bias, stride)                    # [B, Cout, (T - 1)·s + k]
            unflipped = F.conv_transpose1d(x, weight.flip(-1), bias, stride)
            no_bias = F.conv_transpose1d(x, weight, None, stride)
            overwritten = x.new_zeros(full.shape)
            for t in range(frames):
                overwritten[..., t * stride:t * stride + kernel] = torch.einsum("bc,cok->bok", x[..., t], weight)
            overwritten = overwritten + bias[:, None]
        saved = F.conv_transpose1d, torch.conv_transpose1d
        F.conv_transpose1d = torch.conv_transpose1d = _no_conv_transpose
        try:
            with torch.no_grad():
                got = fn(x.clone(), weight.clone(), bias.clone(), stride, causal)
        finally:
            F.conv_transpose1d, torch.conv_transpose1d = saved
        case = (f"conv_transpose_by_hand on x [2, {cin}, {frames}], weight [{cin}, {cout}, {kernel}], stride "
                f"{stride}, causal={causal}")
        _is_tensor(got, case)
        extra = kernel - stride
        if got.shape != expected.shape:
            hint = ""
            if tuple(got.shape) == tuple(full.shape):
                hint = (f" Trim the {extra} = kernel − stride extra samples: (T − 1)·stride + kernel = "
                        f"{full.shape[-1]} -> T·stride = {frames * stride}.")
            raise AssertionError(f"{case}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}.{hint}")
        if _close(got, expected, case):
            continue
        right = extra if causal else extra // 2
        trim = lambda y, r: y[..., extra - r:y.shape[-1] - r]                      # noqa: E731
        mistakes = [
            (trim(overwritten, right), " Overlapping kernel copies add up (+=): a later frame must not overwrite "
                                       "what an earlier one wrote."),
            (trim(no_bias, right), " Add the bias (once per output sample, after the overlap-add)."),
            (trim(unflipped, right), " The kernel is reversed: frame t adds weight[c, o, j] at sample t·stride + j "
                                     "(with zero-stuffing and F.conv1d, reverse the kernel in time)."),
        ] + [(trim(full, r), " Causal: trim all kernel − stride samples from the right (no output waits for a "
                             "later frame)." if causal else
              f" Non-causal: trim (kernel − stride) // 2 = {extra // 2} from the right and the rest "
              f"({extra - extra // 2}) from the left.") for r in range(extra + 1) if r != right]
        hint = next((h for wrong, h in mistakes if torch.allclose(got.float(), wrong, atol=1e-5, rtol=1e-4)), "")
        raise AssertionError(f"{case}: wrong values (max difference {_max_diff(got, expected)} from "
                             f"seanet.ConvTranspose1d).{hint}")


# --- 13_listening_lab ---

def _listening_clips(sample_rate: int = 16000) -> list[torch.Tensor]:
    """Three 1-s clips [1, T] far apart in loudness: a held tone, a sparse click train, a low hum."""
    t = torch.arange(sample_rate, dtype=torch.float32) / sample_rate
    tone = 0.3 * torch.sin(2 * math.pi * 440 * t)
    clicks = torch.zeros(sample_rate)
    burst = 0.2 * torch.sin(2 * math.pi * 2000 * t[:80]) * torch.linspace(1, 0, 80)   # 5 ms, decaying
    for start in range(0, sample_rate - 80, sample_rate // 4):
        clicks[start:start + 80] = burst
    hum = 0.05 * torch.sin(2 * math.pi * 60 * t)           # K-weighting's high-pass makes a low hum quiet
    return [x[None] for x in (tone, clicks, hum)]


@_checker("13_listening_lab")
def check_loudness_match(fn):
    from minicraft.audio import loudness

    sample_rate = 16000
    for target in (-23.0, -30.0):
        wavs = _listening_clips(sample_rate)
        originals = [w.clone() for w in wavs]
        got = fn(wavs, sample_rate, target)
        assert all(torch.equal(w, o) for w, o in zip(wavs, originals)), \
            "the input clips were changed in place: return scaled copies (wav * gain), leave the inputs as they are"
        assert isinstance(got, (list, tuple)) and len(got) == len(wavs), \
            f"return a list with one clip per input clip ({len(wavs)}), got {type(got).__name__}" + \
            (f" of length {len(got)}" if isinstance(got, (list, tuple)) else "")
        for w, g in zip(wavs, got):
            _same_shape(g, w, "each returned clip")
        before = [loudness(w, sample_rate) for w in wavs]
        after = [loudness(g.float(), sample_rate) for g in got]
        if all(abs(a - target) < 0.05 for a in after):
            for w, g in zip(wavs, got):
                scale = float((g * w).sum() / (w * w).sum())
                assert _close(g, w * scale, "each returned clip", atol=1e-6, rtol=1e-4), \
                    "the loudness is right but the waveform changed shape: scale each clip by one gain, " \
                    "without clipping or compressing it"
            continue
        case = f"target {target:g} LUFS: the clips measure " + ", ".join(f"{a:.1f}" for a in after) + \
               " LUFS (the inputs " + ", ".join(f"{b:.1f}" for b in before) + ")"
        applied = [a - b for a, b in zip(after, before)]                 # the gain each clip got, in dB
        wanted = [target - b for b in before]
        peaks = [float(g.abs().max()) for g in got]
        if max(peaks) - min(peaks) < 1e-4 * max(peaks):
            hint = (" Every clip has the same peak: you matched peaks, not loudness. A short click and a held "
                    "tone with the same peak are far apart in loudness; measure each clip with "
                    "minicraft.audio.loudness and scale it to the target.")
        elif all(abs(p - 2 * w) < 0.05 for p, w in zip(applied, wanted)):
            hint = (" Each clip got twice the gain it needs, in dB: 10 ** (dB / 10) is a power ratio; an amplitude "
                    "gain is 10 ** (dB / 20), because power goes with amplitude squared.")
        elif all(abs(p + w) < 0.05 for p, w in zip(applied, wanted)):
            hint = (" The gain has the wrong sign: a clip quieter than the target needs a positive gain, "
                    "gain_db = target_lufs - measured loudness.")
        elif max(applied) - min(applied) < 0.05:
            hint = (" Every clip got the same gain, so their differences in loudness remain: measure each clip "
                    "and give each its own gain.")
        else:
            hint = (" For each clip: gain_db = target_lufs - loudness(wav, sample_rate), then multiply the clip "
                    "by 10 ** (gain_db / 20).")
        raise AssertionError(case + "; each should measure the target, within 0.05 LU." + hint)


# --- 05b_training_the_lm ---

def _next_code_reference(outputs, codes, pattern):
    """Per-codebook mean cross-entropy [K] of the pattern's outputs, the package's way."""
    logits, mask = pattern.revert_logits(outputs)                       # [B, K, T, V], [K, T]
    return torch.stack([F.cross_entropy(logits[:, k][:, mask[k]].flatten(0, 1), codes[:, k][:, mask[k]].flatten())
                        for k in range(codes.shape[1])])


def _next_code_mistakes(outputs, codes, pattern):
    """What the usual mistakes compute, each with the hint that explains it."""
    B, K, S, V = outputs.shape
    T = codes.shape[-1]
    layout = pattern.layout[:, :S]
    same_step, clamped, unreverted = [], [], []
    for k in range(K):
        here = (layout[k] >= 0) & (layout[k] < T)                       # no shift: step s scored on step s
        same_step.append(F.cross_entropy(outputs[:, k][:, here].flatten(0, 1), codes[:, k, layout[k][here]].flatten()))
        frames = layout[k, 1:].clamp(0, T - 1)                          # every step counted, padding clamped
        clamped.append(F.cross_entropy(outputs[:, k, :-1].flatten(0, 1), codes[:, k, frames].flatten()))
        unreverted.append(F.cross_entropy(outputs[:, k, :T].flatten(0, 1), codes[:, k].flatten()))
    return [
        (torch.stack(same_step), "the output at step s predicts the code at step s + 1 (the next one), not the code "
         "at step s that it already sees as input: shift by one step"),
        (torch.stack(clamped), "steps where the pattern holds no code for a codebook (its layout is -1 or a frame "
         ">= T: the special token) were counted as if they held a frame; leave them out of the loss"),
        (torch.stack(unreverted), "scored output t against frame t: right only for the parallel pattern. With "
         "delays, frame t of codebook k sits at step t + 1 + delays[k]; follow pattern.layout to find it"),
    ]


@_checker("05b_training_the_lm")
def check_next_code_loss(fn):
    from minicraft.models.patterns import delay_pattern, parallel_pattern
    g = torch.Generator().manual_seed(0)
    B, K, T, V = 2, 4, 7, 11
    codes = torch.randint(0, V, (B, K, T), generator=g)
    for name, pattern in [("delay pattern, delays [0, 1, 2, 3]", delay_pattern(K, T)),
                          ("delay pattern, delays [0, 2, 2, 5]", delay_pattern(K, T, [0, 2, 2, 5])),
                          ("parallel pattern", parallel_pattern(K, T))]:
        outputs = torch.randn(B, K, pattern.valid_steps, V, generator=g)   # what lm(sequence) returns
        try:
            got = fn(outputs, codes, pattern)
        except (IndexError, RuntimeError) as error:
            if "out of bounds" in str(error) or "out of range" in str(error):
                raise AssertionError(f"{name}: {error}. A target was the special token (id {V}, one past the "
                                     "last code): steps where the pattern holds no code must be left out of the "
                                     "loss, not scored") from error
            raise
        want = _next_code_reference(outputs, codes, pattern)
        got = torch.as_tensor(got)
        if got.dim() == 0:
            raise AssertionError(f"{name}: expected one loss per codebook, shape ({K},), got a single number; "
                                 "average over each codebook's valid positions separately")
        if _close(got, want, f"{name}: per-codebook loss"):
            continue
        for wrong, hint in _next_code_mistakes(outputs, codes, pattern):
            if _close(got, wrong, name):
                raise AssertionError(f"{name}: expected {want.tolist()}, got {got.tolist()}: {hint}.")
        raise AssertionError(f"{name}: expected {want.tolist()}, got {got.tolist()} (max difference "
                             f"{_max_diff(got, want)}). Target of the output at step s: the code at step s + 1.")


# --- 04c_codec_training ---

def _ema_reference(cluster_size, embed_avg, latents, codes, decay):
    """The package's EMA step (EMAQuantizer.update with no dead-code replacement) on one codebook."""
    from types import SimpleNamespace

    from minicraft.modules.rvq import Codebook
    from minicraft.toyworld.train import EMAQuantizer
    C, D = embed_avg.shape
    codebook = Codebook(C, D)
    fake = SimpleNamespace(quantizer=SimpleNamespace(codebooks=[codebook]), config=SimpleNamespace(codebook_size=C))
    quantizer = EMAQuantizer(fake, decay, dead_threshold=0.0)
    quantizer.load_state_dict(dict(cluster_size=cluster_size[None].clone(), embed_avg=embed_avg[None].clone(),
                                   inited=torch.ones(1, dtype=torch.bool)))
    quantizer.update(0, latents, codes)
    return quantizer.cluster_size[0], quantizer.embed_avg[0], codebook.embed.detach().clone()


def _ema_cases():
    g = torch.Generator().manual_seed(0)
    for decay, C, D, N in [(0.9, 6, 3, 10), (0.99, 8, 4, 40)]:
        cluster_size = torch.rand(C, generator=g) * 3
        cluster_size[-1] = 0.0                                   # a code nobody ever used
        embed_avg = torch.randn(C, D, generator=g) * cluster_size[:, None]
        latents = torch.randn(N, D, generator=g)
        codes = torch.randint(C - 2, (N,), generator=g)           # the last two codes unused in this batch
        yield decay, cluster_size, embed_avg, latents, codes


@_checker("04c_codec_training")
def check_ema_update(fn):
    """fn(cluster_size [C], embed_avg [C, D], latents [N, D], codes [N], decay) -> (cluster_size, embed_avg, codebook)."""
    for decay, cluster_size, embed_avg, latents, codes in _ema_cases():
        case = f"ema_update with decay {decay}, {len(cluster_size)} codes"
        got = fn(cluster_size.clone(), embed_avg.clone(), latents.clone(), codes.clone(), decay)
        assert isinstance(got, tuple) and len(got) == 3, \
            f"{case}: return a tuple (cluster_size, embed_avg, codebook), got {type(got).__name__}."
        want = _ema_reference(cluster_size, embed_avg, latents, codes, decay)
        counts = torch.bincount(codes, minlength=len(cluster_size)).float()
        sums = torch.zeros_like(embed_avg).index_add_(0, codes, latents)
        for name, g, w, old, batch in [("cluster_size", got[0], want[0], cluster_size, counts),
                                       ("embed_avg", got[1], want[1], embed_avg, sums)]:
            if _close(g, w, f"{case}: {name}"):
                continue
            if _close(g, (1 - decay) * old + decay * batch, name):
                raise AssertionError(f"{case}: {name} has the decay the wrong way round. The old average keeps "
                                     f"weight decay ({decay}) and the batch gets 1 - decay: "
                                     f"new = decay * old + (1 - decay) * batch.")
            raise AssertionError(f"{case}: {name} expected {w.tolist()}, got {g.tolist()} (max difference "
                                 f"{_max_diff(g, w)}). {name} = decay * old + (1 - decay) * this batch's "
                                 f"{'count per code' if name == 'cluster_size' else 'sum of vectors per code'}.")
        codebook = got[2]
        _same_shape(codebook, want[2], f"{case}: codebook")
        assert torch.isfinite(codebook).all(), \
            (f"{case}: the codebook has NaN or inf where a code's count is 0 (the last code was never used). "
             f"Laplace-smooth the counts before dividing: (cluster_size + 1e-5) / (n + C * 1e-5) * n, "
             f"n = cluster_size.sum().")
        if _close(codebook, got[1], f"{case}: codebook") and not _close(codebook, want[2], f"{case}: codebook"):
            raise AssertionError(f"{case}: the codebook equals embed_avg: those are sums of vectors. Divide each "
                                 f"code's sum by its (smoothed) cluster size to get the mean of its vectors.")
        assert _close(codebook, want[2], f"{case}: codebook", atol=1e-4), \
            (f"{case}: codebook expected {want[2].tolist()}, got {codebook.tolist()} (max difference "
             f"{_max_diff(codebook, want[2])}). Each code = embed_avg / its Laplace-smoothed cluster size.")


@_checker("04c_codec_training")
def check_straight_through(fn):
    """fn(x, q) -> a tensor with q's value whose gradient goes to x unchanged."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, generator=g).requires_grad_()
    q = torch.randn(4, 3, generator=g).requires_grad_()   # a leaf with a gradient slot, to see if it gets one
    upstream = torch.randn(4, 3, generator=g)
    out = fn(x, q)
    _same_shape(out, q, "straight_through(x, q)")
    if not torch.allclose(out.detach(), q.detach(), atol=1e-6):
        hint = " You returned x: the decoder must get the quantized vectors q." \
            if torch.allclose(out.detach(), x.detach()) else ""
        raise AssertionError(f"straight_through(x, q): the forward value must equal q.{hint}")
    assert out.requires_grad, ("straight_through(x, q): the output has no gradient path at all; the gradient must "
                               "reach x (the encoder). Did you detach everything, or return q detached?")
    out.backward(upstream)
    assert x.grad is not None and x.grad.abs().sum() > 0, \
        ("straight_through(x, q): no gradient reaches x, the encoder's output, so the encoder would never learn. "
         "Keep x in the graph and detach only the correction: x + (q - x).detach().")
    assert torch.allclose(x.grad, upstream, atol=1e-6), \
        (f"straight_through(x, q): the gradient at x should be the decoder's gradient unchanged (identity in the "
         f"backward pass), got a difference of {_max_diff(x.grad, upstream)}.")
    assert q.grad is None or q.grad.abs().sum() == 0, \
        ("straight_through(x, q): q received a gradient. The codes learn by EMA, not through this path: "
         "detach the whole correction (q - x).")


# --- 08b_melody_and_stereo ---

@_checker("08b_melody_and_stereo")
def check_interleave_stereo(fn):
    """interleave_stereo(left, right) == minicraft.models.stereo.interleave: [B, K, F] twice -> [B, 2K, F]."""
    from minicraft.models.stereo import interleave
    g = torch.Generator().manual_seed(0)
    for B, K, frames in [(1, 4, 5), (2, 4, 3), (3, 2, 7), (1, 1, 4)]:
        left = torch.randint(0, 2048, (B, K, frames), generator=g)
        right = torch.randint(0, 2048, (B, K, frames), generator=g)
        got = fn(left.clone(), right.clone())
        case = f"interleave_stereo on left and right [{B}, {K}, {frames}]"
        _is_tensor(got, case)
        expected = interleave(left, right)
        if got.shape != expected.shape:
            hint = ""
            if tuple(got.shape) == (B, K, 2 * frames):
                hint = (" You interleaved the frames (audiocraft's per_timestep=True, which the released models do "
                        "not use): interleave the codebooks, rows 2k and 2k + 1, each still F frames long.")
            elif tuple(got.shape) in ((B, K, 2, frames), (B, 2, K, frames)):
                hint = " The two channels are stacked but not merged: reshape to [B, 2K, F]."
            raise AssertionError(f"{case}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}.{hint}")
        if got.dtype != left.dtype:
            raise AssertionError(f"{case}: codes are integer ids ({left.dtype}), got {got.dtype}; build the result "
                                 f"from the codes themselves (torch.stack, reshape) so that it keeps their dtype.")
        if torch.equal(got, expected):
            continue
        mistakes = [
            (torch.cat([left, right], dim=1),
             " All the left codebooks come before the right ones (torch.cat): the rows must alternate, left k at "
             "2k and right k at 2k + 1, so that each level's pair sits side by side and the delays "
             "[0, 0, 1, 1, ...] give both the same step."),
            (interleave(right, left),
             " Left and right are swapped: in each pair the left codebook comes first (row 2k), the right one "
             "second (row 2k + 1)."),
            (torch.cat([right, left], dim=1),
             " The right channel's codebooks all come first: the rows must alternate, left k at 2k, right k at "
             "2k + 1."),
        ]
        hint = next((h for wrong, h in mistakes if torch.equal(got, wrong)), "")
        raise AssertionError(f"{case}: wrong rows. Row 2k must be left[:, k] and row 2k + 1 right[:, k].{hint}")


@_checker("08b_melody_and_stereo")
def check_tile_or_cut(fn):
    """tile_or_cut(x [B, T, 12], frames) == minicraft.modules.chroma.fit_length: loop a short chroma, cut a long one."""
    from minicraft.modules.chroma import fit_length
    g = torch.Generator().manual_seed(1)
    for B, T, frames in [(1, 5, 12), (2, 51, 235), (1, 241, 235), (2, 7, 7), (1, 3, 2)]:
        x = torch.rand(B, T, 12, generator=g)
        got = fn(x.clone(), frames)
        case = f"tile_or_cut on a chroma [{B}, {T}, 12] to {frames} frames"
        _is_tensor(got, case)
        expected = fit_length(x, frames)
        if got.shape != expected.shape:
            hint = ""
            if got.dim() == 3 and got.shape[1] == T and got.shape[2] != 12:
                hint = " Tile along time (dim 1), not along the 12 classes."
            elif got.dim() == 3 and got.shape[1] == math.ceil(frames / T) * T:
                hint = f" Enough whole copies, but then cut them to the first {frames} frames."
            elif got.dim() == 3 and got.shape[1] != frames:
                hint = f" The result must have exactly {frames} frames, whatever the input's length."
            raise AssertionError(f"{case}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}.{hint}")
        if _close(got, expected, case, atol=0, rtol=0):
            continue
        copies = math.ceil(frames / T)
        mistakes = [
            (torch.cat([x, x.new_zeros(B, max(frames - T, 0), 12)], dim=1)[:, :frames],
             " A short melody loops: repeat it from its start, do not pad it with zeros (a frame of zeros is no "
             "class at all, and its argmax reads as C)."),
            (torch.cat([x, x[:, -1:].expand(B, max(frames - T, 0), 12)], dim=1)[:, :frames],
             " Repeat the whole melody from its start, not its last frame held."),
            (x[:, torch.arange(frames) * T // frames],
             " The melody must be tiled, not stretched: output frame t is input frame t mod T (the tune plays "
             "again at its own speed), not frame t·T/frames."),
            (x.repeat(1, copies, 1)[:, -frames:],
             " Keep the start: the first `frames` frames of the repeated melody, not the last."),
        ]
        hint = next((h for wrong, h in mistakes if torch.equal(got, wrong)), "")
        raise AssertionError(f"{case}: wrong values (max difference {_max_diff(got, expected)} from "
                             f"chroma.fit_length).{hint}")


# ---------------------------------------------------------------- 14 · fine-tuning with LoRA

@_checker("14_fine_tuning")
def check_lora_linear(fn):
    from minicraft.modules.lora import LoRALinear

    torch.manual_seed(14)
    for rank, alpha in ((4, 8.0), (2, 2.0)):
        weight, x = torch.randn(12, 10), torch.randn(3, 5, 10)
        layer = LoRALinear(weight, None, rank=rank, alpha=alpha)
        with torch.no_grad():
            layer.loras[0].B.normal_()
        A, B = layer.loras[0].A.detach(), layer.loras[0].B.detach()
        with torch.no_grad():
            expected = layer(x)
        got = fn(x, weight, A, B, alpha)
        case = f"rank {rank}, alpha {alpha:g}"
        if _close(got, expected, case):
            continue
        base, update = x @ weight.T, (x @ A.T) @ B.T
        mistakes = [
            (base + update, " The update is not scaled: multiply (x Aᵀ) Bᵀ by alpha / rank, the rank being A's "
                            "number of rows."),
            (base + alpha * update, " The update is scaled by alpha; LoRA scales it by alpha / rank, so that changing "
                                    "the rank does not change how large the update is at the start."),
            (base, " That is the frozen product alone: add the update, (alpha / rank) · (x Aᵀ) Bᵀ."),
            ((alpha / rank) * update, " That is the update alone: the frozen weight still computes x Wᵀ, and the "
                                      "update is added to it."),
        ]
        hint = next((h for wrong, h in mistakes if torch.allclose(got.float(), wrong, atol=1e-5, rtol=1e-4)), "")
        raise AssertionError(f"{case}: wrong values (max difference {_max_diff(got, expected)} from the package's "
                             f"LoRALinear).{hint}")
