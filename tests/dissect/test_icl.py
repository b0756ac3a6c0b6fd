"""ICL parsing and concept mapping, scripted ICL end to end, and the LLM adjective filter."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from and_toolkit.backends.encoders import HashingEncoder, LookupEncoder
from and_toolkit.backends.llm import AUTHORS_SAMPLING, CachedLLM, FakeLLM
from and_toolkit.dissect.icl import (
    CONCEPT_TEMPLATE,
    adjective_responses,
    embed_concepts,
    icl_concepts,
    icl_concepts_from_responses,
    is_yes,
    llm_is_acoustic,
    map_to_concepts,
    parse_icl_response,
)
from and_toolkit.dissect.prompts import icl_prompt
from and_toolkit.interfaces import Prompt, Sampling

CONCEPTS = ["dog", "rooster", "water_drops", "church_bells", "snoring"]


class CountingEncoder:
    """Wraps an encoder and records every encode call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.id = inner.id
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.asarray(self.inner.encode(texts))


# --- parse_icl_response: every branch, both modes ----------------------------------------------

@pytest.mark.parametrize("compat", ["paper", "reference"])
def test_parse_answer_line(compat: Any) -> None:
    text = "The clips are about a dog.\nAnswer: dog, rooster, snoring"
    got = parse_icl_response(text, 5, compat=compat)
    assert got == (["dog", "rooster", "snoring"] if compat == "paper"
                   else [" dog", " rooster", " snoring"])
    assert parse_icl_response(text, 2, compat=compat)[:2] == got[:2]


def test_parse_last_answer_and_first_line_only() -> None:
    text = "Answer: cat\nmore text\nAnswer: dog, hen.\nHope this helps, bye"
    assert parse_icl_response(text, 5) == ["dog", "hen"]
    assert parse_icl_response(text, 5, compat="reference") == [
        " dog", " hen.\nHope this helps", " bye"]


@pytest.mark.parametrize("compat", ["paper", "reference"])
def test_double_quotes_override_answer(compat: Any) -> None:
    text = 'It sounds like "church bells" or "rooster". Answer: dog'
    assert parse_icl_response(text, 5, compat=compat) == ["church bells", "rooster"]
    assert parse_icl_response(text, 1, compat=compat) == ["church bells"]


@pytest.mark.parametrize("compat", ["paper", "reference"])
def test_single_quotes_override_answer(compat: Any) -> None:
    text = "So the answer is 'snoring' rather than 'dog'.\nAnswer: rooster"
    assert parse_icl_response(text, 5, compat=compat) == ["snoring", "dog"]


def test_apostrophe_quirk() -> None:
    text = "It's a dog's bark.\nAnswer: dog"
    # the authors' regex pairs the apostrophes of "It's" and "dog's"
    assert parse_icl_response(text, 1, compat="reference") == ["s a dog"]
    assert parse_icl_response(text, 1) == ["dog"]
    mixed = "It's clearly 'rooster' here"
    assert parse_icl_response(mixed, 1) == ["rooster"]
    assert parse_icl_response(mixed, 1, compat="reference") == ["s clearly "]


def test_hash_branch() -> None:
    text = "The category is #snoring. That is all."
    assert parse_icl_response(text, 1) == ["snoring"]
    assert parse_icl_response(text, 5) == ["snoring"]
    # the authors slice a string: the first k characters
    assert parse_icl_response(text, 3, compat="reference") == ["s", "n", "o"]
    # quotes take precedence over '#'
    assert parse_icl_response("#dog or 'rooster'", 1) == ["rooster"]


def test_whole_response_fallback() -> None:
    assert parse_icl_response("  water drops \n", 1) == ["water drops"]
    assert parse_icl_response("  water drops \n", 1, compat="reference") == ["  water drops \n"]
    assert parse_icl_response("", 1) == []
    assert parse_icl_response("", 1, compat="reference") == [""]


def test_branch_needs_a_keyword_in_paper_mode() -> None:
    text = 'A 5" speaker.\nAnswer: dog'  # unpaired double quote
    assert parse_icl_response(text, 1) == ["dog"]
    assert parse_icl_response(text, 1, compat="reference") == [text]
    assert parse_icl_response('"" Answer: hen', 1) == ["hen"]


def test_parse_errors() -> None:
    with pytest.raises(ValueError, match="k must be"):
        parse_icl_response("Answer: dog", 0)
    with pytest.raises(ValueError, match="compat"):
        parse_icl_response("Answer: dog", 1, compat="authors")  # type: ignore[arg-type]


# --- mapping -----------------------------------------------------------------------------------

def _lookup_encoder() -> LookupEncoder:
    vec: dict[str, list[float]] = {
        "dog": [1, 0, 0], "rooster": [0, 1, 0], "water_drops": [0, 0, 1],
        "a barking puppy": [0.9, 0.1, 0], "dripping": [0.1, 0, 0.9], "a hen": [0.4, 0.6, 0]}
    return LookupEncoder({CONCEPT_TEMPLATE.format(k): v for k, v in vec.items()})


def test_map_to_concepts_hand_vectors() -> None:
    enc = _lookup_encoder()
    concepts = ["dog", "rooster", "water_drops"]
    got = map_to_concepts(["a barking puppy", "dripping", "a hen", "dog"], concepts, enc)
    assert got == ["dog", "water_drops", "rooster", "dog"]
    assert map_to_concepts([], concepts, enc) == []
    cemb = embed_concepts(concepts, enc)
    assert cemb.shape == (3, 3) and np.allclose(np.linalg.norm(cemb, axis=1), 1.0)
    with pytest.raises(ValueError, match="concept_embeddings"):
        map_to_concepts(["dog"], concepts, enc, concept_embeddings=cemb[:2])
    with pytest.raises(ValueError, match="concepts"):
        embed_concepts([], enc)


def test_map_ties_go_to_first_concept() -> None:
    enc = LookupEncoder({CONCEPT_TEMPLATE.format(k): v for k, v in
                         {"a": [1, 0], "b": [1, 0], "x": [1, 0]}.items()})
    assert map_to_concepts(["x"], ["b", "a"], enc) == ["b"]


def test_map_uses_the_encoder_not_string_equality() -> None:
    enc = HashingEncoder(dim=512)
    got = map_to_concepts(["church bells ringing", "snoring man"], CONCEPTS, enc)
    assert got == ["church_bells", "snoring"]


# --- ICL end to end with a scripted LLM --------------------------------------------------------

def _script(prompt: Prompt) -> str:
    assert isinstance(prompt, list)
    summary = prompt[-1]["content"]
    if "crow" in summary:
        return "The clips feature a 'rooster' crowing.\nAnswer: rooster"
    if "bark" in summary:
        return "Answer: dog, rooster, snoring, dog, water_drops"
    return "I am not sure."


def test_icl_end_to_end_with_dedup_and_cache() -> None:
    vec: dict[str, list[float]] = {c: np.eye(5)[i].tolist() for i, c in enumerate(CONCEPTS)}
    vec["I am not sure"] = [0.1, 0.1, 0.5, 0.1, 0.1]  # fallback: whole response, cleaned
    enc = CountingEncoder(LookupEncoder({CONCEPT_TEMPLATE.format(k): v for k, v in vec.items()}))
    fake = FakeLLM(_script)
    llm = CachedLLM(fake)
    summaries = ["A rooster crows at dawn.", "A dog barks.", "A rooster crows at dawn.", "Noise."]

    top1 = icl_concepts(summaries, CONCEPTS, llm, enc, 1)
    assert top1 == [["rooster"], ["dog"], ["rooster"], ["water_drops"]]
    # two neurons with the same summary share one request
    assert (llm.last.requested, llm.last.unique, llm.last.generated) == (4, 3, 3)
    assert fake.calls == 1 and len(fake.prompts) == 3
    # concept sentences embedded once, then all distinct keywords in one call
    assert len(enc.calls) == 2 and len(enc.calls[0]) == len(CONCEPTS)

    # re-run: every prompt is a cache hit, the backend is not called
    assert icl_concepts(summaries, CONCEPTS, llm, enc, 1) == top1
    assert fake.calls == 1 and llm.last.cache_hits == 3 and llm.last.generated == 0

    top5 = icl_concepts(summaries[:2], CONCEPTS, llm, enc, 5)
    assert top5 == [["rooster"], ["dog", "rooster", "snoring", "dog", "water_drops"]]
    assert fake.calls == 2  # the top-5 prompt differs from the top-1 prompt
    assert "select 5 classnames" in fake.prompts[-1][0]["content"]  # type: ignore[index]


def test_icl_prompt_options_reach_the_llm() -> None:
    fake = FakeLLM(lambda p: "Answer: dog")
    enc = HashingEncoder()
    icl_concepts(["s"], CONCEPTS, fake, enc, 1, fmt="llama2", compat="reference",
                 sampling=AUTHORS_SAMPLING["icl"])
    assert fake.prompts == [icl_prompt("s", CONCEPTS, top=1, fmt="llama2", compat="reference")]
    with pytest.raises(ValueError, match="k must be in 1..5"):
        icl_concepts(["s"], CONCEPTS, fake, enc, 6)
    with pytest.raises(ValueError, match="summaries"):
        icl_concepts("s", CONCEPTS, fake, enc, 1)


def test_icl_wrong_response_count() -> None:
    class Short:
        id = "short"
        weights_id = "w"

        def generate(self, prompts: Any, sampling: Sampling) -> list[str]:
            return []

    with pytest.raises(ValueError, match="returned 0 responses for 1 prompts"):
        icl_concepts(["s"], CONCEPTS, Short(), HashingEncoder(), 1)


def test_icl_concepts_from_responses_reference_mode() -> None:
    enc = HashingEncoder()
    got = icl_concepts_from_responses(["#dog"], CONCEPTS, enc, 1, compat="reference")
    assert len(got) == 1 and len(got[0]) == 1 and got[0][0] in CONCEPTS


# --- adjective filter --------------------------------------------------------------------------

def test_is_yes_rules() -> None:
    assert is_yes("Yes, it can.") and is_yes("It can, yes")
    assert is_yes("No, but it describes the eyes")  # the authors' substring rule
    assert not is_yes("No, but it describes the eyes", "word")
    assert is_yes("Well, yes.", "word") and not is_yes("Well, yes.", "leading")
    assert is_yes("  YES - definitely", "leading") and not is_yes("", "leading")
    with pytest.raises(ValueError, match="rule"):
        is_yes("yes", "maybe")  # type: ignore[arg-type]


def test_llm_is_acoustic_asks_each_word_once() -> None:
    answers = {"loud": "Yes, loudness is acoustic.", "green": "No, it is a colour.",
               "muffled": "Yes."}

    def script(prompt: Prompt) -> str:
        text = prompt[-1]["content"] if isinstance(prompt, list) else prompt
        word = text.split("'")[1]
        return answers[word]

    fake = FakeLLM(script)
    words = ["loud", "green", "'loud'", "muffled", "loud ", "green"]
    verdicts = llm_is_acoustic(words, fake)
    assert verdicts == {"loud": True, "green": False, "'loud'": True, "muffled": True,
                        "loud ": True}
    assert fake.calls == 1 and len(fake.prompts) == 3
    assert adjective_responses([], fake) == {}
    with pytest.raises(ValueError, match=r"words\[1\] is empty"):
        llm_is_acoustic(["loud", "''"], fake)
    with pytest.raises(ValueError, match="words must be a list"):
        llm_is_acoustic("loud", fake)


def test_llm_is_acoustic_reference_prompt_and_rule() -> None:
    fake = FakeLLM(lambda p: "No. It describes eyes.")
    assert llm_is_acoustic(["blue"], fake, compat="reference", fmt="llama2") == {"blue": True}
    assert isinstance(fake.prompts[0], str) and "Answer(yes or no):" in fake.prompts[0]
    assert llm_is_acoustic(["blue"], fake, rule="leading") == {"blue": False}
