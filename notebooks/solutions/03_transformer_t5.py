"""Worked solutions to the exercises of notebook 03."""
import math

import torch
import torch.nn.functional as F


def gated_ffn(x, wi_0, wi_1, wo):
    gate = F.gelu(x @ wi_0.T, approximate="tanh")         # weights are stored [out, in], as in nn.Linear
    return (gate * (x @ wi_1.T)) @ wo.T


def decoder_bucket(relative, num_buckets, max_distance):
    distance = (-relative).clamp(min=0)                   # keys after the query all get bucket 0
    exact = num_buckets // 2
    log_ratio = torch.log(distance.float() / exact) / math.log(max_distance / exact)
    far = (exact + (log_ratio * (num_buckets - exact)).long()).clamp(max=num_buckets - 1)
    return torch.where(distance < exact, distance, far)


def masked_mean(hidden, mask):
    mask = mask[..., None].to(hidden.dtype)               # [B, L, 1]
    count = mask.sum(dim=1).clamp(min=1)                  # an empty prompt: divide by 1, not 0
    return (hidden * mask).sum(dim=1) / count
