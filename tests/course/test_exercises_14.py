"""Notebook 14's exercise checker: the worked solution passes, the stub gets a hint, typical mistakes get a helpful
message."""

from exercise_testing import checker_tests

CHECKS = [
    ("14_fine_tuning", "check_lora_linear", "lora_linear"),
]


def unscaled(x, weight, A, B, alpha):
    return x @ weight.T + (x @ A.T) @ B.T


def scaled_by_alpha(x, weight, A, B, alpha):
    return x @ weight.T + alpha * (x @ A.T) @ B.T


def frozen_only(x, weight, A, B, alpha):
    return x @ weight.T


def update_only(x, weight, A, B, alpha):
    return alpha / A.shape[0] * (x @ A.T) @ B.T


MISTAKES = [
    ("check_lora_linear", unscaled, "not scaled"),
    ("check_lora_linear", scaled_by_alpha, "alpha / rank, so that"),
    ("check_lora_linear", frozen_only, "frozen product alone"),
    ("check_lora_linear", update_only, "update alone"),
]

test_worked_solution_is_correct, test_stub_points_to_the_solution, test_a_typical_mistake_gets_its_hint = \
    checker_tests(CHECKS, MISTAKES)
