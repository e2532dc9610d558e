"""Notebook 13's exercise checker: the worked solution passes, the stub gets a hint, typical mistakes get a helpful
message."""

from exercise_testing import checker_tests
from minicraft.audio import loudness


CHECKS = [
    ("13_listening_lab", "check_loudness_match", "loudness_match"),
]


def gain(db):
    return 10 ** (db / 20)


def peaks(wavs, sr, target):
    return [w / w.abs().max() * 0.5 for w in wavs]                                   # same peak, not loudness


def power_ratio(wavs, sr, target):
    return [w * 10 ** ((target - loudness(w, sr)) / 10) for w in wavs]               # 10 ** (dB / 10)


def wrong_sign(wavs, sr, target):
    return [w * gain(loudness(w, sr) - target) for w in wavs]


def one_gain(wavs, sr, target):
    mean = sum(loudness(w, sr) for w in wavs) / len(wavs)
    return [w * gain(target - mean) for w in wavs]                                   # one gain for every clip


def in_place(wavs, sr, target):
    return [w.mul_(gain(target - loudness(w, sr))) for w in wavs]


def db_as_factor(wavs, sr, target):
    return [w * (target - loudness(w, sr)) for w in wavs]                            # dB used as a factor


def too_few(wavs, sr, target):
    return [w * gain(target - loudness(w, sr)) for w in wavs[:-1]]


MISTAKES = [
    ("check_loudness_match", peaks, "you matched peaks, not loudness"),
    ("check_loudness_match", power_ratio, "10 \\*\\* \\(dB / 10\\) is a power ratio"),
    ("check_loudness_match", wrong_sign, "wrong sign"),
    ("check_loudness_match", one_gain, "same gain"),
    ("check_loudness_match", in_place, "changed in place"),
    ("check_loudness_match", db_as_factor, "10 \\*\\* \\(gain_db / 20\\)"),
    ("check_loudness_match", too_few, "one clip per input clip"),
]

test_worked_solution_is_correct, test_stub_points_to_the_solution, test_a_typical_mistake_gets_its_hint = \
    checker_tests(CHECKS, MISTAKES)


