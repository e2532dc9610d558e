"""Worked solutions to the exercises of notebook 05."""
import torch
import torch.nn.functional as F


def delay_layout(K, T, delays):
    S = T + max(delays) + 1
    steps = torch.arange(S)
    layout = steps[None, :] - 1 - torch.tensor(delays)[:, None]    # step s holds frame s - 1 - delay
    return layout.clamp(min=-1)


def flat_steps(K, T):
    # One code per step plus the initial empty step: K times more steps than the delay pattern,
    # so K times slower generation (and a K-times longer attention context).
    return K * T + 1


def masked_loss(logits, codes, valid):
    return F.cross_entropy(logits[valid], codes[valid])
