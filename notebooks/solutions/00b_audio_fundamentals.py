"""Worked solutions to the exercises of notebook 00b."""
import math


def alias_frequency(f, sample_rate):
    # the samples cannot tell f from f ± k·sample_rate, nor from sample_rate − f: take the nearest multiple of the
    # sample rate away and keep the distance, which lies between 0 and Nyquist
    return abs(f - round(f / sample_rate) * sample_rate)


def hz_to_mel(f):
    return 2595 * math.log10(1 + f / 700)            # HTK: log10 (not ln), corner at 700 Hz, 0 Hz -> 0 mel


def stft_frames(num_samples, n_fft, hop, center):
    if center:                                       # padded by n_fft // 2 each side: frame m centred on m · hop
        return 1 + num_samples // hop
    return 1 + (num_samples - n_fft) // hop          # only whole frames, starting at 0, hop, 2·hop, ...
