"""Worked solutions to the exercises of notebook 04b."""
import torch
import torch.nn.functional as F


def seanet_block(x, w1, b1, w2, b2, dilation):
    # x [B, C, T] -> [B, C, T]: x + conv1x1(ELU(conv3_dilated(ELU(x))))
    total = (w1.shape[-1] - 1) * dilation               # what the dilated kernel loses: pad it to keep T
    h = F.pad(F.elu(x), (total - total // 2, total // 2), mode="reflect")   # the larger half on the left
    h = F.conv1d(h, w1, b1, dilation=dilation)          # [B, C/2, T]: squeezed by `compress`
    h = F.conv1d(F.elu(h), w2, b2)                      # [B, C, T]: a 1x1 conv needs no padding
    return x + h                                        # the skip connection (true_skip: identity)


def conv_transpose_by_hand(x, weight, bias, stride, causal=False):
    # x [B, Cin, T], weight [Cin, Cout, k] -> [B, Cout, T·stride]
    B, _, T = x.shape
    k = weight.shape[-1]
    y = x.new_zeros(B, weight.shape[1], (T - 1) * stride + k)
    for t in range(T):                                  # frame t adds its copy of the kernel at t·stride
        y[..., t * stride:t * stride + k] += torch.einsum("bc,cok->bok", x[..., t], weight)
    y = y + bias[:, None]
    extra = k - stride                                  # samples past T·stride: the edges lacking an overlap
    right = extra if causal else extra // 2             # causal: all on the right; else the smaller half
    return y[..., extra - right:y.shape[-1] - right]
