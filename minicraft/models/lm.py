"""The language model over audio codes.

Input: a pattern sequence ``[B, K, S]`` of codes (or the special token
``codebook_size``). Each codebook has its own embedding table; the K embeddings of a
step are *summed* into one vector, so a step costs one transformer position
however many codebooks it holds. The transformer attends causally over steps
and, through cross-attention, to the text condition. K linear heads turn each
output into K distributions over the ``codebook_size`` codes.

Parameter names are audiocraft's (``emb.{k}``, ``transformer.layers.{i}...``,
``out_norm``, ``linears.{k}``); :func:`~minicraft.formats.lm_names.lm_state_from_hf` renames a Hugging Face
MusicGen decoder into them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from minicraft.checks import check_fields
from minicraft.modules.attention import KVCache
from minicraft.models.patterns import Pattern, delay_pattern
from minicraft.modules.transformer import Transformer


@dataclass
class LMConfig:
    dim: int = 1024
    num_heads: int = 16
    num_layers: int = 24
    ffn_dim: int = 4096
    num_codebooks: int = 4           # K
    codebook_size: int = 2048                 # codes per codebook; id ``codebook_size`` is the special token
    delays: list[int] = field(default_factory=lambda: [0, 1, 2, 3])
    cross_attention: bool = True
    bias_attn: bool = False
    bias_ff: bool = False
    bias_proj: bool = False
    max_period: float = 10_000
    positional_scale: float = 1.0
    cfg_coef: float = 3.0            # default classifier-free guidance strength
    two_step_cfg: bool = False

    def __post_init__(self):
        check_fields(self, "LM config", positive=("dim", "num_heads", "num_layers", "ffn_dim", "num_codebooks",
                                                  "codebook_size"), numbers=("max_period", "positional_scale",
                                                                             "cfg_coef"))
        if self.dim % self.num_heads:
            raise ValueError(f"LM config: dim {self.dim} is not divisible by num_heads {self.num_heads}.")
        if len(self.delays) != self.num_codebooks or any(
                isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in self.delays):
            raise ValueError(f"LM config: delays must be {self.num_codebooks} whole numbers >= 0 (one per "
                             f"codebook), got {self.delays!r}.")

    @classmethod
    def from_audiocraft(cls, config: dict) -> "LMConfig":
        """From a resolved audiocraft ``xp.cfg``."""
        lm = config["transformer_lm"]
        unsupported = {"norm_first": (lm.get("norm_first"), True), "norm": (lm.get("norm"), "layer_norm"),
                       "positional_embedding": (lm.get("positional_embedding"), "sin"),
                       "activation": (lm.get("activation"), "gelu"), "kv_repeat": (lm.get("kv_repeat", 1), 1),
                       "qk_layer_norm": (lm.get("qk_layer_norm", False), False),
                       "layer_scale": (lm.get("layer_scale"), None),
                       "codebooks_pattern.modeling": (config["codebooks_pattern"]["modeling"], "delay")}
        for name, (value, supported) in unsupported.items():
            if value != supported:
                raise ValueError(f"xp.cfg sets {name}={value!r}; minicraft supports only {supported!r}.")
        delay_config = config["codebooks_pattern"]["delay"]
        if delay_config.get("flatten_first", 0) or delay_config.get("empty_initial", 0):
            raise ValueError("xp.cfg uses flatten_first/empty_initial in its delay pattern; "
                             "minicraft supports only the plain delay pattern.")
        cross = len(config.get("fuser", {}).get("cross", [])) > 0 or bool(lm.get("cross_attention"))
        guidance = config.get("classifier_free_guidance", {})
        return cls(dim=lm["dim"], num_heads=lm["num_heads"], num_layers=lm["num_layers"],
                   ffn_dim=int(lm["dim"] * lm.get("hidden_scale", 4)), num_codebooks=lm["n_q"],
                   codebook_size=lm["card"], delays=list(delay_config["delays"]), cross_attention=cross,
                   bias_attn=bool(lm.get("bias_attn", False)), bias_ff=bool(lm.get("bias_ff", False)),
                   bias_proj=bool(lm.get("bias_proj", False)), max_period=lm.get("max_period", 10_000),
                   positional_scale=lm.get("positional_scale", 1.0),
                   cfg_coef=guidance.get("inference_coef", 3.0),
                   two_step_cfg=bool(lm.get("two_step_cfg", False)))

    @classmethod
    def from_hf(cls, decoder: dict, cross_attention: bool = True) -> "LMConfig":
        """From the ``decoder`` section of a transformers MusicGen ``config.json`` (a MusicgenMelody's decoder
        has no cross-attention: ``cross_attention=False``)."""
        if decoder.get("activation_function", "gelu") != "gelu":
            raise ValueError(f"decoder activation {decoder['activation_function']!r} is not supported.")
        if decoder.get("scale_embedding", False):
            raise ValueError("decoder.scale_embedding=True is not supported.")
        channels, K = decoder.get("audio_channels", 1), decoder["num_codebooks"]
        if channels not in (1, 2) or K % channels:
            raise ValueError(f"decoder: audio_channels {channels!r} with {K} codebooks; MusicGen is mono (1) or "
                             "stereo (2, an even number of codebooks).")
        # stereo: left and right codebooks interleaved, each pair delayed as one mono codebook
        return cls(dim=decoder["hidden_size"], num_heads=decoder["num_attention_heads"],
                   num_layers=decoder["num_hidden_layers"], ffn_dim=decoder["ffn_dim"],
                   num_codebooks=K, codebook_size=decoder["vocab_size"], delays=[k // channels for k in range(K)],
                   cross_attention=cross_attention)


class LM(nn.Module):
    def __init__(self, config: LMConfig):
        super().__init__()
        self.config = config
        K, D = config.num_codebooks, config.dim
        self.emb = nn.ModuleList(nn.Embedding(config.codebook_size + 1, D) for _ in range(K))
        self.transformer = Transformer(D, config.num_heads, config.num_layers, config.ffn_dim,
                                       config.cross_attention, config.bias_attn, config.bias_ff,
                                       config.max_period, config.positional_scale)
        self.out_norm = nn.LayerNorm(D, eps=1e-5)
        self.linears = nn.ModuleList(nn.Linear(D, config.codebook_size, bias=config.bias_proj) for _ in range(K))

    @property
    def special_token(self) -> int:
        return self.config.codebook_size

    def pattern(self, timesteps: int) -> Pattern:
        return delay_pattern(self.config.num_codebooks, timesteps, self.config.delays)

    def new_caches(self, batch: int, max_steps: int, like: torch.Tensor) -> list[KVCache]:
        """One empty KV cache per layer, for ``batch`` rows and up to ``max_steps`` positions
        (in ``like``'s dtype and device)."""
        config = self.config
        return [KVCache.empty(batch, config.num_heads, max_steps, config.dim // config.num_heads, like.dtype, like.device)
                for _ in range(config.num_layers)]

    def forward(self, sequence: torch.Tensor, cross: torch.Tensor | None = None,
                cross_mask: torch.Tensor | None = None, caches=None,
                prefix: torch.Tensor | None = None) -> torch.Tensor:
        """sequence [B, K, S] -> logits [B, K, S, codebook_size].

        ``cross`` [B, L, D] is the text condition; audiocraft attends to all of
        it (padding was zeroed, not masked), so ``cross_mask`` defaults to None.
        ``prefix`` [B, P, D] are conditions *prepended* to the steps (musicgen-melody's chroma and text):
        the transformer reads them as its first P positions, causally like the steps, and they predict
        nothing. With ``caches`` they go in with the first call only; the cache then remembers them.
        """
        x = sum(self.emb[k](sequence[:, k]) for k in range(len(self.emb)))   # [B, S, D]
        if prefix is not None:
            x = torch.cat([prefix.to(x.dtype), x], dim=1)                     # [B, P + S, D]
        x = self.transformer(x, cross, cross_mask, caches)
        x = self.out_norm(x[:, -sequence.shape[-1]:])                         # the steps' outputs only
        return torch.stack([head(x) for head in self.linears], dim=1)         # [B, K, S, codebook_size]

    def compute_predictions(self, codes: torch.Tensor, cross: torch.Tensor | None = None,
                            cross_mask: torch.Tensor | None = None,
                            prefix: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: codes [B, K, T] -> logits [B, K, T, codebook_size] and mask [B, K, T].

        ``logits[:, k, t]`` is the prediction *for* ``codes[:, k, t]`` (no shifting
        needed); where the pattern gives no valid context the logits are NaN
        and the mask is False.
        """
        B, K, T = codes.shape
        pattern = self.pattern(T)
        sequence, _ = pattern.build(codes, self.special_token, valid_only=True)   # [B, K, S]
        logits, mask = pattern.revert_logits(self(sequence, cross, cross_mask, prefix=prefix))
        return logits, mask[None].expand(B, -1, -1)                               # [B, K, T, codebook_size]


def codebook_cross_entropy(logits: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The training loss: each codebook's mean cross-entropy over its valid codes, averaged over codebooks.

    logits [B, K, T, codebook_size], codes and mask [B, K, T] (:meth:`LM.compute_predictions`'s, ``mask``
    False where a code has no context or is padding). Per codebook, then averaged: audiocraft's MusicGen
    solver does so, and transformers' ``labels`` loss too, so a fine-tune here minimises what theirs does.
    """
    per_codebook = [F.cross_entropy(logits[:, k][mask[:, k]], codes[:, k][mask[:, k]])
                    for k in range(codes.shape[1]) if mask[:, k].any()]   # (a batch of very short windows may
    return torch.stack(per_codebook).mean()                               # leave a delayed codebook no code)
