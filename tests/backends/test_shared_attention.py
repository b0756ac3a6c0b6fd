"""Shared-prefix attention: the merged two-part softmax equals attention over the concatenated
keys, and greedy answers decoded with it equal the plain path's token for token."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from and_toolkit.backends import shared_attention
from and_toolkit.backends.llm_transformers import SmolLM2LLM, TransformersLLM
from and_toolkit.backends.shared_attention import SharedPrefix, shared_prefix_attention
from and_toolkit.dissect.prompts import icl_prompt
from and_toolkit.interfaces import Sampling

# float32 softmax of <= ~100 terms, merged: rounding of a few ulps on O(1) outputs
ATOL = 1e-5


class _Layer:
    """Stands for an attention module: the two attributes the function reads."""

    def __init__(self, groups: int) -> None:
        self.layer_idx = 0
        self.num_key_value_groups = groups


def _reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
               ) -> torch.Tensor:
    """Plain attention [B, q, H, d] over the full keys (bool mask [B, 1, q, S])."""
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out.transpose(1, 2)


@pytest.mark.parametrize("q_len", [1, 4])
def test_merged_attention_equals_attention_over_prefix_and_own_keys(q_len: int) -> None:
    gen = torch.Generator().manual_seed(0)
    b, kv_heads, groups, d, prefix, own = 3, 2, 3, 8, 11, 6
    q = torch.randn(b, kv_heads * groups, q_len, d, generator=gen)
    pk, pv = torch.randn(kv_heads, prefix, d, generator=gen), torch.randn(kv_heads, prefix, d,
                                                                         generator=gen)
    k, v = torch.randn(b, kv_heads, own, d, generator=gen), torch.randn(b, kv_heads, own, d,
                                                                        generator=gen)
    # causal over the own keys, and row 1 has two padded (masked) own keys at the start
    own_mask = torch.ones(b, 1, q_len, own, dtype=torch.bool)
    for i in range(q_len):
        own_mask[:, :, i, own - q_len + i + 1:] = False
    own_mask[1, :, :, :2] = False
    got, _ = shared_prefix_attention(_Layer(groups), q, k, v, own_mask,
                                     shared_prefix=SharedPrefix((pk,), (pv,)))
    full_k = torch.cat([pk.expand(b, -1, -1, -1), k], dim=2)
    full_v = torch.cat([pv.expand(b, -1, -1, -1), v], dim=2)
    full_mask = torch.cat([torch.ones(b, 1, q_len, prefix, dtype=torch.bool), own_mask], dim=3)
    torch.testing.assert_close(got, _reference(q, full_k, full_v, full_mask), atol=ATOL, rtol=0)
    # no mask given: causal over the own keys
    causal, _ = shared_prefix_attention(_Layer(groups), q, k, v, None,
                                        shared_prefix=SharedPrefix((pk,), (pv,)))
    own_mask[1, :, :, :2] = True
    full_mask = torch.cat([torch.ones(b, 1, q_len, prefix, dtype=torch.bool), own_mask], dim=3)
    torch.testing.assert_close(causal, _reference(q, full_k, full_v, full_mask), atol=ATOL,
                               rtol=0)


def test_fused_prefix_part_equals_plain_ops() -> None:
    """The fused flash-attention kernel and the plain-ops fallback (other devices) give the
    same output and log-sum-exp (to float32 rounding)."""
    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(3, n, 16, generator=gen) for n in (20, 37, 37))
    fused = shared_attention._prefix_part(q, k, v, 0.25, fused=True)
    plain = shared_attention._prefix_part(q, k, v, 0.25, fused=False)
    assert fused[0].shape == (3, 20, 16) and fused[1].shape == (3, 20, 1)
    for a, b in zip(fused, plain, strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    torch.testing.assert_close(plain[1][..., 0], torch.logsumexp(q @ k.transpose(1, 2) * 0.25,
                                                                 dim=-1), atol=ATOL, rtol=0)


def test_a_query_with_every_own_key_masked_reads_the_prefix_only() -> None:
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(1, 2, 1, 4, generator=gen)
    pk, pv = torch.randn(1, 5, 4, generator=gen), torch.randn(1, 5, 4, generator=gen)
    k, v = torch.randn(1, 1, 3, 4, generator=gen), torch.randn(1, 1, 3, 4, generator=gen)
    got, _ = shared_prefix_attention(_Layer(2), q, k, v, torch.zeros(1, 1, 1, 3, dtype=torch.bool),
                                     shared_prefix=SharedPrefix((pk,), (pv,)))
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, _reference(q, pk[None], pv[None],
                                               torch.ones(1, 1, 1, 5, dtype=torch.bool)),
                               atol=ATOL, rtol=0)


def test_variants_it_does_not_compute_are_refused(tiny_llm: TransformersLLM) -> None:
    q = torch.zeros(1, 2, 1, 4)
    k = torch.zeros(1, 1, 1, 4)
    prefix = SharedPrefix((torch.zeros(1, 3, 4),), (torch.zeros(1, 3, 4),))
    with pytest.raises(ValueError, match="sliding_window"):
        shared_prefix_attention(_Layer(2), q, k, k, None, shared_prefix=prefix,
                                sliding_window=4)
    config = tiny_llm.model.config
    config.sliding_window = 16
    try:
        assert not shared_attention.supports(tiny_llm.model)
    finally:
        config.sliding_window = None
    assert shared_attention.supports(tiny_llm.model)


def _shared_prompts() -> list[str]:
    head = ("You answer with one word. Examples: the sound of rain is wet; the sound of a siren "
            "is loud; the sound of a whisper is quiet; the sound of a bell is ringing. Now: ")
    return [head + t for t in ["a dog barking", "thunder far away", "a",
                               "keys jingling in a pocket near a door", "the sea", "wind"]]


@pytest.mark.parametrize("drafts", [0, 3])
def test_tiny_llm_shared_prefix_decoding_equals_plain(tiny_llm: TransformersLLM,
                                                      drafts: int) -> None:
    prompts, sampling = _shared_prompts(), Sampling(max_new_tokens=10)
    tiny_llm.lookup_drafts = drafts
    try:
        tiny_llm.reuse_prefix = False
        plain = tiny_llm.generate(prompts, sampling)
        assert tiny_llm.last_decoder == "plain"
        tiny_llm.reuse_prefix = True
        for rows in (2, 64):  # several batches, and one batch of every prompt
            tiny_llm.shared_batch_size = rows
            assert tiny_llm.generate(prompts, sampling) == plain
            assert tiny_llm.last_decoder == "shared-prefix"
    finally:
        tiny_llm.lookup_drafts, tiny_llm.shared_batch_size = 0, 64
    # sampled requests keep the repeated-prefix path (per-row generators run inside generate)
    tiny_llm.generate(prompts[:2], Sampling(temperature=1.0, max_new_tokens=4, seed=1))
    assert tiny_llm.last_decoder == "repeated-prefix"


def test_the_attention_setting_is_restored_and_other_attention_refused(
        tiny_llm: TransformersLLM) -> None:
    model = tiny_llm.model
    with pytest.raises(RuntimeError), shared_attention.attending(model):
        assert model.config._attn_implementation == shared_attention.IMPLEMENTATION
        raise RuntimeError("inside")
    assert model.config._attn_implementation == "sdpa"
    model.config._attn_implementation = "eager"
    try:
        assert not shared_attention.supports(model)
        with pytest.raises(ValueError, match="eager"), shared_attention.attending(model):
            pass
        # an eager model decodes on the repeated-prefix path, with the same answers
        tiny_llm.generate(_shared_prompts()[:2], Sampling(max_new_tokens=3))
        assert tiny_llm.last_decoder == "repeated-prefix"
    finally:
        model.config._attn_implementation = "sdpa"


@pytest.mark.slow
def test_smollm2_icl_shared_prefix_identical_token_for_token(smol_tokenizer: Any) -> None:
    llm = SmolLM2LLM.load(batch_size=4)
    concepts = ["dog", "rooster", "rain", "sea waves", "crackling fire", "siren", "church bells",
                "clock tick", "door knock", "footsteps"]
    summaries = ["A dog barks twice, then a car passes.", "Heavy rain on a tin roof.",
                 "A siren wails in the distance while traffic hums.", "Bells ring.",
                 "Waves crash on the shore and seagulls call.", "Someone knocks on a door.",
                 "A clock ticks in a quiet room.", "Fire crackles.", "Footsteps on gravel.",
                 "A rooster crows at dawn."]
    prompts = [icl_prompt(s, concepts, top=t) for s in summaries for t in (1, 5)]
    sampling = Sampling(max_new_tokens=32)
    llm.reuse_prefix = False
    plain = llm.generate(prompts, sampling)
    llm.reuse_prefix = True
    shared = llm.generate(prompts, sampling)
    assert llm.last_decoder == "shared-prefix"
    ids = [llm.tokenizer(t, add_special_tokens=False)["input_ids"] for t in shared]
    assert ids == [llm.tokenizer(t, add_special_tokens=False)["input_ids"] for t in plain]
