"""The language model over audio codes.

Input: a pattern sequence ``[B, K, S]`` of codes (or the special token
``card``). Each codebook has its own embedding table; the K embeddings of a
step are *summed* into one vector, so a step costs one transformer position
however many codebooks it holds. The transformer attends causally over steps
and, through cross-attention, to the text condition. K linear heads turn each
output into K distributions over the ``card`` codes.

Parameter names are audiocraft's (``emb.{k}``, ``transformer.layers.{i}...``,
``out_norm``, ``linears.{k}``); :func:`~minicraft.formats.lm_names.lm_state_from_hf` renames a Hugging Face
MusicGen decoder into them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

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
    card: int = 2048                 # codes per codebook; id ``card`` is the special token
    delays: list[int] = field(default_factory=lambda: [0, 1, 2, 3])
    cross_attention: bool = True
    bias_attn: bool = False
    bias_ff: bool = False
    bias_proj: bool = False
    max_period: float = 10_000
    positional_scale: float = 1.0
    cfg_coef: float = 3.0            # default classifier-free guidance strength
    two_step_cfg: bool = False

    @classmethod
    def from_audiocraft(cls, cfg: dict) -> "LMConfig":
        """From a resolved audiocraft ``xp.cfg``."""
        lm = cfg["transformer_lm"]
        unsupported = {"norm_first": (lm.get("norm_first"), True), "norm": (lm.get("norm"), "layer_norm"),
                       "positional_embedding": (lm.get("positional_embedding"), "sin"),
                       "activation": (lm.get("activation"), "gelu"), "kv_repeat": (lm.get("kv_repeat", 1), 1),
                       "qk_layer_norm": (lm.get("qk_layer_norm", False), False),
                       "layer_scale": (lm.get("layer_scale"), None),
                       "codebooks_pattern.modeling": (cfg["codebooks_pattern"]["modeling"], "delay")}
        for name, (value, supported) in unsupported.items():
            if value != supported:
                raise ValueError(f"xp.cfg sets {name}={value!r}; minicraft supports only {supported!r}.")
        delay_cfg = cfg["codebooks_pattern"]["delay"]
        if delay_cfg.get("flatten_first", 0) or delay_cfg.get("empty_initial", 0):
            raise ValueError("xp.cfg uses flatten_first/empty_initial in its delay pattern; "
                             "minicraft supports only the plain delay pattern.")
        cross = len(cfg.get("fuser", {}).get("cross", [])) > 0 or bool(lm.get("cross_attention"))
        cfg_section = cfg.get("classifier_free_guidance", {})
        return cls(dim=lm["dim"], num_heads=lm["num_heads"], num_layers=lm["num_layers"],
                   ffn_dim=int(lm["dim"] * lm.get("hidden_scale", 4)), num_codebooks=lm["n_q"],
                   card=lm["card"], delays=list(delay_cfg["delays"]), cross_attention=cross,
                   bias_attn=bool(lm.get("bias_attn", False)), bias_ff=bool(lm.get("bias_ff", False)),
                   bias_proj=bool(lm.get("bias_proj", False)), max_period=lm.get("max_period", 10_000),
                   positional_scale=lm.get("positional_scale", 1.0),
                   cfg_coef=cfg_section.get("inference_coef", 3.0),
                   two_step_cfg=bool(lm.get("two_step_cfg", False)))

    @classmethod
    def from_hf(cls, decoder: dict) -> "LMConfig":
        """From the ``decoder`` section of a transformers MusicGen ``config.json``."""
        if decoder.get("activation_function", "gelu") != "gelu":
            raise ValueError(f"decoder activation {decoder['activation_function']!r} is not supported.")
        if decoder.get("scale_embedding", False):
            raise ValueError("decoder.scale_embedding=True is not supported.")
        if decoder.get("audio_channels", 1) != 1:
            raise ValueError("stereo MusicGen checkpoints (audio_channels=2) are not supported yet.")
        K = decoder["num_codebooks"]
        return cls(dim=decoder["hidden_size"], num_heads=decoder["num_attention_heads"],
                   num_layers=decoder["num_hidden_layers"], ffn_dim=decoder["ffn_dim"],
                   num_codebooks=K, card=decoder["vocab_size"], delays=list(range(K)))


class LM(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.cfg = cfg
        K, D = cfg.num_codebooks, cfg.dim
        self.emb = nn.ModuleList(nn.Embedding(cfg.card + 1, D) for _ in range(K))
        self.transformer = Transformer(D, cfg.num_heads, cfg.num_layers, cfg.ffn_dim,
                                       cfg.cross_attention, cfg.bias_attn, cfg.bias_ff,
                                       cfg.max_period, cfg.positional_scale)
        self.out_norm = nn.LayerNorm(D, eps=1e-5)
        self.linears = nn.ModuleList(nn.Linear(D, cfg.card, bias=cfg.bias_proj) for _ in range(K))

    @property
    def special_token(self) -> int:
        return self.cfg.card

    def pattern(self, timesteps: int) -> Pattern:
        return delay_pattern(self.cfg.num_codebooks, timesteps, self.cfg.delays)

    def new_caches(self, batch: int, max_steps: int, like: torch.Tensor) -> list[KVCache]:
        """One empty KV cache per layer, for ``batch`` rows and up to ``max_steps`` positions
        (in ``like``'s dtype and device)."""
        cfg = self.cfg
        return [KVCache.empty(batch, cfg.num_heads, max_steps, cfg.dim // cfg.num_heads, like.dtype, like.device)
                for _ in range(cfg.num_layers)]

    def forward(self, sequence: torch.Tensor, cross: torch.Tensor | None = None,
                cross_mask: torch.Tensor | None = None, caches=None) -> torch.Tensor:
        """sequence [B, K, S] -> logits [B, K, S, card].

        ``cross`` [B, L, D] is the text condition; audiocraft attends to all of
        it (padding was zeroed, not masked), so ``cross_mask`` defaults to None.
        """
        x = sum(self.emb[k](sequence[:, k]) for k in range(len(self.emb)))   # [B, S, D]
        x = self.transformer(x, cross, cross_mask, caches)
        x = self.out_norm(x)
        return torch.stack([head(x) for head in self.linears], dim=1)         # [B, K, S, card]

    def compute_predictions(self, codes: torch.Tensor, cross: torch.Tensor | None = None,
                            cross_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: codes [B, K, T] -> logits [B, K, T, card] and mask [B, K, T].

        ``logits[:, k, t]`` is the prediction *for* ``codes[:, k, t]`` (no shifting
        needed); where the pattern gives no valid context the logits are NaN
        and the mask is False.
        """
        B, K, T = codes.shape
        pattern = self.pattern(T)
        sequence, _ = pattern.build(codes, self.special_token, valid_only=True)   # [B, K, S]
        logits, mask = pattern.revert_logits(self(sequence, cross, cross_mask))   # [B, K, T, card]
        return logits, mask[None].expand(B, -1, -1)
