"""The exercise checkers: worked solutions pass, stubs get a hint, typical mistakes get a helpful message."""
import importlib.util
import math

import pytest
import torch
import torch.nn.functional as F

import exercises          # notebooks/exercises.py (pytest's pythonpath: pyproject.toml)
from minicraft.modules.t5 import relative_position_bucket
from paths import ROOT

SOLUTIONS = ROOT / "notebooks" / "solutions"


def solutions(name):
    spec = importlib.util.spec_from_file_location(f"solutions_{name}", SOLUTIONS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stub(*args, **kwargs):
    raise NotImplementedError


def passes(check, fn, capsys):
    check(fn)
    return capsys.readouterr().out.strip() == "correct!"


CHECKS = [
    ("01_tokenization", "check_pieces_to_text", "pieces_to_text"),
    ("01_tokenization", "check_fertility", "fertility"),
    ("01_tokenization", "check_mask_from_ids", "mask_from_ids"),
    ("02_attention", "check_softmax", "my_softmax"),
    ("02_attention", "check_causal_mask", "my_causal_mask"),
    ("02_attention", "check_merge_heads", "merge_heads"),
    ("03_transformer_t5", "check_gated_ffn", "gated_ffn"),
    ("03_transformer_t5", "check_decoder_bucket", "decoder_bucket"),
    ("03_transformer_t5", "check_masked_mean", "masked_mean"),
    ("00_tour", "check_frames_for_duration", "frames_for_duration"),
    ("00_tour", "check_tokens_generated", "tokens_generated"),
    ("00_tour", "check_count_parameters", "count_parameters"),
    ("04_codec", "check_frames_for", "frames_for"),
    ("04_codec", "check_bitrate", "bitrate"),
    ("04_codec", "check_rvq_encode", "rvq_encode"),
    ("05_language_model", "check_delay_layout", "delay_layout"),
    ("05_language_model", "check_flat_steps", "flat_steps"),
    ("05_language_model", "check_masked_loss", "masked_loss"),
    ("06_sampling", "check_softmax_with_temperature", "softmax_with_temperature"),
    ("06_sampling", "check_top_k_probs", "top_k_probs"),
    ("06_sampling", "check_top_p_kept", "top_p_kept"),
    ("07_generation_loop", "check_cfg_mix", "cfg_mix"),
    ("07_generation_loop", "check_kv_cache_bytes", "kv_cache_bytes"),
    ("07_generation_loop", "check_greedy_by_hand", "greedy_by_hand"),
    ("08_official_musicgen", "check_decoder_layer_params", "decoder_layer_params"),
    ("08_official_musicgen", "check_hf_to_minicraft", "hf_to_minicraft"),
    ("08_official_musicgen", "check_weights_gib", "weights_gib"),
    ("09_audiogen", "check_samples_per_frame", "samples_per_frame"),
    ("09_audiogen", "check_nyquist", "nyquist"),
    ("09_audiogen", "check_audio_seconds_per_window", "audio_seconds_per_window"),
    ("10_long_generation", "check_num_windows", "num_windows"),
    ("10_long_generation", "check_window_starts", "window_starts"),
    ("10_long_generation", "check_keep_prompt", "keep_prompt"),
    ("11_memory_and_speed", "check_bytes_per_step", "bytes_per_step"),
    ("11_memory_and_speed", "check_flops_per_byte", "flops_per_byte"),
    ("11_memory_and_speed", "check_max_steps_per_second", "max_steps_per_second"),
]


@pytest.mark.parametrize("notebook, check, solution", CHECKS)
def test_worked_solution_is_correct(notebook, check, solution, capsys):
    assert passes(getattr(exercises, check), getattr(solutions(notebook), solution), capsys)


@pytest.mark.parametrize("notebook, check, solution", CHECKS)
def test_stub_points_to_the_solution(notebook, check, solution, capsys):
    getattr(exercises, check)(stub)     # must not raise: the stored notebooks run with the stubs
    assert capsys.readouterr().out.strip() == f"not solved yet — see notebooks/solutions/{notebook}.py"


def test_other_errors_are_not_swallowed():
    def broken(pieces):
        raise KeyError("oops")
    with pytest.raises(KeyError):
        exercises.check_pieces_to_text(broken)


# --- 01 tokenization ---

@pytest.mark.parametrize("wrong, message", [
    (lambda pieces: "".join(pieces).replace("▁", " ").strip(), "'</s>' is not text"),
    (lambda pieces: "".join(p for p in pieces if p != "</s>").strip(), "turn it back into a space"),
    (lambda pieces: "".join(p for p in pieces if p != "</s>").replace("▁", " "), "leading space"),
    (lambda pieces: " ".join(p for p in pieces if p != "</s>").replace("▁", "").strip(), "The spaces are wrong"),
])
def test_pieces_to_text_mistakes(wrong, message):
    with pytest.raises(AssertionError, match=message):
        exercises.check_pieces_to_text(wrong)


@pytest.mark.parametrize("wrong, message", [
    (lambda encode, texts: sum(len(encode(t)) / len(t.split()) for t in texts) / len(texts), "average of the per-text"),
    (lambda encode, texts: sum(len(encode(t)) + 1 for t in texts) / sum(len(t.split()) for t in texts), "EOS"),
    (lambda encode, texts: sum(len(t.split()) for t in texts) / sum(len(encode(t)) for t in texts), "words per piece"),
    (lambda encode, texts: 1.0, "so fertility 2.375; got 1.000"),
])
def test_fertility_mistakes(wrong, message):
    with pytest.raises(AssertionError, match=message):
        exercises.check_fertility(wrong)


@pytest.mark.parametrize("wrong, message", [
    (lambda ids: (ids != 0).long(), "empty \\(or None\\) prompt"),
    (lambda ids: ((ids != 0) & (ids != 1)).long(), "EOS \\(id 1\\) is a real token"),
    (lambda ids: (ids > 2).long(), "unknown id 2"),
    (lambda ids: (ids != 0).long()[:, :-1], "expected shape \\(4, 5\\)"),
])
def test_mask_from_ids_mistakes(wrong, message):
    with pytest.raises(AssertionError, match=message):
        exercises.check_mask_from_ids(wrong)


# --- 02 attention ---

@pytest.mark.parametrize("wrong, message", [
    (lambda x: x.exp() / x.exp().sum(dim=-1, keepdim=True), "NaN or inf for scores around ±1000"),
    (lambda x: (x - x.max()).exp() / (x - x.max()).exp().sum(dim=0, keepdim=True), "should sum to 1"),
    (lambda x: x.exp() / x.exp().sum(), "should sum to 1"),
    (lambda x: x / x.sum(dim=-1, keepdim=True), "my_softmax on random scores"),
])
def test_softmax_mistakes(wrong, message):
    with pytest.raises(AssertionError, match=message):
        exercises.check_softmax(wrong)


@pytest.mark.parametrize("wrong, message", [
    (lambda tq, tk: torch.ones(tq, tk, dtype=torch.bool).tril(), "past keys before the new queries"),
    (lambda tq, tk: torch.arange(tk)[None, :] > torch.arange(tk - tq, tk)[:, None], "inverted"),
    (lambda tq, tk: torch.arange(tk)[None, :] < torch.arange(tk - tq, tk)[:, None], "its own position"),
    (lambda tq, tk: torch.ones(tq, tk).tril(tk - tq), "return booleans"),
    (lambda tq, tk: torch.ones(tq, tq, dtype=torch.bool).tril(), "expected shape \\(1, 5\\)"),
])
def test_causal_mask_mistakes(wrong, message):
    with pytest.raises(AssertionError, match=message):
        exercises.check_causal_mask(wrong)


@pytest.mark.parametrize("wrong, message", [
    (lambda x: x.reshape(x.shape[0], x.shape[2], -1), "transpose\\(1, 2\\)"),
    (lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1), "not the features interleaved"),
    (lambda x: x.transpose(1, 2), "expected shape \\(2, 4, 15\\)"),
])
def test_merge_heads_mistakes(wrong, message):
    with pytest.raises(AssertionError, match=message):
        exercises.check_merge_heads(wrong)


# --- 03 transformer and T5 ---

@pytest.mark.parametrize("wrong, message", [
    (lambda x, wi_0, wi_1, wo: (F.gelu(x @ wi_0.T) * (x @ wi_1.T)) @ wo.T, "tanh approximation"),
    (lambda x, wi_0, wi_1, wo: (F.gelu(x @ wi_1.T, approximate="tanh") * (x @ wi_0.T)) @ wo.T, "goes on wi_0"),
    (lambda x, wi_0, wi_1, wo: F.relu(x @ wi_0.T) @ wo.T, "relu FFN"),
    (lambda x, wi_0, wi_1, wo: (F.gelu(x @ wi_0, approximate="tanh") * (x @ wi_1)) @ wo, "\\[out, in\\]"),
])
def test_gated_ffn_mistakes(wrong, message):
    with pytest.raises(AssertionError, match=message):
        exercises.check_gated_ffn(wrong)


def _abs_distance_bucket(relative, num_buckets, max_distance):
    return solutions("03_transformer_t5").decoder_bucket(-relative.abs(), num_buckets, max_distance)


def _unclamped_bucket(relative, num_buckets, max_distance):
    distance = (-relative).clamp(min=0)
    exact = num_buckets // 2
    far = exact + (torch.log(distance.float() / exact) / math.log(max_distance / exact) * (num_buckets - exact)).long()
    return torch.where(distance < exact, distance, far)


@pytest.mark.parametrize("wrong, message", [
    (relative_position_bucket, "encoder's two-sided version"),
    (_abs_distance_bucket, "give them bucket 0"),
    (_unclamped_bucket, "clamp the far ones"),
])
def test_decoder_bucket_mistakes(wrong, message):
    with pytest.raises(AssertionError, match=message):
        exercises.check_decoder_bucket(wrong)


@pytest.mark.parametrize("wrong, message", [
    (lambda h, m: h.mean(1), "Padded positions were averaged in"),
    (lambda h, m: (h * m[..., None]).sum(1) / m.sum(1, keepdim=True), "NaN or inf"),
    (lambda h, m: (h * m[..., None]).sum(1), "divide by their number"),
    (lambda h, m: (h * m[..., None]).mean(1), "still counted"),
    (lambda h, m: h[:, 0], "masked_mean is off by"),
])
def test_masked_mean_mistakes(wrong, message):
    with pytest.raises(AssertionError, match=message):
        exercises.check_masked_mean(wrong)


# --- 00, 04-11: one typical mistake each ---

def _greedy_without_cfg(lm, cond, cross_mask, frames):
    """The loop of notebook 07 that forgets guidance (uses the conditional logits alone)."""
    from minicraft.generate.decoding import generate_codes
    B = cond.shape[0] // 2
    return generate_codes(lm, cond[:B], cond[B:], frames, use_sampling=False, cfg_coef=1.0)


def _rvq_without_residual(latent, codebooks):
    return torch.stack([torch.cdist(latent, book).argmin(1) for book in codebooks])


@pytest.mark.parametrize("check, wrong, message", [
    ("check_frames_for_duration", lambda s, r: s / r, "expected 100, got 0.04"),
    ("check_tokens_generated", lambda s, r, k: int(s * r), "4 codebooks"),
    ("check_count_parameters", lambda m: len(list(m.parameters())), "a 2x3 weight and 2 biases"),
    ("check_frames_for", lambda n, hop: n // hop, "round up"),
    ("check_bitrate", lambda r, k, codebook_size: r * k * codebook_size, "log2\\(2048\\) = 11 bits"),
    ("check_rvq_encode", _rvq_without_residual, "quantize the residual"),
    ("check_delay_layout", lambda K, T, d: torch.full((K, T + max(d)), -1), "S = T \\+ max delay \\+ 1"),
    ("check_flat_steps", lambda K, T: K * T, "plus the initial empty step"),
    ("check_masked_loss", lambda lg, c, v: F.cross_entropy(lg.flatten(0, 2), c.flatten()), "leave out the positions"),
    ("check_softmax_with_temperature", lambda x, t: torch.softmax(x * t, -1), "temperature 0.5"),
    ("check_top_k_probs", lambda p, k: torch.zeros_like(p).scatter(0, p.topk(k).indices, p.topk(k).values)
     / p.topk(k).values.sum(), "tie at the boundary"),
    ("check_top_p_kept", lambda p, q: p.sort(descending=True).indices[:(p.sort(descending=True).values.cumsum(0)
     <= q).sum()], "p=0 keeps only the likeliest"),
    ("check_cfg_mix", lambda c, u, k: c + k * (c - u), "coef 1 is the conditional"),
    ("check_kv_cache_bytes", lambda l, d, b, s, r, k, cfg=True, bytes_per_number=4:
     2 * l * (2 * b if cfg else b) * int(s * r) * d * bytes_per_number, "54 steps"),
    ("check_greedy_by_hand", _greedy_without_cfg, "greedy, cfg 3"),
    ("check_decoder_layer_params", lambda d, f: 8 * d * d + 2 * d * f, "3 x 2D norms"),
    ("check_hf_to_minicraft", lambda n: n.replace("decoder.model.decoder.", ""), "layers.3.fc1"),
    ("check_weights_gib", lambda n, dt: n * 4 / 2**30, "bfloat16: 2 bytes"),
    ("check_samples_per_frame", lambda sr, fr: fr / sr, "16 kHz at 50 frames/s"),
    ("check_nyquist", lambda sr: sr, "half the sample rate"),
    ("check_audio_seconds_per_window", lambda m, s: m - s, "adds 2 new seconds"),
    ("check_num_windows", lambda d, m, s: math.ceil(d / s), "windows until one reaches the end"),
    ("check_window_starts", lambda d, m, s: [i * s for i in range(math.ceil(d / m))], "window 2 s, stride 1 s"),
    ("check_keep_prompt", lambda t, n: t[..., :n], "tokens\\[..., 3:\\]"),
    ("check_bytes_per_step", lambda n, dt: n * 4, "bfloat16"),
    ("check_flops_per_byte", lambda r, b: r / b, "2 FLOPs"),
    ("check_max_steps_per_second", lambda n, b, bw: bw / (n * b), "4 GB per step"),
])
def test_later_chapter_mistakes(check, wrong, message):
    with pytest.raises(AssertionError, match=message):
        getattr(exercises, check)(wrong)
