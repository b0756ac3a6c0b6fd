"""Prompt-lookup speculative greedy decoding: drafts, and outputs identical to ``generate``."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from and_toolkit.backends import lookup_decode
from and_toolkit.backends.llm_transformers import (
    SmolLM2LLM,
    TransformersLLM,
    greedy_generation_config,
)
from and_toolkit.dissect.icl import ICL_SAMPLING
from and_toolkit.dissect.prompts import adjective_prompt, icl_prompt
from and_toolkit.interfaces import Prompt, Sampling


def test_draft_copies_what_followed_the_most_recent_ngram() -> None:
    # last 3-gram (1, 2, 3) occurred at 0 and 5; the most recent earlier one (5) is copied
    hist = [1, 2, 3, 4, 9, 1, 2, 3, 7, 8, 1, 2, 3]
    assert lookup_decode.draft(hist, 2) == [7, 8]
    # a loop closer than k to the end continues periodically
    assert lookup_decode.draft([5, 6, 5, 6], 5) == [5, 6, 5, 6, 5]
    # longest n-gram first: (3, 4) occurs, so the 1-gram match of 4 at index 5 is not used
    assert lookup_decode.draft([3, 4, 0, 0, 9, 4, 1, 3, 4], 1, ngram_max=2) == [0]
    assert lookup_decode.draft([3, 4, 0, 0, 9, 4, 1, 3, 4], 1, ngram_max=1) == [1]
    assert lookup_decode.draft([1, 2, 3], 4) == []  # nothing recurs
    assert lookup_decode.draft(hist, 0) == []
    assert lookup_decode.draft([7], 3) == []


@pytest.fixture(scope="module")
def loopy_llm(smol_tokenizer: Any) -> TransformersLLM:
    """A tiny random Llama (SmolLM2's tokenizer) whose greedy answers to :func:`_prompts` fall
    into loops within 80 tokens, so drafts are both accepted and rejected."""
    from tests.backends.conftest import tiny_llama

    return tiny_llama(smol_tokenizer, 64, "loopy-llama")


def _prompts() -> list[Prompt]:
    head = ("Repeat after me. the sound of rain is wet; the sound of a siren is loud; the sound "
            "of rain is wet; the sound of a siren is loud; the sound of ")
    tails = ["rain", "a dog barking", "a siren", "keys jingling in a pocket", "the sea"]
    return [head + t for t in tails]


@pytest.mark.parametrize("reuse", [False, True], ids=["plain", "prefix-cache"])
def test_tiny_llm_lookup_equals_generate(loopy_llm: TransformersLLM, reuse: bool) -> None:
    tiny_llm = loopy_llm
    sampling = Sampling(max_new_tokens=80)
    prompts = _prompts()
    tiny_llm.reuse_prefix = reuse
    tiny_llm.lookup_drafts = 0
    reference = tiny_llm.generate(prompts, sampling)
    tiny_llm.lookup_drafts = 4
    tiny_llm.decode_stats = lookup_decode.DecodeStats()
    try:
        assert tiny_llm.generate(prompts, sampling) == reference
    finally:
        tiny_llm.lookup_drafts = 0
        tiny_llm.reuse_prefix = True
    stats = tiny_llm.decode_stats
    # drafts were accepted and rejected; verify passes did replace one-token steps
    assert 0 < stats.accepted_tokens < stats.drafted_tokens
    assert stats.forward_passes < stats.generated_tokens


def test_tiny_llm_eos_ends_rows_like_generate(loopy_llm: TransformersLLM) -> None:
    """With an EOS id the rows produce, rows end early (and leave the batch) as in generate."""
    tiny_llm = loopy_llm
    texts = [tiny_llm.render(p) for p in _prompts()]
    ids = tiny_llm.tokenizer(texts, add_special_tokens=False)["input_ids"]
    enc = tiny_llm.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
    gen = greedy_generation_config(tiny_llm.model, tiny_llm.tokenizer, 60)
    full = tiny_llm.model.generate(**enc, generation_config=gen)[:, enc["input_ids"].shape[1]:]
    gen.eos_token_id = int(full[0, 30])  # a token the first row emits after 30 steps
    want = tiny_llm.model.generate(**enc, generation_config=gen)[:, enc["input_ids"].shape[1]:]
    stats = lookup_decode.DecodeStats()
    got = lookup_decode.decode_like_generate(tiny_llm.model, dict(enc), gen, 4, stats)
    for row, ref in zip(got, want.tolist(), strict=True):
        end = ref.index(gen.eos_token_id) + 1 if gen.eos_token_id in ref else len(ref)
        assert row == ref[:end]
    assert len(got[0]) <= 31 and stats.accepted_tokens > 0


def test_lookup_refuses_logit_processors(tiny_llm: TransformersLLM) -> None:
    enc = tiny_llm.tokenizer(["hello there"], return_tensors="pt")
    gen = greedy_generation_config(tiny_llm.model, tiny_llm.tokenizer, 4)
    gen = copy.deepcopy(gen)
    gen.repetition_penalty = 1.3
    with pytest.raises(ValueError, match="repetition_penalty"):
        lookup_decode.decode_like_generate(tiny_llm.model, dict(enc), gen, 4)


def test_lookup_setting_is_part_of_the_backend_id(tiny_llm: TransformersLLM) -> None:
    assert tiny_llm.id == "tiny-llama"
    tiny_llm.lookup_drafts = 4
    try:
        assert tiny_llm.id == f"tiny-llama+{lookup_decode.ID_TAG}4"
        # sampled requests keep generate's per-row Gumbel sampling
        sampling = Sampling(temperature=1.0, max_new_tokens=6, seed=3)
        on = tiny_llm.generate(_prompts()[:3], sampling)
    finally:
        tiny_llm.lookup_drafts = 0
    assert tiny_llm.generate(_prompts()[:3], sampling) == on
    with pytest.raises(ValueError, match="lookup_drafts"):
        TransformersLLM(tiny_llm.model, tiny_llm.tokenizer, model_id="x", weights_id="w",
                        lookup_drafts=-1)


@pytest.mark.slow
def test_smollm2_icl_lookup_identical_token_for_token(smol_tokenizer: Any) -> None:
    """The real ICL prompts of test_prefix_cache at the real budget (128 tokens, where answers
    repeat themselves): prefix reuse + prompt lookup against plain ``generate``."""
    llm = SmolLM2LLM.load(batch_size=5)
    concepts = ["dog", "rooster", "rain", "sea waves", "crackling fire", "siren", "church bells"]
    summaries = ["A dog barks twice, then a car passes.", "Heavy rain on a tin roof.",
                 "A siren wails in the distance while traffic hums.", "Bells ring.",
                 "Waves crash on the shore and seagulls call."]
    runs = [([icl_prompt(s, concepts, top=5) for s in summaries], ICL_SAMPLING),
            ([adjective_prompt(w) for w in ["loud", "muffled", "purple", "high-pitched"]],
             Sampling(max_new_tokens=16))]
    for prompts, sampling in runs:
        llm.reuse_prefix, llm.lookup_drafts = False, 0
        plain = llm.generate(prompts, sampling)
        llm.reuse_prefix, llm.lookup_drafts = True, lookup_decode.DRAFT_TOKENS
        fast = llm.generate(prompts, sampling)
        ids = [llm.tokenizer(t, add_special_tokens=False)["input_ids"] for t in fast]
        assert ids == [llm.tokenizer(t, add_special_tokens=False)["input_ids"] for t in plain]
    assert llm.decode_stats.accepted_tokens > 0
