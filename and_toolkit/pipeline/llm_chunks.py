"""Chunked LLM generation of the per-neuron LLM stages (ICL, the LLM summariser), on either engine.

A stage cuts its prompts into chunks (the unit of caching: a killed run loses at most one
chunk) and asks for one backend ``generate`` call per chunk through the cached backend
(:class:`~and_toolkit.backends.llm.CachedLLM`), which looks each distinct prompt up in the
cache and sends the misses to the backend **in one batch**. A greedy completion can depend on
its batch (padding, the backend's kept prefix), so the Ray engine must send the backend the
very batches the local loop sends:

- local engine: the chunks in order through the process's backend (the original loop);
- Ray engine: each chunk keeps only its prompts that no earlier chunk asked
  (:func:`first_seen`); locally those are exactly the prompts that can miss the cache in that
  chunk (earlier chunks' prompts were just cached), and the reduced chunks share no prompt, so
  what other actors write meanwhile cannot change a chunk's misses. Every reduced chunk goes to
  an LLM actor (:meth:`~and_toolkit.pipeline.engine.Engine.generate`) and the completions are
  put back in the full chunks by prompt.

Either way the returned completions, and the records built from them, are the same; the
request counters match too (:func:`chunked_generation`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from and_toolkit.interfaces import Prompt, Sampling, prompt_sha256
from and_toolkit.pipeline.backends import LLMSource, llm
from and_toolkit.pipeline.context import Context

Chunk = tuple[Sequence[Prompt], Sampling]
"""One backend call: prompts and their decoding."""


def _key(prompt: Prompt, sampling: Sampling) -> tuple[str, str]:
    return prompt_sha256(prompt), sampling.canonical().model_dump_json()


def first_seen(chunks: Sequence[Chunk]) -> list[list[Prompt]]:
    """Per chunk, its distinct prompts no earlier chunk holds (first-occurrence order)."""
    seen: set[tuple[str, str]] = set()
    out: list[list[Prompt]] = []
    for prompts, sampling in chunks:
        new: list[Prompt] = []
        for p in prompts:
            k = _key(p, sampling)
            if k not in seen:
                seen.add(k)
                new.append(p)
        out.append(new)
    return out


def chunked_generation(ctx: Context, stage: str, name: str, chunks: Sequence[Chunk],
                       desc: str, lookup_drafts: int = 0
                       ) -> tuple[list[list[str]], dict[str, Any], str]:
    """Completions of every chunk, through the run's engine (see the module docstring).

    Args:
        ctx: the run context (engine, cache, progress).
        stage: the stage asking (its ``[execution]`` resources apply under Ray).
        name: the LLM backend name (``closed.icl_llm``, ``summaries.llm``).
        chunks: backend calls, in order.
        desc: progress-bar label (local engine).
        lookup_drafts: prompt-lookup decoding's draft length (0: off; ``closed.icl_lookup_drafts``).

    Returns:
        (completions per chunk in prompt order, request counters of this call as the local
        :class:`~and_toolkit.backends.llm.RequestStats` plus, when this call loaded the local
        engine's deferred weights, ``llm_load_s`` (wall seconds of the load), backend id).

    Raises:
        StageNotRun: the backend cannot be loaded.
    """
    engine = ctx.engine()
    unique = sum(len({_key(p, s) for p in ps}) for ps, s in chunks)
    requested = sum(len(ps) for ps, _ in chunks)
    load_s = None
    if engine.name == "local":
        model = llm(ctx, name, lookup_drafts)
        before = model.stats.generated
        deferred = getattr(model, "inner", None)  # a DeferredLLM times its own load
        unloaded = getattr(deferred, "load_s", None) is None
        texts = [list(model.generate(list(ps), s))
                 for ps, s in tqdm(chunks, desc=desc, unit="chunk", disable=not ctx.progress)]
        generated, backend_id = model.stats.generated - before, str(model.id)
        load_s = getattr(deferred, "load_s", None) if unloaded else None
    else:
        new = first_seen(chunks)
        todo = [i for i, ps in enumerate(new) if ps]
        result = engine.generate(stage, LLMSource(name, ctx.cache, lookup_drafts),
                                 [(new[i], chunks[i][1]) for i in todo])
        found: dict[tuple[str, str], str] = {}
        for i, outs in zip(todo, result.texts, strict=True):
            found.update({_key(p, chunks[i][1]): t for p, t in zip(new[i], outs, strict=True)})
        texts = [[found[_key(p, s)] for p in ps] for ps, s in chunks]
        generated, backend_id = result.generated, result.backend_id
    stats: dict[str, Any] = {"requested": requested, "unique": unique,
                             "cache_hits": unique - generated, "generated": generated,
                             "calls": len(chunks)}
    if isinstance(load_s, float):
        stats["llm_load_s"] = round(load_s, 2)
    return texts, stats, backend_id


def chunks_of(prompts: Sequence[Any], size: int) -> list[list[Any]]:
    """``prompts`` cut every ``size`` items."""
    return [list(prompts[i:i + size]) for i in range(0, len(prompts), size)]
