"""Seeded per-row sampling for transformers ``generate`` (Gumbel-max on the greedy step)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class PerRowGumbelSampler:
    """Logits processor that turns greedy search into seeded per-row sampling (Gumbel-max).

    For each row: divide logits by ``temperature``, drop tokens outside the top-``top_p``
    nucleus, add Gumbel noise drawn from the row's own ``torch.Generator``; the argmax (greedy
    step) is then an exact sample of the tempered, truncated distribution. Each row's generator
    advances by one vocabulary-sized draw per step, whatever the other rows do.

    Args:
        seeds: one seed per batch row.
        temperature: > 0.
        top_p: nucleus mass in (0, 1].
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0 for sampling, got {temperature}")
        self.temperature = temperature
        self.top_p = top_p
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Return noisy logits [batch, vocab] (float32) for the greedy step."""
        if scores.shape[0] != len(self.generators):
            raise ValueError(f"batch of {scores.shape[0]} rows but {len(self.generators)} seeds")
        logits = scores.float() / self.temperature
        if self.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
            probs = sorted_logits.softmax(dim=-1)
            mass_before = probs.cumsum(dim=-1) - probs
            drop_sorted = mass_before >= self.top_p
            drop_sorted[:, 0] = False
            drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
            logits = logits.masked_fill(drop, float("-inf"))
        vocab = logits.shape[-1]
        uniform = torch.stack([torch.rand(vocab, generator=g) for g in self.generators])
        uniform = uniform.clamp(min=1e-12, max=1.0 - 1e-7).to(logits.device)
        return logits - torch.log(-torch.log(uniform))
