"""Worked solutions to the exercises of notebook 10."""


def window_starts(duration, max_duration, stride):
    starts, t = [0.0], 0.0
    while t + max_duration < duration:       # this window does not reach the end: slide
        t += stride
        starts.append(t)
    return starts


def num_windows(duration, max_duration, stride):
    return len(window_starts(duration, max_duration, stride))


def keep_prompt(tokens, prompt_frames):
    return tokens[..., prompt_frames:]
