"""The checker of notebook 05b: the worked solution passes, the stub gets a hint, typical mistakes get theirs."""

import torch
import torch.nn.functional as F

from exercise_testing import checker_tests, solutions


def no_shift(outputs, codes, pattern):
    """Scores the output at step s against the code at step s: the code it already sees."""
    B, K, S, V = outputs.shape
    T = codes.shape[-1]
    losses = []
    for k in range(K):
        frames = pattern.layout[k, :S]
        keep = (frames >= 0) & (frames < T)
        losses.append(F.cross_entropy(outputs[:, k][:, keep].reshape(-1, V), codes[:, k, frames[keep]].reshape(-1)))
    return torch.stack(losses)


def counts_padding(outputs, codes, pattern):
    """Shifts right but scores every step, the empty ones clamped to a real frame."""
    B, K, S, V = outputs.shape
    T = codes.shape[-1]
    frames = pattern.layout[:, 1:S].clamp(0, T - 1)
    return torch.stack([F.cross_entropy(outputs[:, k, :-1].reshape(-1, V), codes[:, k, frames[k]].reshape(-1))
                        for k in range(K)])


def scores_special(outputs, codes, pattern):
    """Builds the sequence and scores every shifted step, special tokens included as targets."""
    B, K, S, V = outputs.shape
    sequence, _ = pattern.build(codes, V, valid_only=True)                     # special token = V
    return torch.stack([F.cross_entropy(outputs[:, k, :-1].reshape(-1, V), sequence[:, k, 1:].reshape(-1))
                        for k in range(K)])


def not_reverted(outputs, codes, pattern):
    """Output t against frame t: the parallel pattern's alignment, wrong with delays."""
    B, K, S, V = outputs.shape
    T = codes.shape[-1]
    return torch.stack([F.cross_entropy(outputs[:, k, :T].reshape(-1, V), codes[:, k].reshape(-1)) for k in range(K)])


def one_number(outputs, codes, pattern):
    return solutions("05b_training_the_lm").next_code_loss(outputs, codes, pattern).mean()


CHECKS = [("05b_training_the_lm", "check_next_code_loss", "next_code_loss")]

MISTAKES = [
    ("check_next_code_loss", no_shift, "predicts the code at step s \\+ 1"),
    ("check_next_code_loss", counts_padding, "holds no code for a codebook"),
    ("check_next_code_loss", scores_special, "A target was the special token"),
    ("check_next_code_loss", not_reverted, "right only for the parallel pattern"),
    ("check_next_code_loss", one_number, "one loss per codebook"),
]

test_worked_solution_is_correct, test_stub_points_to_the_solution, test_a_typical_mistake_gets_its_hint = \
    checker_tests(CHECKS, MISTAKES)


def test_solution_equals_the_package_on_a_real_lm():
    """On an LM's own outputs, the solution equals compute_predictions + cross-entropy, per codebook."""
    from minicraft.models.lm import LM, LMConfig
    torch.manual_seed(0)
    lm = LM(LMConfig(dim=16, num_heads=2, num_layers=1, ffn_dim=32, codebook_size=9, cross_attention=False)).eval()
    codes = torch.randint(0, 9, (2, 4, 6))
    pattern = lm.pattern(6)
    with torch.no_grad():
        outputs = lm(pattern.build(codes, lm.special_token, valid_only=True)[0])
        logits, valid = lm.compute_predictions(codes)
    want = torch.stack([F.cross_entropy(logits[:, k][valid[:, k]], codes[:, k][valid[:, k]]) for k in range(4)])
    got = solutions("05b_training_the_lm").next_code_loss(outputs, codes, pattern)
    torch.testing.assert_close(got, want)
