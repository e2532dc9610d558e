"""Notebook 00b's checkers: the worked solutions pass, the stubs get the pointer, typical mistakes get a hint."""

import math

import numpy as np

from exercise_testing import checker_tests


CHECKS = [
    ("00b_audio_fundamentals", "check_alias_frequency", "alias_frequency"),
    ("00b_audio_fundamentals", "check_hz_to_mel", "hz_to_mel"),
    ("00b_audio_fundamentals", "check_stft_frames", "stft_frames"),
]

MISTAKES = [
    # forgetting to fold what lies between Nyquist and the sample rate
    ("check_alias_frequency", lambda f, sr: f % sr, "folds back down, to sample_rate minus it"),
    ("check_alias_frequency", lambda f, sr: f, "always heard between 0 and Nyquist"),
    ("check_alias_frequency", lambda f, sr: abs(f - sr), "always heard between 0 and Nyquist"),
    ("check_alias_frequency", lambda f, sr: f - round(f / sr) * sr, "never negative"),
    # the mel formula's usual slips
    ("check_hz_to_mel", lambda f: 2595 * math.log(1 + f / 700), "natural log"),
    ("check_hz_to_mel", lambda f: 2595 * math.log10(1 + f / 1000), "700 Hz, not 1000"),
    ("check_hz_to_mel", lambda f: 2595 * np.log10(np.float64(f) / 700), "with the 1 inside the log"),
    # frame counting
    ("check_stft_frames", lambda n, n_fft, hop, center: n // hop if center else (n - n_fft) // hop,
     "Count the first frame"),
    ("check_stft_frames", lambda n, n_fft, hop, center: 1 + (n - n_fft) // hop, "padded by n_fft // 2"),
    ("check_stft_frames", lambda n, n_fft, hop, center: 1 + n // hop, "last frame must fit whole"),
]

test_worked_solution_is_correct, test_stub_points_to_the_solution, test_a_typical_mistake_gets_its_hint = \
    checker_tests(CHECKS, MISTAKES)


