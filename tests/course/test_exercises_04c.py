"""Notebook 04c's exercise checkers: worked solutions pass, stubs get a hint, typical mistakes get a helpful message."""

import torch.nn.functional as F

from exercise_testing import checker_tests


def _ema(cluster_size, embed_avg, latents, codes, decay, wrong_way=False, divide=True, smooth=True):
    onehot = F.one_hot(codes, len(cluster_size)).float()
    old, new = (1 - decay, decay) if wrong_way else (decay, 1 - decay)
    cluster_size = old * cluster_size + new * onehot.sum(0)
    embed_avg = old * embed_avg + new * onehot.t() @ latents
    n = cluster_size.sum()
    size = (cluster_size + 1e-5) / (n + len(cluster_size) * 1e-5) * n if smooth else cluster_size
    return cluster_size, embed_avg, embed_avg / size[:, None] if divide else embed_avg


CHECKS = [
    ("04c_codec_training", "check_ema_update", "ema_update"),
    ("04c_codec_training", "check_straight_through", "straight_through"),
]

MISTAKES = [
    ("check_ema_update", lambda c, e, x, i, d: _ema(c, e, x, i, d, wrong_way=True), "decay the wrong way round"),
    ("check_ema_update", lambda c, e, x, i, d: _ema(c, e, x, i, d, divide=False), "equals embed_avg.*Divide"),
    ("check_ema_update", lambda c, e, x, i, d: _ema(c, e, x, i, d, smooth=False), "NaN or inf.*Laplace-smooth"),
    ("check_ema_update", lambda c, e, x, i, d: _ema(c, e, x, i, d)[:2], "return a tuple"),
    ("check_straight_through", lambda x, q: q.clone(), "no gradient reaches x"),
    ("check_straight_through", lambda x, q: x, "You returned x"),
    ("check_straight_through", lambda x, q: q.detach(), "no gradient path at all"),
    ("check_straight_through", lambda x, q: x + q - x.detach(), "q received a gradient"),
]

test_worked_solution_is_correct, test_stub_points_to_the_solution, test_a_typical_mistake_gets_its_hint = \
    checker_tests(CHECKS, MISTAKES)


