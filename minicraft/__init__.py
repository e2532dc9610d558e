"""minicraft: a small, readable re-implementation of AudioCraft (MusicGen, AudioGen).

    from minicraft import MusicGen
    model = MusicGen.get_pretrained("small")
    model.set_generation_params(duration=8)
    wav = model.generate(["lo-fi beat with mellow piano"])   # [B, C, samples]
"""

__version__ = "0.1.0"

__all__ = ["MusicGen", "AudioGen", "finetune", "__version__"]


def __getattr__(name):
    """Import the models on first use, so ``import minicraft.modules.attention`` stays light."""
    if name in ("MusicGen", "AudioGen"):
        from minicraft import api        # deferred: importing any submodule would otherwise load them all
        return getattr(api, name)
    if name == "finetune":
        from minicraft.tune.train import finetune    # deferred: as the models, loaded on first use
        return finetune
    raise AttributeError(f"module 'minicraft' has no attribute {name!r}")
