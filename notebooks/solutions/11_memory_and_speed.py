"""Worked solutions to the exercises of notebook 11."""
import torch


def bytes_per_step(num_params, dtype):
    return num_params * torch.empty(0, dtype=dtype).element_size()   # every weight is read once per step


def flops_per_byte(rows, bytes_per_param):
    return 2 * rows / bytes_per_param      # a multiply and an add per weight per row


def max_steps_per_second(num_params, bytes_per_param, bandwidth_gb_s):
    return bandwidth_gb_s * 1e9 / (num_params * bytes_per_param)
