"""Worked solutions to the exercises of notebook 05b."""
import torch
import torch.nn.functional as F


def next_code_loss(outputs, codes, pattern):
    """outputs [B, K, S, V] (the LM on the pattern sequence), codes [B, K, T] -> loss per codebook [K]."""
    B, K, S, V = outputs.shape
    T = codes.shape[-1]
    losses = []
    for k in range(K):
        frames = pattern.layout[k, 1:S]                    # the frame codebook k holds at steps 1 .. S-1
        keep = (frames >= 0) & (frames < T)                # steps with a real code (not the special token)
        predictions = outputs[:, k, :S - 1][:, keep]       # the output at step s - 1 predicts step s: [B, n, V]
        targets = codes[:, k, frames[keep]]                # [B, n]
        losses.append(F.cross_entropy(predictions.reshape(-1, V), targets.reshape(-1)))
    return torch.stack(losses)                             # [K]
