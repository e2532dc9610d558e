"""Reference building blocks in plain PyTorch: attention, the transformer, T5, the tokenizer, SEANet, RVQ.

Nothing here knows about checkpoint files or the fast path; a learner edits these and the edit runs.
"""
