"""Codebook interleaving patterns: how K parallel code streams become one sequence.

EnCodec gives K codes per frame, ``codes [B, K, T]``. The LM predicts one
*sequence step* at a time, and a pattern says which (codebook, timestep)
sits at each step. We store that as ``layout [K, S]``: the timestep held by
codebook k at step s, or -1 where the step holds nothing for k (the LM
sees the special token ``codebook_size`` there). Every pattern starts with one
empty step, so the first prediction has something to look at.

- **delay** (MusicGen, AudioGen): codebook k is shifted right by ``delays[k]``
  steps, so codebook k of frame t is predicted after codebooks < k of frame t.
  With delays 0,1,2,3 there are T + 3 + 1 steps.
- **parallel**: all K codebooks of frame t at step t + 1 (delays all zero).
- **flat**: one code per step, frame by frame (K·T + 1 steps; slow but exact).

Not handled here: audiocraft's other patterns (coarse-first, MusicLM-style,
``flatten_first``/``empty_initial`` options of the delay pattern).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Pattern:
    layout: torch.Tensor   # [K, S] long: timestep at (codebook, step), -1 if none
    timesteps: int         # T, the number of frames the pattern was made for

    @property
    def num_steps(self) -> int:
        return self.layout.shape[1]

    @property
    def valid_steps(self) -> int:
        """Leading steps that only hold timesteps < T (audiocraft's ``valid_layout``).

        The delay pattern places codebook 0 beyond T in its last steps; training
        and scoring stop before them.
        """
        overshoot = int(self.layout.max()) + 1 - self.timesteps
        return self.num_steps - max(overshoot, 0)

    def first_step_with(self, t: int) -> int:
        """The first sequence step that holds frame ``t`` for some codebook."""
        steps = (self.layout == t).any(dim=0).nonzero()
        if len(steps) == 0:
            raise ValueError(f"frame {t} is not in this pattern")
        return int(steps[0])

    def build(self, codes: torch.Tensor, special: int,
              valid_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """codes [B, K, T'] (T' <= T) -> sequence [B, K, S] and mask [K, S].

        Steps with no code for a codebook, or a code beyond T', hold ``special``.
        """
        B, K, T = codes.shape
        layout = self.layout[:, :self.valid_steps] if valid_only else self.layout
        layout = layout.to(codes.device)
        mask = (layout >= 0) & (layout < T)                               # [K, S]
        gathered = codes.gather(2, layout.clamp(0, max(T - 1, 0))[None].expand(B, -1, -1)) \
            if T > 0 else torch.zeros(B, K, layout.shape[1], dtype=codes.dtype, device=codes.device)
        return torch.where(mask, gathered, torch.full_like(gathered, special)), mask

    def step_of(self, num_steps: int, skip_first: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Where each (codebook, frame) sits: index [K, T] into steps, and mask [K, T].

        Only the first ``num_steps`` steps count. ``skip_first`` shifts by one,
        for model outputs: the output at step s predicts the input at step s + 1.
        """
        layout = self.layout[:, 1:num_steps] if skip_first else self.layout[:, :num_steps]
        K = layout.shape[0]
        index = torch.zeros(K, self.timesteps, dtype=torch.long)
        mask = torch.zeros(K, self.timesteps, dtype=torch.bool)
        for k in range(K):
            steps = ((layout[k] >= 0) & (layout[k] < self.timesteps)).nonzero()[:, 0]
            index[k, layout[k, steps]] = steps
            mask[k, layout[k, steps]] = True
        return index, mask

    def revert(self, sequence: torch.Tensor, special: int) -> tuple[torch.Tensor, torch.Tensor]:
        """sequence [B, K, S] -> codes [B, K, T] and mask [K, T] (``special`` where missing)."""
        B, K, S = sequence.shape
        index, mask = self.step_of(S, skip_first=False)
        index, mask = index.to(sequence.device), mask.to(sequence.device)
        codes = sequence.gather(2, index[None].expand(B, -1, -1))
        return torch.where(mask, codes, torch.full_like(codes, special)), mask

    def revert_logits(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Model outputs [B, K, S, codebook_size] -> logits per frame [B, K, T, codebook_size], mask [K, T].

        Logits with no frame to predict are NaN, so using them by mistake shows.
        """
        B, K, S, codebook_size = logits.shape
        index, mask = self.step_of(S, skip_first=True)
        index, mask = index.to(logits.device), mask.to(logits.device)
        out = logits.gather(2, index[None, :, :, None].expand(B, -1, -1, codebook_size))
        return out.masked_fill(~mask[None, :, :, None], float("nan")), mask


def delay_pattern(num_codebooks: int, timesteps: int, delays: list[int] | None = None) -> Pattern:
    """Step s >= 1 holds frame ``s - 1 - delays[k]`` of codebook k (when >= 0)."""
    delays = list(range(num_codebooks)) if delays is None else list(delays)
    if len(delays) != num_codebooks:
        raise ValueError(f"{len(delays)} delays for {num_codebooks} codebooks")
    steps = torch.arange(timesteps + max(delays) + 1)                   # [S]
    layout = steps[None, :] - 1 - torch.tensor(delays)[:, None]         # [K, S]
    return Pattern(layout.clamp(min=-1), timesteps)


def parallel_pattern(num_codebooks: int, timesteps: int) -> Pattern:
    """All codebooks of frame t together at step t + 1."""
    return delay_pattern(num_codebooks, timesteps, [0] * num_codebooks)


def flat_pattern(num_codebooks: int, timesteps: int) -> Pattern:
    """One code per step: frame t, codebook k at step 1 + t·K + k."""
    S = timesteps * num_codebooks + 1
    layout = torch.full((num_codebooks, S), -1, dtype=torch.long)
    for t in range(timesteps):
        for k in range(num_codebooks):
            layout[k, 1 + t * num_codebooks + k] = t
    return Pattern(layout, timesteps)
