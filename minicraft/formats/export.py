"""minicraft modules -> a Hugging Face-format MusicGen folder (config.json + model.safetensors).

The inverse of ``loaders.load_huggingface``: the tiny models are shipped this
way, so they load through exactly the code that loads facebook/musicgen-*.
Convolution weights are written weight-normalised (``parametrizations.weight
.original0/1``), as transformers' EnCodec stores them.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from minicraft.models.codec import Encodec
from minicraft.models.conditioning import TextConditioner
from minicraft.formats.lm_names import hf_names
from minicraft.models.lm import LM


def lm_state_to_hf(lm: LM) -> dict[str, torch.Tensor]:
    """The inverse of :func:`~minicraft.formats.lm_names.lm_state_from_hf`."""
    single, packed = hf_names(lm.config)
    state = lm.state_dict()
    out = {theirs: state[ours] for ours, theirs in single.items() if ours in state}
    for ours, theirs in packed.items():
        out.update(zip(theirs, state[ours].chunk(3)))
    return out


def encodec_state_to_hf(codec: Encodec) -> dict[str, torch.Tensor]:
    out = {}
    for key, tensor in codec.state_dict().items():
        parts = key.split(".")
        if key.startswith("quantizer."):          # quantizer.vq.layers.{q}._codebook.embed
            prefix = f"quantizer.layers.{parts[3]}.codebook."
            out[prefix + "embed"] = tensor
            # transformers also keeps the EMA training state; a neutral one lets it load cleanly.
            out[prefix + "embed_avg"] = tensor.clone()
            out[prefix + "cluster_size"] = torch.ones(len(tensor))
            out[prefix + "inited"] = torch.ones(1)
            continue
        side, index = parts[0], parts[2]          # encoder/decoder, model.{i}
        rest = parts[3:]
        if rest[0] == "lstm":
            out[f"{side}.layers.{index}.{'.'.join(rest)}"] = tensor
            continue
        if rest[0] == "block":                    # block.{j}.conv.conv.{weight,bias}
            name = f"{side}.layers.{index}.block.{rest[1]}.conv"
        elif rest[0] == "shortcut":
            name = f"{side}.layers.{index}.shortcut.conv"
        else:                                     # conv.conv.* or convtr.convtr.*
            name = f"{side}.layers.{index}.conv"
        if rest[-1] == "weight":                  # weight norm: gain per output row, direction
            dims = tuple(range(1, tensor.dim()))
            out[f"{name}.parametrizations.weight.original0"] = tensor.norm(dim=dims, keepdim=True)
            out[f"{name}.parametrizations.weight.original1"] = tensor
        else:
            out[f"{name}.bias"] = tensor
    return out


def encodec_config_to_hf(codec: Encodec) -> dict:
    s = codec.config.seanet
    bits = max(1, (codec.config.codebook_size - 1).bit_length())
    return dict(model_type="encodec", sampling_rate=codec.sample_rate, audio_channels=s.channels,
                num_filters=s.n_filters, num_residual_layers=s.n_residual_layers, upsampling_ratios=s.ratios,
                codebook_size=codec.config.codebook_size, codebook_dim=s.dimension, hidden_size=s.dimension,
                num_lstm_layers=s.lstm, normalize=False, use_causal_conv=s.causal, pad_mode=s.pad_mode,
                compress=s.compress, use_conv_shortcut=not s.true_skip, trim_right_ratio=s.trim_right_ratio,
                kernel_size=s.kernel_size, last_kernel_size=s.last_kernel_size,
                residual_kernel_size=s.residual_kernel_size, dilation_growth_rate=s.dilation_base,
                norm_type="weight_norm",
                target_bandwidths=[codec.config.num_codebooks * codec.frame_rate * bits / 1000])


def export_musicgen(folder: str | Path, lm: LM, conditioner: TextConditioner, codec: Encodec,
                    max_duration: float, dtype: torch.dtype = torch.float32,
                    temperature: float | None = None) -> Path:
    """Write ``folder`` as transformers' ``save_pretrained`` would, plus the tokenizer; ``temperature``: the
    sampling temperature recommended in its generation_config.json (left out: transformers' and audiocraft's 1)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    t5 = conditioner.t5
    c = t5.config
    state = {f"text_encoder.{k}": v for k, v in t5.state_dict().items()}
    state.update({f"audio_encoder.{k}": v for k, v in encodec_state_to_hf(codec).items()})
    state.update(lm_state_to_hf(lm))
    state.update({f"enc_to_dec_proj.{k}": v for k, v in conditioner.output_proj.state_dict().items()})
    state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    K = lm.config.num_codebooks
    config = dict(
        model_type="musicgen", architectures=["MusicgenForConditionalGeneration"], is_encoder_decoder=True,
        text_encoder=dict(model_type="t5", vocab_size=c.vocab_size, d_model=c.d_model, d_kv=c.d_kv, d_ff=c.d_ff,
                          num_layers=c.num_layers, num_heads=c.num_heads,
                          relative_attention_num_buckets=c.relative_attention_num_buckets,
                          relative_attention_max_distance=c.relative_attention_max_distance,
                          layer_norm_epsilon=c.layer_norm_epsilon,
                          feed_forward_proj="gated-gelu" if c.gated else "relu", pad_token_id=0, eos_token_id=1),
        audio_encoder=encodec_config_to_hf(codec),
        decoder=dict(model_type="musicgen_decoder", vocab_size=lm.config.codebook_size, hidden_size=lm.config.dim,
                     num_hidden_layers=lm.config.num_layers, num_attention_heads=lm.config.num_heads,
                     ffn_dim=lm.config.ffn_dim, num_codebooks=K, audio_channels=1, activation_function="gelu",
                     max_position_embeddings=4 * int(max_duration * codec.frame_rate) + 16,
                     pad_token_id=lm.config.codebook_size, bos_token_id=lm.config.codebook_size, scale_embedding=False,
                     tie_word_embeddings=False))
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    generation = dict(do_sample=True, guidance_scale=lm.config.cfg_coef, top_k=min(250, lm.config.codebook_size),
                      max_length=int(max_duration * codec.frame_rate), pad_token_id=lm.config.codebook_size,
                      bos_token_id=lm.config.codebook_size, decoder_start_token_id=lm.config.codebook_size)
    if temperature is not None:
        generation["temperature"] = temperature
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    shutil.copy(conditioner.tokenizer.model_file, folder / "spiece.model")
    return folder
