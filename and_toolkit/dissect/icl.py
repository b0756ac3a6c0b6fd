"""LLM-based decisions of Modules A and C: ICL concept selection and the adjective filter.

Reference: reference-spec §3.4 (ICL prompt, response parsing, keyword -> concept mapping),
§6 item 3 (LLM adjective filter), §13 items 9-10 (ask each word once; embed concepts once).

ICL: the LLM reads a neuron's summary and the concept set and names concept(s); the response
is parsed into keywords (:func:`parse_icl_response`) and each keyword is mapped to the nearest
concept by cosine of "This is an audio about {x}" sentences (:func:`map_to_concepts`). Concept
sentences are embedded once per call and all keywords of all responses in one ``encode`` call.

Backends are injected: ``llm`` is any :class:`~and_toolkit.interfaces.LLM` (wrap it in
:class:`~and_toolkit.backends.llm.CachedLLM` to deduplicate and cache), ``encoder`` any object
with ``encode(list[str]) -> np.ndarray [n, d]``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal, Protocol

import numpy as np

from and_toolkit.dissect.prompts import Compat, PromptFormat, adjective_prompt, icl_prompt
from and_toolkit.dissect.text import split_sentences
from and_toolkit.interfaces import LLM, Sampling

#: Sentence template of the keyword -> concept mapping (authors' ``post_process_prediction``).
CONCEPT_TEMPLATE = "This is an audio about {}"

#: Default decoding: greedy, short answers.
ICL_SIMILARITY: dict[int, str] = {1: "icl-top1", 5: "icl-top5"}
"""ConceptSet ``similarity`` of the two ICL runs (top-1 prompt, top-5 prompt)."""
ICL_MAX_TOKENS: dict[int, int] = {1: 32, 5: 64}
"""Greedy decoding budget of the two ICL runs (an answer is one or five class names)."""
ICL_SAMPLING = Sampling(max_new_tokens=128)
ADJECTIVE_SAMPLING = Sampling(max_new_tokens=32)

YesRule = Literal["substring", "word", "leading"]

_DOUBLE = re.compile(r'"([^"]*)"')
_SINGLE = re.compile(r"'([^']*)'")
_EDGE = " \t\n\r.;:!?\"'`"


class SentenceEncoder(Protocol):
    """Anything with ``encode(list[str]) -> float array [n, d]`` (rows L2-normalised)."""

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` as an [n, d] float array."""
        ...


# --- parsing -----------------------------------------------------------------------------------


def _single_quote_spans(text: str) -> list[str]:
    """Spans between paired single quotes, ignoring apostrophes inside words ("it's")."""
    marks = [i for i, ch in enumerate(text) if ch == "'"
             and not (0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum())]
    return [text[a + 1:b] for a, b in zip(marks[::2], marks[1::2], strict=False)]


def _hash_keyword(text: str) -> str | None:
    """Text after the last '#' of the last sentence containing '#' (None if no '#')."""
    found = None
    for sentence in split_sentences(text) or [text]:
        if "#" in sentence:
            found = sentence.split("#")[-1]
    return found


def _clean(keywords: Sequence[str]) -> list[str]:
    out = [k.strip(_EDGE) for k in keywords]
    return [k for k in out if k]


def _parse_reference(text: str, k: int) -> list[str]:
    keywords: list[str] = []
    if "Answer:" in text:
        keywords = text.split("Answer:")[-1].split(",")
    if '"' in text:
        keywords = _DOUBLE.findall(text)
    elif "'" in text:
        keywords = _SINGLE.findall(text)
    elif "#" in text:
        after = _hash_keyword(text)
        if after is not None:
            # The authors assign a string here and later slice it: the first k *characters*.
            return list(after[:k])
    if not keywords:
        keywords = [text]
    return keywords[:k]


def parse_icl_response(text: str, k: int, *, compat: Compat = "paper") -> list[str]:
    """Extract up to ``k`` concept keywords from an ICL response (reference-spec §3.4).

    Order of precedence, later rules overriding earlier ones as in the authors' code:

    1. the text after the last "Answer:", split on commas;
    2. overriding: all double-quoted spans, if the response contains a double quote; else all
       single-quoted spans, if it contains a single quote; else, if it contains "#", the text
       after "#" in the (last) sentence containing one;
    3. if nothing was found: the whole response.

    Then the first ``k`` keywords are kept.

    ``compat="paper"`` (default) fixes the authors' quirks: apostrophes inside words ("it's",
    "dog's") are not quotes; only the first line after "Answer:" is read; a rule applies only
    if it yields a non-empty keyword; keywords are stripped of whitespace, quotes and
    punctuation at their ends and empty ones dropped; the "#" rule yields one keyword; an empty
    response yields no keywords. ``compat="reference"`` reproduces the authors' code, including
    the "#" rule returning the first ``k`` *characters* (their code slices a string).

    Args:
        text: the LLM response.
        k: number of keywords to keep (>= 1).
        compat: "paper" or "reference".

    Returns:
        At most ``k`` keywords, in order.

    Raises:
        ValueError: if ``k < 1`` or ``compat`` is unknown.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if compat == "reference":
        return _parse_reference(text, k)
    if compat != "paper":
        raise ValueError(f"compat must be 'paper' or 'reference', got {compat!r}")
    keywords: list[str] = []
    if "Answer:" in text:
        after = text.split("Answer:")[-1].lstrip()
        keywords = _clean(after.split("\n", 1)[0].split(","))
    quoted = _clean(_DOUBLE.findall(text)) or _clean(_single_quote_spans(text))
    if quoted:
        keywords = quoted
    elif "#" in text:
        keywords = _clean([_hash_keyword(text) or ""]) or keywords
    if not keywords:
        keywords = _clean([text])
    return keywords[:k]


# --- mapping to concepts -----------------------------------------------------------------------


def _unit_rows(x: np.ndarray, what: str, n: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != n:
        raise ValueError(f"{what} must have shape [{n}, d], got {list(x.shape)}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def embed_concepts(concepts: Sequence[str], encoder: SentenceEncoder) -> np.ndarray:
    """Embed "This is an audio about {concept}" for every concept (once per concept set).

    Args:
        concepts: M concept names (non-empty).
        encoder: sentence encoder.

    Returns:
        float32 [M, d], rows L2-normalised.

    Raises:
        ValueError: if ``concepts`` is empty or the encoder returns the wrong shape.
    """
    if isinstance(concepts, str) or len(concepts) == 0:
        raise ValueError("concepts must be a non-empty list of concept names")
    emb = encoder.encode([CONCEPT_TEMPLATE.format(c) for c in concepts])
    return _unit_rows(emb, "concept embeddings", len(concepts))


def map_to_concepts(keywords: Sequence[str], concepts: Sequence[str], encoder: SentenceEncoder,
                    *, concept_embeddings: np.ndarray | None = None) -> list[str]:
    """Map each keyword to the concept whose sentence is nearest by cosine.

    Sentences are "This is an audio about {x}"; ties go to the earlier concept (as the
    authors' strict ">" scan).

    Args:
        keywords: n keywords (may be empty).
        concepts: M concept names.
        encoder: sentence encoder.
        concept_embeddings: precomputed :func:`embed_concepts` output [M, d] (else computed).

    Returns:
        n concept names (duplicates possible).

    Raises:
        ValueError: on empty ``concepts`` or mis-shaped embeddings.
    """
    if isinstance(keywords, str):
        raise ValueError("keywords must be a list of strings, not a single string")
    if concept_embeddings is None:
        concept_embeddings = embed_concepts(concepts, encoder)
    cemb = _unit_rows(concept_embeddings, "concept_embeddings", len(concepts))
    if len(keywords) == 0:
        return []
    kemb = _unit_rows(encoder.encode([CONCEPT_TEMPLATE.format(k) for k in keywords]),
                      "keyword embeddings", len(keywords))
    if kemb.shape[1] != cemb.shape[1]:
        raise ValueError(f"keyword embeddings have width {kemb.shape[1]}, concept embeddings "
                         f"{cemb.shape[1]}")
    best = np.argmax(kemb @ cemb.T, axis=1)
    return [concepts[int(i)] for i in best]


# --- ICL end to end ----------------------------------------------------------------------------


def icl_prompt_top(k: int) -> Literal[1, 5]:
    """The ICL prompt variant used for ``k`` keywords: top-1 for k = 1, top-5 for 2..5.

    Raises:
        ValueError: if ``k`` is not in 1..5.
    """
    if not 1 <= k <= 5:
        raise ValueError(f"k must be in 1..5 (the ICL prompts ask for 1 or 5 classes), got {k}")
    return 1 if k == 1 else 5


def icl_concepts_from_responses(responses: Sequence[str], concepts: Sequence[str],
                                encoder: SentenceEncoder, k: int, *,
                                compat: Compat = "paper") -> list[list[str]]:
    """Parse ICL responses and map their keywords to concepts.

    Args:
        responses: one LLM response per neuron.
        concepts: the concept set D_c.
        encoder: sentence encoder (concepts embedded once, all keywords in one call).
        k: keywords kept per response.
        compat: parsing mode (see :func:`parse_icl_response`).

    Returns:
        Per response, up to ``k`` concept names (in keyword order, duplicates possible).
    """
    parsed = [parse_icl_response(r, k, compat=compat) for r in responses]
    cemb = embed_concepts(concepts, encoder)
    distinct = list(dict.fromkeys(kw for kws in parsed for kw in kws))
    mapped = dict(zip(distinct, map_to_concepts(distinct, concepts, encoder,
                                                concept_embeddings=cemb), strict=True))
    return [[mapped[kw] for kw in kws] for kws in parsed]


def icl_concepts(summaries: Sequence[str], concepts: Sequence[str], llm: LLM,
                 encoder: SentenceEncoder, k: int, *, sampling: Sampling = ICL_SAMPLING,
                 fmt: PromptFormat = "chat", compat: Compat = "paper") -> list[list[str]]:
    """Closed-set concepts of neurons by in-context learning (Module A, ICL).

    One prompt per summary (:func:`~and_toolkit.dissect.prompts.icl_prompt`, top-1 prompt for
    k = 1, top-5 prompt otherwise), all sent in one ``llm.generate`` call.

    Args:
        summaries: one summary per neuron (the authors used the uncalibrated S_h text).
        concepts: the concept set D_c.
        llm: the LLM (wrap in ``CachedLLM`` to share generations between equal summaries).
        encoder: sentence encoder for the keyword -> concept mapping.
        k: concepts per neuron (1..5).
        sampling: decoding (default greedy, 128 tokens; authors: ``AUTHORS_SAMPLING["icl"]``).
        fmt: prompt format ("chat" or "llama2").
        compat: prompt text and parsing mode ("paper" or "reference").

    Returns:
        Per summary, up to ``k`` concept names.

    Raises:
        ValueError: on bad ``k`` / ``concepts`` or if the LLM returns the wrong count.
    """
    top = icl_prompt_top(k)
    if isinstance(summaries, str):
        raise ValueError("summaries must be a list of strings, not a single string")
    prompts = [icl_prompt(s, concepts, top=top, fmt=fmt, compat=compat) for s in summaries]
    responses = llm.generate(prompts, sampling)
    if len(responses) != len(prompts):
        raise ValueError(f"LLM {llm.id!r} returned {len(responses)} responses for "
                         f"{len(prompts)} prompts")
    return icl_concepts_from_responses(responses, concepts, encoder, k, compat=compat)


# --- adjective filter (Module C) ---------------------------------------------------------------


def is_yes(response: str, rule: YesRule = "substring") -> bool:
    """Decide a yes/no answer.

    Args:
        response: the LLM response.
        rule: "substring" (authors: "yes" anywhere in the lower-cased text, so "eyes" counts),
            "word" (the word "yes" anywhere), "leading" (the first word is "yes").

    Returns:
        The verdict.

    Raises:
        ValueError: if ``rule`` is unknown.
    """
    low = response.lower()
    if rule == "substring":
        return "yes" in low
    if rule == "word":
        return re.search(r"\byes\b", low) is not None
    if rule == "leading":
        words = re.findall(r"[a-z]+", low)
        return bool(words) and words[0] == "yes"
    raise ValueError(f"rule must be 'substring', 'word' or 'leading', got {rule!r}")


def _normalise_word(word: str, index: int) -> str:
    norm = word.strip().strip("'").strip()
    if not norm:
        raise ValueError(f"words[{index}] is empty")
    return norm


def adjective_responses(words: Sequence[str], llm: LLM, *,
                        sampling: Sampling = ADJECTIVE_SAMPLING, fmt: PromptFormat = "chat",
                        compat: Compat = "paper") -> dict[str, str]:
    """Ask the LLM, once per distinct word, whether the adjective can describe sound.

    Words are normalised by stripping whitespace and single quotes (the authors strip quotes
    at lookup); all distinct words go in one ``generate`` call.

    Args:
        words: adjectives, duplicates allowed.
        llm: the LLM.
        sampling: decoding (default greedy, 32 tokens; authors: ``AUTHORS_SAMPLING["adjective"]``).
        fmt: prompt format.
        compat: prompt wording ("paper" or "reference").

    Returns:
        Normalised word -> raw response, in first-seen order.

    Raises:
        ValueError: if a word is empty or the LLM returns the wrong count.
    """
    if isinstance(words, str):
        raise ValueError("words must be a list of strings, not a single string")
    distinct = list(dict.fromkeys(_normalise_word(w, i) for i, w in enumerate(words)))
    if not distinct:
        return {}
    responses = llm.generate([adjective_prompt(w, fmt=fmt, compat=compat) for w in distinct],
                             sampling)
    if len(responses) != len(distinct):
        raise ValueError(f"LLM {llm.id!r} returned {len(responses)} responses for "
                         f"{len(distinct)} words")
    return dict(zip(distinct, responses, strict=True))


def llm_is_acoustic(words: Sequence[str], llm: LLM, *, sampling: Sampling = ADJECTIVE_SAMPLING,
                    fmt: PromptFormat = "chat", compat: Compat = "paper",
                    rule: YesRule = "substring") -> dict[str, bool]:
    """LLM adjective filter: is each word an acoustic adjective? (each distinct word asked once)

    Args:
        words: adjectives, duplicates allowed.
        llm: the LLM.
        sampling: decoding parameters.
        fmt: prompt format.
        compat: prompt wording.
        rule: yes/no decision (default: the authors' "yes" substring).

    Returns:
        Every input word (as given) -> verdict.
    """
    responses = adjective_responses(words, llm, sampling=sampling, fmt=fmt, compat=compat)
    return {w: is_yes(responses[_normalise_word(w, i)], rule) for i, w in enumerate(words)}
