"""Text -> token ids the way T5 (and so audiocraft's conditioner) expects.

T5 uses a SentencePiece *unigram* model: text is split into the most
probable sequence of subword pieces ("▁dog", "▁bark", "ing"). Its
conventions: id 0 is padding, id 1 is end-of-sequence (appended to every
text), id 2 stands for pieces outside the vocabulary. A batch is padded on
the right to its longest text, with a mask of 1 for real tokens.

A missing prompt (``None``) or ``""`` tokenizes to just EOS with an all-zero
mask row: audiocraft's signal that there is no text (the null condition of
classifier-free guidance).

A prompt longer than ``max_length`` = 512 tokens (transformers' limit for T5) keeps its first 511
pieces and EOS, said in one line on stderr; T5's attention costs memory quadratic in the length, so
without a limit a long enough prompt exhausts any machine. (audiocraft tokenizes with padding and no
truncation, so it would encode all of them.)

Not handled: reading ``tokenizer.json`` alone (its normalizer is a compiled
character map); every T5 repository ships ``spiece.model``, and all T5 sizes
share one vocabulary.
"""
from __future__ import annotations

import sys
from pathlib import Path

import sentencepiece as spm
import torch

PAD, EOS, UNK = 0, 1, 2


class T5Tokenizer:
    max_length = 512

    def __init__(self, model_file: str | Path):
        model_file = Path(model_file)
        if not model_file.is_file():
            raise FileNotFoundError(f"{model_file}: no SentencePiece model here.")
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        except (RuntimeError, OSError) as e:
            raise ValueError(f"{model_file}: not a SentencePiece model ({str(e).splitlines()[0][:120]}); "
                             "download the model's spiece.model again.") from None
        self.model_file = model_file
        # no piece is longer than this, so max_length pieces never need more characters than max_chars
        self.max_chars = self.max_length * (1 + max(len(self.sp.id_to_piece(i)) for i in range(self.vocab_size)))

    @classmethod
    def from_dir(cls, folder: str | Path) -> "T5Tokenizer":
        folder = Path(folder)
        if not (folder / "spiece.model").is_file():
            raise FileNotFoundError(f"{folder}: no spiece.model; T5's tokenizer needs it (all T5 sizes "
                                    "share one: copy it from google-t5/t5-base).")
        return cls(folder / "spiece.model")

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        """One text -> ids, EOS appended, at most ``max_length`` of them."""
        if not isinstance(text, str):
            raise ValueError(f"a prompt must be a string, got {type(text).__name__}.")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"a prompt holds {text[e.start:e.end]!r}, which is not valid Unicode text "
                             "(a lone surrogate); remove it.") from None
        ids = self.sp.encode(text[:self.max_chars])
        if len(ids) >= self.max_length:
            more = "more than " if len(text) > self.max_chars else ""
            print(f"minicraft: a prompt of {more}{len(ids) + 1} tokens was cut to T5's {self.max_length} (its first "
                  f"{self.max_length - 1} pieces and the end-of-text token).", file=sys.stderr)
            ids = ids[:self.max_length - 1]
        return ids + [EOS]

    def pieces(self, text: str) -> list[str]:
        """The subword pieces, to see how a prompt was split."""
        return self.sp.encode(text, out_type=str) + ["</s>"]

    def __call__(self, texts: list[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """texts (B) -> input_ids [B, L] and attention_mask [B, L] (long)."""
        texts = ["" if t is None else t for t in texts]
        encoded = [self.encode(t) for t in texts]
        L = max(len(ids) for ids in encoded)
        ids = torch.full((len(texts), L), PAD, dtype=torch.long)
        mask = torch.zeros((len(texts), L), dtype=torch.long)
        for i, (text, row) in enumerate(zip(texts, encoded)):
            ids[i, :len(row)] = torch.tensor(row)
            if text != "":              # an empty prompt is "no text": mask stays 0
                mask[i, :len(row)] = 1
        return ids, mask
