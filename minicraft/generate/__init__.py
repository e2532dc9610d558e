"""From logits to codes: sampling (temperature, top-k, top-p, guidance) and the decoding loop."""
