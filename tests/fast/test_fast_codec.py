"""The codec decoder's fast path (polyphase transposed convs, chunked decoding) against the reference modules."""
import pytest
import torch

from minicraft import MusicGen
from minicraft.fast import accelerate, replacements
from minicraft.fast.codec import ChunkedSEANetDecoder, PolyphaseConvTranspose1d, polyphase_conv_transpose1d
from minicraft.fast.replace import become
from minicraft.formats.encodec import load_encodec_audiocraft
from minicraft.modules.seanet import ConvTranspose1d

from paths import FIXTURES
MUSICGEN_CODEC = FIXTURES / "musicgen_tiny" / "compression_state_dict.bin"


@pytest.mark.parametrize("kernel,stride", [(16, 8), (10, 5), (8, 4), (4, 4), (7, 3), (3, 2), (2, 4), (1, 1)])
@pytest.mark.parametrize("length", [1, 2, 9])
def test_polyphase_transposed_conv_is_the_transposed_conv(kernel, stride, length):
    """s ordinary convs of ceil(k / s) taps, interleaved, sum exactly what the transposed conv sums."""
    g = torch.Generator().manual_seed(kernel * 100 + stride * 10 + length)
    x = torch.randn(2, 6, length, generator=g, dtype=torch.float64)
    w = torch.randn(6, 3, kernel, generator=g, dtype=torch.float64)
    b = torch.randn(3, generator=g, dtype=torch.float64)
    expected = torch.nn.functional.conv_transpose1d(x, w, b, stride=stride)
    torch.testing.assert_close(polyphase_conv_transpose1d(x, w, b, stride), expected, rtol=1e-12, atol=1e-12)


def test_decoder_layer_polyphase_against_plain_and_after_a_weight_change():
    layer = ConvTranspose1d(8, 4, kernel=10, stride=5)
    x = torch.randn(1, 8, 7)
    with torch.no_grad():
        plain = layer(x)
        fast = become(layer, PolyphaseConvTranspose1d)(x)
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-6)
        assert fast.shape == (1, 4, 35)
        layer.convtr["convtr"].weight.mul_(2)                    # the cached polyphase weight is rebuilt
        torch.testing.assert_close(layer(x) - layer.convtr["convtr"].bias[:, None],
                                   2 * (plain - layer.convtr["convtr"].bias[:, None]), rtol=1e-5, atol=1e-6)
    layer(x).square().sum().backward()                           # training: gradients reach the weight
    assert layer.convtr["convtr"].weight.grad.abs().sum() > 0
    with torch.inference_mode():                                 # weights made there keep no version counter
        made_there = become(ConvTranspose1d(8, 4, kernel=10, stride=5), PolyphaseConvTranspose1d)
        assert made_there(x).shape == (1, 4, 35)


@pytest.mark.parametrize("codec_name", ["musicgen fixture (LSTM)", "tiny (no LSTM)"])
@pytest.mark.parametrize("chunk", [1, 7, 40])
def test_decoding_in_pieces_equals_one_pass(codec_name, chunk):
    """Long inputs are decoded chunk_frames at a time, each piece with enough context to be exact."""
    if codec_name.startswith("tiny"):
        codec = MusicGen.get_pretrained("tiny").codec
    else:
        codec = load_encodec_audiocraft(MUSICGEN_CODEC)
    codes = torch.randint(0, codec.codebook_size, (2, codec.num_codebooks, 45),
                          generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = codec.decode(codes)                                  # the reference decoder: one pass
        decoder = become(codec.decoder, ChunkedSEANetDecoder, chunk_frames=chunk)
        pieces = codec.decode(codes)
        assert pieces.shape == whole.shape == (2, 1, 45 * codec.hop_length)
        torch.testing.assert_close(pieces, whole, rtol=0, atol=1e-6 * whole.abs().max().item())
        decoder.margin_frames = 0                  # without the context, the seams are audibly wrong
        assert (codec.decode(codes) - whole).abs().max() > 1e-3 * whole.abs().max()


def test_the_accelerated_codec_decodes_what_the_reference_decodes():
    codec = load_encodec_audiocraft(MUSICGEN_CODEC)
    codes = torch.randint(0, codec.codebook_size, (1, codec.num_codebooks, 230), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = codec.decode(codes)
        fast = accelerate(codec).decode(codes)            # polyphase convs, 100 frames at a time
    assert {kind.__name__ for _, kind in replacements(codec)} == {"ChunkedSEANetDecoder", "PolyphaseConvTranspose1d"}
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-5 * reference.abs().max().item())
