"""Worked solutions to the exercises of notebook 13."""
from minicraft.audio import loudness


def loudness_match(wavs, sample_rate, target_lufs):
    matched = []
    for wav in wavs:
        gain_db = target_lufs - loudness(wav, sample_rate)     # how far this clip is from the target, in dB
        matched.append(wav * 10 ** (gain_db / 20))            # dB of amplitude: 20 · log10(gain)
    return matched
