"""The exercise checkers of notebook 04b: worked solutions pass, stubs get a hint, typical mistakes get a helpful
message."""

import pytest
import torch
import torch.nn.functional as F

import exercises          # notebooks/exercises.py (pytest's pythonpath: pyproject.toml)
from exercise_testing import checker_tests


CHECKS = [
    ("04b_codec_from_primitives", "check_seanet_block", "seanet_block"),
    ("04b_codec_from_primitives", "check_conv_transpose_by_hand", "conv_transpose_by_hand"),
]


# --- wrong residual blocks ---

def _conv(h, w, b, dilation=1, mode="reflect"):
    total = (w.shape[-1] - 1) * dilation
    return F.conv1d(F.pad(h, (total - total // 2, total // 2), mode=mode), w, b, dilation=dilation)


def _block_without_skip(x, w1, b1, w2, b2, d):
    return _conv(F.elu(_conv(F.elu(x), w1, b1, d)), w2, b2)


def _block_activation_after(x, w1, b1, w2, b2, d):
    return x + F.elu(_conv(F.elu(_conv(x, w1, b1, d)), w2, b2))


def _block_without_dilation(x, w1, b1, w2, b2, d):
    return x + _conv(F.elu(_conv(F.elu(x), w1, b1, 1)), w2, b2)


def _block_zero_padding(x, w1, b1, w2, b2, d):
    return x + _conv(F.elu(_conv(F.elu(x), w1, b1, d, "constant")), w2, b2, 1, "constant")


def _block_unpadded(x, w1, b1, w2, b2, d):
    h = F.conv1d(F.elu(F.conv1d(F.elu(x), w1, b1, dilation=d)), w2, b2)
    return x[..., d:x.shape[-1] - d] + h


def _block_shifted(x, w1, b1, w2, b2, d):
    """Right length, but the dilated conv padded all on the left: neither the package nor a listed mistake."""
    h = F.conv1d(F.pad(F.elu(x), (2 * d, 0), mode="reflect"), w1, b1, dilation=d)
    return x + F.conv1d(F.elu(h), w2, b2)


# --- wrong transposed convolutions ---

def _overlap_add(x, weight, stride, overwrite=False, flip=False):
    B, _, T = x.shape
    k = weight.shape[-1]
    kernel = weight.flip(-1) if flip else weight
    y = x.new_zeros(B, weight.shape[1], (T - 1) * stride + k)
    for t in range(T):
        part = torch.einsum("bc,cok->bok", x[..., t], kernel)
        if overwrite:
            y[..., t * stride:t * stride + k] = part
        else:
            y[..., t * stride:t * stride + k] += part
    return y


def _trim(y, k, stride, right):
    extra = k - stride
    return y[..., extra - right:y.shape[-1] - right]


def _transpose_untrimmed(x, w, b, s, causal=False):
    return _overlap_add(x, w, s) + b[:, None]


def _transpose_overwriting(x, w, b, s, causal=False):
    extra = w.shape[-1] - s
    return _trim(_overlap_add(x, w, s, overwrite=True) + b[:, None], w.shape[-1], s, extra if causal else extra // 2)


def _transpose_without_bias(x, w, b, s, causal=False):
    extra = w.shape[-1] - s
    return _trim(_overlap_add(x, w, s), w.shape[-1], s, extra if causal else extra // 2)


def _transpose_flipped(x, w, b, s, causal=False):
    extra = w.shape[-1] - s
    return _trim(_overlap_add(x, w, s, flip=True) + b[:, None], w.shape[-1], s, extra if causal else extra // 2)


def _transpose_trimmed_on_the_left(x, w, b, s, causal=False):
    extra = w.shape[-1] - s
    return _trim(_overlap_add(x, w, s) + b[:, None], w.shape[-1], s, extra - extra // 2)   # the halves swapped


def _transpose_causal_split(x, w, b, s, causal=False):
    extra = w.shape[-1] - s
    return _trim(_overlap_add(x, w, s) + b[:, None], w.shape[-1], s, extra // 2)   # ignores `causal`


def _transpose_with_torch(x, w, b, s, causal=False):
    extra = w.shape[-1] - s
    return _trim(F.conv_transpose1d(x, w, b, s), w.shape[-1], s, extra if causal else extra // 2)


MISTAKES = [
    ("check_seanet_block", _block_without_skip, "skip connection"),
    ("check_seanet_block", _block_activation_after, "before each convolution, not after"),
    ("check_seanet_block", _block_without_dilation, "dilation is not applied"),
    ("check_seanet_block", _block_zero_padding, "reflection"),
    ("check_seanet_block", _block_unpadded, "must keep the length"),
    ("check_seanet_block", _block_shifted, "wrong values \\(max difference [0-9.e-]+ from seanet.ResidualBlock\\)\\.$"),
    ("check_conv_transpose_by_hand", _transpose_untrimmed, "Trim the 2 = kernel − stride extra samples"),
    ("check_conv_transpose_by_hand", _transpose_overwriting, "add up"),
    ("check_conv_transpose_by_hand", _transpose_without_bias, "Add the bias"),
    ("check_conv_transpose_by_hand", _transpose_flipped, "kernel is reversed"),
    ("check_conv_transpose_by_hand", _transpose_trimmed_on_the_left, "Non-causal: trim \\(kernel − stride\\) // 2"),
    ("check_conv_transpose_by_hand", _transpose_causal_split, "Causal: trim all"),
    ("check_conv_transpose_by_hand", _transpose_with_torch, "by hand"),
]

test_worked_solution_is_correct, test_stub_points_to_the_solution, test_a_typical_mistake_gets_its_hint = \
    checker_tests(CHECKS, MISTAKES)


def test_conv_transpose_is_given_back_after_the_check():
    original = F.conv_transpose1d
    with pytest.raises(AssertionError):
        exercises.check_conv_transpose_by_hand(_transpose_with_torch)
    assert F.conv_transpose1d is original
    x, w = torch.randn(1, 2, 3), torch.randn(2, 1, 4)
    assert F.conv_transpose1d(x, w, stride=2).shape == (1, 1, 8)
