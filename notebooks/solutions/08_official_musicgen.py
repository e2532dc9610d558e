"""Worked solutions to the exercises of notebook 08."""
import re

import torch


def decoder_layer_params(dim, ffn_dim):
    attention = 3 * dim * dim + dim * dim          # packed q/k/v, then the output projection
    feed_forward = 2 * dim * ffn_dim               # linear1 and linear2, no biases
    norms = 3 * 2 * dim                            # norm1, norm_cross, norm2: weight and bias
    return 2 * attention + feed_forward + norms    # self- and cross-attention


RENAMES = {"self_attn_layer_norm": "norm1", "encoder_attn_layer_norm": "norm_cross",
           "final_layer_norm": "norm2", "fc1": "linear1", "fc2": "linear2",
           "encoder_attn.out_proj": "cross_attention.out_proj", "self_attn.out_proj": "self_attn.out_proj"}


def hf_to_minicraft(name):
    if m := re.fullmatch(r"decoder\.model\.decoder\.embed_tokens\.(\d+)\.(\w+)", name):
        return f"emb.{m[1]}.{m[2]}"
    if m := re.fullmatch(r"decoder\.lm_heads\.(\d+)\.(\w+)", name):
        return f"linears.{m[1]}.{m[2]}"
    if m := re.fullmatch(r"decoder\.model\.decoder\.layer_norm\.(\w+)", name):
        return f"out_norm.{m[1]}"
    m = re.fullmatch(r"decoder\.model\.decoder\.layers\.(\d+)\.(.+)\.(\w+)", name)
    return f"transformer.layers.{m[1]}.{RENAMES[m[2]]}.{m[3]}"


def weights_gib(num_params, dtype):
    bytes_per = torch.empty(0, dtype=dtype).element_size()
    return num_params * bytes_per / 2**30
