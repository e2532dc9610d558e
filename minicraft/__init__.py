"""minicraft: a small, readable re-implementation of AudioCraft (MusicGen, AudioGen)."""

__version__ = "0.1.0"
