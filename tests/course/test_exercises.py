"""The exercise checkers: worked solutions pass, stubs get a hint, typical mistakes get a helpful message.

``CHECKS`` lists every checker of notebooks 00-11 with its worked solution, ``MISTAKES`` at least one typical wrong
answer per checker with the hint it must get (tests/course/test_every_exercise_is_checked.py holds every checker
to both). Later chapters test theirs in tests/course/test_exercises_<stem>.py, with the same two lists.
"""

import math

import pytest
import torch
import torch.nn.functional as F

import exercises          # notebooks/exercises.py (pytest's pythonpath: pyproject.toml)
from exercise_testing import checker_tests, solutions
from minicraft.modules.t5 import relative_position_bucket


CHECKS = [
    ("00_tour", "check_frames_for_duration", "frames_for_duration"),
    ("00_tour", "check_tokens_generated", "tokens_generated"),
    ("00_tour", "check_count_parameters", "count_parameters"),
    ("01_tokenization", "check_pieces_to_text", "pieces_to_text"),
    ("01_tokenization", "check_fertility", "fertility"),
    ("01_tokenization", "check_mask_from_ids", "mask_from_ids"),
    ("02_attention", "check_softmax", "my_softmax"),
    ("02_attention", "check_causal_mask", "my_causal_mask"),
    ("02_attention", "check_merge_heads", "merge_heads"),
    ("03_transformer_t5", "check_gated_ffn", "gated_ffn"),
    ("03_transformer_t5", "check_decoder_bucket", "decoder_bucket"),
    ("03_transformer_t5", "check_masked_mean", "masked_mean"),
    ("04_codec", "check_bitrate", "bitrate"),
    ("04_codec", "check_rvq_decode", "rvq_decode"),
    ("04_codec", "check_rvq_residual", "rvq_residual"),
    ("05_language_model", "check_build_delayed", "build_delayed"),
    ("05_language_model", "check_masked_loss", "masked_loss"),
    ("06_sampling", "check_softmax_with_temperature", "softmax_with_temperature"),
    ("06_sampling", "check_top_k_probs", "top_k_probs"),
    ("06_sampling", "check_top_p_filter", "top_p_filter"),
    ("07_generation_loop", "check_cfg_mix", "cfg_mix"),
    ("07_generation_loop", "check_kv_cache_bytes", "kv_cache_bytes"),
    ("07_generation_loop", "check_guided_probs", "guided_probs"),
    ("08_official_musicgen", "check_decoder_layer_params", "decoder_layer_params"),
    ("08_official_musicgen", "check_hf_to_minicraft", "hf_to_minicraft"),
    ("08_official_musicgen", "check_weights_gib", "weights_gib"),
    ("09_audiogen", "check_samples_per_frame", "samples_per_frame"),
    ("09_audiogen", "check_nyquist", "nyquist"),
    ("09_audiogen", "check_audio_seconds_per_window", "audio_seconds_per_window"),
    ("10_long_generation", "check_num_windows", "num_windows"),
    ("10_long_generation", "check_extend_once", "extend_once"),
    ("11_memory_and_speed", "check_bytes_per_step", "bytes_per_step"),
    ("11_memory_and_speed", "check_flops_per_byte", "flops_per_byte"),
    ("11_memory_and_speed", "check_max_steps_per_second", "max_steps_per_second"),
]


# ---------------------------------------------------------------- typical mistakes, by notebook

# 03 transformer and T5

def _abs_distance_bucket(relative, num_buckets, max_distance):
    return solutions("03_transformer_t5").decoder_bucket(-relative.abs(), num_buckets, max_distance)


def _unclamped_bucket(relative, num_buckets, max_distance):
    distance = (-relative).clamp(min=0)
    exact = num_buckets // 2
    far = exact + (torch.log(distance.float() / exact) / math.log(max_distance / exact) * (num_buckets - exact)).long()
    return torch.where(distance < exact, distance, far)


# 04 codec

def _rvq_decode_all_books(codes, codebooks):
    return sum(codebooks[j][codes[j]] for j in range(len(codebooks)))      # ignores that codes may have fewer rows


def _rvq_residual_k_plus_one(latent, codes, codebooks, k):
    return latent - sum(codebooks[j][codes[j]] for j in range(min(k + 1, len(codebooks))))


# 05 language model

def _build_delayed_with(first_step, length_extra, fill=None, reverse=False):
    def build(codes, delays, special):
        delays = delays[::-1] if reverse else delays
        out = exercises._delayed_by_mistake(codes, delays, special, first_step, length_extra)
        return out if fill is None else out.masked_fill(out == special, fill)
    return build


def _build_delayed_summed(codes, delays, special):
    B, K, T = codes.shape
    out = torch.full((B, K, T + sum(delays) + 1), special)
    for k, d in enumerate(delays):
        out[:, k, 1 + d:1 + d + T] = codes[:, k]
    return out


# 06 sampling

def _top_p_by(keep, renormalise=True, token_order=True):
    """A top-p filter that keeps sorted code i where keep(sorted_probs, mass_before, p) is True."""
    def top_p_filter(logits, p):
        probs = logits.softmax(-1)
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        mass_before = sorted_probs.cumsum(-1) - sorted_probs
        kept = sorted_probs * keep(sorted_probs, mass_before, p)
        if renormalise:
            kept = kept / kept.sum(-1, keepdim=True)
        return torch.zeros_like(probs).scatter(-1, order, kept) if token_order else kept
    return top_p_filter


def _top_p_all_ties(logits, p):
    """Finds the cut's probability, then keeps every code at least that likely (ties included)."""
    probs = logits.softmax(-1)
    sorted_probs, _ = probs.sort(dim=-1, descending=True)
    n = ((sorted_probs.cumsum(-1) - sorted_probs) <= p).sum(-1, keepdim=True)     # codes to keep
    threshold = sorted_probs.gather(-1, n - 1)
    kept = probs * (probs >= threshold)
    return kept / kept.sum(-1, keepdim=True)


# 07 generation loop

def _guided(mix="logits", swap=False, temperature_power=-1, renormalise=True, ties=True):
    """guided_probs with one thing changed: what it mixes, which half is which, how it uses the temperature..."""
    def guided_probs(logits, coef, temperature, top_k):
        cond, uncond = logits.split(logits.shape[0] // 2)
        if swap:
            cond, uncond = uncond, cond
        if mix == "logits":
            probs = torch.softmax((uncond + coef * (cond - uncond)) * temperature ** temperature_power, -1)
        elif mix == "probs":
            c, u = torch.softmax(cond / temperature, -1), torch.softmax(uncond / temperature, -1)
            probs = u + coef * (c - u)
        else:                                       # "cond": extrapolates from the conditional logits
            probs = torch.softmax((cond + coef * (cond - uncond)) / temperature, -1)
        if ties:
            kept = probs * (probs >= probs.topk(top_k, -1).values[..., -1:])
        else:
            kept = torch.zeros_like(probs).scatter(-1, probs.topk(top_k, -1).indices, probs.topk(top_k, -1).values)
        return kept / kept.sum(-1, keepdim=True) if renormalise else kept
    return guided_probs


# 10 long generation

def _extend_with(prompt_frames=None, prompt_at_start=False, frames=None, keep="new"):
    """extend_once with one thing changed: the prompt's length or place, the frames asked for, what is kept."""
    def extend_once(tokens, generate, duration, max_duration, extend_stride, frame_rate):
        window, stride = int(max_duration * frame_rate), int(extend_stride * frame_rate)
        p = (window - stride) if prompt_frames is None else prompt_frames(window, stride)
        prompt = tokens[..., :p] if prompt_at_start else tokens[..., -p:]
        start = tokens.shape[-1] - p
        n = min(int(duration * frame_rate) - start, window) if frames is None else frames(window, p)
        new_window = generate(prompt, n)
        if keep == "window":
            return torch.cat([tokens, new_window], dim=-1)
        if keep == "only":
            return new_window
        return torch.cat([tokens, new_window[..., p:]], dim=-1)
    return extend_once


MISTAKES = [
    # 00 tour
    ("check_frames_for_duration", lambda s, r: s / r, "expected 100, got 0.04"),
    ("check_tokens_generated", lambda s, r, k: int(s * r), "4 codebooks"),
    ("check_count_parameters", lambda m: len(list(m.parameters())), "a 2x3 weight and 2 biases"),
    # 01 tokenization
    ("check_pieces_to_text", lambda pieces: "".join(pieces).replace("▁", " ").strip(), "'</s>' is not text"),
    ("check_pieces_to_text", lambda pieces: "".join(p for p in pieces if p != "</s>").strip(),
     "turn it back into a space"),
    ("check_pieces_to_text", lambda pieces: "".join(p for p in pieces if p != "</s>").replace("▁", " "),
     "leading space"),
    ("check_pieces_to_text", lambda pieces: " ".join(p for p in pieces if p != "</s>").replace("▁", "").strip(),
     "The spaces are wrong"),
    ("check_fertility", lambda encode, texts: sum(len(encode(t)) / len(t.split()) for t in texts) / len(texts),
     "average of the per-text"),
    ("check_fertility", lambda encode, texts: sum(len(encode(t)) + 1 for t in texts)
     / sum(len(t.split()) for t in texts), "EOS"),
    ("check_fertility", lambda encode, texts: sum(len(t.split()) for t in texts)
     / sum(len(encode(t)) for t in texts), "words per piece"),
    ("check_fertility", lambda encode, texts: 1.0, "so fertility 2.375; got 1.000"),
    ("check_mask_from_ids", lambda ids: (ids != 0).long(), "empty \\(or None\\) prompt"),
    ("check_mask_from_ids", lambda ids: ((ids != 0) & (ids != 1)).long(), "EOS \\(id 1\\) is a real token"),
    ("check_mask_from_ids", lambda ids: (ids > 2).long(), "unknown id 2"),
    ("check_mask_from_ids", lambda ids: (ids != 0).long()[:, :-1], "expected shape \\(4, 5\\)"),
    # 02 attention
    ("check_softmax", lambda x: x.exp() / x.exp().sum(dim=-1, keepdim=True), "NaN or inf for scores around ±1000"),
    ("check_softmax", lambda x: (x - x.max()).exp() / (x - x.max()).exp().sum(dim=0, keepdim=True),
     "should sum to 1"),
    ("check_softmax", lambda x: x.exp() / x.exp().sum(), "should sum to 1"),
    ("check_softmax", lambda x: x / x.sum(dim=-1, keepdim=True), "my_softmax on random scores"),
    ("check_causal_mask", lambda tq, tk: torch.ones(tq, tk, dtype=torch.bool).tril(),
     "past keys before the new queries"),
    ("check_causal_mask", lambda tq, tk: torch.arange(tk)[None, :] > torch.arange(tk - tq, tk)[:, None], "inverted"),
    ("check_causal_mask", lambda tq, tk: torch.arange(tk)[None, :] < torch.arange(tk - tq, tk)[:, None],
     "its own position"),
    ("check_causal_mask", lambda tq, tk: torch.ones(tq, tk).tril(tk - tq), "return booleans"),
    ("check_causal_mask", lambda tq, tk: torch.ones(tq, tq, dtype=torch.bool).tril(), "expected shape \\(1, 5\\)"),
    ("check_merge_heads", lambda x: x.reshape(x.shape[0], x.shape[2], -1), "transpose\\(1, 2\\)"),
    ("check_merge_heads", lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1),
     "not the features interleaved"),
    ("check_merge_heads", lambda x: x.transpose(1, 2), "expected shape \\(2, 4, 15\\)"),
    # 03 transformer and T5
    ("check_gated_ffn", lambda x, wi_0, wi_1, wo: (F.gelu(x @ wi_0.T) * (x @ wi_1.T)) @ wo.T, "tanh approximation"),
    ("check_gated_ffn", lambda x, wi_0, wi_1, wo: (F.gelu(x @ wi_1.T, approximate="tanh") * (x @ wi_0.T)) @ wo.T,
     "goes on wi_0"),
    ("check_gated_ffn", lambda x, wi_0, wi_1, wo: F.relu(x @ wi_0.T) @ wo.T, "relu FFN"),
    ("check_gated_ffn", lambda x, wi_0, wi_1, wo: (F.gelu(x @ wi_0, approximate="tanh") * (x @ wi_1)) @ wo,
     "\\[out, in\\]"),
    ("check_decoder_bucket", relative_position_bucket, "encoder's two-sided version"),
    ("check_decoder_bucket", _abs_distance_bucket, "give them bucket 0"),
    ("check_decoder_bucket", _unclamped_bucket, "clamp the far ones"),
    ("check_masked_mean", lambda h, m: h.mean(1), "Padded positions were averaged in"),
    ("check_masked_mean", lambda h, m: (h * m[..., None]).sum(1) / m.sum(1, keepdim=True), "NaN or inf"),
    ("check_masked_mean", lambda h, m: (h * m[..., None]).sum(1), "divide by their number"),
    ("check_masked_mean", lambda h, m: (h * m[..., None]).mean(1), "still counted"),
    ("check_masked_mean", lambda h, m: h[:, 0], "masked_mean is off by"),
    # 04 codec
    ("check_bitrate", lambda r, k, codebook_size: r * k * codebook_size, "log2\\(2048\\) = 11 bits"),
    ("check_rvq_decode", lambda codes, books: sum(b[i] for i, b in zip(codes, books)) / len(codes), "their average"),
    ("check_rvq_decode", lambda codes, books: books[len(codes) - 1][codes[-1]], "last codebook's vector alone"),
    ("check_rvq_decode", lambda codes, books: sum(books[0][i] for i in codes), "its own table"),
    ("check_rvq_decode", lambda codes, books: torch.stack([b[i] for i, b in zip(codes, books)]),
     "one vector per codebook"),
    ("check_rvq_decode", _rvq_decode_all_books, "IndexError"),
    ("check_rvq_residual", lambda latent, codes, books, k: latent - books[k - 1][codes[k - 1]] if k else latent,
     "residual is cumulative"),
    ("check_rvq_residual", lambda latent, codes, books, k: sum(books[j][codes[j]] for j in range(k)) + 0 * latent,
     "That is the reconstruction"),
    ("check_rvq_residual", _rvq_residual_k_plus_one, "subtracts k \\+ 1 codebooks"),
    ("check_rvq_residual", lambda latent, codes, books, k: latent - sum(books[j][codes[j]] for j in range(k))
     if k else 0 * latent, "the latent itself"),
    # 05 language model
    ("check_build_delayed", _build_delayed_with(first_step=0, length_extra=0), "one empty step"),
    ("check_build_delayed", _build_delayed_with(first_step=0, length_extra=1), "Step 0 is the empty step"),
    ("check_build_delayed", _build_delayed_with(first_step=1, length_extra=1, fill=-1), "special token"),
    ("check_build_delayed", _build_delayed_with(first_step=1, length_extra=1, fill=0), "not a real code"),
    ("check_build_delayed", _build_delayed_with(first_step=1, length_extra=1, reverse=True), "delays are reversed"),
    ("check_build_delayed", _build_delayed_summed, "longest delay sets the length"),
    ("check_build_delayed", lambda codes, delays, special: _build_delayed_with(1, 1)(codes, delays, special)[0],
     "B = 2"),
    ("check_masked_loss", lambda lg, c, v: F.cross_entropy(lg.flatten(0, 2), c.flatten()), "leave out the positions"),
    ("check_masked_loss", lambda lg, c, v: F.cross_entropy(lg.nan_to_num().flatten(0, 2), c.flatten()),
     "averaged over every position"),
    # 06 sampling
    ("check_softmax_with_temperature", lambda x, t: torch.softmax(x * t, -1), "temperature 0.5"),
    ("check_top_k_probs", lambda p, k: torch.zeros_like(p).scatter(0, p.topk(k).indices, p.topk(k).values)
     / p.topk(k).values.sum(), "tie at the boundary"),
    ("check_top_p_filter", _top_p_by(lambda s, before, p: before + s <= p), "code that crosses p is missing"),
    ("check_top_p_filter", _top_p_by(lambda s, before, p: before < p), "NaN"),
    ("check_top_p_filter", _top_p_all_ties, "All the tied codes were kept"),
    ("check_top_p_filter", _top_p_by(lambda s, before, p: before <= p, renormalise=False), "renormalise"),
    ("check_top_p_filter", _top_p_by(lambda s, before, p: before <= p, token_order=False), "token order"),
    ("check_top_p_filter", lambda logits, p: logits, "softmax"),
    # 07 generation loop
    ("check_cfg_mix", lambda c, u, k: c + k * (c - u), "coef 1 is the conditional"),
    ("check_kv_cache_bytes", lambda l, d, b, s, r, k, cfg=True, bytes_per_number=4:
     2 * l * (2 * b if cfg else b) * int(s * r) * d * bytes_per_number, "54 steps"),
    ("check_guided_probs", _guided(mix="probs"), "mixes the \\*logits\\*"),
    ("check_guided_probs", _guided(swap=True), "halves are swapped"),
    ("check_guided_probs", _guided(temperature_power=1), "Divide the guided logits by the temperature"),
    ("check_guided_probs", _guided(mix="cond"), "coef 1 must give the conditional logits"),
    ("check_guided_probs", _guided(renormalise=False), "renormalise after cutting"),
    ("check_guided_probs", _guided(ties=False), "ties\\s+included"),
    ("check_guided_probs", lambda logits, coef, t, k: torch.softmax(logits, -1), "one row per row"),
    # 08 official MusicGen
    ("check_decoder_layer_params", lambda d, f: 8 * d * d + 2 * d * f, "3 x 2D norms"),
    ("check_hf_to_minicraft", lambda n: n.replace("decoder.model.decoder.", ""), "layers.3.fc1"),
    ("check_weights_gib", lambda n, dt: n * 4 / 2**30, "bfloat16: 2 bytes"),
    # 09 AudioGen
    ("check_samples_per_frame", lambda sr, fr: fr / sr, "16 kHz at 50 frames/s"),
    ("check_nyquist", lambda sr: sr, "half the sample rate"),
    ("check_audio_seconds_per_window", lambda m, s: m - s, "adds 2 new seconds"),
    # 10 long generation
    ("check_num_windows", lambda d, m, s: math.ceil(d / s), "windows until one reaches the end"),
    ("check_extend_once", _extend_with(prompt_frames=lambda window, stride: stride), "That is the stride"),
    ("check_extend_once", _extend_with(prompt_at_start=True), "\\*end\\* of the tokens so far"),
    ("check_extend_once", _extend_with(frames=lambda window, p: window), "past the end"),
    ("check_extend_once", _extend_with(frames=lambda window, p: window - p), "only the new frames"),
    ("check_extend_once", _extend_with(keep="window"), "append only the frames after it"),
    ("check_extend_once", _extend_with(keep="only"), "not the new window alone"),
    # 11 memory and speed
    ("check_bytes_per_step", lambda n, dt: n * 4, "bfloat16"),
    ("check_flops_per_byte", lambda r, b: r / b, "2 FLOPs"),
    ("check_max_steps_per_second", lambda n, b, bw: bw / (n * b), "4 GB per step"),
]

test_worked_solution_is_correct, test_stub_points_to_the_solution, test_a_typical_mistake_gets_its_hint = \
    checker_tests(CHECKS, MISTAKES)


def test_other_errors_are_not_swallowed():
    def broken(pieces):
        raise KeyError("oops")
    with pytest.raises(KeyError):
        exercises.check_pieces_to_text(broken)


# ---------------------------------------------------------------- the checkers' references are the package's

def test_the_top_p_reference_is_what_the_package_samples_from():
    """check_top_p_filter's expected distribution, sampled in the package's order, gives sample_top_p's draws."""
    from minicraft.generate.sampling import multinomial, sample_top_p
    probs = torch.softmax(torch.randn(3, 4, 64, generator=torch.Generator().manual_seed(0)) * 2, -1)
    for p in (0.0, 0.5, 0.9):
        filtered = exercises._top_p_reference(probs.log(), p)                   # [3, 4, 64], token order
        order = probs.sort(dim=-1, descending=True).indices
        for seed in range(20):
            torch.manual_seed(seed)
            theirs = sample_top_p(probs, p)
            torch.manual_seed(seed)
            ours = order.gather(-1, multinomial(filtered.gather(-1, order)))
            assert torch.equal(ours, theirs)


def test_extend_once_matches_the_package_sliding_window(monkeypatch):
    """The worked extend_once, window after window, gives the tokens MusicGen.generate_tokens assembles."""
    import minicraft.api
    from minicraft import MusicGen

    def fake_windows():
        counter = [0]

        def generate(prompt, frames):                 # [B, K, frames]: the prompt, then numbered new codes
            given = 0 if prompt is None else prompt.shape[-1]
            counter[0] += frames - given
            new = torch.arange(counter[0] - (frames - given), counter[0]).expand(1, 4, -1)
            return new if prompt is None else torch.cat([prompt, new], dim=-1)
        return generate

    model = MusicGen.get_pretrained("tiny", device="cpu")
    extend_once = solutions("10_long_generation").extend_once
    for duration, stride in [(6.0, 1.0), (3.0, 1.5), (5.0, 0.5)]:
        model.set_generation_params(duration=duration, extend_stride=stride)
        generate = fake_windows()
        monkeypatch.setattr(minicraft.api, "generate_codes",
                            lambda lm, cond, null, frames, prompt=None, **kwargs: generate(prompt, frames))
        theirs = model.generate_tokens(["a flute"], None)
        generate = fake_windows()
        ours = generate(None, int(model.max_duration * model.frame_rate))
        while ours.shape[-1] < int(duration * model.frame_rate):
            ours = extend_once(ours, generate, duration, model.max_duration, stride, model.frame_rate)
        assert torch.equal(ours, theirs)
