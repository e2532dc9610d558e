"""One optimisation step of each model lowers its loss on a fixed batch; the pieces around training work."""

import pytest
import torch

from minicraft.toyworld import world as tw
from minicraft.models.codec import Encodec
from minicraft.toyworld.evaluate import (accuracy, generation_report, labelled_audio, level_by_class, mel_distance,
                                misheard_as, misheard_line, recognised_by_class, si_snr, train_classifier,
                                unquantized_report, unseen_degradations)
from minicraft.modules.tokenizer import T5Tokenizer
from minicraft.toyworld.train import (CodecTrainConfig, EMAQuantizer, LMTrainConfig, build_text_and_lm, codec_loss,
                                      crop_windows, encode_scenes, lm_loss, noisy_captions, scene_captions,
                                      spectral_loss, train_codec, train_tokenizer)


@pytest.fixture(scope="module")
def clips():
    return tw.sample_clips(64, seed=11)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory, clips):
    folder = tmp_path_factory.mktemp("tok")
    return T5Tokenizer(train_tokenizer([c.caption for c in tw.sample_clips(500, seed=0)], folder, 120))


def test_tokenizer_follows_t5_conventions(tokenizer, clips):
    sp = tokenizer.sp
    assert (sp.pad_id(), sp.eos_id(), sp.unk_id()) == (0, 1, 2)
    ids, mask = tokenizer([clips[0].caption, None])
    assert ids[0, mask[0].sum() - 1] == 1 and mask[1].sum() == 0
    assert "▁rain" in tokenizer.sp.id_to_piece(list(range(tokenizer.vocab_size)))


def small_codec_config():
    return CodecTrainConfig(n_filters=4, dimension=16, codebook_size=32, num_codebooks=3, lstm=0)


def test_codec_step_lowers_loss(clips):
    torch.manual_seed(0)
    codec = Encodec(small_codec_config().codec())
    quantizer = EMAQuantizer(codec, decay=0.9, dead_threshold=0.5)
    wav = torch.from_numpy(tw.render_batch(clips[:4]))[:, None, :8000]
    optimizer = torch.optim.Adam(codec.parameters(), lr=1e-3)
    before, _ = codec_loss(codec, quantizer, wav, 3, training=True, commitment_weight=1.0)  # k-means init
    for _ in range(5):
        loss, parts = codec_loss(codec, quantizer, wav, 3, training=True, commitment_weight=1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after, _ = codec_loss(codec, quantizer, wav, 3, training=False, commitment_weight=1.0)
    assert after < before
    assert set(parts) == {"l1", "spectral", "commitment"}
    assert quantizer.inited.all()


def test_spectral_loss_prefers_an_imperfect_tone_to_silence():
    # The property the codec needs to learn pitch: a tone with a faint noise floor (or a semitone off) must cost
    # less than silence. With an absolute log floor the noise floor alone cost 2.5x silence.
    t = torch.arange(16000) / 16000
    tone = lambda hz: 0.5 * torch.sin(2 * torch.pi * hz * t)[None]
    target = tone(440.0)
    noise = 0.01 * torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))
    silence = spectral_loss(torch.zeros_like(target), target)
    assert spectral_loss(target + noise, target) < silence / 4
    assert spectral_loss(tone(466.2), target) < silence
    assert spectral_loss(target, target) < 1e-4


def test_short_stft_windows_make_smeared_clicks_cost():
    # Rain and footsteps are clicks. Windows of 256-2048 samples see a click spread into steady hiss of the
    # same energy as fairly close (0.60 of silence's cost here); with 32-128 added it costs 0.90 of silence.
    # Trained on the long windows only, the codec returned rain as hiss (0 of 19 recognised).
    g = torch.Generator().manual_seed(0)
    target = torch.zeros(1, 16000)
    for start in torch.randint(0, 15800, (40,), generator=g).tolist():
        target[0, start:start + 40] += torch.randn(40, generator=g) * torch.exp(-torch.arange(40) / 8.0)
    hiss = torch.randn(1, 16000, generator=g)
    hiss *= target.norm() / hiss.norm()
    late = torch.roll(target, 96, 1)                                        # every click 6 ms late
    long_only = (256, 512, 1024, 2048)
    share = lambda pred, sizes: float(spectral_loss(pred, target, sizes) / spectral_loss(0 * target, target, sizes))
    assert share(hiss, long_only) < 0.7 < 0.85 < share(hiss, CodecTrainConfig.stft_sizes)
    assert share(late, CodecTrainConfig.stft_sizes) > share(late, long_only) + 0.15


def test_ema_codebooks_keep_codes_used_at_the_average_rate():
    # 400 vectors per batch over 256 codes: each code is used 1.6 times per batch on average. Every code
    # here is in use, so none may be replaced as dead (audiocraft's threshold of 2, meant for batches of
    # thousands of vectors, replaced most of them every step).
    torch.manual_seed(0)
    codec = Encodec(CodecTrainConfig(n_filters=4, dimension=16, codebook_size=256, num_codebooks=1).codec())
    centers = 10 * torch.randn(256, 16)
    quantizer = EMAQuantizer(codec, decay=0.99, dead_threshold=CodecTrainConfig.dead_code_threshold)
    codec.quantizer.codebooks[0].embed.copy_(centers)
    quantizer.embed_avg[0], quantizer.cluster_size[0], quantizer.inited[0] = centers.clone(), torch.ones(256), True
    for _ in range(50):
        x = centers[torch.randint(256, (400,))] + 0.01 * torch.randn(400, 16)
        quantizer.update(0, x, codec.quantizer.codebooks[0].encode(x))
    drift = (codec.quantizer.codebooks[0].embed - centers).norm(dim=1)
    assert drift.max() < 0.1, f"{int((drift > 0.1).sum())} of 256 codes were replaced"


def test_codec_training_resumes(tmp_path):
    config = CodecTrainConfig(**{**small_codec_config().__dict__, "steps": 2, "polish_steps": 0, "clips": 8,
                              "checkpoint_every": 1})
    train_codec(tmp_path, config, log_every=1)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["step"] == 2
    config.steps = 3
    train_codec(tmp_path, config, log_every=1)                   # continues from step 2
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == 3
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 3


def test_decoder_polish_keeps_the_codes(tmp_path):
    # The polish trains the decoder alone, so an LM trained on the codec's codes stays valid; it also resumes
    # from a checkpoint written before it existed (the shipped codec was polished that way).
    config = CodecTrainConfig(**{**small_codec_config().__dict__, "steps": 2, "polish_steps": 0, "clips": 8})
    before = train_codec(tmp_path, config, log_every=1).state_dict()
    before = {k: v.clone() for k, v in before.items()}
    config.polish_steps = 2
    after = train_codec(tmp_path, config, log_every=1).state_dict()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == 4
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"decoder"}


def test_noisy_captions_swap_a_share_for_other_classes_captions():
    clips = tw.sample_clips(2000, seed=3)
    captions = noisy_captions(clips, 0.2, seed=1)
    assert captions == noisy_captions(clips, 0.2, seed=1)                        # deterministic
    assert noisy_captions(clips, 0.0, seed=1) == [c.caption for c in clips]
    swapped = [i for i, (c, text) in enumerate(zip(clips, captions)) if text != c.caption]
    assert 0.17 < len(swapped) / len(clips) < 0.23
    by_caption = {c.caption: c.label for c in clips}
    assert all(by_caption[captions[i]] != clips[i].label for i in swapped)     # always another class's caption


def test_lm_step_lowers_loss(tokenizer, clips):
    torch.manual_seed(0)
    codec = Encodec(small_codec_config().codec())
    config = LMTrainConfig(t5_dim=32, dim=32, num_heads=4, num_layers=2)
    conditioner, lm = build_text_and_lm(config, tokenizer, codec)
    ids, mask = tokenizer([c.caption for c in clips[:8]])
    codes = torch.randint(0, 32, (8, 3, 20))
    params = list(conditioner.parameters()) + list(lm.parameters())
    optimizer = torch.optim.AdamW(params, lr=3e-3)
    before = lm_loss(lm, conditioner, ids, mask, codes).item()
    for _ in range(5):
        loss = lm_loss(lm, conditioner, ids, mask, codes, drop=torch.tensor([True] + [False] * 7))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert lm_loss(lm, conditioner, ids, mask, codes).item() < before


def test_classifier_recognises_real_clips_also_degraded():
    clf = train_classifier(n=400, epochs=150)
    _, audio, labels = labelled_audio(100, seed=7, held_out=True)
    assert accuracy(clf, audio, labels) > 0.9
    degraded = unseen_degradations(audio)
    for name in ("white noise 30 dB", "soft clipping", "gain -20 dB"):   # a clean-only classifier: 39 / 70 / 82 %
        assert accuracy(clf, degraded[name], labels) > 0.85, name


def test_measures():
    x = torch.randn(2, 16000)
    assert si_snr(x, x).min() > 60 and si_snr(torch.randn(2, 16000), x).max() < 0
    assert mel_distance(x, x) == 0 and mel_distance(x * 0.1, x) > 0.5


def test_level_by_class_reports_what_a_codec_drops():
    class HalvesTones:                     # a stand-in codec: keeps effects, returns instruments at half amplitude
        done = 0                           # clips decoded so far: it is handed a few at a time, in order
        def encode(self, wav):
            return wav
        def decode(self, wav):
            rows = labels[self.done:self.done + len(wav)].tolist()
            self.done += len(wav)
            gain = torch.tensor([0.5 if tw.CLASSES[i] in tw.INSTRUMENTS else 1.0 for i in rows])
            return wav * gain[:, None, None]
    _, audio, labels = labelled_audio(40, seed=3)
    levels = level_by_class(HalvesTones(), audio, labels)
    assert set(levels) == {tw.CLASSES[i] for i in labels.tolist()}
    for name, db in levels.items():
        assert db == pytest.approx(-6.02 if name in tw.INSTRUMENTS else 0.0, abs=0.01)


def test_unquantized_report_bypasses_the_quantizer():
    class Passthrough(torch.nn.Module):     # encoder and decoder that keep the sound; a quantizer that would not
        encoder = decoder = torch.nn.Identity()
        def encode(self, wav):
            raise AssertionError("the quantizer must not be used")
    clf = train_classifier(n=200, epochs=100)
    _, audio, labels = labelled_audio(40, seed=3)
    report = unquantized_report(Passthrough(), clf, audio, labels)
    assert report["mel_distance"] == 0 and report["accuracy"] == accuracy(clf, audio, labels)


def test_recognised_by_class_counts_hits_per_true_class_in_toy_world_order():
    counts = recognised_by_class(["rain", "wind", "flute", "rain"], ["rain", "rain", "flute", "clock"])
    assert counts == {"flute": (1, 1), "rain": (1, 2), "clock": (0, 1)}


def test_misheard_as_counts_only_misses_most_frequent_first():
    heard = misheard_as(["wind", "flute", "engine", "engine", "rain", "bell"],
                        ["rain", "flute", "wind", "wind", "wind", "clock"])
    assert heard == {"wind": {"engine": 2, "rain": 1}, "rain": {"wind": 1}, "clock": {"bell": 1}}
    assert list(heard) == ["rain", "wind", "clock"]                       # toy-world order, as by class
    assert misheard_line(heard) == "rain as wind 1; wind as engine 2, rain 1; clock as bell 1"


def test_generation_report_applies_sampling_overrides_at_every_guidance_strength():
    class Model:                       # records what it is asked to do; its "audio" is always silence
        def __init__(self):
            self.params = []

        def set_generation_params(self, **params):
            self.params.append(params)

        def generate(self, captions):
            return torch.zeros(len(captions), 1, int(tw.DURATION * tw.SAMPLE_RATE))

    class Judge:                       # hears rain in everything
        def predict(self, audio):
            return ["rain"] * len(audio)

    clips = tw.sample_clips(20, seed=3)
    model = Model()
    results = generation_report(model, Judge(), clips, cfg_coefs=(1.0, 3.0), batch=8, temperature=0.7)
    assert model.params == [dict(duration=tw.DURATION, cfg_coef=c, temperature=0.7) for c in (1.0, 3.0)]
    rain = sum(c.label == "rain" for c in clips)
    assert [r.recognised for r in results] == [rain / len(clips)] * 2
    assert all(sum(n for heard in r.misheard.values() for n in heard.values()) == len(clips) - rain for r in results)


def test_windows_are_cropped_at_random_offsets_and_captioned_by_what_they_hold():
    scenes = tw.sample_scenes(40, seed=2, classes=tw.EFFECTS)
    # codes that say where they are: frame t of scene i holds (i, t)
    codes = [torch.stack([torch.full((int(s.duration * 50),), i), torch.arange(int(s.duration * 50))])
             for i, s in enumerate(scenes)]
    wrong = [None] * len(scenes)
    wrong[0] = "a wrong caption"
    windows, texts = crop_windows(scenes, codes, 100, 50, torch.Generator().manual_seed(0), wrong, 400)
    assert windows.shape == (400, 2, 100)
    starts = windows[:, 1, 0]
    assert (windows[:, 1] == starts[:, None] + torch.arange(100)).all()                # 100 consecutive frames
    assert len(set(starts.tolist())) > 100 and starts.max() > 300                         # anywhere in the scene
    for (i, start), text in zip(windows[:, :, 0].tolist(), texts):
        expected = "a wrong caption" if i == 0 else scenes[i].window_caption(start / 50, start / 50 + 2)
        assert text == expected
    assert any(", then " in t for t in texts)                                            # some cross a change
    assert all(t in scene_captions(scenes[i]) for (i, _), t in zip(windows[:, :, 0].tolist(), texts) if i)


def test_scenes_are_encoded_whole_as_the_codec_encodes_them():
    torch.manual_seed(0)
    codec = Encodec(small_codec_config().codec()).eval()
    scenes = tw.sample_scenes(5, seed=8, seconds=(6, 8))
    codes = encode_scenes(codec, scenes, batch=2)
    for scene, c in zip(scenes, codes):
        alone = codec.encode(torch.from_numpy(tw.render_scene(scene))[None, None])[0]
        assert c.shape == (3, int(scene.duration * 50)) and torch.equal(c, alone)


def test_an_opening_share_of_windows_starts_where_the_scene_does():
    scenes = tw.sample_scenes(20, seed=2, classes=tw.INSTRUMENTS)
    codes = [torch.arange(int(s.duration * 50))[None] for s in scenes]
    generator = torch.Generator().manual_seed(0)
    windows, _ = crop_windows(scenes, codes, 100, 50, generator, [None] * 20, 400, opening_share=0.25)
    share = (windows[:, 0, 0] == 0).float().mean()
    assert 0.19 < share < 0.31                                   # 0.25 asked, and a few uniform crops at 0
    # none asked: the generator draws a scene, then an offset per window, and nothing else (the recipe's windows
    # without openings are the ones cropped before openings existed)
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(20, (50,), generator=g).tolist()
    starts = [int(torch.randint(codes[i].shape[-1] - 99, (), generator=g)) for i in rows]
    windows, _ = crop_windows(scenes, codes, 100, 50, torch.Generator().manual_seed(0), [None] * 20, 50)
    assert windows[:, 0, 0].tolist() == starts
