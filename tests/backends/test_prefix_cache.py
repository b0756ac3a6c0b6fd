"""Shared-prefix reuse: the prefix length rule, and outputs identical with and without reuse."""

from __future__ import annotations

from typing import Any

import pytest

from and_toolkit.backends import prefix_cache
from and_toolkit.backends.llm_transformers import SmolLM2LLM, TransformersLLM
from and_toolkit.dissect.icl import ICL_SAMPLING
from and_toolkit.dissect.prompts import adjective_prompt, icl_prompt
from and_toolkit.interfaces import Prompt, Sampling

MIN = prefix_cache.MIN_SHARED_PREFIX


def test_shared_prefix_length_rule() -> None:
    base = list(range(100, 100 + MIN + 5))
    assert prefix_cache.shared_prefix_length([base + [1, 2], base + [3]]) == MIN + 5
    # every prompt keeps at least one token to prefill
    assert prefix_cache.shared_prefix_length([base, base + [7]]) == MIN + 4
    assert prefix_cache.shared_prefix_length([base[:MIN - 1] + [1], base[:MIN - 1] + [2]]) == 0
    assert prefix_cache.shared_prefix_length([[1, 2], [9, 2]]) == 0
    assert prefix_cache.shared_prefix_length([]) == 0
    assert prefix_cache.shared_prefix_length([base, []]) == 0
    assert prefix_cache.shared_prefix_length([base + [5]]) == MIN + 5


def test_batch_inputs_pad_between_prefix_and_suffix(tiny_llm: TransformersLLM) -> None:
    prefix = list(range(5, 5 + MIN))
    cache = prefix_cache.prefill(tiny_llm.model, prefix, "cpu")
    enc = prefix_cache.batch_inputs(prefix, [[1, 2, 3], [4]], 0, cache, "cpu")
    assert enc["input_ids"].tolist() == [prefix + [1, 2, 3], prefix + [0, 0, 4]]
    assert enc["attention_mask"].tolist() == [[1] * MIN + [1, 1, 1], [1] * MIN + [0, 0, 1]]
    assert enc["cache"].get_seq_length() == MIN
    assert cache.get_seq_length() == MIN  # the shared cache is copied, never extended


def _shared(n: int) -> list[Prompt]:
    head = ("You answer with one word. Examples: the sound of rain is wet; the sound of a siren "
            "is loud; the sound of a whisper is quiet; the sound of a bell is ringing. Now: ")
    tails = ["a dog barking", "thunder far away", "a", "keys jingling in a pocket near a door",
             "the sea", "a crowd cheering at a football match", "wind"]
    return [head + t for t in tails[:n]]


@pytest.mark.parametrize("sampling", [Sampling(max_new_tokens=8),
                                      Sampling(temperature=1.0, max_new_tokens=8, seed=5)],
                         ids=["greedy", "sampled"])
def test_tiny_llm_reuse_equals_plain(tiny_llm: TransformersLLM, sampling: Sampling) -> None:
    prompts = _shared(7)
    tiny_llm.reuse_prefix = False
    plain = tiny_llm.generate(prompts, sampling)
    assert tiny_llm.last_prefix_tokens == 0
    tiny_llm.reuse_prefix = True
    reused = tiny_llm.generate(prompts, sampling)
    assert tiny_llm.last_prefix_tokens >= MIN
    assert reused == plain
    # a later call sharing the kept prefix reuses it: no new prefill, same outputs
    prefills = tiny_llm.prefills
    assert tiny_llm.generate(prompts[2:5], sampling) == plain[2:5]
    assert tiny_llm.prefills == prefills and tiny_llm.last_prefix_tokens >= MIN
    # unrelated prompts: nothing shared, the plain path runs
    tiny_llm.generate(["hello there", "The quick brown fox"], sampling)
    assert tiny_llm.last_prefix_tokens == 0


@pytest.mark.slow
def test_smollm2_icl_and_adjective_prompts_identical_token_for_token(smol_tokenizer: Any) -> None:
    llm = SmolLM2LLM.load(batch_size=4)
    concepts = ["dog", "rooster", "rain", "sea waves", "crackling fire", "siren", "church bells"]
    summaries = ["A dog barks twice, then a car passes.", "Heavy rain on a tin roof.",
                 "A siren wails in the distance while traffic hums.", "Bells ring.",
                 "Waves crash on the shore and seagulls call."]
    runs = [([icl_prompt(s, concepts, top=5) for s in summaries],
             ICL_SAMPLING.model_copy(update={"max_new_tokens": 24})),
            ([adjective_prompt(w) for w in ["loud", "muffled", "purple", "high-pitched"]],
             Sampling(max_new_tokens=16))]
    for prompts, sampling in runs:
        llm.reuse_prefix = False
        plain = llm.generate(prompts, sampling)
        llm.reuse_prefix = True
        reused = llm.generate(prompts, sampling)
        assert llm.last_prefix_tokens >= MIN
        ids = [llm.tokenizer(t, add_special_tokens=False)["input_ids"] for t in reused]
        assert ids == [llm.tokenizer(t, add_special_tokens=False)["input_ids"] for t in plain]
