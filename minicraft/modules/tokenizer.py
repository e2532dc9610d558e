"""Text -> token ids the way T5 (and so audiocraft's conditioner) expects.

T5 uses a SentencePiece *unigram* model: text is split into the most
probable sequence of subword pieces ("▁dog", "▁bark", "ing"). Its
conventions: id 0 is padding, id 1 is end-of-sequence (appended to every
text), id 2 stands for pieces outside the vocabulary. A batch is padded on
the right to its longest text, with a mask of 1 for real tokens.

A missing prompt (``None``) or ``""`` tokenizes to just EOS with an all-zero
mask row: audiocraft's signal that there is no text (the null condition of
classifier-free guidance).

Not handled: reading ``tokenizer.json`` alone (its normalizer is a compiled
character map); every T5 repository ships ``spiece.model``, and all T5 sizes
share one vocabulary.
"""
from __future__ import annotations

from pathlib import Path

import sentencepiece as spm
import torch

PAD, EOS, UNK = 0, 1, 2


class T5Tokenizer:
    def __init__(self, model_file: str | Path):
        model_file = Path(model_file)
        if not model_file.is_file():
            raise FileNotFoundError(f"{model_file}: no SentencePiece model here.")
        self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        self.model_file = model_file

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
        """One text -> ids, EOS appended."""
        return self.sp.encode(text) + [EOS]

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
