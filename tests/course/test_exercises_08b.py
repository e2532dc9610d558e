"""The exercise checkers of notebook 08b: worked solutions pass, stubs get a hint, typical mistakes get a helpful
message."""
import math

import torch

from exercise_testing import checker_tests


CHECKS = [
    ("08b_melody_and_stereo", "check_interleave_stereo", "interleave_stereo"),
    ("08b_melody_and_stereo", "check_tile_or_cut", "tile_or_cut"),
]


# --- wrong interleavings: [B, K, F] twice -> [B, 2K, F] ---

def _concatenated(left, right):
    return torch.cat([left, right], dim=1)                                  # L0 L1 L2 L3 R0 R1 R2 R3


def _swapped(left, right):
    return torch.stack([right, left], dim=2).flatten(1, 2)                  # R0 L0 R1 L1 ...


def _right_first(left, right):
    return torch.cat([right, left], dim=1)


def _per_timestep(left, right):
    return torch.stack([left, right], dim=-1).flatten(-2)                   # [B, K, 2F]: frames alternate


def _stacked(left, right):
    return torch.stack([left, right], dim=2)                                # [B, K, 2, F], not merged


def _as_float(left, right):
    out = torch.zeros(left.shape[0], 2 * left.shape[1], left.shape[2])     # a float buffer filled with the ids
    out[:, 0::2], out[:, 1::2] = left, right
    return out


def _scrambled(left, right):
    """The right shape and dtype, frames mixed into the rows: none of the listed mistakes."""
    B, K, F = left.shape
    return torch.stack([left, right], dim=-1).reshape(B, 2 * K, F)


# --- wrong fits of a chroma [B, T, 12] to `frames` frames ---

def _zero_padded(x, frames):
    return torch.nn.functional.pad(x, (0, 0, 0, max(frames - x.shape[1], 0)))[:, :frames]


def _last_frame_held(x, frames):
    extra = max(frames - x.shape[1], 0)
    return torch.cat([x, x[:, -1:].repeat(1, extra, 1)], dim=1)[:, :frames]


def _stretched(x, frames):
    return torch.nn.functional.interpolate(x.transpose(1, 2), size=frames, mode="nearest").transpose(1, 2)


def _cut_at_the_end(x, frames):
    return x.repeat(1, math.ceil(frames / x.shape[1]), 1)[:, -frames:]


def _not_cut(x, frames):
    return x.repeat(1, math.ceil(frames / x.shape[1]), 1)


def _tiled_classes(x, frames):
    return x.repeat(1, 1, math.ceil(frames / x.shape[1]))


def _unchanged(x, frames):
    return x


MISTAKES = [
    ("check_interleave_stereo", _concatenated, "All the left codebooks come before the right ones"),
    ("check_interleave_stereo", _swapped, "Left and right are swapped"),
    ("check_interleave_stereo", _right_first, "right channel's codebooks all come first"),
    ("check_interleave_stereo", _per_timestep, "You interleaved the frames"),
    ("check_interleave_stereo", _stacked, "stacked but not merged"),
    ("check_interleave_stereo", _as_float, "codes are integer ids"),
    ("check_interleave_stereo", _scrambled, "wrong rows\\. Row 2k must be left\\[:, k\\] and row 2k \\+ 1 "
                                            "right\\[:, k\\]\\.$"),
    ("check_tile_or_cut", _zero_padded, "do not pad it with zeros"),
    ("check_tile_or_cut", _last_frame_held, "not its last frame held"),
    ("check_tile_or_cut", _stretched, "tiled, not stretched"),
    ("check_tile_or_cut", _cut_at_the_end, "Keep the start"),
    ("check_tile_or_cut", _not_cut, "then cut them to the first 12 frames"),
    ("check_tile_or_cut", _tiled_classes, "not along the 12 classes"),
    ("check_tile_or_cut", _unchanged, "exactly 12 frames"),
]

test_worked_solution_is_correct, test_stub_points_to_the_solution, test_a_typical_mistake_gets_its_hint = \
    checker_tests(CHECKS, MISTAKES)
