"""One optimisation step of each model lowers its loss on a fixed batch; the pieces around training work."""
from pathlib import Path

import pytest
import torch

from minicraft import toyworld as tw
from minicraft.codec import Encodec
from minicraft.evaluate import (accuracy, labelled_audio, mel_distance, si_snr, train_classifier,
                                unseen_degradations)
from minicraft.tokenizer import T5Tokenizer
from minicraft.train import (CodecTrainConfig, EMAQuantizer, LMTrainConfig, build_text_and_lm, codec_loss,
                             lm_loss, train_codec, train_tokenizer)


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
    return CodecTrainConfig(n_filters=4, dimension=16, bins=32, n_q=3, lstm=0)


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


def test_codec_training_resumes(tmp_path):
    cfg = CodecTrainConfig(**{**small_codec_config().__dict__, "steps": 2, "clips": 8, "checkpoint_every": 1})
    train_codec(tmp_path, cfg, log_every=1)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["step"] == 2
    cfg.steps = 3
    train_codec(tmp_path, cfg, log_every=1)                   # continues from step 2
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == 3
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 3


def test_lm_step_lowers_loss(tokenizer, clips):
    torch.manual_seed(0)
    codec = Encodec(small_codec_config().codec())
    cfg = LMTrainConfig(t5_dim=32, dim=32, num_heads=4, num_layers=2)
    conditioner, lm = build_text_and_lm(cfg, tokenizer, codec)
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
