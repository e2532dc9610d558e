"""Official checkpoints -> the three parts of a model (conditioner, LM, codec).

Two layouts exist for the same models:

- **audiocraft** (``state_dict.bin`` + ``compression_state_dict.bin``): the LM
  and its ``output_proj`` in one file, the codec in the other (or a pointer
  to a Hugging Face EnCodec repository); the T5 encoder is fetched separately
  under the name the config gives (``t5-base``, ``t5-large``);
- **Hugging Face** (``config.json`` + ``model.safetensors``): everything in one
  state dict, under ``text_encoder.``, ``audio_encoder.``, ``decoder.`` and
  ``enc_to_dec_proj.``, plus the tokenizer files.

Every size comes from the checkpoint's own config. Modules are built on the
``meta`` device and receive the file's (memory-mapped) tensors directly, so
loading needs little more memory than the model itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from minicraft.formats import hub
from minicraft.formats.checkpoints import (CheckpointError, check_counts, load_into, on_meta, quantize_mapped,
                                           read_audiocraft, read_json, read_state_dict, release_file_pages,
                                           tensor_names)
from minicraft.formats.encodec import load_encodec_audiocraft, load_encodec_hf
from minicraft.formats.lm_names import hf_names, lm_state_from_hf
from minicraft.formats.t5 import load_t5_encoder, t5_from_state
from minicraft.models.codec import Encodec
from minicraft.models.conditioning import TextConditioner
from minicraft.models.lm import LM, LMConfig
from minicraft.models.melody import MelodyConditioner, find_demucs
from minicraft.models.stereo import StereoCodec
from minicraft.fast.int8 import int8_modules, quantize_lm_int8, quantize_rows
from minicraft.generate.sampling import check_setting
from minicraft.fast.machine import auto_setting
from minicraft.modules.chroma import ChromaConfig
from minicraft.modules.tokenizer import T5Tokenizer

AUDIOCRAFT_FILES = ["state_dict.bin", "compression_state_dict.bin"]
HF_FILES = ["config.json", "generation_config.json", "spiece.model", "tokenizer.json", "tokenizer_config.json"]
HF_OPTIONAL = ("generation_config.json", "spiece.model", "tokenizer.json", "tokenizer_config.json")
OUTPUT_PROJ = "condition_provider.conditioners.description.output_proj."
CHROMA = "condition_provider.conditioners.self_wav."


@dataclass
class Components:
    name: str
    lm: LM
    conditioner: TextConditioner
    codec: Encodec | StereoCodec
    max_duration: float      # seconds the LM was trained on (one generation window)
    melody: MelodyConditioner | None = None      # musicgen-melody's chroma, prepended with the text
    # the sampling defaults the checkpoint itself recommends (set_generation_params' names), where it says any
    sampling: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        """The LM and the codec must agree on the codes: checked at load, not at the first decode."""
        K, n = self.lm.config.num_codebooks, self.codec.num_codebooks
        if n < K:
            raise CheckpointError(f"{self.name}: the LM predicts {K} codebooks per frame, but its codec has only {n} "
                                  "quantizer codebooks to decode them; the LM and the codec do not belong together.")
        if self.lm.config.codebook_size > self.codec.codebook_size:
            raise CheckpointError(f"{self.name}: the LM chooses among {self.lm.config.codebook_size} codes per "
                                  f"codebook, but the codec's codebooks hold {self.codec.codebook_size}; the LM "
                                  "and the codec do not belong together.")


# ---------------------------------------------------------------- where the files are

def find_format(folder: Path) -> str:
    if (folder / "state_dict.bin").is_file():
        return "audiocraft"
    if (folder / "config.json").is_file():
        return "huggingface"
    raise CheckpointError(f"{folder}: neither an audiocraft checkpoint (state_dict.bin) nor a Hugging Face "
                          "one (config.json + model.safetensors).")


def fetch_model(repo_id: str, kind: str) -> Path:
    """Download (or find cached) what one model needs; return its folder.

    MusicGen repositories are read in the Hugging Face format (weights,
    config and tokenizer); AudioGen exists only in the audiocraft format.
    """
    if kind == "audiogen" or "audiogen" in repo_id:
        return hub.fetch(repo_id, AUDIOCRAFT_FILES)
    folder = hub.fetch(repo_id, HF_FILES, optional=HF_OPTIONAL)
    for weights in ("model.safetensors.index.json", "model.safetensors"):
        try:
            hub.fetch(repo_id, [weights])
        except hub.ModelNotAvailable:
            continue
        if weights.endswith(".json"):
            index = read_json(folder / weights)
            hub.fetch(repo_id, sorted(set(index["weight_map"].values())))
        return folder
    raise hub.ModelNotAvailable(f"{repo_id}: no model.safetensors found (in the cache or on the Hub).")


def load_components(name: str, kind: str = "musicgen", t5: str | Path | None = None,
                    dtype: torch.dtype | None = None, quantize: str | None = None) -> Components:
    """Parts of a model from a local folder (either format) or a Hub id.

    ``quantize="int8"``: the LM's linear weights in int8 (:mod:`minicraft.fast.int8`). ``dtype`` or
    ``quantize`` "auto": what is fastest on this CPU for this LM's shapes (:mod:`minicraft.fast.machine`),
    chosen once the config says what they are.
    """
    if quantize not in (None, "int8", "auto"):
        raise ValueError(f"unknown quantize={quantize!r}; use 'int8', 'auto' or None.")
    folder = Path(name).expanduser()
    if not folder.is_dir():
        if folder.name in ("tiny", "tiny-audiogen") and folder.parent.name == "assets":
            raise FileNotFoundError(f"{folder}: the tiny model is not there; it ships inside the minicraft "
                                    "package (reinstall minicraft), or retrain it with "
                                    "`python -m minicraft.toyworld.train` (see docs/tiny_model.md).")
        if name.startswith((".", "/", "~")) or name.count("/") != 1:
            raise FileNotFoundError(f"{name}: no such folder, and not a Hub id like 'facebook/musicgen-small'.")
        folder = fetch_model(name, kind)
    try:
        if find_format(folder) == "huggingface":
            return load_huggingface(folder, dtype=dtype, name=name, quantize=quantize)
        return load_audiocraft(folder, t5=t5, dtype=dtype, name=name, quantize=quantize)
    except (KeyError, TypeError, AttributeError, IndexError, ZeroDivisionError) as e:
        # a config value missing or of another type than its format's: say which, in one line
        raise CheckpointError(f"{folder}: a config value is missing or of the wrong type "
                              f"({type(e).__name__}: {str(e)[:120]}); is this an unmodified official checkpoint?") from None


# ---------------------------------------------------------------- audiocraft format

def load_audiocraft(folder: str | Path, t5: str | Path | None = None, dtype: torch.dtype | None = None,
                    name: str | None = None, quantize: str | None = None) -> Components:
    folder = Path(folder)
    path = folder / "state_dict.bin"
    config, state, _ = read_audiocraft(path)
    if config is None:
        raise CheckpointError(f"{path}: an LM checkpoint cannot be a pointer to another repository.")
    lm_state = {k: v for k, v in state.items() if not k.startswith("condition_provider.")}
    proj_state = {k[len(OUTPUT_PROJ):]: v for k, v in state.items() if k.startswith(OUTPUT_PROJ)}
    chroma_state = {k[len(CHROMA + "output_proj."):]: v for k, v in state.items()
                    if k.startswith(CHROMA + "output_proj.")}
    # the chroma extractor's STFT window is a buffer of the file: recomputed here, not read
    others = [k for k in state if k.startswith("condition_provider.")
              and not k.startswith((OUTPUT_PROJ, CHROMA + "output_proj.", CHROMA + "chroma."))]
    conditioners = set(config.get("conditioners", {}))
    if others or conditioners not in ({"description"}, {"description", "self_wav"}):
        raise CheckpointError(f"{path}: uses conditioners other than a text description and a melody "
                              f"({sorted(conditioners)}); minicraft supports text and musicgen-melody's chroma "
                              "(not style or other conditioning).")
    melody_config = melody_from_audiocraft(config, path) if "self_wav" in conditioners else None
    lm_config = LMConfig.from_audiocraft(config)
    dtype, quantize = resolve_auto(dtype, quantize, lm_config)
    check_counts(path, {"num_layers": lm_config.num_layers, "n_q": lm_config.num_codebooks}, list(lm_state),
                 {"num_layers": r"transformer\.layers\.(\d+)\.", "n_q": r"emb\.(\d+)\."})
    lm, targets = empty_lm(lm_config, quantize)
    if targets:                 # quantized from the mapped file, block by block: no float copy of them
        lm = load_into(lm, quantize_mapped(lm_state, targets, dtype, path), path).eval()
    else:
        lm = load_into(lm, lm_state, path, dtype).eval()

    t5_name = config["conditioners"]["description"]["t5"]["name"]
    t5_folder = Path(t5) if t5 is not None else hub.t5_folder(t5_name)
    conditioner = text_conditioner(load_t5_encoder(t5_folder, dtype=dtype), T5Tokenizer.from_dir(t5_folder),
                                   proj_state, lm.config.dim, path, dtype)

    melody = None
    if melody_config is not None:
        melody = melody_conditioner(chroma_state, lm.config.dim, melody_config.frames, melody_config, path, dtype)
    codec_path = folder / "compression_state_dict.bin"
    codec = load_encodec_audiocraft(codec_path, dtype=dtype, resolve_pointer=encodec_from_hub)
    interleave = config.get("interleave_stereo_codebooks") or {}
    if interleave.get("use"):          # the stereo MusicGens: the mono codec on each channel
        if interleave.get("per_timestep"):
            raise CheckpointError(f"{path}: interleaves stereo codes per timestep; minicraft supports the "
                                  "official stereo layout only (per codebook).")
        codec = StereoCodec(codec)
    return Components(name or str(folder), lm, conditioner, codec,
                      float(config.get("dataset", {}).get("segment_duration", 30.0)), melody)


def melody_from_audiocraft(config: dict, path: Path) -> ChromaConfig:
    """musicgen-melody's chroma settings from its ``xp.cfg`` (its ``frames``: what its LM sees).

    Both conditions must be prepended (audiocraft's fuser: ``prepend: [self_wav, description]``, no
    cross-attention), which puts the chroma first, then the text."""
    fuser = config.get("fuser", {})
    if set(fuser.get("prepend", [])) != {"self_wav", "description"} or fuser.get("cross") or fuser.get("sum"):
        raise CheckpointError(f"{path}: fuses its conditions as {fuser}; minicraft supports musicgen-melody's "
                              "(prepend: [self_wav, description], nothing else).")
    conditioner = config["conditioners"]["self_wav"]
    if conditioner.get("model") != "chroma_stem":
        raise CheckpointError(f"{path}: its melody conditioner is {conditioner.get('model')!r}; minicraft "
                              "supports chroma_stem (musicgen-melody's).")
    c = conditioner["chroma_stem"]
    return ChromaConfig(sample_rate=c.get("sample_rate", config["sample_rate"]), n_chroma=c.get("n_chroma", 12),
                        radix2_exp=c.get("radix2_exp", 14), argmax=bool(c.get("argmax", True)),
                        duration=float(config.get("dataset", {}).get("segment_duration", 30.0)))


def melody_conditioner(proj_state: dict, dim: int, frames: int, chroma: ChromaConfig, source,
                       dtype) -> MelodyConditioner:
    """The chroma's projection to the LM's width (identity where transformers' model has none: 12 wide LMs)."""
    if not proj_state:
        if chroma.n_chroma != dim:
            raise CheckpointError(f"{source}: no projection of the chroma (self_wav.output_proj / "
                                  f"audio_enc_to_dec_proj) to the LM's width {dim}.")
        proj_state = {"weight": torch.eye(dim), "bias": torch.zeros(dim)}
    with on_meta():
        melody = MelodyConditioner(dim, frames, chroma)
    load_into(melody, {f"output_proj.{k}": v for k, v in proj_state.items()}, source, dtype)
    melody.demucs = find_demucs()
    return melody.eval()


def encodec_from_hub(repo_id: str, dtype: torch.dtype | None = None) -> Encodec:
    """Follow ``{'pretrained': 'facebook/encodec_32khz'}`` to a Hugging Face EnCodec."""
    folder = hub.fetch(repo_id, ["config.json", "model.safetensors"])
    return load_encodec_hf(folder, dtype=dtype)


# ---------------------------------------------------------------- Hugging Face format

def load_huggingface(folder: str | Path, dtype: torch.dtype | None = None, name: str | None = None,
                     quantize: str | None = None) -> Components:
    """With ``quantize="int8"`` the LM's linear weights are quantized as the file is read, so their
    float copies never all exist at once (load peak: about the final model)."""
    folder = Path(folder)
    config = read_json(folder / "config.json")
    if config.get("model_type") not in ("musicgen", "musicgen_melody"):
        raise CheckpointError(f"{folder / 'config.json'}: model_type is {config.get('model_type')!r}; "
                              "expected a MusicGen checkpoint ('musicgen' or 'musicgen_melody').")
    melodic = config["model_type"] == "musicgen_melody"
    for section in ("decoder", "audio_encoder", "text_encoder"):
        if not isinstance(config.get(section), dict):
            raise CheckpointError(f"{folder / 'config.json'}: no {section!r} section; a MusicGen config has "
                                  "decoder, audio_encoder and text_encoder.")
    index = folder / "model.safetensors.index.json"
    weights = index if index.is_file() else folder / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{folder}: no model.safetensors (nor a sharded index); the weights are missing.")
    try:
        lm_config = LMConfig.from_hf(config["decoder"], cross_attention=not melodic)
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{folder / 'config.json'}: the decoder section lacks or misstates {e}.") from None
    check_counts(weights, {"num_hidden_layers": lm_config.num_layers, "num_codebooks": lm_config.num_codebooks,
                           "text_encoder.num_layers": config["text_encoder"].get("num_layers")},
                 tensor_names(weights), {"num_hidden_layers": r"decoder\.model\.decoder\.layers\.(\d+)\.",
                                         "num_codebooks": r"decoder\.model\.decoder\.embed_tokens\.(\d+)\.",
                                         "text_encoder.num_layers": r"text_encoder\.encoder\.block\.(\d+)\."})
    dtype, quantize = resolve_auto(dtype, quantize, lm_config)
    single, packed = hf_names(lm_config)
    lm, targets = empty_lm(lm_config, quantize)
    int8 = {module: packed.get(weight) or [single[weight]] for module, weight in targets.items()}   # the file's
    state = read_state_dict(weights, dtype, int8)

    decoder_keys = {k for k in state if k.startswith("decoder.")}
    used = set(single.values()) | {name for names in packed.values() for name in names}
    leftover = sorted(k for k in decoder_keys - used if "embed_positions" not in k)
    if leftover:
        raise CheckpointError(f"{weights}: decoder tensors minicraft does not know: {leftover[:3]}.")
    lm_state = lm_state_from_hf(state, lm_config, consume=True)
    for module, weight in targets.items():
        if module + ".weight" in state:                  # quantized while reading
            lm_state[module + ".weight"] = state.pop(module + ".weight")
            lm_state[module + ".scale"] = state.pop(module + ".scale")
        elif weight in lm_state:                         # its parts were in two shards: read as floats
            lm_state[module + ".weight"], lm_state[module + ".scale"] = quantize_rows(lm_state.pop(weight))
    lm = load_into(lm, lm_state, weights, None if int8 else dtype).eval()   # the reader converted already
    t5 = t5_from_state(state, config["text_encoder"], prefix="text_encoder.", source=weights, dtype=dtype)
    proj = {k[len("enc_to_dec_proj."):]: v for k, v in state.items() if k.startswith("enc_to_dec_proj.")}
    conditioner = text_conditioner(t5, tokenizer_for(folder), proj, lm_config.dim, weights, dtype)
    codec = load_encodec_hf((config["audio_encoder"], state), prefix="audio_encoder.", dtype=dtype,
                            source_name=weights)
    if config["decoder"].get("audio_channels", 1) == 2:      # the stereo MusicGens: the mono codec per channel
        codec = StereoCodec(codec)
    melody = None
    if melodic:             # transformers' MusicgenMelody: the chroma prepended before the text, no cross-attention
        chroma = ChromaConfig(sample_rate=codec.sample_rate, n_chroma=config.get("num_chroma", 12))
        melody = melody_conditioner({k[len("audio_enc_to_dec_proj."):]: v for k, v in state.items()
                                     if k.startswith("audio_enc_to_dec_proj.")}, lm_config.dim,
                                    config.get("chroma_length", 235), chroma, weights, dtype)
    generation = read_json(folder / "generation_config.json") if (folder / "generation_config.json").is_file() else {}
    max_duration = generation["max_length"] / codec.frame_rate if "max_length" in generation else 30.0
    shards = sorted({folder / f for f in read_json(index)["weight_map"].values()}) if index.is_file() else [weights]
    release_file_pages(shards)          # the pages read while packing q/k/v: the model does not use them
    return Components(name or str(folder), lm, conditioner, codec, max_duration, melody,
                      recommended_sampling(generation, folder / "generation_config.json"))


# transformers' generation_config.json names -> set_generation_params' names
SAMPLING_NAMES = {"temperature": "temperature", "top_k": "top_k", "guidance_scale": "cfg_coef"}


def recommended_sampling(generation: dict, path: Path) -> dict[str, float]:
    """The sampling a checkpoint's generation_config.json sets, as transformers' ``generate`` would use it.

    The official MusicGens set audiocraft's own defaults there (top-k 250, guidance 3); the tiny MusicGen
    also sets a temperature below 1 (docs/tiny_model.md says why)."""
    sampling = {}
    for key, name in SAMPLING_NAMES.items():
        if generation.get(key) is not None:
            try:
                # a top-k above the vocabulary keeps it all, as in transformers (its configs say 250 at any size)
                sampling[name] = check_setting(name, generation[key])
            except ValueError as error:
                raise CheckpointError(f"{path}: {key}: {error}") from None
    return sampling


def tokenizer_for(folder: Path) -> T5Tokenizer:
    """The tokenizer shipped with a MusicGen repository, else T5's own (all T5 sizes share it)."""
    if (folder / "spiece.model").is_file() or (folder / "tokenizer.json").is_file():
        return T5Tokenizer.from_dir(folder)
    return T5Tokenizer.from_dir(hub.fetch("google-t5/t5-base", ["spiece.model"]))


# ---------------------------------------------------------------- shared steps

def resolve_auto(dtype, quantize: str | None, config: LMConfig) -> tuple[torch.dtype | None, str | None]:
    """``dtype``/``quantize`` with "auto" replaced by this CPU's fastest setting for the LM's shapes."""
    if "auto" not in (dtype, quantize):
        return dtype, quantize
    name = {None: "float32", torch.float32: "float32", torch.bfloat16: "bfloat16"}.get(dtype, dtype)
    if name not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"quantize='auto' chooses among float32 and bfloat16 rows, not {dtype}.")
    name, quantize = auto_setting(name, quantize, config.dim, config.ffn_dim, config.num_layers)
    return getattr(torch, name), quantize


def empty_lm(config: LMConfig, quantize: str | None) -> tuple[LM, dict[str, str]]:
    """The LM on the ``meta`` device (shapes, no memory) for a checkpoint's tensors to be assigned to.

    With ``quantize="int8"`` its linear layers are already :class:`~minicraft.fast.int8.Int8Linear`, and
    the second value maps each of them to the float weight it replaces (ours, by name); else it is empty.
    """
    with on_meta():
        lm = LM(config)
    targets = int8_modules(lm) if quantize == "int8" else {}
    if targets:
        quantize_lm_int8(lm)
    return lm, targets


def text_conditioner(t5: nn.Module, tokenizer: T5Tokenizer, proj_state: dict, dim: int, source,
                     dtype) -> TextConditioner:
    """The text path: ``t5`` and the projection of its states to the LM's width ``dim``.

    A Hugging Face MusicGen whose text encoder is already as wide as its decoder has no projection
    (``enc_to_dec_proj``): transformers passes the text states on as they are, so here it is the identity."""
    if not proj_state:
        if t5.config.d_model != dim:
            raise CheckpointError(f"{source}: no projection of the text states (enc_to_dec_proj / output_proj), "
                                  f"yet the text encoder is {t5.config.d_model} wide and the LM {dim}; "
                                  "is it the right file for this model?")
        proj_state = {"weight": torch.eye(dim), "bias": torch.zeros(dim)}
    t5_dim = proj_state["weight"].shape[1]
    with on_meta():
        conditioner = TextConditioner(tokenizer, None, t5_dim, dim)
    load_into(conditioner, {f"output_proj.{k}": v for k, v in proj_state.items()}, source, dtype)
    conditioner.t5 = t5
    return conditioner.eval()
