"""Worked solutions to the exercises of notebook 01."""


def pieces_to_text(pieces):
    pieces = [p for p in pieces if p != "</s>"]          # the end-of-sequence marker is not text
    return "".join(pieces).replace("▁", " ").lstrip(" ")  # "▁" starts a word: it was a space


def fertility(encode, texts):
    pieces = sum(len(encode(t)) for t in texts)
    words = sum(len(t.split()) for t in texts)
    return pieces / words                                 # over the whole corpus, not per text


def mask_from_ids(ids, pad=0, eos=1):
    mask = (ids != pad).long()                            # real tokens, EOS included
    empty = ids[:, 0] == eos                              # a row that starts with EOS had no text
    mask[empty] = 0
    return mask
