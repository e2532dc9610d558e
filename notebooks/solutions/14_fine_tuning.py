"""Worked solutions to the exercises of notebook 14."""


def lora_linear(x, weight, A, B, alpha):
    rank = A.shape[0]                                   # A [rank, in], B [out, rank]
    frozen = x @ weight.T                               # what the base model computes: [..., out]
    update = (x @ A.T) @ B.T                            # through the narrow rank first: [..., rank] -> [..., out]
    return frozen + (alpha / rank) * update
