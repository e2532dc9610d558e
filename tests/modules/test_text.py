"""Tokenizer, T5 encoder and text conditioner against audiocraft's refs and transformers."""

import pytest
import torch
import torch.nn.functional as F

from minicraft.formats.checkpoints import CheckpointError, read_audiocraft
from minicraft.formats.t5 import load_t5_encoder
from minicraft.modules.t5 import relative_position_bucket
from minicraft.modules.tokenizer import T5Tokenizer

from paths import FIXTURES
T5_DIR = FIXTURES / "t5_tiny"
P = ["80s pop track with bassy drums and synth", "dog barking", None]
VARIED = ["  two  spaces ", "Héllo wörld!", "tabs\tand\nnewlines", "UPPER case", "ünïcode 🎵 emoji",
          "punctuation, (brackets) & 'quotes'", "x" * 50, ""]


@pytest.fixture(scope="module")
def refs():
    return torch.load(FIXTURES / "refs.pt", weights_only=True)


@pytest.fixture(scope="module")
def tokenizer():
    return T5Tokenizer.from_dir(T5_DIR)


def test_tokenizer_equals_audiocraft(tokenizer, refs):
    ids, mask = tokenizer(P)
    assert torch.equal(ids, refs["t5.input_ids"])
    assert torch.equal(mask, refs["t5.attention_mask"])


def test_tokenizer_equals_transformers(tokenizer):
    from transformers import AutoTokenizer
    reference = AutoTokenizer.from_pretrained(T5_DIR)
    for text in VARIED:
        assert tokenizer.encode(text) == reference(text)["input_ids"], text


def test_tokenizer_conventions(tokenizer):
    assert tokenizer.encode("") == [1]                   # just EOS
    assert tokenizer.pieces("dog barking") == ["▁dog", "▁barking", "</s>"]
    ids, mask = tokenizer(["dog", None, ""])
    assert mask[1].sum() == 0 and mask[2].sum() == 0    # no text -> all-zero mask row
    assert ids[0, -1] == 0 or ids.shape[1] == 2          # right padding with 0
    with pytest.raises(FileNotFoundError, match="no spiece.model"):
        T5Tokenizer.from_dir(FIXTURES / "musicgen_tiny")


def test_relative_position_buckets_equal_transformers():
    from transformers.models.t5.modeling_t5 import T5Attention
    relative = torch.arange(-300, 300)[None, :]
    expected = T5Attention._relative_position_bucket(relative, bidirectional=True, num_buckets=32,
                                                     max_distance=128)
    assert torch.equal(relative_position_bucket(relative, 32, 128), expected)


def hf_hidden(folder, ids, mask):
    from transformers import T5EncoderModel
    model = T5EncoderModel.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).last_hidden_state


def test_t5_encoder_equals_transformers(tokenizer):
    ids, mask = tokenizer(P[:2])                        # padded batch
    ours = load_t5_encoder(T5_DIR)
    with torch.no_grad():
        hidden = ours(ids, mask)
    torch.testing.assert_close(hidden, hf_hidden(T5_DIR, ids, mask), atol=1e-5, rtol=1e-4)
    assert not any(p.is_meta for p in ours.parameters())


def test_empty_prompt_stays_finite(tokenizer):
    ids, mask = tokenizer([None, "dog"])
    with torch.no_grad():
        hidden = load_t5_encoder(T5_DIR)(ids, mask)
    assert torch.isfinite(hidden).all()


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("gated", [False, True])
def test_random_t5_checkpoints(tmp_path, full, gated):
    """Encoder-only and full (encoder-decoder) T5 files, ReLU and gated-GELU (flan-t5) FFNs."""
    from transformers import T5Config, T5EncoderModel, T5ForConditionalGeneration
    torch.manual_seed(0)
    config = T5Config(vocab_size=80, d_model=24, d_kv=6, d_ff=40, num_layers=3, num_decoder_layers=2,
                      num_heads=4, relative_attention_num_buckets=16, relative_attention_max_distance=20,
                      feed_forward_proj="gated-gelu" if gated else "relu", dropout_rate=0.0)
    model = (T5ForConditionalGeneration if full else T5EncoderModel)(config).eval()
    model.save_pretrained(tmp_path)
    ids = torch.randint(2, 80, (3, 30))
    mask = torch.ones_like(ids)
    mask[1, 20:] = 0
    ours = load_t5_encoder(tmp_path)
    with torch.no_grad():
        expected = (model.encoder if full else model)(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(ours(ids, mask), expected, atol=1e-5, rtol=1e-4)


def test_conditioner_equals_audiocraft(tokenizer, refs):
    """output_proj(T5(ids)), padded positions zeroed after the bias."""
    _, state, _ = read_audiocraft(FIXTURES / "musicgen_tiny" / "state_dict.bin")
    prefix = "condition_provider.conditioners.description.output_proj."
    ids, mask = tokenizer(P)
    with torch.no_grad():
        embeds = F.linear(load_t5_encoder(T5_DIR)(ids, mask), state[prefix + "weight"], state[prefix + "bias"])
    embeds = embeds * mask[..., None]
    torch.testing.assert_close(embeds, refs["cond.description.embeds"], atol=1e-5, rtol=1e-4)
    assert torch.equal(mask, refs["cond.description.mask"])


def test_t5_loading_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such T5 folder"):
        load_t5_encoder(tmp_path / "missing")
    (tmp_path / "config.json").write_text((T5_DIR / "config.json").read_text().replace('"d_ff": 64', '"d_ff": 65'))
    (tmp_path / "model.safetensors").symlink_to(T5_DIR / "model.safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors.*wrongly shaped: encoder.block.0.layer.1"):
        load_t5_encoder(tmp_path)
