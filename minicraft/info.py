"""``minicraft info``: what a model is, without loading it.

Sizes come from the files themselves (safetensors headers, file sizes) when
the model is local or cached; otherwise from the published facts below.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from huggingface_hub import try_to_load_from_cache

from minicraft.fast import kernels, machine
from minicraft.files import cache_dir
from minicraft.formats.checkpoints import CheckpointError, tensor_layout

KNOWN = {
    "facebook/musicgen-small": "MusicGen small: ~300M-parameter LM (1024 wide, 24 layers, 16 heads), "
                               "T5-base text encoder, EnCodec 32 kHz (4 codebooks x 2048, 50 frames/s)",
    "facebook/musicgen-medium": "MusicGen medium: ~1.5B-parameter LM (1536 wide, 48 layers, 24 heads), "
                                "T5-base, EnCodec 32 kHz",
    "facebook/musicgen-large": "MusicGen large: ~3.3B-parameter LM (2048 wide, 48 layers, 32 heads), "
                               "T5-base, EnCodec 32 kHz",
    **{f"facebook/musicgen-stereo-{size}": f"MusicGen stereo {size}: the {size} LM predicting 8 codebooks (left "
                                           "and right interleaved), T5-base, EnCodec 32 kHz on each channel"
       for size in ("small", "medium", "large")},
    "facebook/musicgen-melody": "MusicGen melody: the medium LM (1536 wide, 48 layers) without cross-attention: a "
                                "melody's chroma (235 frames) and the T5-base text are prepended; EnCodec 32 kHz",
    "facebook/musicgen-melody-large": "MusicGen melody large: the large LM (2048 wide, 48 layers), chroma and text "
                                      "prepended; EnCodec 32 kHz",
    "facebook/musicgen-stereo-melody": "MusicGen stereo melody: musicgen-melody predicting 8 codebooks (left and "
                                       "right interleaved); EnCodec 32 kHz on each channel",
    "facebook/musicgen-stereo-melody-large": "MusicGen stereo melody large: musicgen-melody-large predicting 8 "
                                             "codebooks; EnCodec 32 kHz on each channel",
    "facebook/audiogen-medium": "AudioGen medium: ~1.5B-parameter LM (1536 wide, 48 layers, 24 heads), "
                                "T5-large text encoder, EnCodec 16 kHz (4 codebooks x 2048, 50 frames/s)",
}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "state_dict.bin",
                "compression_state_dict.bin", "config.json")


def safetensors_params(path: Path) -> int:
    """Number of values stored in a safetensors file, read from its (checked) header only."""
    return sum(math.prod(shape) for _, _, shape, _, _ in tensor_layout(path))


def cached_folder(repo_id: str) -> Path | None:
    for name in WEIGHT_FILES:
        hit = try_to_load_from_cache(repo_id, name)
        if isinstance(hit, str):
            return Path(hit).parent
    return None


def human(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.1f} {unit}" if unit != "B" else f"{int(n_bytes)} B"
        n_bytes /= 1024
    return ""


FAST_PATH = ("each transformer layer's decoding step in one C call, the LM's bfloat16/int8 products in C, "
             "the codec's transposed convs as one conv, long clips decoded in chunks")


def describe(name: str, cls) -> str:
    lines = [f"{name} ({cls.__name__})"]
    if name in KNOWN:
        lines.append("  " + KNOWN[name])
    folder = Path(name).expanduser() if Path(name).expanduser().is_dir() else cached_folder(name)
    if folder is None:
        lines.append("  not in the local cache: fetch it with `minicraft download "
                     f"{name}` (needs a network), then it works offline.")
        return "\n".join(lines)
    if not any((folder / name).is_file() for name in ("config.json", "state_dict.bin")):
        raise CheckpointError(f"{folder} is not a model folder: it has neither a config.json (Hugging Face format) "
                              "nor a state_dict.bin (audiocraft format).")
    lines.append(f"  files in {folder}:")
    params = 0
    for path in sorted(folder.iterdir()):
        if path.is_file():
            lines.append(f"    {path.name:32s} {human(path.stat().st_size):>10s}")
            if path.suffix == ".safetensors":
                params += safetensors_params(path)
    config_path = folder / "config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text())
        codec = config.get("audio_encoder", {})
        dec = config.get("decoder", {})
        if codec:
            channels = "stereo (left and right codebooks interleaved)" if dec.get("audio_channels") == 2 else "mono"
            if config.get("model_type") == "musicgen_melody":
                channels += ", melody (chroma) conditioning"
            lines.append(f"  sample rate {codec.get('sampling_rate')} Hz, {channels}, "
                         f"{dec.get('num_codebooks')} codebooks of "
                         f"{dec.get('vocab_size')}, LM {dec.get('hidden_size')} wide x "
                         f"{dec.get('num_hidden_layers')} layers")
    generation_path = folder / "generation_config.json"
    temperature = json.loads(generation_path.read_text()).get("temperature") if generation_path.is_file() else None
    if temperature is not None:
        lines.append(f"  samples at temperature {temperature:g} unless told otherwise (its generation_config.json "
                     "recommends it; audiocraft's default is 1)")
    if params:
        lines.append(f"  {params / 1e6:.0f}M parameters: about {human(params * 4)} of memory in float32, "
                     f"{human(params * 2)} in bfloat16/float16 (plus the KV cache, small next to it)")
    lines.append(f"  `minicraft generate` runs it on the fast path (minicraft.fast): {FAST_PATH}; "
                 f"the C kernels {'are off (MINICRAFT_KERNELS=0)' if not kernels.enabled else 'are built on first use'}")
    return "\n".join(lines)


def describe_device(refresh: bool = False) -> str:
    """This CPU for ``minicraft info --device``: what it is, its memory's speed, each setting's cost, the choice."""
    p = machine.profile(refresh=refresh)
    lines = [f"CPU: {p.cpu.model}",
             f"  vector instructions: {' '.join(p.cpu.flags) or 'none reported'}; native bfloat16: "
             f"{'yes' if p.cpu.native_bf16 else 'no'}",
             f"  minicraft's kernels: {p.kernels}, {p.threads} thread{'s' if p.threads > 1 else ''}",
             f"  memory: {p.bandwidth_gbs:.1f} GB/s streaming read (the fastest of 5 sums over 256 MiB)",
             f"one decoding step's products at musicgen-small's shapes ({p.layers} layers, 2 rows: one prompt "
             "with CFG); the floor is the weights' bytes at that speed:",
             f"  {'setting':16s} {'MB read':>8s} {'floor ms':>9s} {'measured ms':>12s} {'of the floor':>13s}"]
    for name, ms in p.step_ms.items():
        lines.append(f"  {name:16s} {p.step_mb[name]:8.0f} {p.floor_ms(name):9.1f} {ms:12.1f} "
                     f"{p.floor_ms(name) / ms:12.0%}")
    dtype, quantize = machine.SETTINGS[p.choice]
    lines.append(f"--dtype auto --quantize auto pick {p.choice} (--dtype {dtype}"
                 f"{' --quantize ' + quantize if quantize else ''}): {p.reason}.")
    lines.append("  each model is measured at its own shapes the first time it loads; figures cached in "
                 f"{cache_dir()} (--remeasure measures again)")
    return "\n".join(lines)
