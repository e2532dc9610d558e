"""Worked solutions to the exercises of notebook 00."""


def frames_for_duration(seconds, frame_rate):
    return int(seconds * frame_rate)


def tokens_generated(seconds, frame_rate, num_codebooks):
    return frames_for_duration(seconds, frame_rate) * num_codebooks     # one integer per codebook per frame


def count_parameters(module):
    return sum(p.numel() for p in module.parameters())
