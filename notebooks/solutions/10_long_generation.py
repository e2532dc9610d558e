"""Worked solutions to the exercises of notebook 10."""
import torch


def num_windows(duration, max_duration, stride):
    windows, start = 1, 0.0
    while start + max_duration < duration:       # this window does not reach the end: slide
        start += stride
        windows += 1
    return windows


def extend_once(tokens, generate, duration, max_duration, extend_stride, frame_rate):
    window = int(max_duration * frame_rate)               # frames in a full window
    stride = int(extend_stride * frame_rate)              # frames the window advances by
    prompt = tokens[..., -(window - stride):]             # the last max_duration - extend_stride seconds
    start = tokens.shape[-1] - prompt.shape[-1]           # the frame where the next window begins
    frames = min(int(duration * frame_rate) - start, window)   # the last window stops at duration
    new_window = generate(prompt, frames)                 # [B, K, frames], starting with the prompt
    return torch.cat([tokens, new_window[..., prompt.shape[-1]:]], dim=-1)   # keep only what is new
