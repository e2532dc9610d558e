"""Training the tiny models on the toy world, in plain PyTorch on a CPU.

    python -m minicraft.toyworld.train codec                      # SEANet + RVQ -> runs/codec
    python -m minicraft.toyworld.train lm --model musicgen        # tokenizer, T5, LM on music -> runs/lm-musicgen
    python -m minicraft.toyworld.train lm --model audiogen        # the same on effects -> runs/lm-audiogen
    python -m minicraft.toyworld.train export --model musicgen    # -> minicraft/assets/tiny
    python -m minicraft.toyworld.train export --model audiogen    # -> minicraft/assets/tiny-audiogen

Every run saves a resumable checkpoint (``checkpoint.pt``) every few hundred
steps; running the same command again continues where it stopped.

The codec learns to reconstruct the waveform (L1) and, above all, its
spectrum at several resolutions (STFT and mel losses). Its residual vector
quantizer learns the way EnCodec's does: codebooks start from k-means on the
first batch, follow the encoder by exponential moving averages (no gradient),
replace codes nobody uses by fresh encoder outputs, and a commitment loss
keeps the encoder close to its codes. Quantizer dropout (a random number of
codebooks per batch, so that fewer codebooks also decode) is available but
off in the shipped recipe. A last phase polishes the decoder alone (the codes
stay as they were) with longer STFT windows in the loss.

Each LM learns from 2-second windows cropped at random offsets of 6-12 s
scenes of its own family (instruments for MusicGen, effects for AudioGen),
so it has seen windows that start mid-note and sounds that go on after the
window ends: what the sliding window of a long generation asks of it. A
tenth of its captions are wrong, as scraped ones often are: that is what
gives classifier-free guidance something to fix. Both LMs share the codec.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
import torch.nn.functional as F

from minicraft.audio import mel_power
from minicraft.files import atomic_write
from minicraft.formats.export import export_musicgen
from minicraft.models.codec import Encodec, EncodecConfig
from minicraft.models.conditioning import TextConditioner, text_mask
from minicraft.models.lm import LM, LMConfig
from minicraft.modules.seanet import SEANetConfig
from minicraft.modules.t5 import T5Config, T5Encoder
from minicraft.modules.tokenizer import T5Tokenizer
from minicraft.progress import ProgressBar
from minicraft.toyworld import world
from minicraft.tune.train import take_step, warmup_cosine

ASSETS = Path(__file__).resolve().parents[1] / "assets"


# ---------------------------------------------------------------- shared

def save_checkpoint(path: Path, **state):
    """Atomically write a training checkpoint."""
    with atomic_write(path) as f:
        torch.save(state, f)


def resume(path: Path, optional: tuple[str, ...] = (), **objects) -> int:
    """Load a checkpoint into ``objects`` (anything with ``load_state_dict``); return its step, or 0.

    Names in ``optional`` may be missing from the checkpoint: objects of a later phase than the one it saved."""
    state = load_checkpoint(path)
    if state is None:
        return 0
    for name, obj in objects.items():
        if name in state or name not in optional:
            obj.load_state_dict(state[name])
    torch.set_rng_state(state["rng"])
    print(f"resuming from step {state['step']} ({path})")
    return state["step"]


def checkpoint(path: Path, step: int, config, **objects):
    save_checkpoint(path, step=step, rng=torch.get_rng_state(), config=asdict(config),
                    **{name: obj.state_dict() for name, obj in objects.items()})


def load_checkpoint(path: Path):
    # Our own checkpoints hold config dicts and RNG states too, so the full unpickler is needed;
    # they are files this script wrote itself, never downloaded ones.
    return torch.load(path, map_location="cpu", weights_only=False) if path.is_file() else None


def keep_freed_memory():
    """Ask glibc to keep freed blocks for reuse instead of handing them back to the kernel.

    Every training step allocates and frees the same activations; by default glibc returns large blocks to
    the kernel at once, so the next step page-faults them in again, zeroed by the kernel (docs/tiny_model.md
    counts the faults and the time). Elsewhere than Linux with glibc it does nothing."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)            # M_MMAP_THRESHOLD: blocks under 1 GiB come from the heap
        libc.mallopt(-1, 1 << 31)            # M_TRIM_THRESHOLD: keep up to 2 GiB of free heap
    except (OSError, AttributeError):
        pass


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def toy_audio(n: int, seed: int) -> tuple[list[world.Clip], torch.Tensor]:
    clips = world.sample_clips(n, seed=seed)
    return clips, torch.from_numpy(world.render_batch(clips))        # [N, samples]


# ---------------------------------------------------------------- codec

@dataclass
class CodecTrainConfig:
    steps: int = 5000
    decay_steps: int = 2000          # constant learning rate, then linear decay over the last steps
    batch: int = 8
    crop_seconds: float = 1.0
    lr: float = 5e-4
    clips: int = 2000
    seed: int = 0
    n_filters: int = 16
    dimension: int = 64
    lstm: int = 0
    num_codebooks: int = 4
    quantizer_dropout: bool = False  # True: each batch uses a random number of codebooks
    codebook_size: int = 256
    decay: float = 0.99
    dead_code_threshold: float = 0.1   # EMA uses per batch; see EMAQuantizer.update
    commitment: float = 1.0
    # STFT window sizes of the spectral loss. The short ones (32-128 samples, 2-8 ms) are what let the
    # codec keep clicks and raindrops: trained with only 256-2048, it smeared them into hiss.
    stft_sizes: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)
    # Then a polish: the decoder alone, encoder and codebooks frozen (so the codes, and an LM trained on them,
    # stay valid), with long windows (4-2 Hz bins) added to the loss. Without it the decoder turned wind, low
    # noise, into something the classifier hears as an engine's hum (9 of 29 kept); trained with the long
    # windows from the start, the codec lost footsteps and birds instead.
    polish_steps: int = 1200
    polish_lr: float = 1e-4
    polish_stft_sizes: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
    checkpoint_every: int = 250

    def codec(self) -> EncodecConfig:
        seanet = SEANetConfig(channels=1, dimension=self.dimension, n_filters=self.n_filters,
                              n_residual_layers=1, ratios=[8, 5, 4, 2], lstm=self.lstm)
        return EncodecConfig(sample_rate=world.SAMPLE_RATE, seanet=seanet, num_codebooks=self.num_codebooks, codebook_size=self.codebook_size)


class EMAQuantizer:
    """Trains the codebooks of a ResidualVectorQuantizer the EnCodec way (no gradients)."""

    def __init__(self, codec: Encodec, decay: float, dead_threshold: float):
        rvq = codec.quantizer
        self.codebooks = rvq.codebooks
        num_codebooks, codebook_size = len(self.codebooks), codec.config.codebook_size
        self.decay, self.dead_threshold = decay, dead_threshold
        self.cluster_size = torch.zeros(num_codebooks, codebook_size)
        self.embed_avg = torch.stack([cb.embed.detach().clone() for cb in self.codebooks])
        self.inited = torch.zeros(num_codebooks, dtype=torch.bool)

    def state_dict(self):
        return dict(cluster_size=self.cluster_size, embed_avg=self.embed_avg, inited=self.inited)

    def load_state_dict(self, state):
        self.cluster_size, self.embed_avg, self.inited = state["cluster_size"], state["embed_avg"], state["inited"]

    @torch.no_grad()
    def kmeans(self, q: int, x: torch.Tensor, iters: int = 10):
        codebook_size = self.cluster_size.shape[1]
        centers = x[torch.randint(len(x), (codebook_size,))].clone()
        for _ in range(iters):
            assign = torch.cdist(x, centers).argmin(dim=1)
            counts = torch.bincount(assign, minlength=codebook_size).float()
            sums = torch.zeros_like(centers).index_add_(0, assign, x)
            centers = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centers)
        self.codebooks[q].embed.copy_(centers)
        self.embed_avg[q] = centers.clone()
        self.cluster_size[q] = counts
        self.inited[q] = True

    @torch.no_grad()
    def update(self, q: int, x: torch.Tensor, index: torch.Tensor):
        codebook_size = self.cluster_size.shape[1]
        onehot = F.one_hot(index, codebook_size).float()                          # [N, codebook_size]
        self.cluster_size[q].mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_avg[q].mul_(self.decay).add_(onehot.t() @ x, alpha=1 - self.decay)
        n = self.cluster_size[q].sum()
        smoothed = (self.cluster_size[q] + 1e-5) / (n + codebook_size * 1e-5) * n   # Laplace smoothing
        self.codebooks[q].embed.copy_(self.embed_avg[q] / smoothed[:, None])
        # A code is dead when its EMA count of uses per batch falls under the threshold. Our batches hold
        # 400 vectors for 256 codes (1.6 uses per code on average), so audiocraft's 2, meant for batches of
        # thousands of vectors, would re-draw most codes at every step; 0.1 means "under once in ten batches".
        dead = self.cluster_size[q] < self.dead_threshold
        if dead.any():
            fresh = x[torch.randint(len(x), (int(dead.sum()),))]
            self.codebooks[q].embed[dead] = fresh
            self.embed_avg[q][dead] = fresh * self.dead_threshold
            self.cluster_size[q][dead] = self.dead_threshold

    def __call__(self, latent: torch.Tensor, num_codebooks: int, training: bool):
        """latent [B, D, F] -> (quantized [B, D, F] with straight-through gradients, commitment loss)."""
        B, D, frames = latent.shape
        residual = latent.transpose(1, 2).reshape(-1, D)
        out, commitment = 0, latent.new_zeros(())
        for q in range(num_codebooks):
            if training and not self.inited[q]:
                self.kmeans(q, residual.detach())
            index = self.codebooks[q].encode(residual.detach())
            quantized = self.codebooks[q].decode(index).detach()
            if training:
                self.update(q, residual.detach(), index)
            commitment = commitment + F.mse_loss(residual, quantized)
            out = out + residual + (quantized - residual).detach()         # straight-through
            residual = residual - quantized
        return out.view(B, frames, D).transpose(1, 2), commitment


def spectral_loss(pred: torch.Tensor, target: torch.Tensor,
                  sizes: tuple[int, ...] = CodecTrainConfig.stft_sizes) -> torch.Tensor:
    """Multi-resolution STFT (log-magnitude L1 + spectral convergence) and log-mel L1.

    The STFT terms are averaged to the weight of four resolutions, whatever `sizes` holds, so that
    adding windows changes what is measured, not how much the spectrum counts against the mel term.

    Logs are taken above a floor 40 dB under each clip's loudest bin. With an
    absolute floor, the thousand near-silent bins around a synthetic tone
    outweigh its few harmonic bins, and silence becomes the cheapest answer
    for a tone: a codec trained that way returned flutes, sirens and bells
    at -20 dB or lower.
    """
    loss = pred.new_zeros(())
    for n_fft in sizes:
        window = torch.hann_window(n_fft, device=pred.device)
        P = torch.stft(pred, n_fft, n_fft // 4, window=window, return_complex=True).abs()   # [B, bins, frames]
        T = torch.stft(target, n_fft, n_fft // 4, window=window, return_complex=True).abs()
        floor = 1e-2 * T.amax(dim=(1, 2), keepdim=True) + 1e-5                             # -40 dB, per clip
        loss = loss + F.l1_loss(torch.log(P + floor), torch.log(T + floor))
        loss = loss + torch.linalg.norm(P - T) / (torch.linalg.norm(T) + 1e-8)
    loss = loss * 4 / len(sizes)
    mel_p = mel_power(pred, world.SAMPLE_RATE, 1024, 256, 64)                              # [B, 64, frames]
    mel_t = mel_power(target, world.SAMPLE_RATE, 1024, 256, 64)
    floor = 1e-4 * mel_t.amax(dim=(1, 2), keepdim=True) + 1e-9                                # power: -40 dB
    return loss + F.l1_loss(torch.log10(mel_p + floor), torch.log10(mel_t + floor))


def codec_loss(codec: Encodec, quantizer: EMAQuantizer, wav: torch.Tensor, num_codebooks: int, training: bool,
               commitment_weight: float, stft_sizes: tuple[int, ...] = CodecTrainConfig.stft_sizes):
    """wav [B, 1, T] -> (total loss, dict of parts)."""
    latent = codec.encoder(wav)
    quantized, commitment = quantizer(latent, num_codebooks, training)
    out = codec.decoder(quantized)[..., :wav.shape[-1]]
    l1 = F.l1_loss(out, wav)
    spectral = spectral_loss(out[:, 0], wav[:, 0], stft_sizes)
    total = 0.1 * l1 + spectral + commitment_weight * commitment
    return total, dict(l1=l1.item(), spectral=spectral.item(), commitment=commitment.item())


def train_codec(out: Path, config: CodecTrainConfig, log_every: int = 50) -> Encodec:
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    codec = Encodec(config.codec())                     # codebooks get k-means on the first batch
    quantizer = EMAQuantizer(codec, config.decay, config.dead_code_threshold)
    optimizer = torch.optim.Adam([p for n, p in codec.named_parameters() if "_codebook" not in n],
                                 lr=config.lr, betas=(0.5, 0.9))
    polisher = torch.optim.Adam(codec.decoder.parameters(), lr=config.polish_lr, betas=(0.5, 0.9))
    saved = dict(model=codec, optimizer=optimizer, quantizer=quantizer, polisher=polisher)
    step = resume(out / "checkpoint.pt", optional=("polisher",), **saved)
    _, audio = toy_audio(config.clips, config.seed)
    crop = int(config.crop_seconds * world.SAMPLE_RATE)
    total = config.steps + config.polish_steps
    bar = ProgressBar(first=step)
    log = open(out / "log.jsonl", "a")
    codec.train()
    while step < total:
        rows = torch.randint(len(audio), (config.batch,))
        starts = torch.randint(audio.shape[1] - crop + 1, (config.batch,))
        wav = torch.stack([audio[r, s:s + crop] for r, s in zip(rows, starts)])[:, None]   # [B, 1, T]
        num_codebooks = int(torch.randint(1, config.num_codebooks + 1, ())) if config.quantizer_dropout else config.num_codebooks
        polishing = step >= config.steps
        if polishing:                                # decoder only: the codes no longer change
            codec.encoder.requires_grad_(False)
            opt, trained, sizes = polisher, codec.decoder, config.polish_stft_sizes
        else:
            for group in optimizer.param_groups:
                group["lr"] = config.lr * min(1.0, max(0.02, (config.steps - step) / config.decay_steps))
            opt, trained, sizes = optimizer, codec, config.stft_sizes
        # training=False while polishing: the quantizer's EMA leaves the codebooks as they are
        loss, parts = codec_loss(codec, quantizer, wav, num_codebooks, not polishing, config.commitment, sizes)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained.parameters(), 1.0)
        opt.step()
        step += 1
        if step % log_every == 0:
            log.write(json.dumps(dict(step=step, loss=loss.item(), num_codebooks=num_codebooks, time=time.time(), **parts)) + "\n")
            log.flush()
        bar(step, total, f"loss {loss.item():.3f}" + (" (polishing the decoder)" if polishing else ""))
        if step % config.checkpoint_every == 0 or step in (config.steps, total):
            checkpoint(out / "checkpoint.pt", step, config, **saved)
    bar.close()
    codec.encoder.requires_grad_(True)
    codec.eval()
    return codec


# ---------------------------------------------------------------- tokenizer, text encoder and LM

FAMILIES = {"musicgen": world.INSTRUMENTS, "audiogen": world.EFFECTS}    # what each tiny model hears
# The sampling temperature each tiny model recommends in its generation_config.json (the default of
# set_generation_params and of the command line). Below 1 a pure tone survives sampling (docs/tiny_model.md):
# 0.7 is the lowest tried on held-out seeds 13 and 21 at which guidance still buys 5 points.
TEMPERATURE = {"musicgen": 0.7, "audiogen": None}


@dataclass
class LMTrainConfig:
    model: str = "musicgen"              # the family of sounds: musicgen (instruments) or audiogen (effects)
    steps: int = 4000
    batch: int = 24
    lr: float = 1e-3
    warmup: int = 200
    scenes: int = 3000                   # 6-12 s each: ~27,000 s of audio, 2-second windows cropped from them
    change_share: float = 0.2            # scenes where another sound takes over at a stated second
    # windows cropped at a scene's first frame rather than anywhere: a generation without a prompt starts a
    # piece, and a tune starts on a note. MusicGen's at 0.25; AudioGen's effects (textures) at 0, as shipped.
    opening_share: float | None = None
    seed: int = 1
    vocab_size: int = 200
    t5_dim: int = 128
    t5_layers: int = 2
    dim: int = 192
    num_heads: int = 6
    num_layers: int = 4
    condition_dropout: float = 0.2       # share of captions replaced by "no text", for CFG
    caption_noise: float = 0.1           # share of training captions that describe another class's clip
    # share of the LM's input codes replaced by its own samples (parallel scheduled sampling), reached after
    # a fifth of the steps: free-running, the LM reads codes it drew itself, not the codec's, and without this
    # one off-peak code turned a held tone or hum into another sound (docs/tiny_model.md)
    self_feed: float = 0.3
    checkpoint_every: int = 250


def train_tokenizer(captions: list[str], out: Path, vocab_size: int) -> Path:
    """A SentencePiece unigram model with T5's conventions: pad 0, EOS 1, unknown 2."""
    out.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(sentence_iterator=iter(captions), model_prefix=str(out / "spiece"),
                                   vocab_size=vocab_size, model_type="unigram", pad_id=0, eos_id=1, unk_id=2,
                                   bos_id=-1, hard_vocab_limit=False, character_coverage=1.0,
                                   minloglevel=2)
    return out / "spiece.model"


def build_text_and_lm(config: LMTrainConfig, tokenizer, codec: Encodec):
    t5 = T5Encoder(T5Config(vocab_size=tokenizer.vocab_size, d_model=config.t5_dim, d_kv=config.t5_dim // 4,
                            d_ff=2 * config.t5_dim, num_layers=config.t5_layers, num_heads=4))
    for name, p in t5.named_parameters():        # small init: T5 does not scale its attention scores
        if p.dim() == 2 and "shared" not in name:
            torch.nn.init.normal_(p, std=0.02 if "relative" in name else p.shape[1] ** -0.5)
    lm = LM(LMConfig(dim=config.dim, num_heads=config.num_heads, num_layers=config.num_layers, ffn_dim=4 * config.dim,
                     num_codebooks=codec.num_codebooks, codebook_size=codec.codebook_size,
                     delays=list(range(codec.num_codebooks))))
    for name, p in lm.named_parameters():
        if p.dim() == 2:
            torch.nn.init.normal_(p, std=0.02)
    return TextConditioner(tokenizer, t5, config.t5_dim, config.dim), lm


def load_trained_codec(folder: Path) -> Encodec:
    state = load_checkpoint(folder / "checkpoint.pt")
    if state is None:
        raise FileNotFoundError(f"{folder}: no codec checkpoint; run `python -m minicraft.toyworld.train codec` first.")
    codec = Encodec(CodecTrainConfig(**state["config"]).codec())
    codec.load_state_dict(state["model"])
    return codec.eval()


@torch.no_grad()
def encode_scenes(codec: Encodec, scenes: list[world.Scene], batch: int = 4) -> list[torch.Tensor]:
    """Each scene whole -> codes [K, frames], a few scenes of one length at a time.

    A few, not many: the encoder's activations for 4 scenes stay in the CPU's cache; with 16 or more they
    do not, and encoding is slower (docs/tiny_model.md)."""
    codes = [None] * len(scenes)
    by_length = {}
    for i, scene in enumerate(scenes):
        by_length.setdefault(scene.duration, []).append(i)
    for rows in by_length.values():
        for start in range(0, len(rows), batch):
            chunk = rows[start:start + batch]
            audio = torch.from_numpy(np.stack([world.render_scene(scenes[i]) for i in chunk]))[:, None]
            for i, c in zip(chunk, codec.encode(audio)):
                codes[i] = c.clone()
    return codes


OPENING_SHARE = {"musicgen": 0.25, "audiogen": 0.0}


def crop_windows(scenes: list[world.Scene], codes: list[torch.Tensor], frames: int, frame_rate: int,
                 generator: torch.Generator, captions: list[str | None], batch: int, opening_share: float = 0.0):
    """``batch`` windows of ``frames`` codes at random offsets -> (codes [B, K, frames], their captions).

    ``opening_share`` of them start at the scene's first frame. A window's caption says what plays in it
    (``Scene.window_caption``), or is the wrong caption drawn for its scene (``captions[i]`` not None)."""
    rows = torch.randint(len(scenes), (batch,), generator=generator).tolist()
    # drawn only when asked for, so that a recipe without openings crops the windows it always has
    opening = (torch.rand(batch, generator=generator) < opening_share).tolist() if opening_share else [False] * batch
    windows, texts = [], []
    for i, at_start in zip(rows, opening):
        start = 0 if at_start else int(torch.randint(codes[i].shape[-1] - frames + 1, (), generator=generator))
        windows.append(codes[i][:, start:start + frames])
        texts.append(captions[i] or scenes[i].window_caption(start / frame_rate, (start + frames) / frame_rate))
    return torch.stack(windows), texts


def scene_captions(scene: world.Scene) -> list[str]:
    """Every caption a window of ``scene`` can have: each part alone, and each change."""
    return [world.caption_of([p]) for p in scene.parts] + [world.caption_of(list(pair))
                                                          for pair in zip(scene.parts, scene.parts[1:])]


def lm_loss(lm, conditioner, ids, mask, codes, drop: torch.Tensor | None = None, self_feed: float = 0.0):
    """Cross-entropy of the LM on codes [B, K, T] given captions (ids/mask [B, L]).

    With ``self_feed`` > 0, that share of the input codes is first replaced by codes the LM samples for them
    from the true context: the targets stay the true codes, so the LM learns to come back from its own slips."""
    if drop is not None:                                 # condition dropout: "no text" rows
        mask = mask * (~drop)[:, None]
    hidden = conditioner.t5(ids, mask)
    cond = conditioner.output_proj(hidden) * mask[..., None]
    inputs = codes
    if self_feed > 0:
        with torch.no_grad():
            logits, valid = lm.compute_predictions(codes, cond, text_mask(mask))
            drawn = torch.distributions.Categorical(logits=logits.nan_to_num()).sample()    # [B, K, T]
            inputs = torch.where(valid & (torch.rand(codes.shape) < self_feed), drawn, codes)
    logits, valid = lm.compute_predictions(inputs, cond, text_mask(mask))   # [B, K, T, codebook_size], [B, K, T]
    return F.cross_entropy(logits[valid], codes[valid])


def noisy_captions(clips: list[world.Clip], share: float, seed: int) -> list[str]:
    """The clips' captions, ``share`` of them swapped for the caption of a clip of another class.

    Captions scraped from the web are often wrong; a model trained on them follows a prompt only so far
    with cfg 1, and guidance is what makes it follow. With every caption right, the toy world's LM hears the
    class in the caption perfectly and guidance has nothing left to buy."""
    rng = np.random.default_rng(seed)
    captions = [c.caption for c in clips]
    for i in np.flatnonzero(rng.random(len(clips)) < share):
        j = int(rng.integers(len(clips)))
        while clips[j].label == clips[i].label:
            j = int(rng.integers(len(clips)))
        captions[i] = clips[j].caption
    return captions


def train_lm(out: Path, codec_folder: Path, config: LMTrainConfig, log_every: int = 50):
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    scenes = world.sample_scenes(config.scenes, seed=config.seed, classes=FAMILIES[config.model],
                                 change_share=config.change_share)
    firsts = [scene.parts[0] for scene in scenes]
    # a wrong caption, where one was drawn, stands for the whole scene: every window cropped from it
    wrong = [None if c == first else c for c, first in
             zip(noisy_captions(firsts, config.caption_noise, config.seed), (f.caption for f in firsts))]
    if not (out / "spiece.model").is_file():
        train_tokenizer([t for scene in scenes for t in scene_captions(scene)], out, config.vocab_size)
    tokenizer = T5Tokenizer(out / "spiece.model")
    codec = load_trained_codec(codec_folder)
    conditioner, lm = build_text_and_lm(config, tokenizer, codec)
    params = list(conditioner.parameters()) + list(lm.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=(0.9, 0.95), weight_decay=0.01)
    schedule = warmup_cosine(optimizer, config.warmup, config.steps)
    saved = dict(conditioner=conditioner, lm=lm, optimizer=optimizer, schedule=schedule)
    step = resume(out / "checkpoint.pt", **saved)
    codes_path = out / "codes.pt"
    if codes_path.is_file():
        codes = torch.load(codes_path, weights_only=True)
    else:
        print(f"encoding {len(scenes)} scenes ({sum(s.duration for s in scenes) / 60:.0f} min of audio) with the codec ...")
        codes = encode_scenes(codec, scenes)
        torch.save(codes, codes_path)
    frames = int(world.DURATION * codec.frame_rate)
    generator = torch.Generator().manual_seed(config.seed + step)     # resumed runs crop other windows
    bar = ProgressBar(first=step)
    log = open(out / "log.jsonl", "a")
    lm.train()
    conditioner.train()
    while step < config.steps:
        windows, texts = crop_windows(scenes, codes, frames, codec.frame_rate, generator, wrong, config.batch,
                                      OPENING_SHARE[config.model] if config.opening_share is None else config.opening_share)
        ids, mask = tokenizer(texts)
        drop = torch.rand(config.batch) < config.condition_dropout
        loss = lm_loss(lm, conditioner, ids, mask, windows, drop,
                       config.self_feed * min(1.0, step / (0.2 * config.steps)))
        take_step(loss, params, optimizer, schedule)
        step += 1
        if step % log_every == 0:
            log.write(json.dumps(dict(step=step, loss=loss.item(), lr=schedule.get_last_lr()[0],
                                      time=time.time())) + "\n")
            log.flush()
        bar(step, config.steps, f"loss {loss.item():.3f}")
        if step % config.checkpoint_every == 0 or step == config.steps:
            checkpoint(out / "checkpoint.pt", step, config, **saved)
    bar.close()
    return conditioner.eval(), lm.eval()


def load_trained_lm(folder: Path, codec: Encodec):
    state = load_checkpoint(folder / "checkpoint.pt")
    if state is None:
        raise FileNotFoundError(f"{folder}: no LM checkpoint; run `python -m minicraft.toyworld.train lm` first.")
    config = LMTrainConfig(**state["config"])
    conditioner, lm = build_text_and_lm(config, T5Tokenizer(folder / "spiece.model"), codec)
    conditioner.load_state_dict(state["conditioner"])
    lm.load_state_dict(state["lm"])
    return conditioner.eval(), lm.eval()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m minicraft.toyworld.train", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("codec", help="train the SEANet + RVQ codec")
    c.add_argument("--out", type=Path, default=Path("runs/codec"))
    c.add_argument("--steps", type=int, default=CodecTrainConfig.steps)
    c.add_argument("--threads", type=int, default=2)
    m = sub.add_parser("lm", help="train the tokenizer, the T5 encoder and the LM on the codec's codes")
    m.add_argument("--model", choices=sorted(FAMILIES), default="musicgen",
                   help="musicgen: instruments and music scenes; audiogen: sound effects")
    m.add_argument("--codec", type=Path, default=Path("runs/codec"))
    m.add_argument("--out", type=Path, help="default: runs/lm-MODEL")
    m.add_argument("--steps", type=int, default=LMTrainConfig.steps)
    m.add_argument("--caption-noise", type=float, default=LMTrainConfig.caption_noise,
                   help="share of training captions swapped for another class's (0.1 ships; 0: all right)")
    m.add_argument("--self-feed", type=float, default=LMTrainConfig.self_feed,
                   help="share of input codes replaced by the LM's own samples (scheduled sampling; 0.3 ships; "
                        "0: teacher forcing only)")
    m.add_argument("--threads", type=int, default=2)
    e = sub.add_parser("export", help="write the trained models as a Hugging Face-format MusicGen folder")
    e.add_argument("--model", choices=sorted(FAMILIES), default="musicgen")
    e.add_argument("--codec", type=Path, default=Path("runs/codec"))
    e.add_argument("--lm", type=Path, help="default: runs/lm-MODEL")
    e.add_argument("--out", type=Path, help="default: minicraft/assets/tiny (musicgen), .../tiny-audiogen (audiogen)")
    e.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    start = time.time()
    if args.what == "codec":
        train_codec(args.out, CodecTrainConfig(steps=args.steps))
    elif args.what == "lm":
        args.out = args.out or Path(f"runs/lm-{args.model}")
        train_lm(args.out, args.codec, LMTrainConfig(model=args.model, steps=args.steps, caption_noise=args.caption_noise,
                                                   self_feed=args.self_feed))
    else:
        args.lm = args.lm or Path(f"runs/lm-{args.model}")
        args.out = args.out or ASSETS / {"musicgen": "tiny", "audiogen": "tiny-audiogen"}[args.model]
        codec = load_trained_codec(args.codec)
        conditioner, lm = load_trained_lm(args.lm, codec)
        # float16 on disk: both tiny models fit in the package (float32 would be 37 MB); loading converts
        export_musicgen(args.out, lm, conditioner, codec, max_duration=world.DURATION, dtype=torch.float16,
                        temperature=TEMPERATURE[args.model])
    print(f"{args.what} done in {(time.time() - start) / 60:.1f} min -> {args.out}")


if __name__ == "__main__":
    main()
