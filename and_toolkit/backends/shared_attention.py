"""Shared-prefix attention: every row of a batch reads one copy of the prefix's keys and values.

:mod:`~and_toolkit.backends.prefix_cache` saves the prefix's *prefill*, but then repeats its
key/value cache for every row: SmolLM2's ~610-token ICL prefix is 32 MB of float32 keys and
values per row, so a decode step of 64 rows reads 2 GB of identical cache, and decoding, not
prefill, becomes the cost. Here the batch's cache holds only each row's own tokens (suffix and
answer); the prefix's keys and values ([kv_heads, P, head_dim] per layer) are kept once, and each
layer's attention is computed in two parts that are merged exactly:

    prefix part   q [B, H, q, d] against the shared K, V: one unmasked attention per kv head
                  (torch's fused flash-attention CPU kernel, which also returns the log-sum-exp),
                  the rows and query heads of a group folded into the query axis (no copy per
                  row)
    own part      q against the row's own cached keys, with the batch's causal / padding mask
                  (query heads of a kv head again folded into the query axis: no key copies)
    merge         softmax over the union = the two partial softmaxes rescaled by their
                  log-sum-exp (m = running max, l = sum of exp), as in cascade / flash attention

    out = (e^(m1 - m) * l1 * o1 + e^(m2 - m) * l2 * o2) / (e^(m1 - m) * l1 + e^(m2 - m) * l2)

with o1, o2 the normalised partial outputs and m = max(m1, m2). In exact arithmetic this is the
attention over [prefix, own tokens]; in float32 it differs from one softmax by rounding
(relative ~1e-7), so a greedy argmax can only change where the top-2 logits are that close
(:class:`~and_toolkit.backends.lookup_decode.DecodeStats` records the smallest gap seen, and
tests/backends/test_shared_attention.py compares outputs token for token with the plain path).

The model's own attention modules run unchanged (projections, rotary embeddings, cache update);
only the attention *function* is swapped, through transformers' ``AttentionInterface``, for the
duration of :func:`attending`. Rows' positions continue after the prefix (position ids are
passed explicitly by the decoder), so each row computes what it computes with the prefix in
its own cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

IMPLEMENTATION = "and-shared-prefix"
"""Name of the attention function registered with transformers (and its mask function)."""
UNSUPPORTED_KWARGS = ("softcap", "sliding_window", "s_aux")
"""Attention-function arguments of variants this module does not compute (logit soft-capping,
sliding windows, attention sinks)."""


@dataclass(frozen=True)
class SharedPrefix:
    """The prefix's keys and values, one copy for every row.

    Attributes:
        keys: per layer, float [kv_heads, P, head_dim] (rotary embeddings applied).
        values: per layer, float [kv_heads, P, head_dim].
    """

    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]

    @property
    def length(self) -> int:
        """Prefix length P in tokens."""
        return int(self.keys[0].shape[-2])

    @classmethod
    def from_cache(cls, cache: Any) -> SharedPrefix:
        """Take the layers of a batch-of-1 transformers cache (``prefix_cache.prefill``).

        Raises:
            ValueError: if the cache's batch is not 1 or a layer is empty.
        """
        keys, values = [], []
        for i, layer in enumerate(cache.layers):
            k, v = layer.keys, layer.values
            if k is None or v is None or k.shape[0] != 1:
                raise ValueError(f"prefix cache layer {i} must hold one row of keys, got "
                                 f"{None if k is None else tuple(k.shape)}")
            keys.append(k[0].contiguous())
            values.append(v[0].contiguous())
        return cls(tuple(keys), tuple(values))


def _partial(scores: torch.Tensor, values: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(normalised output [..., d], row max [..., 1], sum of exp [..., 1]) of ``scores`` [..., K]
    against ``values`` [..., K, d]; masked scores are -inf. A row with every score masked (a pad
    query) gets output 0 and sum 0, so it adds nothing when merged."""
    top = scores.amax(dim=-1, keepdim=True)
    top = top.masked_fill(torch.isneginf(top), 0.0)
    weights = torch.exp(scores - top)
    total = weights.sum(dim=-1, keepdim=True)
    return torch.matmul(weights, values) / total.clamp_min(torch.finfo(total.dtype).tiny), top, \
        total


def _prefix_part(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float,
                 fused: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised output [kv_heads, n, d], log-sum-exp of the scores [kv_heads, n, 1]) of
    queries [kv_heads, n, d] against every key [kv_heads, P, d] (no mask).

    ``fused`` (None: on CPU tensors of a float dtype it takes) runs torch's fused
    flash-attention CPU kernel (on the demo's ICL decoding, 2x faster than the plain ops:
    fewer passes over the scores), else plain matmul / softmax ops; the two agree to float
    rounding."""
    if fused is None:
        fused = query.device.type == "cpu" and query.dtype in (
            torch.float32, torch.float64, torch.bfloat16, torch.float16)
    if fused:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query[None], keys[None].to(query.dtype), values[None].to(query.dtype),
            0.0, False, scale=scale)
        return out[0], lse[0, ..., None].to(out.dtype)
    o, top, total = _partial(torch.matmul(query, keys.transpose(1, 2)) * scale, values)
    return o, top + torch.log(total)


def _causal_mask(q_len: int, kv_len: int, device: torch.device) -> torch.Tensor:
    """Bool [1, 1, q, kv]: query i sees keys up to kv - q + i (the last q keys are the queries')."""
    rows = torch.arange(q_len, device=device)[:, None] + (kv_len - q_len)
    return (torch.arange(kv_len, device=device)[None, :] <= rows)[None, None]


def shared_prefix_attention(module: Any, query: torch.Tensor, key: torch.Tensor,
                            value: torch.Tensor, attention_mask: torch.Tensor | None,
                            scaling: float | None = None, dropout: float = 0.0,
                            shared_prefix: SharedPrefix | None = None, **kwargs: Any
                            ) -> tuple[torch.Tensor, None]:
    """A transformers attention function over [shared prefix, the row's own keys].

    Args:
        module: the attention module (``layer_idx``, ``num_key_value_groups``).
        query: [B, H, q, d] (rotary embeddings applied).
        key: [B, kv_heads, S, d], the rows' own cached keys including this step's.
        value: [B, kv_heads, S, d].
        attention_mask: bool [B, 1, q, S] (True: attend) or additive float, or None (causal).
        scaling: softmax scale (default d ** -0.5).
        dropout: must be 0 (inference).
        shared_prefix: the prefix every row attends to first; None: plain SDPA attention.
        **kwargs: passed to transformers' SDPA function when ``shared_prefix`` is None.

    Returns:
        (attention output [B, q, H, d], None), as transformers' attention functions return.

    Raises:
        ValueError: for dropout > 0.
    """
    if shared_prefix is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask,  # type: ignore[no-any-return]
                                      dropout=dropout, scaling=scaling, **kwargs)
    if dropout:
        raise ValueError("shared-prefix attention is for inference only (dropout must be 0)")
    unsupported = [k for k in UNSUPPORTED_KWARGS if kwargs.get(k) is not None]
    if unsupported:
        raise ValueError(f"shared-prefix attention computes plain softmax attention; this layer "
                         f"passes {unsupported}")
    b, h, q, d = query.shape
    scale = scaling if scaling is not None else d ** -0.5
    pk = shared_prefix.keys[module.layer_idx]
    pv = shared_prefix.values[module.layer_idx]
    kv_heads, groups = pk.shape[0], h // pk.shape[0]
    # prefix part: rows and the query heads of each kv head folded into one query axis, as
    # one unmasked attention (torch's fused CPU kernel; its log-sum-exp stands for m1 + log l1)
    folded = query.reshape(b, kv_heads, groups, q, d).transpose(0, 1).reshape(kv_heads, -1, d)
    o1, lse1 = _prefix_part(folded, pk, pv, scale)

    def unfold(t: torch.Tensor) -> torch.Tensor:  # [kv_heads, B * groups * q, x] -> [B, H, q, x]
        return (t.reshape(kv_heads, b, groups, q, t.shape[-1]).transpose(0, 1)
                .reshape(b, h, q, t.shape[-1]))

    o1, m1 = unfold(o1), unfold(lse1)
    l1 = torch.ones_like(m1)
    # own part: each row's own keys, the query heads of a kv head folded into the query axis
    # (no copy of the keys per query head), under the batch's mask
    s_len = key.shape[-2]
    grouped = query.reshape(b, kv_heads, groups * q, d)
    scores = (torch.matmul(grouped, key.transpose(2, 3)) * scale).reshape(
        b, kv_heads, groups, q, s_len)
    if attention_mask is None:
        attention_mask = _causal_mask(q, s_len, query.device)
    mask = attention_mask.unsqueeze(2)  # [B or 1, 1, 1, q, S]: the same for every head
    if mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    else:
        scores = scores + mask
    o2, m2, l2 = _partial(scores.reshape(b, kv_heads, groups * q, s_len), value)
    o2, m2, l2 = (t.reshape(b, h, q, t.shape[-1]) for t in (o2, m2, l2))
    top = torch.maximum(m1, m2)
    w1, w2 = torch.exp(m1 - top) * l1, torch.exp(m2 - top) * l2
    out = (w1 * o1 + w2 * o2) / (w1 + w2)
    return out.transpose(1, 2).contiguous(), None


def register() -> None:
    """Register :func:`shared_prefix_attention` (and transformers' SDPA mask for it) under
    :data:`IMPLEMENTATION`; idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(IMPLEMENTATION, shared_prefix_attention)
    AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)


def supports(model: Any) -> bool:
    """Whether ``model`` runs transformers' SDPA attention on modules with a ``layer_idx``
    (Llama, Qwen2, ... decoders), the setting this function replaces, with plain softmax
    attention (no logit soft-capping, no sliding window)."""
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) not in ("sdpa", IMPLEMENTATION):
        return False
    if getattr(config, "attn_logit_softcapping", None) or (
            getattr(config, "sliding_window", None)
            and getattr(config, "use_sliding_window", True) is not False):
        return False
    return any(hasattr(m, "layer_idx") and hasattr(m, "num_key_value_groups")
               for m in model.modules())


@contextmanager
def attending(model: Any) -> Iterator[None]:
    """Within the block, ``model``'s layers call :func:`shared_prefix_attention` (plain SDPA
    for any forward pass not given ``shared_prefix``); the previous setting is restored after.

    Raises:
        ValueError: if the model does not run SDPA attention (see :func:`supports`).
    """
    if not supports(model):
        raise ValueError(f"shared-prefix attention replaces SDPA attention; this model runs "
                         f"{getattr(model.config, '_attn_implementation', None)!r}")
    register()
    before = model.config._attn_implementation
    model.config._attn_implementation = IMPLEMENTATION
    try:
        yield
    finally:
        model.config._attn_implementation = before
