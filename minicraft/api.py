"""MusicGen and AudioGen, used the way audiocraft users already know.

    model = MusicGen.get_pretrained("small")
    model.set_generation_params(duration=8)
    wav = model.generate(["lo-fi beat with mellow piano"])     # [B, C, samples]

A model is three parts (see :mod:`minicraft.formats.loaders`): the text conditioner, the LM over
codes and the EnCodec codec (and musicgen-melody's chroma conditioner, for ``generate_with_chroma``). This
file only turns user requests into calls of :func:`minicraft.generate.decoding.generate_codes` and the
codec, including long generation by a sliding window and continuation of an audio prompt.

A model runs the reference modules a learner reads in ``minicraft/modules`` and ``minicraft/models``
unless it is loaded with ``fast=True`` (or given to :func:`minicraft.fast.accelerate`); the CLI always
loads it so.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch

from minicraft import audio
from minicraft.models.conditioning import text_mask
from minicraft.devices import pick_device, pick_dtype
from minicraft.fast import accelerate, summary
from minicraft.generate.decoding import generate_codes
from minicraft.checks import check_number
from minicraft.generate.sampling import check_setting
from minicraft.fast.int8 import quantize_lm_int8
from minicraft.formats.adapter import apply_adapter, is_adapter, read_adapter_config
from minicraft.formats.loaders import Components, load_components


class GenModel:
    """What MusicGen and AudioGen share; they differ only in defaults and names."""

    DEFAULT_DURATION = 10.0
    DEFAULT_STRIDE = 2.0
    KIND = "model"
    NAMES: dict[str, str] = {}
    DEFAULT_NAME = ""

    def __init__(self, parts: Components, device: torch.device | None = None):
        self.name = parts.name
        self.lm, self.conditioner, self.codec = parts.lm, parts.conditioner, parts.codec
        self.melody = parts.melody            # musicgen-melody's chroma conditioner, else None
        self.recommended = dict(parts.sampling)      # what the checkpoint's generation_config.json sets
        self.max_duration = float(parts.max_duration)
        self.device = device or next(self.lm.parameters()).device
        self.mask_text_padding = True
        self._progress_callback: Callable[[int, int], None] | None = None
        self.set_generation_params()

    # ---------------------------------------------------------------- loading

    @classmethod
    def get_pretrained(cls, name: str | None = None, device: str | torch.device | None = None,
                       dtype: str | torch.dtype | None = "auto", t5: str | None = None,
                       quantize: str | None = "auto", fast: bool = False, adapter: str | Path | None = None):
        """A model by short name, Hub id, or local folder in either official format.

        ``device``: "cuda", "mps" or "cpu" (default: the best available).
        ``dtype``: float32, float16 or bfloat16 where the device supports it.
        ``quantize``: "int8" stores the LM's linear weights as int8 (see
        :mod:`minicraft.fast.int8`); activations stay in ``dtype``. None: as they are.
        "auto" (both defaults): on a CPU with ``fast=True``, the fastest setting this CPU computes
        accurately, measured once per machine (:mod:`minicraft.fast.machine`; ``minicraft info --device``);
        elsewhere float32 and no quantization, the reference numbers.
        ``t5``: a folder with the T5 encoder, for audiocraft-format folders
        whose T5 is not in the Hugging Face cache.
        ``fast``: put :mod:`minicraft.fast` in place of the reference modules (C kernels on a CPU, the
        codec's polyphase convs and chunks); ``False`` keeps the code of the course, the code that runs.
        ``adapter``: a fine-tune's folder (``minicraft finetune``); its LoRA updates are applied beside the
        frozen weights, or folded into them with ``fast=True``. ``name`` may be such a folder itself: its
        base model is loaded, then its adapter.
        """
        if adapter is None and name is not None and is_adapter(name):
            adapter, name = name, read_adapter_config(name)["base"]
        if adapter is not None and read_adapter_config(adapter)["kind"] != cls.KIND:
            other = {"musicgen": "an AudioGen", "audiogen": "a MusicGen"}[cls.KIND]
            raise ValueError(f"{adapter}: this adapter was trained on {other}; load it with {other[-8:]}"
                             f".get_pretrained (its base: {read_adapter_config(adapter)['base']!r}).")
        device = pick_device(device)
        if adapter is not None and quantize in ("auto", "int8"):
            # the updates go into float weights first; int8 (if asked) quantizes the merged ones
            quantize, quantize_merged = None, quantize == "int8"
        else:
            quantize_merged = False
        if device.type != "cpu" or not fast:                 # "auto" measures the CPU's fast path only
            dtype, quantize = (None if dtype == "auto" else dtype), (None if quantize == "auto" else quantize)
        dtype = dtype if dtype == "auto" else pick_dtype(dtype, device)
        parts = load_components(cls.resolve_name(name), kind=cls.KIND, t5=t5, dtype=dtype, quantize=quantize)
        if adapter is not None:
            apply_adapter(parts.lm, adapter, merge=fast or quantize_merged)
            if quantize_merged:
                quantize_lm_int8(parts.lm)
        for module in (parts.lm, parts.conditioner, parts.codec, parts.melody):
            if module is not None:
                module.to(device).eval()
        model = cls(parts, device)
        return accelerate(model) if fast else model

    def info(self):
        """Print what this model is and which of its modules the fast path replaced."""
        params = sum(p.numel() for part in (self.lm, self.conditioner, self.codec) for p in part.parameters())
        print(f"{type(self).__name__} {self.name}: {params / 1e6:.1f} M parameters, "
              f"{self.sample_rate} Hz, {self.frame_rate} frames/s, up to {self.max_duration:g} s per window, "
              f"on {self.device}")
        print(summary(self))

    @classmethod
    def resolve_name(cls, name: str | None) -> str:
        """Short names ("small") -> Hub ids; other names (Hub ids, folders) pass through."""
        name = name or cls.DEFAULT_NAME
        if name in cls.NAMES:
            return cls.NAMES[name]
        if "/" not in name and not Path(name).expanduser().is_dir():
            raise ValueError(f"unknown model name {name!r}: use one of {', '.join(cls.NAMES)}, a Hub id "
                             f"such as {cls.NAMES[cls.DEFAULT_NAME]!r}, or a local folder.")
        return name

    # ---------------------------------------------------------------- properties

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.codec.frame_rate

    @property
    def audio_channels(self) -> int:
        return self.codec.channels

    @property
    def melody_reach(self) -> float:
        """Seconds of a melody a generation can read: each window reads one window's worth from its start
        time, so no more than ``duration`` plus one window (and a second for the resampler's filter)."""
        return self.duration + self.max_duration + 1

    # ---------------------------------------------------------------- parameters

    def set_generation_params(self, use_sampling: bool = True, top_k: int | None = None, top_p: float = 0.0,
                              temperature: float | None = None, duration: float | None = None,
                              cfg_coef: float | None = None, two_step_cfg: bool = False,
                              extend_stride: float | None = None):
        """Set how :meth:`generate` samples; same names and defaults as audiocraft.

        ``temperature=0`` means greedy decoding; ``top_p > 0`` takes precedence
        over ``top_k``; ``cfg_coef`` is the classifier-free guidance strength
        (1 = off); beyond ``max_duration`` seconds, generation continues in
        windows that advance by ``extend_stride`` seconds. Left out, ``temperature``,
        ``top_k`` and ``cfg_coef`` are what the checkpoint's generation_config.json
        recommends (:attr:`recommended`, as transformers would sample), else audiocraft's
        1.0, 250 and 3.0 (the tiny MusicGen's recommends temperature 0.7; the official ones, 250 and 3).
        """
        temperature = self.recommended.get("temperature", 1.0) if temperature is None else temperature
        cfg_coef = self.recommended.get("cfg_coef", 3.0) if cfg_coef is None else cfg_coef
        if top_k is None:                                 # 250 unless the vocabulary is smaller
            top_k = min(self.recommended.get("top_k", 250), self.lm.config.codebook_size)
        duration = min(self.DEFAULT_DURATION, self.max_duration) if duration is None else duration
        if extend_stride is None:   # audiocraft's default, unless this model's window is shorter
            extend_stride = self.DEFAULT_STRIDE if self.DEFAULT_STRIDE < self.max_duration else self.max_duration / 2
        check_params(duration, top_k, top_p, temperature, cfg_coef, extend_stride,
                     self.max_duration, self.lm.config.codebook_size)
        self.duration = float(duration)
        self.extend_stride = float(extend_stride)
        self.generation_params = dict(use_sampling=bool(use_sampling), temperature=float(temperature),
                                      top_k=int(top_k), top_p=float(top_p), cfg_coef=float(cfg_coef),
                                      two_step=bool(two_step_cfg))

    def set_custom_progress_callback(self, callback: Callable[[int, int], None] | None = None):
        """``callback(frames_done, frames_total)`` is called after every decoding step."""
        self._progress_callback = callback

    # ---------------------------------------------------------------- generation

    def generate(self, descriptions: list[str], progress: bool = False, return_tokens: bool = False):
        """Audio [B, C, samples] for each text description."""
        check_descriptions(descriptions)
        tokens = self.generate_tokens(list(descriptions), None, progress)
        return self._finish(tokens, return_tokens)

    def generate_unconditional(self, num_samples: int, progress: bool = False, return_tokens: bool = False):
        """Audio with no text at all (the model's prior)."""
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}.")
        tokens = self.generate_tokens([None] * num_samples, None, progress)
        return self._finish(tokens, return_tokens)

    def generate_with_chroma(self, descriptions: list[str | None], melody_wavs, melody_sample_rate: int,
                             progress: bool = False, return_tokens: bool = False):
        """Music that follows a melody (musicgen-melody): ``melody_wavs`` [B, C, T], [C, T] or a list of [C, T]
        (or None: no melody for that description), one per description, at ``melody_sample_rate``.

        As audiocraft: the melody's chromagram conditions the whole window; a melody shorter than the
        model's 30-s window repeats, a longer one is cut (past the window, each window reads the melody from
        its own start time, wrapping round). Chroma of the whole mix unless Demucs is installed with its
        weights (:mod:`minicraft.models.melody`).
        """
        if self.melody is None:
            raise ValueError(f"{self.name} has no melody conditioning; use a melody model "
                             "(MusicGen.get_pretrained('melody')).")
        check_descriptions(descriptions, allow_none=True)
        melodies = check_melodies(melody_wavs, melody_sample_rate)
        if len(melodies) != len(descriptions):
            raise ValueError(f"{len(melodies)} melodies but {len(descriptions)} descriptions; give one melody "
                             "(or None) per description.")
        keep = math.ceil(self.melody_reach * melody_sample_rate)
        melodies = [None if wav is None else audio.convert(wav[:, :keep].to(self.device, torch.float32),
                                                          melody_sample_rate, self.sample_rate, self.audio_channels)
                    for wav in melodies]
        return self._finish(self.generate_tokens(list(descriptions), None, progress, melodies), return_tokens)

    def generate_continuation(self, prompt: torch.Tensor, prompt_sample_rate: int,
                              descriptions: list[str | None] | None = None, progress: bool = False,
                              return_tokens: bool = False):
        """Continue audio ``prompt`` [B, C, T] (or [C, T]); the prompt stays in the output."""
        prompt = check_prompt_audio(prompt, prompt_sample_rate)
        if descriptions is None:
            descriptions = [None] * len(prompt)
        else:
            check_descriptions(descriptions, allow_none=True)
        if len(descriptions) != len(prompt):
            raise ValueError(f"{len(prompt)} audio prompts but {len(descriptions)} descriptions; "
                             "give one description (or None) per prompt.")
        seconds, limit = prompt.shape[-1] / prompt_sample_rate, min(self.duration, self.max_duration)
        if seconds >= limit:           # checked before resampling: its cost is set by the prompt's length
            window = f", and the model's window is {self.max_duration:g} s" if self.max_duration < self.duration else ""
            raise ValueError(f"the audio prompt ({seconds:.2f} s) leaves nothing to generate: the duration is "
                             f"{self.duration:g} s{window}; give a shorter prompt (minicraft continue "
                             "--prompt-seconds) or a longer duration.")
        prompt = audio.convert(prompt.to(self.device, torch.float32), prompt_sample_rate,
                               self.sample_rate, self.audio_channels)
        with torch.inference_mode():
            prompt_tokens = self.codec.encode(prompt.to(self.codec_dtype))
        return self._finish(self.generate_tokens(list(descriptions), prompt_tokens, progress), return_tokens)

    @property
    def codec_dtype(self) -> torch.dtype:
        return next(self.codec.parameters()).dtype

    def conditions(self, descriptions: list[str | None], two_step: bool):
        """(condition, null condition), each [B, L, D], as audiocraft builds them."""
        B = len(descriptions)
        if two_step:
            cond, mask = self.conditioner(descriptions)
            null, null_mask = self.conditioner([None] * B)
        else:
            both, masks = self.conditioner(descriptions + [None] * B)
            (cond, null), (mask, null_mask) = both.split(B), masks.split(B)
        return cond, null, mask, null_mask

    def melody_prefixes(self, cond: torch.Tensor, null: torch.Tensor, melodies: list[torch.Tensor | None] | None,
                        start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """musicgen-melody's prepended conditions, [chroma | text] and their null, for the window that starts
        at frame ``start``. Past the model's window (a long generation), each window reads ``max_duration``
        seconds of the melody from its own start time, wrapping round, as audiocraft does."""
        B = cond.shape[0]
        melodies = melodies or [None] * B
        if self.duration > self.max_duration:
            first = int(start / self.frame_rate * self.sample_rate)
            positions = torch.arange(first, first + int(self.max_duration * self.sample_rate), device=self.device)
            melodies = [None if wav is None else wav[:, positions % wav.shape[-1]] for wav in melodies]
        chroma = self.melody(melodies, self.sample_rate).to(cond.dtype)             # [B, frames, D]
        null_chroma = self.melody([None] * B, self.sample_rate).to(null.dtype)
        return torch.cat([chroma, cond], dim=1), torch.cat([null_chroma, null], dim=1)   # [B, frames + L, D]

    def generate_tokens(self, descriptions: list[str | None], prompt_tokens: torch.Tensor | None,
                        progress: bool = False, melodies: list[torch.Tensor | None] | None = None) -> torch.Tensor:
        """Codes [B, K, frames] for ``self.duration`` seconds (audiocraft's sliding window).

        ``melodies`` (melody models only; each [C, T] at the model's rate, or None) condition every window."""
        params = dict(self.generation_params)
        cond, null, mask, null_mask = self.conditions(descriptions, params["two_step"])
        total = int(self.duration * self.frame_rate)
        offset = 0

        def callback(done: int, todo: int):   # decoding steps, counted as audiocraft counts them
            done += offset
            if self._progress_callback is not None:
                self._progress_callback(done, todo)
            elif progress:
                print(f"{done: 6d} / {todo: 6d}", end="\r")

        def window(prompt, frames):
            if self.melody is not None:       # no cross-attention: text and chroma are prepended, not masked
                prefix, null_prefix = self.melody_prefixes(cond, null, melodies, offset)
                return generate_codes(self.lm, None, None, frames, prompt=prompt, callback=callback,
                                      prefix=prefix, null_prefix=null_prefix, **params)
            return generate_codes(self.lm, cond, null, frames, prompt=prompt, callback=callback,
                                  cross_mask=text_mask(mask) if self.mask_text_padding else None,
                                  null_cross_mask=text_mask(null_mask) if self.mask_text_padding else None,
                                  **params)

        if self.duration <= self.max_duration:
            return window(prompt_tokens, total)
        stride = int(self.frame_rate * self.extend_stride)
        chunks = [] if prompt_tokens is None else [prompt_tokens]
        for i, (_, frames) in enumerate(self.window_plan(0 if prompt_tokens is None else prompt_tokens.shape[-1])):
            offset = i * stride                           # read by the progress callback and the melody
            tokens = window(prompt_tokens, frames)
            chunks.append(tokens if prompt_tokens is None else tokens[..., prompt_tokens.shape[-1]:])
            prompt_tokens = tokens[..., stride:]          # the last (max - stride) seconds
        return torch.cat(chunks, dim=-1)

    def window_plan(self, prompt_frames: int = 0) -> list[tuple[int, int]]:
        """The sliding window's calls for ``self.duration`` s: (frames of prompt, frames in all), one per window.

        Each window after the first is prompted with the last ``max_duration - extend_stride`` s of the one
        before; they advance by ``extend_stride`` until ``duration`` is reached. Counted in whole frames:
        audiocraft works out each window's length in seconds, and float rounding can lose a frame there (0.7 s
        at 50 Hz, a 0.6 s window and a 0.2 s stride give it 34 frames, not 35) or plan a window with nothing
        left to generate (its assertion error); here the windows always add up to ``duration``."""
        total = int(self.duration * self.frame_rate)
        if self.duration <= self.max_duration:
            return [(prompt_frames, total)]
        window, stride = int(self.max_duration * self.frame_rate), int(self.frame_rate * self.extend_stride)
        plan, offset = [], 0
        while offset + prompt_frames < total:
            frames = min(total - offset, window)
            plan.append((prompt_frames, frames))
            # the next prompt: this window past its first `stride` frames (none after a last, short window)
            prompt_frames, offset = max(frames - stride, 0), offset + stride
        return plan

    def decoding_steps(self, prompt_frames: int = 0) -> int:
        """Decoding steps of a whole generation, all windows: what a progress bar counts to.

        audiocraft's progress callback (``set_custom_progress_callback``) reports each window against that
        window's own steps, so its numbers restart with every window of a long generation."""
        patterns = [(self.lm.pattern(frames), given) for given, frames in self.window_plan(prompt_frames)]
        return sum(p.num_steps - p.first_step_with(given) for p, given in patterns)

    def generate_audio(self, tokens: torch.Tensor) -> torch.Tensor:
        """Codes [B, K, T] -> audio [B, C, samples] (float32)."""
        with torch.inference_mode():
            return self.codec.decode(tokens).float()

    def _finish(self, tokens, return_tokens):
        wav = self.generate_audio(tokens)
        return (wav, tokens) if return_tokens else wav


# ---------------------------------------------------------------- input checks

def check_descriptions(descriptions, allow_none: bool = False):
    if isinstance(descriptions, str) or not isinstance(descriptions, (list, tuple)):
        raise ValueError("descriptions must be a list of strings, e.g. ['calm piano']; "
                         f"got {type(descriptions).__name__}.")
    if len(descriptions) == 0:
        raise ValueError("descriptions is empty: give at least one prompt, e.g. ['calm piano'].")
    for i, d in enumerate(descriptions):
        if d is None and allow_none:
            continue
        if not isinstance(d, str):
            raise ValueError(f"descriptions[{i}] is {type(d).__name__}, not a string.")


def check_params(duration, top_k, top_p, temperature, cfg_coef, extend_stride, max_duration, codebook_size):
    for name, value in (("temperature", temperature), ("top_k", top_k), ("top_p", top_p), ("cfg_coef", cfg_coef)):
        check_setting(name, value, codebook_size)
    check_number("duration", duration)
    if duration <= 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration}.")
    if duration > 3600:
        raise ValueError(f"duration {duration} s is more than an hour; generate at most 3600 s at once.")
    check_number("extend_stride", extend_stride)
    if not 0 < extend_stride < max_duration:
        raise ValueError(f"extend_stride must be > 0 and smaller than max_duration ({max_duration:g} s), "
                         f"got {extend_stride}.")


def check_melodies(melodies, sample_rate) -> list[torch.Tensor | None]:
    """Melodies as audiocraft takes them ([B, C, T], [C, T], or a list of [C, T] and None) -> a list."""
    if isinstance(melodies, torch.Tensor):
        if melodies.dim() == 2:
            melodies = melodies[None]
        if melodies.dim() != 3:
            raise ValueError(f"melody_wavs must be shaped [B, C, T] or [C, T], got {tuple(melodies.shape)}.")
        melodies = list(melodies)
    if not isinstance(melodies, (list, tuple)):
        raise ValueError(f"melody_wavs must be a tensor or a list of [C, T] tensors and None, got "
                         f"{type(melodies).__name__}.")
    audio.check_rate(sample_rate, "melody_sample_rate")
    for i, wav in enumerate(melodies):
        if wav is None:
            continue
        if not isinstance(wav, torch.Tensor) or wav.dim() != 2 or wav.shape[-1] == 0:
            raise ValueError(f"melody {i} must be a [C, T] tensor with samples, or None, got "
                             f"{tuple(wav.shape) if isinstance(wav, torch.Tensor) else type(wav).__name__}.")
        if not wav.is_floating_point() or not torch.isfinite(wav).all():
            raise ValueError(f"melody {i} must hold finite floating-point samples in [-1, 1].")
    return list(melodies)


def check_prompt_audio(prompt, sample_rate) -> torch.Tensor:
    if not isinstance(prompt, torch.Tensor):
        raise ValueError(f"the audio prompt must be a torch.Tensor [B, C, T], got {type(prompt).__name__}.")
    if prompt.dim() == 2:
        prompt = prompt[None]
    if prompt.dim() != 3 or prompt.shape[-1] == 0:
        raise ValueError(f"the audio prompt must be shaped [B, C, T] or [C, T], got {tuple(prompt.shape)}.")
    if not prompt.is_floating_point():
        raise ValueError(f"the audio prompt is {str(prompt.dtype).replace('torch.', '')}; give floating-point "
                         "samples in [-1, 1] (for 16-bit integers, divide by 32768).")
    audio.check_rate(sample_rate, "prompt_sample_rate")
    if not torch.isfinite(prompt).all():
        raise ValueError("the audio prompt contains NaN or infinite values.")
    if prompt.abs().amax(dim=(1, 2)).min() == 0:
        raise ValueError("an audio prompt is silent (all zeros); give audio to continue, "
                         "or use generate() for no prompt.")
    return prompt


# ---------------------------------------------------------------- the two models

# The tiny models trained by `python -m minicraft.toyworld.train` on the toy world, shipped inside the package:
# MusicGen's on its instruments, AudioGen's on its sound effects (the same codec).
TINY = str(Path(__file__).resolve().parent / "assets" / "tiny")
TINY_AUDIOGEN = str(Path(__file__).resolve().parent / "assets" / "tiny-audiogen")


class MusicGen(GenModel):
    """Text to music (facebook/musicgen-small, -medium, -large; -stereo-*: stereo at [B, 2, samples]; -melody*:
    following a tune too, ``generate_with_chroma``; "tiny" is minicraft's own, toy-world instruments)."""
    DEFAULT_DURATION, DEFAULT_STRIDE, KIND = 15.0, 18.0, "musicgen"
    NAMES = {"tiny": TINY, **{s: f"facebook/musicgen-{s}" for s in ("small", "medium", "large", "stereo-small",
                                                                    "stereo-medium", "stereo-large", "melody",
                                                                    "melody-large", "stereo-melody",
                                                                    "stereo-melody-large")}}
    DEFAULT_NAME = "small"


class AudioGen(GenModel):
    """Text to sound effects (facebook/audiogen-medium; "tiny" is minicraft's own, toy-world effects)."""
    DEFAULT_DURATION, DEFAULT_STRIDE, KIND = 5.0, 2.0, "audiogen"
    NAMES = {"tiny": TINY_AUDIOGEN, "medium": "facebook/audiogen-medium"}
    DEFAULT_NAME = "medium"


def resolve(name: str) -> tuple[type[GenModel], str]:
    """A model name as users type it -> (MusicGen or AudioGen, the folder or Hub id to load).

    The one place names are read, for the CLI and the explorer: "tiny", "small", "medium", "large" are
    MusicGen's; "audiogen-tiny" and "audiogen-medium" (the CLI's spelling of AudioGen's "tiny" and "medium")
    and any Hub id or folder whose name says "audiogen" are AudioGen's. An unknown short name raises ValueError.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("the model name is empty; use tiny, small, medium, large, audiogen-tiny, audiogen-medium, a Hub id "
                         "or a folder.")
    if is_adapter(name):            # a fine-tune's folder: the family of its base model
        cls = AudioGen if read_adapter_config(name)["kind"] == "audiogen" else MusicGen
        return cls, name
    cls = AudioGen if "audiogen" in name.lower() else MusicGen
    short = name[len("audiogen-"):] if name.lower().startswith("audiogen-") else name
    return cls, cls.resolve_name(short)
