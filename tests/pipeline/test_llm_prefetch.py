"""The LLM's weights load in the background while the closed stage runs DB and TAB."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from and_toolkit.backends.llm import CachedLLM, DeferredLLM, FakeLLM, MemoryCache, last_user_text
from and_toolkit.errors import StageNotRun
from and_toolkit.interfaces import Sampling
from and_toolkit.pipeline.llm_chunks import chunked_generation, prefetch_llm


class SlowLoad:
    """A DeferredLLM load that takes ``seconds`` and records the thread it ran in."""

    def __init__(self, seconds: float = 0.2, error: Exception | None = None) -> None:
        self.seconds, self.error = seconds, error
        self.threads: list[str] = []

    def __call__(self) -> FakeLLM:
        self.threads.append(threading.current_thread().name)
        time.sleep(self.seconds)
        if self.error is not None:
            raise self.error
        return FakeLLM(lambda p: f"<{last_user_text(p)}>")


def _ctx(model: Any, engine: str = "local") -> Any:
    """The parts of a Context that llm_chunks reads (engine, per-process backends, progress)."""
    return SimpleNamespace(engine=lambda: SimpleNamespace(name=engine),
                           backend=lambda key, factory: model, progress=False)


def test_prefetch_loads_in_the_background_once() -> None:
    load = SlowLoad()
    deferred = DeferredLLM("fake", "fake", load)
    assert deferred.prefetch() and not deferred.prefetch()  # one load thread
    llm = CachedLLM(deferred, MemoryCache())
    assert llm.generate(["a", "b"], Sampling()) == ["<a>", "<b>"]  # waits for the load
    assert load.threads == ["llm-prefetch"] and deferred.prefetched
    assert deferred.load_s is not None and deferred.load_s >= 0.2
    assert not deferred.prefetch()  # loaded: nothing to start


def test_a_failed_prefetch_is_raised_where_the_backend_is_asked_for() -> None:
    deferred = DeferredLLM("fake", "fake", SlowLoad(0.0, StageNotRun("weights missing")))
    assert deferred.prefetch()
    with pytest.raises(StageNotRun, match="weights missing"):
        CachedLLM(deferred).generate(["a"], Sampling())


def test_misses_counts_distinct_uncached_prompts() -> None:
    cache = MemoryCache()
    CachedLLM(FakeLLM(lambda p: "x"), cache).generate(["a"], Sampling())
    llm = CachedLLM(DeferredLLM("fake", "fake", SlowLoad()), cache)
    assert llm.misses(["a", "b", "b", "c"], Sampling()) == 2
    assert llm.misses(["a"], Sampling()) == 0
    assert llm.inner.loaded is None  # counting loads nothing


def test_prefetch_llm_starts_only_when_a_prompt_will_miss() -> None:
    cache = MemoryCache()
    CachedLLM(FakeLLM(lambda p: f"<{last_user_text(p)}>"), cache).generate(["a"], Sampling())
    chunks = [(["a"], Sampling())]
    cached = CachedLLM(DeferredLLM("fake", "fake", SlowLoad()), cache)
    assert not prefetch_llm(_ctx(cached), "smollm2", chunks)  # all cached: no load
    assert cached.inner.loaded is None and not cached.inner.prefetched
    missing = CachedLLM(DeferredLLM("fake", "fake", SlowLoad()), cache)
    assert not prefetch_llm(_ctx(missing, engine="ray"), "smollm2", chunks + [(["b"],
                                                                              Sampling())])
    eager = CachedLLM(FakeLLM(lambda p: "x"), cache)  # a backend that loads eagerly
    assert not prefetch_llm(_ctx(eager), "smollm2", [(["b"], Sampling())])

    def unavailable(key: str, factory: Any) -> Any:
        raise StageNotRun("no weights here")

    ctx: Any = SimpleNamespace(engine=lambda: SimpleNamespace(name="local"), backend=unavailable)
    assert not prefetch_llm(ctx, "smollm2", chunks)


def test_a_prefetched_load_is_reported_by_the_generation_it_served() -> None:
    load = SlowLoad()
    model = CachedLLM(DeferredLLM("fake", "fake", load), MemoryCache())
    chunks = [(["a", "b"], Sampling()), (["b", "c"], Sampling())]
    assert prefetch_llm(_ctx(model), "smollm2", chunks)
    time.sleep(0.4)  # the load has finished before generation starts
    texts, stats, backend = chunked_generation(_ctx(model), "closed", "smollm2", chunks,
                                               desc="ICL", prefetched=True)
    assert texts == [["<a>", "<b>"], ["<b>", "<c>"]] and backend == "fake"
    assert stats["generated"] == 3 and stats["llm_load_s"] >= 0.2
    # without prefetched=True an already-loaded backend's load is not this call's
    _, again, _ = chunked_generation(_ctx(model), "closed", "smollm2", [(["d"], Sampling())],
                                     desc="ICL")
    assert "llm_load_s" not in again and again["generated"] == 1
