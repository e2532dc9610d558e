"""LoRA's mechanics: the update by hand, frozen weights kept compact, what trains, merging; and at the real
musicgen-small architecture, the fine-tune's loss equals transformers' ``labels`` loss and a merged export
gives transformers' logits."""
import shutil

import pytest
import torch
from torch import nn

from hf_models import (ENCODEC_32KHZ, MUSICGEN_SMALL_DECODER, T5_BASE, build_musicgen, save_musicgen,
                       tiny_musicgen)
from minicraft import MusicGen
from minicraft.formats.adapter import apply_adapter, read_adapter_config, save_adapter
from minicraft.formats.export import export_musicgen
from minicraft.models.adapters import (AdapterConfig, add_adapters, adapter_state, count_parameters,
                                       merge_adapters)
from minicraft.models.conditioning import text_mask
from minicraft.modules.lora import FrozenLinear, LoRALinear
from minicraft.tune.train import lm_loss, recompute_activations


def test_lora_is_a_low_rank_update_written_by_hand():
    torch.manual_seed(0)
    linear = nn.Linear(32, 48)
    adapted = LoRALinear(linear.weight, linear.bias, rank=4, alpha=8.0)
    x = torch.randn(5, 32)
    torch.testing.assert_close(adapted(x), linear(x))                 # B starts at zero: no change
    lora = adapted.loras[0]
    nn.init.normal_(lora.B)
    by_hand = x @ linear.weight.T + linear.bias + (8.0 / 4) * (x @ lora.A.T) @ lora.B.T
    torch.testing.assert_close(adapted(x), by_hand)
    torch.testing.assert_close(adapted.merged()(x), by_hand)
    assert lora.A.numel() + lora.B.numel() == 4 * (32 + 48)          # against 32 x 48 in W


def test_packed_projection_has_one_update_per_block():
    torch.manual_seed(0)
    weight = torch.randn(3 * 16, 16)
    adapted = LoRALinear(weight, None, blocks=3, rank=2)
    for lora in adapted.loras:
        nn.init.normal_(lora.B)
    x = torch.randn(2, 7, 16)
    merged = adapted.merged_weight()
    for rows in (slice(0, 16), slice(16, 32), slice(32, 48), slice(16, 48), None):
        expected = x @ (merged if rows is None else merged[rows]).T
        torch.testing.assert_close(adapted(x, rows), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 0), (torch.bfloat16, 1e-2), (torch.int8, 1e-2)])
def test_frozen_weights_compact_and_their_gradient(dtype, tolerance):
    torch.manual_seed(0)
    linear = nn.Linear(64, 32)
    frozen = FrozenLinear(linear.weight, linear.bias, dtype)
    assert list(frozen.parameters()) == []                           # nothing for an optimizer
    assert frozen.weight.dtype == dtype
    x = torch.randn(4, 64, requires_grad=True)
    y = frozen(x)
    expected = linear(x)
    assert (y - expected).abs().max() <= tolerance * expected.abs().max()    # bfloat16 and int8 round W
    y.sum().backward()
    torch.testing.assert_close(x.grad, frozen.weight_as(torch.float32).sum(0).expand(4, -1))


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    reference = tiny_musicgen()
    reference.config.decoder.decoder_start_token_id = 32       # what labels= needs to shift them
    return reference, save_musicgen(reference, tmp_path_factory.mktemp("hf-tiny"))


def test_only_the_updates_train(tiny_folder):
    model = MusicGen.get_pretrained(str(tiny_folder[1]), device="cpu")
    before = sum(p.numel() for p in model.lm.parameters())
    add_adapters(model.lm, AdapterConfig(rank=4, targets=["self_attn", "ffn"], layers=[1]))
    trainable, total = count_parameters(model.lm)
    names = [n for n, p in model.lm.named_parameters() if p.requires_grad]
    assert names and all(".loras." in n and "layers.1." in n for n in names)
    assert not any("cross_attention" in n for n in names)
    assert total == before + trainable            # the frozen weights, counted once, and the updates
    D, F = model.lm.config.dim, model.lm.config.ffn_dim
    assert trainable == 4 * ((D + D) * 3 + (D + D)) + 4 * ((D + F) + (F + D))   # q, k, v, out; linear1, linear2


def merged_export_against_transformers(folder, tmp_path, rank: int, std: float, steps: int, atol: float):
    """An adapter applied (not merged) to the model in ``folder``, then merged and exported: transformers reads the
    export and computes the adapted model's logits. Returns (theirs, the base's logits from the adapted export)."""
    from transformers import AutoTokenizer, MusicgenForConditionalGeneration
    model = MusicGen.get_pretrained(str(folder), device="cpu")
    add_adapters(model.lm, AdapterConfig(rank=rank))
    torch.manual_seed(3)
    with torch.no_grad():
        for name, p in model.lm.named_parameters():
            if name.endswith(".B"):
                p.normal_(std=std)
    prompts = ["dog barking", "80s pop track with bassy drums and synth"]
    codebook_size = model.lm.config.codebook_size
    sequence = torch.randint(0, codebook_size + 1, (2, 4, steps))          # may hold the special token
    with torch.no_grad():
        cond, mask = model.conditioner(prompts)
        adapted = model.lm(sequence, cond, text_mask(mask))
    merged = export_musicgen(tmp_path / "merged", merge_adapters(model.lm), model.conditioner, model.codec,
                             model.max_duration)
    del model                                                 # at musicgen-small's size, 2 GB less at once
    reference = MusicgenForConditionalGeneration.from_pretrained(merged).eval()
    inputs = AutoTokenizer.from_pretrained(folder)(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        theirs = reference(**inputs, decoder_input_ids=sequence.reshape(8, steps)).logits
    theirs = theirs.reshape(2, 4, steps, codebook_size)
    torch.testing.assert_close(theirs, adapted, atol=atol, rtol=1e-4)
    return theirs, inputs, sequence


def test_merged_export_loads_in_transformers_with_the_adapters_logits(tiny_folder, tmp_path):
    reference, folder = tiny_folder
    theirs, inputs, sequence = merged_export_against_transformers(folder, tmp_path, rank=4, std=0.2, steps=9,
                                                                  atol=1e-5)
    with torch.no_grad():
        base = reference(**inputs, decoder_input_ids=sequence.reshape(8, 9)).logits.reshape(2, 4, 9, 32)
    assert not torch.allclose(theirs, base, atol=1e-3)                     # the adapter changed something


def test_adapter_file_round_trip_and_refusal(tiny_folder, tmp_path):
    model = MusicGen.get_pretrained(str(tiny_folder[1]), device="cpu")
    config = AdapterConfig(rank=2, targets=["cross_attention"])
    add_adapters(model.lm, config)
    with torch.no_grad():
        for name, p in model.lm.named_parameters():
            if name.endswith(".B"):
                p.normal_()
    save_adapter(tmp_path / "run", adapter_state(model.lm), config, str(tiny_folder[1]), "musicgen", model.lm.config)
    assert read_adapter_config(tmp_path / "run")["lora"]["targets"] == ["cross_attention"]
    loaded = MusicGen.get_pretrained(str(tmp_path / "run"), device="cpu")          # the base, then the adapter
    codes = torch.randint(0, 32, (1, 4, 6))
    with torch.no_grad():
        cond, _ = model.conditioner(["dog barking"])
        torch.testing.assert_close(loaded.lm(codes, cond), model.lm(codes, cond))
    other = MusicGen.get_pretrained("tiny", device="cpu")
    with pytest.raises(ValueError, match="trained on an LM shaped"):
        apply_adapter(other.lm, tmp_path / "run")


# ---------------------------------------------------------------- musicgen-small's architecture

@pytest.fixture(scope="module")
def small(tmp_path_factory):
    reference = build_musicgen(T5_BASE, ENCODEC_32KHZ, MUSICGEN_SMALL_DECODER)
    reference.config.decoder.decoder_start_token_id = 2048
    folder = save_musicgen(reference, tmp_path_factory.mktemp("musicgen-small"))
    yield reference, folder
    shutil.rmtree(folder, ignore_errors=True)                    # 2.2 GB: not kept until the session ends


def delayed_labels(codes: torch.Tensor, lengths: list[int], special: int) -> torch.Tensor:
    """codes [B, K, T] -> transformers' labels [B, T, K]: codebook k delayed by k steps, cut at each window's
    length (its last k codes have no label, as audiocraft leaves them out), padding where there is no code."""
    B, K, T = codes.shape
    labels = torch.full((B, T, K), special)
    for b, length in enumerate(lengths):
        for k in range(K):
            labels[b, k:length, k] = codes[b, k, :length - k]
    return labels


def test_loss_equals_transformers_labels_loss_at_musicgen_small(small):
    """Two captions of different lengths (text padding), two windows of different lengths (code padding)."""
    reference, folder = small
    from transformers import AutoTokenizer
    model = MusicGen.get_pretrained(str(folder), device="cpu")
    add_adapters(model.lm, AdapterConfig())           # B = 0: the adapted model is the base, exactly
    torch.manual_seed(0)
    prompts = ["dog barking", "80s pop track with bassy drums and synth"]
    codes, lengths = torch.randint(0, 2048, (2, 4, 12)), [12, 9]
    padded = codes.clone()
    padded[1, :, 9:] = 2048
    inputs = AutoTokenizer.from_pretrained(folder)(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        theirs = reference(**inputs, labels=delayed_labels(codes, lengths, 2048)).loss
        mine = lm_loss(model, padded, torch.tensor(lengths), prompts)
    assert abs(mine.item() - theirs.item()) < 1e-5, (mine.item(), theirs.item())


def test_recomputed_activations_give_the_same_gradients(tiny_folder):
    model = MusicGen.get_pretrained(str(tiny_folder[1]), device="cpu")
    add_adapters(model.lm, AdapterConfig(rank=4, dropout=0.1)).train()
    with torch.no_grad():
        for name, p in model.lm.named_parameters():
            if name.endswith(".B"):
                p.normal_(std=0.1)
    codes, lengths = torch.randint(0, 32, (2, 4, 10)), torch.tensor([10, 7])
    grads = []
    for recompute in (False, True):
        recompute_activations(model.lm, recompute)
        torch.manual_seed(0)                               # the same dropout masks (checkpoint replays the RNG)
        model.lm.zero_grad()
        lm_loss(model, codes, lengths, ["dog barking", None]).backward()
        grads.append({n: p.grad.clone() for n, p in model.lm.named_parameters() if p.requires_grad})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-6, rtol=1e-5)


def test_merged_export_at_musicgen_small_loads_in_transformers(small, tmp_path):
    """The same at the real size: 24 layers of width 1024, T5-base, EnCodec 32 kHz."""
    merged_export_against_transformers(small[1], tmp_path, rank=8, std=0.02, steps=6, atol=1e-4)
