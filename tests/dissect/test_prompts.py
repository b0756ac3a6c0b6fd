"""Prompt builders: exact strings pinned (inline for the authors' text, YAML catalogue for all)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from and_toolkit.dissect.prompts import (
    adjective_prompt,
    icl_prompt,
    llama2_render,
    summary_prompt,
)
from and_toolkit.interfaces import prompt_sha256, prompt_text, validate_prompt

CONCEPTS = ["dog", "water_drops", "cat"]
CAPTIONS = ["A dog barks twice.", "A dog growls."]

# The authors' strings, restated character by character (the tabs and spaces come from Python
# line continuations inside their string literals; checked against their source).
REFERENCE_SUMMARY = (
    "<s>[INST] <<SYS>>\n \tHere are descriptions of some audio clips. Please summarize these "
    "descriptions by identifying their commonalities. \t<</SYS>>\n\n  \tA dog barks twice.\n"
    "A dog growls.  \t[/INST]")
REFERENCE_ADJECTIVE = (
    "<s>[INST] <<SYS>>\n\t<</SYS>>\n\n \tCan the adjective 'loud' be used to describe the tone, "
    "emotion, or acoustic features of audio, music, or any other form of sound?\n \tAnswer(yes "
    "or no):\n\tReason:\t[/INST]")


def test_reference_summary_exact() -> None:
    assert summary_prompt(CAPTIONS, fmt="llama2", compat="reference") == REFERENCE_SUMMARY


def test_reference_adjective_exact() -> None:
    assert adjective_prompt("loud", fmt="llama2", compat="reference") == REFERENCE_ADJECTIVE


def test_reference_icl_strings() -> None:
    p1 = icl_prompt("SUMMARY", CONCEPTS, top=1, fmt="llama2", compat="reference")
    p5 = icl_prompt("SUMMARY", CONCEPTS, top=5, fmt="llama2", compat="reference")
    assert isinstance(p1, str) and isinstance(p5, str)
    assert p1.startswith("<s>[INST] <<SYS>>\n\t\tYou have a set of object classnames: "
                         "\t\tdog, water_drops, cat \t\t\n \t\tThe following is a description")
    assert p1.endswith("\t\t</s><s>[INST] \t\tSUMMARY \t\t[/INST]")
    # the authors' typos survive in the reference variant only
    assert "The audio features a car meowing:" in p1
    assert "Answer: soring \t\t</s>" in p1
    assert "cat meowing'. \n \t\tAnswer: cat \t\t</s>" in p1
    assert "'zombie_growling_and_snarling'" in p1
    assert "The audio features a cat meowing:" in p5
    assert "matches the description most and given the reason. There should be exactly 5 " \
           "answers.  \t\t<</SYS>>" in p5
    assert "Answer: snoring, zombie_growling_and_snarling, breathing, footsteps, coughing" \
           "\t\t</s>" in p5
    assert len(p1) == 2081 and len(p5) == 2232
    assert prompt_sha256(p1) == hashlib.sha256(p1.encode()).hexdigest()


def test_paper_icl_fixes_typos() -> None:
    tops: list[Any] = [1, 5]
    fmts: list[Any] = ["chat", "llama2"]
    for top in tops:
        for fmt in fmts:
            text = prompt_text(icl_prompt("S", CONCEPTS, top=top, fmt=fmt))
            assert "car meowing" not in text and "soring" not in text
            assert "meowing'." not in text and "zombie_growling" not in text
            assert "zombie growling and snarling" in text


def test_icl_chat_structure() -> None:
    msgs = icl_prompt("the summary", CONCEPTS, top=5)
    assert isinstance(msgs, list)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert msgs[0]["content"] == (
        "You have a set of object classnames: dog, water_drops, cat\nThe following is a "
        "description about some audio clips. Based on the description, select 5 classnames out "
        "of the above classnames that match the description most and give the reason. There "
        "should be exactly 5 answers.")
    assert msgs[2]["content"].endswith("\nAnswer: cat, sheep, snoring, cow, coughing")
    assert msgs[4]["content"].endswith(
        "\nAnswer: snoring, breathing, footsteps, coughing, sneezing")
    assert msgs[-1]["content"] == "the summary"


def test_summary_and_adjective_paper_wording() -> None:
    assert summary_prompt(CAPTIONS) == [
        {"role": "system", "content": "Here are descriptions of some audio clips. Please "
                                      "summarize these descriptions by identifying their "
                                      "commonalities."},
        {"role": "user", "content": "A dog barks twice.\nA dog growls."}]
    assert summary_prompt(CAPTIONS, fmt="llama2") == (
        "<s>[INST] <<SYS>>\nHere are descriptions of some audio clips. Please summarize these "
        "descriptions by identifying their commonalities.\n<</SYS>>\n\nA dog barks twice.\n"
        "A dog growls. [/INST]")
    assert adjective_prompt("muffled") == [{"role": "user", "content": (
        "Can the adjective 'muffled' be used to describe the tone, emotion, or acoustic features "
        "of audio, music, or any other form of sound? Answer yes or no and give the reason.")}]
    ref_chat: Any = adjective_prompt("loud", compat="reference")
    assert ref_chat[0] == {"role": "system", "content": ""}
    assert ref_chat[1]["content"].endswith("sound?\nAnswer(yes or no):\nReason:")


def test_llama2_render() -> None:
    msgs: list[Any] = [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"},
                       {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"}]
    assert llama2_render(msgs) == \
        "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST] A1 </s><s>[INST] U2 [/INST]"
    assert llama2_render(msgs[1:2]) == "<s>[INST] U1 [/INST]"
    with pytest.raises(ValueError, match="end with a user turn"):
        llama2_render(msgs[:3])
    with pytest.raises(ValueError, match=r"messages\[1\].role"):
        llama2_render([msgs[1], msgs[1], msgs[1]])


def test_prompt_sha256() -> None:
    assert prompt_sha256("abc") == \
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    chat: Any = [{"role": "user", "content": "abc"}]
    assert prompt_text(chat) == 'chat:[{"content":"abc","role":"user"}]'
    assert prompt_sha256(chat) != prompt_sha256("abc")
    assert prompt_sha256([{"content": "abc", "role": "user"}]) == prompt_sha256(chat)


def test_validation_errors() -> None:
    with pytest.raises(ValueError, match="captions"):
        summary_prompt([])
    with pytest.raises(ValueError, match="captions"):
        summary_prompt("a single string")
    with pytest.raises(ValueError, match="concepts"):
        icl_prompt("s", [])
    with pytest.raises(ValueError, match="top"):
        icl_prompt("s", CONCEPTS, top=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="compat"):
        icl_prompt("s", CONCEPTS, compat="authors")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fmt"):
        summary_prompt(CAPTIONS, fmt="alpaca")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="word"):
        adjective_prompt("  ")
    with pytest.raises(ValueError, match=r"prompt\[0\].role"):
        validate_prompt([{"role": "bot", "content": "x"}])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"prompt\[0\]"):
        validate_prompt([{"role": "user"}])  # type: ignore[list-item, typeddict-item]
    with pytest.raises(ValueError, match="non-empty list"):
        validate_prompt([])


def test_prompt_catalogue(data_regression: Any) -> None:
    """Every prompt variant, pinned in tests/dissect/test_prompts/test_prompt_catalogue.yml."""
    out: dict[str, Any] = {}
    compats: list[Any] = ["paper", "reference"]
    fmts: list[Any] = ["chat", "llama2"]
    tops: list[Any] = [1, 5]
    for compat in compats:
        for fmt in fmts:
            key = f"{compat}-{fmt}"
            out[f"summary-{key}"] = summary_prompt(CAPTIONS, fmt=fmt, compat=compat)
            out[f"adjective-{key}"] = adjective_prompt("loud", fmt=fmt, compat=compat)
            for top in tops:
                out[f"icl{top}-{key}"] = icl_prompt("SUMMARY", CONCEPTS, top=top, fmt=fmt,
                                                    compat=compat)
    out["sha256"] = {k: prompt_sha256(v) for k, v in out.items()}
    data_regression.check(out)
