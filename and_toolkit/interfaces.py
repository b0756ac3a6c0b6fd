"""The neutral contracts between backends (model loaders) and transforms (dissection, experiments).

``backends/`` implements these Protocols; ``dissect/``, ``experiments/`` and ``pipeline/`` accept
any object that satisfies them. Neither side imports the other: both import this module, which
depends only on the standard library, numpy and pydantic.

Contents:

- prompts: :class:`ChatMessage`, :data:`Prompt`, :func:`validate_prompt`, :func:`prompt_text`,
  :func:`prompt_sha256` (the prompt *builders* live in :mod:`and_toolkit.dissect.prompts`);
- decoding: :class:`Sampling`;
- helpers both sides need: :func:`l2_normalise`;
- backend Protocols: :class:`TextEncoder`, :class:`Tagger` (with :class:`TaggedToken`),
  :class:`LLM`, :class:`Captioner` (with its default instruction :data:`CAPTION_PROMPT`) and
  :class:`AudioTextEncoder`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import NamedTuple, Protocol, TypedDict, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

# --- prompts -----------------------------------------------------------------------------------


class ChatMessage(TypedDict):
    """One chat turn.

    Attributes:
        role: "system", "user" or "assistant".
        content: the turn's text.
    """

    role: str
    content: str


Prompt = str | list[ChatMessage]
"""A raw string (fed to the model verbatim) or chat messages (rendered by its chat template)."""

_ROLES = ("system", "user", "assistant")


def validate_prompt(prompt: Prompt) -> Prompt:
    """Check that ``prompt`` is a string or a non-empty list of well-formed chat messages.

    Args:
        prompt: a prompt.

    Returns:
        The same prompt.

    Raises:
        ValueError: naming the offending message and field.
    """
    if isinstance(prompt, str):
        return prompt
    if not isinstance(prompt, list) or not prompt:
        raise ValueError("prompt must be a string or a non-empty list of chat messages")
    for i, m in enumerate(prompt):
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            raise ValueError(f"prompt[{i}] must be a dict with exactly 'role' and 'content'")
        if m["role"] not in _ROLES:
            raise ValueError(f"prompt[{i}].role is {m['role']!r}, expected one of {_ROLES}")
        if not isinstance(m["content"], str):
            raise ValueError(f"prompt[{i}].content must be a string")
    return prompt


def prompt_text(prompt: Prompt) -> str:
    """Canonical text of a prompt (for hashing and storage).

    A raw string is returned as is; chat messages become the canonical JSON
    ``[{"content": ..., "role": ...}, ...]`` (sorted keys, no whitespace, UTF-8) prefixed with
    ``"chat:"`` so a raw string can never collide with a message list.

    Args:
        prompt: a prompt.

    Returns:
        The canonical text.

    Raises:
        ValueError: if the prompt is malformed (see :func:`validate_prompt`).
    """
    validate_prompt(prompt)
    if isinstance(prompt, str):
        return prompt
    return "chat:" + json.dumps(prompt, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def prompt_sha256(prompt: Prompt) -> str:
    """sha256 hex digest of :func:`prompt_text` (UTF-8).

    Args:
        prompt: a prompt.

    Returns:
        64 lower-case hex characters.
    """
    return hashlib.sha256(prompt_text(prompt).encode("utf-8")).hexdigest()


# --- decoding ----------------------------------------------------------------------------------


class Sampling(BaseModel):
    """Decoding parameters of one generation request.

    Attributes:
        temperature: softmax temperature; 0 means greedy decoding (the default).
        top_p: nucleus mass kept when sampling, in (0, 1]; ignored when greedy.
        max_new_tokens: upper bound on generated tokens (>= 1).
        seed: base seed of sampled decoding (per-prompt seeds derive from it); ignored when
            greedy.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(default=0.0, ge=0.0, le=10.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(default=256, ge=1)
    seed: int = Field(default=0, ge=0)

    @property
    def greedy(self) -> bool:
        """True when decoding is greedy (temperature 0)."""
        return self.temperature == 0.0

    def canonical(self) -> Sampling:
        """The same decoding with the fields that cannot matter reset (seed, top_p if greedy)."""
        if self.greedy:
            return Sampling(temperature=0.0, top_p=1.0, max_new_tokens=self.max_new_tokens, seed=0)
        return self


# --- helpers -----------------------------------------------------------------------------------


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation to float32; all-zero rows stay zero.

    Args:
        x: array [n, d].

    Returns:
        float32 array [n, d].
    """
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32, copy=False)


# --- backend protocols -------------------------------------------------------------------------


@runtime_checkable
class TextEncoder(Protocol):
    """A sentence encoder (``id`` may be a plain attribute or a property)."""

    @property
    def id(self) -> str:
        """Stable identifier of the encoder and its weights (records and cache keys)."""
        ...

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``.

        Args:
            texts: n strings (may be empty).

        Returns:
            float32 array [n, d], each row L2-normalised.
        """
        ...


class TaggedToken(NamedTuple):
    """One token and its Penn Treebank tag.

    Attributes:
        text: the token text, as in the input (case preserved).
        tag: Penn Treebank tag, e.g. "JJ".
        n_pieces: tokens of the underlying tokenizer merged into this one (1 normally; 3 for
            "high-pitched" under spaCy). ``sum(n_pieces)`` is spaCy's plain token count.
    """

    text: str
    tag: str
    n_pieces: int = 1


@runtime_checkable
class Tagger(Protocol):
    """A POS tagger (``id`` may be a plain attribute or a property)."""

    @property
    def id(self) -> str:
        """Stable identifier of the tagger (model name and version)."""
        ...

    def tag(self, texts: Sequence[str]) -> list[list[TaggedToken]]:
        """Tokenise and tag each text independently.

        Args:
            texts: n strings.

        Returns:
            n lists of tokens in text order.
        """
        ...


@runtime_checkable
class LLM(Protocol):
    """A text generator.

    Attributes:
        id: stable backend + model identifier (goes into records and cache keys).
        weights_id: fingerprint of the weights (file hash, hub commit, ...); part of cache keys.
    """

    @property
    def id(self) -> str:
        """Stable backend + model identifier."""
        ...

    @property
    def weights_id(self) -> str:
        """Fingerprint of the weights."""
        ...

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[str]:
        """Generate one completion per prompt, in one batched call.

        Args:
            prompts: raw strings (fed verbatim) or chat-message lists (rendered with the
                model's chat template).
            sampling: decoding parameters.

        Returns:
            The generated texts (completion only, special tokens removed), in prompt order.
        """
        ...


#: Captioning instruction of SALMONN (paper App. A.1), also used for Qwen2-Audio: the default
#: ``prompt`` of audio-language captioners.
CAPTION_PROMPT = "Please describe the audio in detail."


@runtime_checkable
class Captioner(Protocol):
    """Audio -> text.

    Attributes:
        id: stable identifier of the captioner and its weights (goes into Caption records).
        prompt: the instruction given to the model ("" if none; audio-LMs default to
            :data:`CAPTION_PROMPT`).
    """

    id: str
    prompt: str

    def caption(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> list[str]:
        """Caption clips.

        Args:
            waveforms: mono clips, each a 1-D float array [n_samples] (samples in [-1, 1]).
            sample_rate: their sampling rate in Hz.

        Returns:
            One caption per clip, in order.
        """
        ...


@runtime_checkable
class AudioTextEncoder(Protocol):
    """A joint audio-text embedding model (CLAP-like).

    Attributes:
        id: stable identifier of the encoder and its weights (goes into records and cache keys).
    """

    id: str

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """Embed texts.

        Args:
            texts: M strings.

        Returns:
            float32 [M, d], rows L2-normalised.
        """
        ...

    def encode_audio(self, waveforms: list[np.ndarray], sample_rate: int) -> np.ndarray:
        """Embed mono waveforms.

        Args:
            waveforms: N 1-D float arrays (amplitude in [-1, 1]), any lengths.
            sample_rate: their common sampling rate in Hz.

        Returns:
            float32 [N, d], rows L2-normalised, in the same space as :meth:`encode_text`.
        """
        ...
