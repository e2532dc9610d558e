"""The assembled models and their configs: the LM over codes, the EnCodec codec, the text conditioner,
the codebook patterns. Built from :mod:`minicraft.modules` only."""
