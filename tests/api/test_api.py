"""The MusicGen/AudioGen API against audiocraft's own wrapper outputs, and every user mistake."""

import pytest
import torch

from minicraft import AudioGen, MusicGen

from paths import FIXTURES
T5 = FIXTURES / "t5_tiny"
P0 = "80s pop track with bassy drums and synth"


@pytest.fixture(scope="module")
def refs():
    return torch.load(FIXTURES / "refs.pt", weights_only=True)


@pytest.fixture
def musicgen():
    return MusicGen.get_pretrained(str(FIXTURES / "musicgen_tiny"), device="cpu", t5=T5)


@pytest.fixture
def audiogen():
    return AudioGen.get_pretrained(str(FIXTURES / "audiogen_tiny"), device="cpu", t5=T5)


def close(actual, expected):
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)


def test_attributes_and_defaults(musicgen, audiogen):
    assert (musicgen.sample_rate, musicgen.frame_rate, musicgen.audio_channels) == (32000, 50, 1)
    assert musicgen.max_duration == 30 and musicgen.duration == 15 and musicgen.extend_stride == 18
    assert (audiogen.sample_rate, audiogen.frame_rate) == (16000, 50)
    assert audiogen.max_duration == 10 and audiogen.duration == 5 and audiogen.extend_stride == 2
    assert musicgen.generation_params == dict(use_sampling=True, temperature=1.0, top_k=32, top_p=0.0,
                                              cfg_coef=3.0, two_step=False)


def test_musicgen_generate_equals_audiocraft(musicgen, refs):
    musicgen.set_generation_params(use_sampling=False, duration=0.4, cfg_coef=3.0, top_k=32)
    wav, tokens = musicgen.generate([P0], return_tokens=True)
    assert torch.equal(tokens, refs["musicgen.generate.tokens"])
    close(wav, refs["musicgen.generate.wav"])
    assert wav.shape == (1, 1, 12800) and wav.dtype == torch.float32


def test_extended_generation_by_sliding_window(musicgen, refs):
    musicgen.max_duration = 0.6
    musicgen.set_generation_params(use_sampling=False, duration=1.0, extend_stride=0.2, top_k=32)
    _, tokens = musicgen.generate(["dog barking"], return_tokens=True)
    assert torch.equal(tokens, refs["musicgen.extended.tokens"])


@pytest.mark.parametrize("prompt_seconds", [None, 0.3])
def test_decoding_steps_count_every_window(musicgen, prompt_seconds):
    """A progress bar over a long generation needs the steps of all windows (audiocraft's callback restarts)."""
    musicgen.max_duration = 0.6
    musicgen.set_generation_params(use_sampling=False, duration=1.0, extend_stride=0.2, top_k=32)
    calls = []
    musicgen.set_custom_progress_callback(lambda done, todo: calls.append(todo))
    if prompt_seconds is None:
        musicgen.generate(["dog barking"])
    else:
        prompt = 0.1 * torch.randn(1, 1, int(prompt_seconds * 32000), generator=torch.Generator().manual_seed(0))
        musicgen.generate_continuation(prompt, 32000, ["dog barking"])
    plan = musicgen.window_plan(0 if prompt_seconds is None else int(prompt_seconds * musicgen.frame_rate))
    assert len(plan) > 1 and plan[0][1] == 30 and all(given == 20 for given, _ in plan[1:])
    assert musicgen.decoding_steps(plan[0][0]) == len(calls)
    assert len(set(calls)) > 1                          # each window reported against its own steps


def test_continuation_keeps_the_prompt(musicgen, refs):
    musicgen.set_generation_params(use_sampling=False, duration=0.5, top_k=32)
    prompt = refs["musicgen.continuation.prompt_wav"]
    wav, tokens = musicgen.generate_continuation(prompt, 32000, ["calm piano"], return_tokens=True)
    assert torch.equal(tokens, refs["musicgen.continuation.tokens"])
    assert wav.shape[-1] == 25 * 640


def test_continuation_resamples_and_converts_channels(musicgen):
    musicgen.set_generation_params(use_sampling=False, duration=0.3, top_k=32)
    t = torch.arange(4410) / 44100
    stereo = torch.stack([torch.sin(2 * torch.pi * 440 * t), torch.sin(2 * torch.pi * 660 * t)])
    wav = musicgen.generate_continuation(stereo, 44100, ["calm piano"])
    assert wav.shape == (1, 1, int(0.3 * 50) * 640)


def test_audiogen_generate_equals_audiocraft(audiogen, refs):
    audiogen.set_generation_params(use_sampling=False, duration=0.3, top_k=32)
    wav, tokens = audiogen.generate(["dog barking"], return_tokens=True)
    assert torch.equal(tokens, refs["audiogen.generate.tokens"])
    close(wav, refs["audiogen.generate.wav"])


def test_seed_gives_identical_output(musicgen):
    musicgen.set_generation_params(duration=0.3, top_k=10)
    torch.manual_seed(7)
    a = musicgen.generate(["calm piano", "dog barking"])
    torch.manual_seed(7)
    b = musicgen.generate(["calm piano", "dog barking"])
    assert torch.equal(a, b)


def test_greedy_output_does_not_depend_on_batch(musicgen):
    musicgen.set_generation_params(use_sampling=False, duration=0.3)
    _, alone = musicgen.generate(["dog barking"], return_tokens=True)
    _, batch = musicgen.generate([P0, "dog barking", "calm piano"], return_tokens=True)
    assert torch.equal(batch[1:2], alone)


def test_unconditional_and_progress_callback(musicgen):
    seen = []
    musicgen.set_custom_progress_callback(lambda done, total: seen.append((done, total)))
    musicgen.set_generation_params(duration=0.2, top_k=5)
    wav = musicgen.generate_unconditional(2)
    assert wav.shape == (2, 1, 10 * 640)
    # 10 frames + 3 steps of delay: 13 decoding steps, reported as audiocraft does.
    assert seen == [(i, 13) for i in range(1, 14)]


@pytest.mark.parametrize("kwargs, message", [
    (dict(duration=0), "duration must be > 0"),
    (dict(duration=-3), "duration must be > 0"),
    (dict(duration=1e6), "more than an hour"),
    (dict(duration=float("nan")), "finite number"),
    (dict(top_k=-1), "top_k must be an integer from 0"),
    (dict(top_k=33), "top_k must be an integer from 0 to 32 \\(0 = off"),
    (dict(top_p=1.5), "top_p must be within \\[0, 1\\]"),
    (dict(top_p=-0.1), "top_p must be within"),
    (dict(temperature=-1), "temperature must be >= 0"),
    (dict(cfg_coef=-2), "cfg_coef must be >= 0"),
    (dict(extend_stride=30), "extend_stride must be > 0 and smaller than max_duration"),
])
def test_bad_generation_params(musicgen, kwargs, message):
    with pytest.raises(ValueError, match=message):
        musicgen.set_generation_params(**kwargs)


@pytest.mark.parametrize("descriptions, message", [
    ([], "descriptions is empty"),
    ("calm piano", "must be a list of strings"),
    ([None], "descriptions\\[0\\] is NoneType"),
    (["ok", 3], "descriptions\\[1\\] is int"),
])
def test_bad_descriptions(musicgen, descriptions, message):
    with pytest.raises(ValueError, match=message):
        musicgen.generate(descriptions)


def test_bad_prompt_audio(musicgen):
    musicgen.set_generation_params(duration=0.3)
    with pytest.raises(ValueError, match="silent"):
        musicgen.generate_continuation(torch.zeros(1, 1, 3200), 32000, ["x"])
    with pytest.raises(ValueError, match="shaped \\[B, C, T\\]"):
        musicgen.generate_continuation(torch.zeros(5), 32000, ["x"])
    with pytest.raises(ValueError, match="leaves nothing to generate: the duration is 0.3 s"):
        musicgen.generate_continuation(torch.randn(1, 1, 32000), 32000, ["x"])
    with pytest.raises(ValueError, match="2 audio prompts but 1 descriptions"):
        musicgen.generate_continuation(torch.randn(2, 1, 3200), 32000, ["x"])


def test_unknown_model_and_device():
    with pytest.raises(ValueError, match="unknown model name .huge.: use one of tiny, small, medium, large"):
        MusicGen.get_pretrained("huge")
    with pytest.raises(ValueError, match="unknown model name .small.: use one of tiny, medium"):
        AudioGen.get_pretrained("small")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        MusicGen.get_pretrained("./no/such/model")
    with pytest.raises(ValueError, match="'cuda' is not available"):
        MusicGen.get_pretrained("small", device="cuda")
    with pytest.raises(ValueError, match="unknown device"):
        MusicGen.get_pretrained("small", device="tpu")
    with pytest.raises(ValueError, match="float16 is slow"):
        MusicGen.get_pretrained("small", device="cpu", dtype="float16")


def test_bfloat16_on_cpu():
    """Reduced precision runs end to end; audio comes back as float32."""
    model = MusicGen.get_pretrained(str(FIXTURES / "musicgen_tiny"), device="cpu", dtype="bfloat16", t5=T5)
    assert next(model.lm.parameters()).dtype == torch.bfloat16
    model.set_generation_params(use_sampling=False, duration=0.2)
    wav = model.generate(["dog barking"])
    assert wav.dtype == torch.float32 and torch.isfinite(wav).all()


@pytest.mark.parametrize("folder", ["musicgen_tiny", "audiogen_tiny"])
@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_int8_quantized_from_the_mapped_file_equals_quantizing_after(folder, dtype):
    """audiocraft's format: the LM's weights are quantized block by block from the memory-mapped file,
    giving exactly what quantizing a loaded model gives."""
    from minicraft.formats.loaders import load_components
    from minicraft.fast.int8 import quantize_lm_int8
    path = str(FIXTURES / folder)
    streamed = load_components(path, t5=T5, dtype=dtype, quantize="int8").lm.state_dict()
    after = quantize_lm_int8(load_components(path, t5=T5, dtype=dtype).lm).state_dict()
    assert streamed.keys() == after.keys()
    for key, tensor in after.items():
        assert streamed[key].dtype == tensor.dtype and torch.equal(streamed[key], tensor), key


@pytest.mark.parametrize("duration, max_duration, stride", [
    (0.7, 0.6, 0.2), (0.62, 0.6, 0.4), (0.84, 0.6, 0.4), (5.3, 2.0, 1.5), (6.1, 2.0, 1.0), (48.1, 30.0, 18.0)])
def test_windows_add_up_to_the_duration_in_whole_frames(musicgen, duration, max_duration, stride):
    """audiocraft computes each window's length in seconds; at these durations float rounding makes it lose a
    frame or plan a window with nothing to generate (an assertion error). The plan counts whole frames."""
    musicgen.max_duration = max_duration
    musicgen.set_generation_params(duration=duration, extend_stride=stride)
    plan = musicgen.window_plan()
    total = int(duration * musicgen.frame_rate)
    assert all(0 <= given < frames <= int(max_duration * musicgen.frame_rate) for given, frames in plan)
    assert plan[0][1] + sum(frames - given for given, frames in plan[1:]) == total


def test_a_duration_audiocraft_cannot_finish_is_generated_whole(musicgen):
    musicgen.max_duration = 0.6
    musicgen.set_generation_params(use_sampling=False, duration=0.7, extend_stride=0.2, top_k=32)
    assert musicgen.window_plan() == [(0, 30), (20, 25)]       # audiocraft: (0, 30), (20, 24), (14, 14), (4, 4)
    tokens = musicgen.generate(["dog barking"], return_tokens=True)[1]
    assert tokens.shape[-1] == 35
