"""Prompt-lookup speculative greedy decoding for a batch of rows on a key/value cache.

SmolLM2's ICL and summary answers copy text from their prompt (the summary, the few-shot
answers) and, once they reach the token budget, repeat their own earlier sentences. Each decode
step here therefore *drafts* up to ``draft_tokens`` tokens per row by looking the row's last
n-gram up in its own history (prompt + generated so far; most recent earlier occurrence,
n = ``ngram_max`` .. 1), and *verifies* all drafts of all rows in one forward pass: a row keeps
the longest draft prefix that equals the model's greedy choice at every position, plus the
model's own next token after it. With exact arithmetic the accepted tokens are exactly what
one-token greedy steps would produce (each is the argmax given the same preceding tokens), so the
output is the greedy output; only the number of forward passes drops.

Batch layout. Every row of the batch shares one cache length. A verify step appends a block of
``W`` = 1 + the longest draft columns to every row: ``[last token, draft ..., pad ...]``. Block
columns a row does not keep (pads, rejected drafts) stay in the cache but are masked out of the
attention mask for every later step, and each row's position ids count only its kept tokens,
as in :mod:`~and_toolkit.backends.prefix_cache` (inner pads). Rows that end (an EOS token or the
token budget) leave the batch.

Float32 caveat: a verify step multiplies ``W`` tokens per row at once, and masked holes change
the length of the attention reductions, so logits differ from one-token steps by rounding
(~1e-6 relative). An argmax can only flip where the top-2 logits of a step are that close;
:class:`DecodeStats` records the smallest top-2 gap seen so a run can show how far it was from a
tie (tests/backends/test_lookup_decode.py compares outputs token for token).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

DRAFT_TOKENS = 4
"""Suggested largest draft per row and verify step (tokens): best of 2-16 in an offline replay of
32 ESC-50 ICL answers (benchmarks/bench_llm_prefix.py measures it)."""
NGRAM_MAX = 3
"""Longest n-gram looked up in a row's history to find a draft."""
ID_TAG = "prompt-lookup"
"""Marker appended to a backend id when greedy requests decode here (see :func:`backend_id`)."""
LOGIT_KNOBS = ("repetition_penalty", "encoder_repetition_penalty", "no_repeat_ngram_size",
               "bad_words_ids", "min_length", "min_new_tokens", "suppress_tokens",
               "begin_suppress_tokens", "forced_bos_token_id", "forced_eos_token_id",
               "sequence_bias", "exponential_decay_length_penalty", "stop_strings", "max_time",
               "renormalize_logits")
"""Generation-config fields that change greedy search beyond the argmax and EOS / budget; a
config setting any of them away from its default is refused by :func:`decode_like_generate`."""


@dataclass
class DecodeStats:
    """Counters of :func:`greedy_decode` calls (summed over calls).

    Attributes:
        forward_passes: model forward calls (prefill + verify steps).
        generated_tokens: tokens produced (all rows).
        drafted_tokens: draft tokens sent for verification (all rows).
        accepted_tokens: draft tokens kept (all rows).
        min_top2_gap: smallest logit gap between the greedy token and the runner-up over all
            positions whose token was kept (float32 logits; ``inf`` before any step).
    """

    forward_passes: int = 0
    generated_tokens: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    min_top2_gap: float = field(default=float("inf"))


def draft(history: Sequence[int], k: int, ngram_max: int = NGRAM_MAX) -> list[int]:
    """Up to ``k`` tokens predicted to follow ``history`` by copying from ``history`` itself.

    The last n tokens (n from ``ngram_max`` down to 1) are looked up at their most recent earlier
    occurrence; the draft is what followed it, continued periodically when the occurrence is
    closer than ``k`` tokens to the end (a repeating loop keeps repeating).

    Args:
        history: token ids of a row so far (prompt + generated).
        k: largest draft length (>= 0).
        ngram_max: longest n-gram tried (>= 1).

    Returns:
        The draft token ids (empty when no n-gram recurs or ``k`` is 0).
    """
    n_hist = len(history)
    if k <= 0 or n_hist < 2:
        return []
    arr = np.asarray(history, dtype=np.int64)
    for n in range(min(ngram_max, n_hist - 1), 0, -1):
        windows = np.lib.stride_tricks.sliding_window_view(arr[:-1], n)
        hits = np.flatnonzero((windows == arr[n_hist - n:]).all(axis=1))
        if hits.size:
            start = int(hits[-1]) + n
            seq = list(history)
            for j in range(k):
                seq.append(seq[start + j])
            return seq[n_hist:]
    return []


def backend_id(model_id: str, draft_tokens: int) -> str:
    """``model_id`` plus ``+prompt-lookup<K>`` when ``draft_tokens`` K > 0.

    Outputs equal greedy search's in exact arithmetic but may differ at float32 near-ties, so the
    setting is part of the id that keys cached generations and is stored with them.
    """
    return f"{model_id}+{ID_TAG}{draft_tokens}" if draft_tokens else model_id


def greedy_settings(gen: Any) -> tuple[list[int], int]:
    """(EOS ids, pad id) of a greedy ``GenerationConfig`` that this module's decoder can run.

    Raises:
        ValueError: naming the field, when ``gen`` sets a logits processor or stopping rule
            (:data:`LOGIT_KNOBS`) that :func:`greedy_decode` does not apply.
    """
    from transformers import GenerationConfig

    default = GenerationConfig()
    for knob in LOGIT_KNOBS:
        if getattr(gen, knob, None) not in (None, getattr(default, knob, None)):
            raise ValueError(f"this decoder runs plain greedy search only; the generation "
                             f"config sets {knob}={getattr(gen, knob)!r}")
    eos = gen.eos_token_id
    eos_ids = [] if eos is None else [int(eos)] if isinstance(eos, int) else [int(e) for e in eos]
    pad = gen.pad_token_id if gen.pad_token_id is not None else (eos_ids or [0])[0]
    return eos_ids, int(pad)


def decode_like_generate(model: Any, enc: dict[str, Any], gen: Any, draft_tokens: int,
                         stats: DecodeStats | None = None, *, shared_prefix: Any = None,
                         prefix_ids: Sequence[int] = ()) -> list[list[int]]:
    """:func:`greedy_decode` with the budget, EOS and pad ids of a greedy ``GenerationConfig``.

    Args:
        model: a transformers causal LM in eval mode.
        enc: ``input_ids`` [B, T], ``attention_mask`` [B, T] and optionally ``cache`` (the
            prefix cache of :func:`~and_toolkit.backends.prefix_cache.batch_inputs`).
        gen: the greedy generation config (``max_new_tokens``, ``eos_token_id``,
            ``pad_token_id``).
        draft_tokens: largest draft per row and step (0: one-token greedy steps).
        stats: counters to add to, or None.
        shared_prefix: see :func:`greedy_decode`.
        prefix_ids: see :func:`greedy_decode`.

    Returns:
        Per row, the generated token ids (as ``generate`` returns them after the input, without
        the trailing pads).

    Raises:
        ValueError: naming the field, when ``gen`` sets a logits processor or stopping rule
            (:data:`LOGIT_KNOBS`) that this decoder does not apply.
    """
    eos_ids, pad = greedy_settings(gen)
    return greedy_decode(model, enc["input_ids"], enc["attention_mask"], enc.get("cache"),
                         max_new_tokens=gen.max_new_tokens, eos_ids=eos_ids, pad_id=pad,
                         draft_tokens=draft_tokens, stats=stats, shared_prefix=shared_prefix,
                         prefix_ids=prefix_ids)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids [B, T] counting only unmasked tokens (0 at masked ones), as ``generate``."""
    pos = mask.long().cumsum(-1) - 1
    return pos.masked_fill(mask == 0, 0)


def _forward(model: Any, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor,
             cache: Any, **model_kwargs: Any) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """One forward pass; (greedy token [B, W], top-2 gap [B, W] float32, cache)."""
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache,
                use_cache=True, **model_kwargs)
    logits = out.logits.float()
    top = logits.topk(2, dim=-1)
    new_cache = out["cache"] if "cache" in out else out.past_key_values
    return logits.argmax(dim=-1), top.values[..., 0] - top.values[..., 1], new_cache


def greedy_decode(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  cache: Any, *, max_new_tokens: int, eos_ids: Sequence[int], pad_id: int,
                  draft_tokens: int = DRAFT_TOKENS, ngram_max: int = NGRAM_MAX,
                  stats: DecodeStats | None = None,
                  reserve_cache: bool = True,
                  shared_prefix: Any = None,
                  prefix_ids: Sequence[int] = ()) -> list[list[int]]:
    """Greedy continuation of every row by prompt-lookup drafts verified in batched passes.

    Args:
        model: a transformers causal LM in eval mode (takes ``position_ids`` and ``cache``).
        input_ids: [B, T] prompt token ids (pads anywhere, masked).
        attention_mask: [B, T] 1 for real tokens, 0 for pads.
        cache: a key/value cache holding the first ``cache.get_seq_length()`` columns of
            ``input_ids`` (consumed: it is extended in place), or None.
        max_new_tokens: token budget per row (>= 1).
        eos_ids: token ids that end a row (kept as its last token).
        pad_id: token id fed at masked block columns.
        draft_tokens: largest draft per row and step (0: plain one-token greedy steps).
        ngram_max: longest n-gram looked up (see :func:`draft`).
        stats: counters to add to, or None.
        reserve_cache: after the prefill, write the cache into buffers with room for the whole
            answer (:mod:`~and_toolkit.backends.reserved_cache`: same values, no per-step copy
            of the cache); False keeps transformers' concatenating layers.
        shared_prefix: a :class:`~and_toolkit.backends.shared_attention.SharedPrefix` every row
            attends to before its own tokens (call inside ``shared_attention.attending``);
            ``input_ids`` / ``attention_mask`` / ``cache`` then cover the rows' own tokens
            only and positions start after the prefix. None: no shared prefix.
        prefix_ids: the shared prefix's token ids [P] (drafts look them up too).

    Returns:
        Per row, the generated token ids (ending with an EOS id when one was produced).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    stats = stats if stats is not None else DecodeStats()
    device = input_ids.device
    eos = set(int(e) for e in eos_ids)
    n_rows = input_ids.shape[0]
    history = [list(prefix_ids) + input_ids[r][attention_mask[r].bool()].tolist()
               for r in range(n_rows)]
    cached = cache.get_seq_length() if cache is not None else 0
    extra: dict[str, Any] = {}
    offset = 0
    if shared_prefix is not None:
        extra["shared_prefix"] = shared_prefix
        offset = shared_prefix.length
    mask = attention_mask.long()
    pos = _positions(mask) + offset
    with torch.inference_mode():
        # only the last position's logits are read after the prefill
        greedy, gap, cache = _forward(model, input_ids[:, cached:], mask, pos[:, cached:], cache,
                                      logits_to_keep=1, **extra)
    stats.forward_passes += 1
    stats.min_top2_gap = min(stats.min_top2_gap, float(gap[:, -1].min()))
    if reserve_cache:
        from and_toolkit.backends import reserved_cache

        reserved_cache.reserve(cache, max_new_tokens * (1 + draft_tokens))
    out: list[list[int]] = [[] for _ in range(n_rows)]
    last = greedy[:, -1].tolist()
    next_pos = (mask.sum(-1) + offset).tolist()
    active = list(range(n_rows))
    while True:
        still: list[int] = []
        for i, r in enumerate(active):
            tok = last[i]
            out[r].append(tok)
            history[r].append(tok)
            stats.generated_tokens += 1
            if tok not in eos and len(out[r]) < max_new_tokens:
                still.append(i)
        if not still:
            break
        if len(still) < len(active):
            keep = torch.tensor(still, dtype=torch.long, device=device)
            cache.batch_select_indices(keep)
            mask = mask[keep]
            active = [active[i] for i in still]
            last = [last[i] for i in still]
            next_pos = [next_pos[i] for i in still]
        drafts = [draft(history[r], min(draft_tokens, max_new_tokens - len(out[r]) - 1),
                        ngram_max) for r in active]
        width = 1 + max(len(d) for d in drafts)
        block = torch.full((len(active), width), pad_id, dtype=torch.long)
        bmask = torch.zeros((len(active), width), dtype=torch.long)
        bpos = torch.zeros((len(active), width), dtype=torch.long)
        for i, d in enumerate(drafts):
            block[i, :1 + len(d)] = torch.tensor([last[i], *d])
            bmask[i, :1 + len(d)] = 1
            bpos[i, :1 + len(d)] = torch.arange(next_pos[i], next_pos[i] + 1 + len(d))
        block, bmask, bpos = block.to(device), bmask.to(device), bpos.to(device)
        with torch.inference_mode():
            greedy, gap, cache = _forward(model, block, torch.cat([mask, bmask], dim=1), bpos,
                                          cache, **extra)
        stats.forward_passes += 1
        greedy_rows, gap_rows = greedy.tolist(), gap.tolist()
        for i, (r, d) in enumerate(zip(active, drafts, strict=True)):
            n = 0
            while n < len(d) and d[n] == greedy_rows[i][n] and d[n] not in eos:
                n += 1
            # the kept draft tokens, then the model's own token after them
            for j in range(n):
                out[r].append(d[j])
                history[r].append(d[j])
            stats.drafted_tokens += len(d)
            stats.accepted_tokens += n
            stats.generated_tokens += n
            stats.min_top2_gap = min(stats.min_top2_gap, min(gap_rows[i][:n + 1]))
            bmask[i, 1 + n:] = 0
            last[i] = greedy_rows[i][n]
            next_pos[i] += 1 + n
        mask = torch.cat([mask, bmask], dim=1)
    return out
