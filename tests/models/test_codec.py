"""EnCodec: audiocraft's refs, both weight-norm spellings, and transformers' EncodecModel."""

import pytest
import torch

from minicraft.formats.checkpoints import CheckpointError
from minicraft.formats.encodec import load_encodec_audiocraft, load_encodec_hf
from minicraft.modules.rvq import ResidualVectorQuantizer
from minicraft.modules.seanet import Conv1d

from paths import FIXTURES
MUSICGEN_CODEC = FIXTURES / "musicgen_tiny" / "compression_state_dict.bin"


@pytest.fixture(scope="module")
def refs():
    return torch.load(FIXTURES / "refs.pt", weights_only=True)


def close(actual, expected):
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)


def check_against_refs(codec, refs):
    with torch.no_grad():
        close(codec.decode_latent(refs["codec.dec.codes"]), refs["codec.dec.latent"])
        close(codec.decode(refs["codec.dec.codes"]), refs["codec.dec.wav"])
        close(codec.encoder(refs["codec.enc.wav"]), refs["codec.enc.latent"])
        codes = codec.encode(refs["codec.enc.wav"])
        assert torch.equal(codes, refs["codec.enc.codes"])
        close(codec.decode(codes)[..., :3000], refs["codec.roundtrip.wav"])


def test_codec_equals_audiocraft(refs):
    """The refs were written with the MusicGen (32 kHz) fixture codec."""
    codec = load_encodec_audiocraft(MUSICGEN_CODEC)
    assert (codec.sample_rate, codec.frame_rate, codec.hop_length) == (32000, 50, 640)
    assert (codec.num_codebooks, codec.codebook_size, codec.channels) == (4, 32, 1)
    check_against_refs(codec, refs)


def test_audiogen_codec_shapes():
    codec = load_encodec_audiocraft(FIXTURES / "audiogen_tiny" / "compression_state_dict.bin")
    assert (codec.sample_rate, codec.frame_rate, codec.hop_length) == (16000, 50, 320)
    with torch.no_grad():
        codes = codec.encode(torch.randn(2, 1, 1000))
        assert codes.shape == (2, 4, 4) and codes.max() < 32
        assert codec.decode(codes).shape == (2, 1, 4 * 320)


def test_parametrization_spelling_loads_the_same(tmp_path, refs):
    package = torch.load(MUSICGEN_CODEC, weights_only=True)
    renamed = {}
    for key, tensor in package["best_state"].items():
        key = key.replace(".weight_g", ".parametrizations.weight.original0")
        key = key.replace(".weight_v", ".parametrizations.weight.original1")
        renamed[key] = tensor
    package["best_state"] = renamed
    torch.save(package, tmp_path / "compression_state_dict.bin")
    check_against_refs(load_encodec_audiocraft(tmp_path / "compression_state_dict.bin"), refs)


@pytest.mark.parametrize("rate, ratios", [(32000, [8, 5, 4, 4]), (16000, [8, 5, 4, 2])])
def test_codec_equals_transformers(tmp_path, rate, ratios):
    from transformers import EncodecConfig, EncodecModel
    torch.manual_seed(0)
    # Shaped like facebook/encodec_32khz (non-causal, reflect padding, LSTM, no renormalisation), smaller.
    config = EncodecConfig(sampling_rate=rate, audio_channels=1, num_filters=4, num_residual_layers=1,
                           upsampling_ratios=ratios, codebook_size=32, codebook_dim=16, hidden_size=16,
                           num_lstm_layers=2, normalize=False, use_causal_conv=False, pad_mode="reflect",
                           compress=2, use_conv_shortcut=False, trim_right_ratio=1.0,
                           target_bandwidths=[1.0])          # 1 kbps at 50 Hz, 5 bits: 4 codebooks
    reference = EncodecModel(config).eval()
    with torch.no_grad():
        for layer in reference.quantizer.layers:
            layer.codebook.embed.normal_()
    reference.save_pretrained(tmp_path)
    codec = load_encodec_hf(tmp_path)
    assert codec.num_codebooks == 4
    wav = torch.randn(2, 1, 3000)
    with torch.no_grad():
        expected = reference.encode(wav, bandwidth=1.0).audio_codes[0]     # [B, K, F]
        codes = codec.encode(wav)
        assert torch.equal(codes, expected)
        close(codec.decode(codes), reference.decode(expected[None], [None]).audio_values)


def test_wrong_shapes_name_file_and_key(tmp_path):
    package = torch.load(MUSICGEN_CODEC, weights_only=True)
    package["xp.cfg"] = package["xp.cfg"].replace("dimension: 16", "dimension: 24")
    torch.save(package, tmp_path / "compression_state_dict.bin")
    with pytest.raises(CheckpointError, match="compression_state_dict.bin.*wrongly shaped: encoder.model.15"):
        load_encodec_audiocraft(tmp_path / "compression_state_dict.bin")
    del package["best_state"]["decoder.model.15.conv.conv.bias"]
    package["xp.cfg"] = torch.load(MUSICGEN_CODEC, weights_only=True)["xp.cfg"]
    torch.save(package, tmp_path / "compression_state_dict.bin")
    with pytest.raises(CheckpointError, match="1 missing: decoder.model.15.conv.conv.bias"):
        load_encodec_audiocraft(tmp_path / "compression_state_dict.bin")


def test_padding_keeps_ceil_frames():
    """A strided conv yields ceil(T / stride) frames for any T, even shorter than its padding."""
    conv = Conv1d(1, 1, kernel=8, stride=4)
    for length in (1, 3, 4, 5, 17):
        assert conv(torch.randn(1, 1, length)).shape[-1] == -(-length // 4)


def test_residual_quantization_refines():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(num_codebooks=3, codebook_size=64, dim=4)
    latent = torch.randn(1, 4, 200)
    with torch.no_grad():
        for codebook in rvq.codebooks:
            codebook.embed.copy_(torch.randn(64, 4) * 0.7)
        codes = rvq.encode(latent)
        errors = [(rvq.decode(codes[:, :k]) - latent).pow(2).mean() for k in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2]
