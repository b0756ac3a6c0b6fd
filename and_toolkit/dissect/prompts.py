"""Every LLM prompt of the dissection, built in one place by pure functions.

Reference: reference-spec §3.4 (ICL), §4 (summaries), §6 item 3 (adjective filter); paper
Appendix A.2-A.3 and Table 5.

A prompt is either a raw string (fed to the model verbatim, no chat template) or a list of chat
messages (rendered by the model's own chat template); the :data:`~and_toolkit.interfaces.Prompt`
type, its validation and its hash live in :mod:`and_toolkit.interfaces`, next to the ``LLM``
protocol, and so does the captioners' default instruction (App. A.1,
:data:`~and_toolkit.interfaces.CAPTION_PROMPT`). Two knobs:

- ``fmt="chat"`` (default) returns messages for chat-template models; ``fmt="llama2"`` returns
  one string in the Llama-2 chat format with literal ``<s>``, ``[INST]``, ``<<SYS>>`` tags, as
  the authors fed vLLM.
- ``compat="paper"`` (default) uses the paper's wording (Table 5, App. A.2) with the authors'
  typos fixed; ``compat="reference"`` keeps the authors' code text: typos ("a car meowing",
  "Answer: soring", "mentions All of ... meowing'."), underscored example class names, and,
  with ``fmt="llama2"``, the exact whitespace of their source (tabs and spaces that Python line
  continuations put inside the string literals).

Fixes in the default top-5 ICL example: the second example's answer listed
'zombie growling and snarling' right after the response said it is not in the class set; it is
replaced by 'sneezing' (another ESC-50 class), and the instruction's grammar is fixed
("match ... and give the reason").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from and_toolkit.interfaces import ChatMessage, Prompt

Compat = Literal["paper", "reference"]
PromptFormat = Literal["chat", "llama2"]

#: Summary instruction (paper App. A.2 and the authors' code, identical).
SUMMARY_INSTRUCTION = (
    "Here are descriptions of some audio clips. Please summarize these descriptions by "
    "identifying their commonalities.")

#: Adjective question, paper wording (App. A.2) with the word inserted.
ADJECTIVE_QUESTION = (
    "Can the adjective '{word}' be used to describe the tone, emotion, or acoustic features of "
    "audio, music, or any other form of sound?")

# --- ICL few-shot material (paper Table 5; reference = ICL.py) --------------------------------

_ICL_INSTRUCTION_TOP1 = (
    "The following is a description about some audio clips. Based on the description, select a "
    "classname out of the above classnames that matches the description most.")
_ICL_INSTRUCTION_TOP5 = {
    "paper": (
        "The following is a description about some audio clips. Based on the description, "
        "select 5 classnames out of the above classnames that match the description most and "
        "give the reason. There should be exactly 5 answers."),
    "reference": (
        "The following is a description about some audio clips. Based on the description, "
        "select 5 classnames out of the above classnames that matches the description most and "
        "given the reason. There should be exactly 5 answers. "),
}
_EX1_TAIL = (
    "All of the clips contain the sound of a cat meowing. Loud sound: These clips are all of loud "
    "sound but with varying degrees of intensity. Repetitive barking: Clips 1 and 4 are "
    "repetitive, with the cat meowing multiple times in each clip. Poor audio quality: All clips "
    "have poor audio quality, with either distortion, muffling, or apparent background noises.")
_EX1_RESPONSE = {
    "paper": ("We know these clips are about the class 'cat' in the concept set. We can get this "
              "answer since the description mentions All of the clips contain the sound of a cat "
              "meowing."),
    "reference": ("We know these clips are about the class 'cat' in the concept set. We can get "
                  "this answer since the description mentions All of the clips contain the sound "
                  "of a cat meowing'."),
}
_EX2_DESCRIPTION = (
    "They all feature a person snoring loudly. The snoring starts off slow and gets louder over "
    "time. The audio is recorded in mono. There are no other sounds in the background. The "
    "snoring is described as loud and intense. The audio clips differ in the following ways. The "
    "first clip features a man snoring, while the second and fourth clips feature a person "
    "snoring (gender not specified). The third clip features a zombie growling and snarling, "
    "while the other clips only feature snoring. The third clip is described as scary and "
    "creepy, while the other clips are not. The third clip is intended for use in a horror movie "
    "or zombie video game, while the other clips do not have specific intended uses stated. The "
    "third clip is of poor quality, while the other clips are not specified as such.")
_EX2_RESPONSE = (
    "Based on the description, the most suitable classname for the audio clips would be "
    "'snoring' or '{z}'. Both of these classnames match the description of loud sounds with a "
    "strong emotional impact, specifically fear and terror. But '{z}' is not in the given "
    "classname set. So the answer is 'snoring'")
_ZOMBIE = {"paper": "zombie growling and snarling", "reference": "zombie_growling_and_snarling"}
_ANSWERS: dict[tuple[int, str], tuple[str, str]] = {
    (1, "paper"): ("cat", "snoring"),
    (1, "reference"): ("cat", "soring"),
    (5, "paper"): ("cat, sheep, snoring, cow, coughing",
                   "snoring, breathing, footsteps, coughing, sneezing"),
    (5, "reference"): ("cat, sheep, snoring, cow, coughing",
                       "snoring, zombie_growling_and_snarling, breathing, footsteps, coughing"),
}


def _check_compat_fmt(compat: str, fmt: str) -> None:
    if compat not in ("paper", "reference"):
        raise ValueError(f"compat must be 'paper' or 'reference', got {compat!r}")
    if fmt not in ("chat", "llama2"):
        raise ValueError(f"fmt must be 'chat' or 'llama2', got {fmt!r}")


def _msg(role: str, content: str) -> ChatMessage:
    return {"role": role, "content": content}


def llama2_render(messages: Sequence[ChatMessage]) -> str:
    """Render chat messages in the Llama-2 chat format (clean whitespace).

    ``<s>[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user} [/INST] {assistant} </s><s>[INST] ...``;
    an empty or missing system turn omits the ``<<SYS>>`` block. Ends with an open assistant
    turn (after ``[/INST]``).

    Args:
        messages: an optional leading system turn, then alternating user / assistant turns
            starting and ending with a user turn.

    Returns:
        The prompt string.

    Raises:
        ValueError: if the roles do not follow that pattern.
    """
    msgs = list(messages)
    system = ""
    if msgs and msgs[0]["role"] == "system":
        system = msgs.pop(0)["content"]
    if not msgs or len(msgs) % 2 == 0:
        raise ValueError("messages must alternate user/assistant and end with a user turn")
    out = ""
    for i, m in enumerate(msgs):
        want = "user" if i % 2 == 0 else "assistant"
        if m["role"] != want:
            raise ValueError(f"messages[{i}].role is {m['role']!r}, expected {want!r}")
        if want == "user":
            body = m["content"]
            if i == 0 and system:
                body = f"<<SYS>>\n{system}\n<</SYS>>\n\n{body}"
            out += f"<s>[INST] {body} [/INST]"
        else:
            out += f" {m['content']} </s>"
    return out


def _finish(messages: list[ChatMessage], fmt: PromptFormat) -> Prompt:
    return messages if fmt == "chat" else llama2_render(messages)


# --- summaries (§4) ----------------------------------------------------------------------------


def summary_prompt(captions: Sequence[str], *, fmt: PromptFormat = "chat",
                   compat: Compat = "paper") -> Prompt:
    """Prompt asking an LLM to summarise the K captions of a neuron's top (or bottom) clips.

    The captions are joined with newlines, without numbering, in the given order (descending
    activation for S_h, ascending for S_l); the instruction is the system turn and the captions
    the user turn, as in the authors' code.

    Args:
        captions: K caption texts (non-empty list).
        fmt: "chat" (messages) or "llama2" (one string).
        compat: "reference" with fmt="llama2" gives the authors' exact string (tabs included).

    Returns:
        The prompt.

    Raises:
        ValueError: if ``captions`` is empty or a single string, or a knob is unknown.
    """
    _check_compat_fmt(compat, fmt)
    if isinstance(captions, str) or len(captions) == 0:
        raise ValueError("captions must be a non-empty list of strings")
    joined = "\n".join(captions)
    if fmt == "llama2" and compat == "reference":
        return (f"<s>[INST] <<SYS>>\n \t{SUMMARY_INSTRUCTION} \t<</SYS>>\n\n  \t{joined}  "
                "\t[/INST]")
    return _finish([_msg("system", SUMMARY_INSTRUCTION), _msg("user", joined)], fmt)


# --- adjective filter (§6.3) -------------------------------------------------------------------


def adjective_prompt(word: str, *, fmt: PromptFormat = "chat", compat: Compat = "paper") -> Prompt:
    """Prompt asking whether an adjective can describe sound (Module C's LLM filter).

    Paper wording (default): the question then "Answer yes or no and give the reason." as the
    only (user) turn. Reference wording: the question, "Answer(yes or no):" and "Reason:" lines
    after an empty system block.

    Args:
        word: the adjective (inserted between single quotes).
        fmt: "chat" or "llama2".
        compat: "paper" or "reference".

    Returns:
        The prompt.

    Raises:
        ValueError: if ``word`` is empty or a knob is unknown.
    """
    _check_compat_fmt(compat, fmt)
    if not word.strip():
        raise ValueError("word must be a non-empty string")
    question = ADJECTIVE_QUESTION.format(word=word)
    if compat == "reference":
        if fmt == "llama2":
            return (f"<s>[INST] <<SYS>>\n\t<</SYS>>\n\n \t{question}\n \tAnswer(yes or no):\n"
                    "\tReason:\t[/INST]")
        return [_msg("system", ""), _msg("user", f"{question}\nAnswer(yes or no):\nReason:")]
    return _finish([_msg("user", f"{question} Answer yes or no and give the reason.")], fmt)


# --- ICL (§3.4, Table 5) -----------------------------------------------------------------------


def _icl_reference_llama2(summary: str, concepts: str, top: int) -> str:
    """The authors' exact ICL string (two tabs of source indentation inside the literal)."""
    t = "\t\t"
    instr = _ICL_INSTRUCTION_TOP1 + " " if top == 1 else _ICL_INSTRUCTION_TOP5["reference"] + " "
    animal = "car" if top == 1 else "cat"
    a1, a2 = _ANSWERS[(top, "reference")]
    a2_end = "" if top == 5 else " "
    ex2 = _EX2_RESPONSE.format(z=_ZOMBIE["reference"])
    return (
        f"<s>[INST] <<SYS>>\n{t}You have a set of object classnames: {t}{concepts} {t}\n "
        f"{t}{instr}{t}<</SYS>>\n\n {t}The audio features a {animal} meowing: {_EX1_TAIL} "
        f"{t}[/INST] {t}{_EX1_RESPONSE['reference']} \n {t}Answer: {a1} {t}</s><s>[INST] "
        f"{t}{_EX2_DESCRIPTION} {t}[/INST] {t}{ex2} {t}Answer: {a2}{a2_end}{t}</s><s>[INST] "
        f"{t}{summary} {t}[/INST]")


def icl_prompt(summary: str, concepts: Sequence[str], *, top: Literal[1, 5] = 1,
               fmt: PromptFormat = "chat", compat: Compat = "paper") -> Prompt:
    """In-context-learning prompt asking an LLM to pick concept(s) matching a summary.

    System turn: the concept list (names verbatim, joined with ", ") and the instruction; then
    the two few-shot examples of paper Table 5 (user = description, assistant = response and an
    "Answer:" line), then the neuron's summary as the last user turn.

    Args:
        summary: the neuron's summary text (the authors used the uncalibrated S_h).
        concepts: the concept set D_c (non-empty).
        top: 1 (pick one class) or 5 (pick exactly five).
        fmt: "chat" or "llama2".
        compat: "paper" (typos fixed) or "reference" (authors' text).

    Returns:
        The prompt.

    Raises:
        ValueError: if ``concepts`` is empty, ``top`` is not 1 or 5, or a knob is unknown.
    """
    _check_compat_fmt(compat, fmt)
    if isinstance(concepts, str) or len(concepts) == 0:
        raise ValueError("concepts must be a non-empty list of concept names")
    if top not in (1, 5):
        raise ValueError(f"top must be 1 or 5, got {top!r}")
    names = ", ".join(concepts)
    if fmt == "llama2" and compat == "reference":
        return _icl_reference_llama2(summary, names, top)
    instr = _ICL_INSTRUCTION_TOP1 if top == 1 else _ICL_INSTRUCTION_TOP5[compat]
    if compat == "reference":
        instr = instr.rstrip()
    animal = "car" if (compat == "reference" and top == 1) else "cat"
    a1, a2 = _ANSWERS[(top, compat)]
    messages = [
        _msg("system", f"You have a set of object classnames: {names}\n{instr}"),
        _msg("user", f"The audio features a {animal} meowing: {_EX1_TAIL}"),
        _msg("assistant", f"{_EX1_RESPONSE[compat]}\nAnswer: {a1}"),
        _msg("user", _EX2_DESCRIPTION),
        _msg("assistant", f"{_EX2_RESPONSE.format(z=_ZOMBIE[compat])}\nAnswer: {a2}"),
        _msg("user", summary),
    ]
    return _finish(messages, fmt)
