"""Worked solutions to the exercises of notebook 09."""


def samples_per_frame(sample_rate, frame_rate):
    return sample_rate // frame_rate


def nyquist(sample_rate):
    return sample_rate / 2


def audio_seconds_per_window(max_duration, stride):
    return stride      # each window keeps max_duration - stride seconds of prompt and adds stride new ones
