"""Worked solutions for notebook 04c (training the codec)."""
import torch
import torch.nn.functional as F


def ema_update(cluster_size, embed_avg, latents, codes, decay):
    """One EMA step of a codebook: cluster_size [C], embed_avg [C, D], latents [N, D], codes [N]
    -> (new cluster_size [C], new embed_avg [C, D], codebook [C, D])."""
    onehot = F.one_hot(codes, len(cluster_size)).float()                  # [N, C]: which code each vector picked
    cluster_size = decay * cluster_size + (1 - decay) * onehot.sum(0)     # the old average keeps weight `decay`
    embed_avg = decay * embed_avg + (1 - decay) * onehot.t() @ latents    # [C, D]: sums of each code's vectors
    n = cluster_size.sum()
    eps = 1e-5
    smoothed = (cluster_size + eps) / (n + len(cluster_size) * eps) * n   # Laplace smoothing: never 0
    return cluster_size, embed_avg, embed_avg / smoothed[:, None]         # a code = the mean of its vectors


def straight_through(x, q):
    """The value of q; the gradient goes to x unchanged (q is treated as a constant)."""
    return x + (q - x).detach()
