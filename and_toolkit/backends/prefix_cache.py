"""Shared-prefix key/value reuse for batched generation with a transformers causal LM.

Few-shot prompts (ICL, the adjective filter, summaries) repeat one long prefix for every neuron;
re-reading it is almost all of the prefill cost (SmolLM2's ICL prompt: 619 shared tokens of 631).
Here the prefix is run through the model once per ``generate`` call, its key/value cache is
copied to each batch, and only the suffixes are prefilled. A batch is laid out as

    [shared prefix][pad ... pad][suffix]        attention mask  [1 ... 1][0 ... 0][1 ... 1]

so every row keeps the identical cached prefix; the pads sit between prefix and suffix, are
masked as keys, and (transformers derives positions from the mask) do not shift the suffix's
positions. Each row therefore computes what it computes alone: greedy outputs equal those of the
plain path token for token (tests/backends/test_prefix_cache.py), up to float32 summation order.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

MIN_SHARED_PREFIX = 16
"""Shortest shared prefix (tokens) worth caching; below it the plain batched path runs."""


def shared_prefix_length(token_lists: Sequence[Sequence[int]]) -> int:
    """Tokens shared at the start of every list, leaving each list at least one token.

    Args:
        token_lists: one token-id list per prompt (non-empty lists).

    Returns:
        The reusable prefix length in tokens (0 when fewer than :data:`MIN_SHARED_PREFIX`).
    """
    if not token_lists or any(len(t) == 0 for t in token_lists):
        return 0
    first = token_lists[0]
    n = min(len(t) for t in token_lists) - 1
    for other in token_lists[1:]:
        k = 0
        while k < n and other[k] == first[k]:
            k += 1
        n = k
    return n if n >= MIN_SHARED_PREFIX else 0


def prefill(model: Any, prefix: Sequence[int], device: str) -> Any:
    """Run ``prefix`` through ``model`` once; return its key/value cache (batch of 1).

    Args:
        model: a transformers causal LM in eval mode.
        prefix: token ids [P].
        device: torch device string.

    Returns:
        The model's key/value cache object of the forward pass.
    """
    ids = torch.tensor([list(prefix)], dtype=torch.long, device=device)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
    # transformers >= 5 names it ``cache`` (``past_key_values`` is a deprecated alias)
    return out["cache"] if "cache" in out else out.past_key_values


def batch_inputs(prefix: Sequence[int], suffixes: Sequence[Sequence[int]], pad_id: int,
                 prefix_cache: Any, device: str) -> dict[str, Any]:
    """``generate`` inputs for one batch: prefix + inner padding + suffix, with the cache.

    Args:
        prefix: the shared token ids [P] (already in ``prefix_cache``).
        suffixes: each row's remaining token ids (non-empty).
        pad_id: the pad token id (masked out).
        prefix_cache: the cache returned by :func:`prefill` (not modified).
        device: torch device string.

    Returns:
        ``input_ids`` [B, P + L] and ``attention_mask`` [B, P + L] (int64), and
        ``cache``: a copy of the prefix cache repeated to batch size B.
    """
    width = max(len(s) for s in suffixes)
    rows, masks = [], []
    for s in suffixes:
        gap = width - len(s)
        rows.append(list(prefix) + [pad_id] * gap + list(s))
        masks.append([1] * len(prefix) + [0] * gap + [1] * len(s))
    cache = copy.deepcopy(prefix_cache)
    cache.batch_repeat_interleave(len(suffixes))
    return {"input_ids": torch.tensor(rows, dtype=torch.long, device=device),
            "attention_mask": torch.tensor(masks, dtype=torch.long, device=device),
            "cache": cache}
