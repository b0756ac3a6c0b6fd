"""Dissection stages: summaries S_h / S_l, Module B calibration, Module C open concepts.

Each stage runs once per caption variant (:func:`and_toolkit.dissect.captions.caption_variants`):
the imported captions alone (variant "", the paper's setting: ``summaries.parquet``,
``calibrated.parquet``, ConceptSet methods ``OCP`` and ``POS:*``) and, when
``captions.descriptors`` is on, captions + our descriptor sentences (variant "descriptors":
``summaries_descriptors.parquet``, ``calibrated_descriptors.parquet``, ConceptSet method
``OCP+descriptors``, adjectives only). Module A (closed concepts) lives in
:mod:`and_toolkit.pipeline.closed_stage`.
"""

from __future__ import annotations

import json
import time
from typing import Any

import polars as pl
from tqdm.auto import tqdm

from and_toolkit.pipeline.backends import llm, tagger, text_encoder
from and_toolkit.pipeline.context import Context
from and_toolkit.records.models import (
    CAPTION_VARIANTS,
    NEURON_KEY,
    POS_METHODS,
    CalibratedSummary,
    ConceptSet,
    Summary,
    open_method,
)

KEY = list(NEURON_KEY)


def _variants(ctx: Context) -> dict[str, str]:
    """Caption variant -> captioner id the dissection reads for it."""
    from and_toolkit.dissect.captions import caption_variants

    return caption_variants(ctx.cfg.captions.captioner_id, ctx.cfg.captions.descriptors)


def _drop_stale(ctx: Context, record: type[Summary] | type[CalibratedSummary],
                variants: dict[str, str]) -> None:
    """Delete variant files of a variant that is no longer configured."""
    for v in CAPTION_VARIANTS:
        if v and v not in variants:
            ctx.run.remove(record, v)


def _summaries_extractive(ctx: Context, caption_lists: list[list[str]]) -> list[
        tuple[str, list[str], str]]:
    """Extractive summaries with the POS tagger, so shared nouns become word points too."""
    from and_toolkit.dissect.extractive import ExtractiveConfig, summarise_many

    cfg = ExtractiveConfig()
    out = summarise_many(caption_lists, cfg, tagger=tagger(ctx))
    return [(s.text, list(s.points), "") for s in out]


SUMMARY_CHUNK = 32
"""Summary prompts per LLM call (the unit of caching and of the Ray engine's work items)."""


def _summaries_llm(ctx: Context, caption_lists: list[list[str]]) -> tuple[
        list[tuple[str, list[str], str]], dict[str, Any]]:
    from and_toolkit.dissect.prompts import summary_prompt
    from and_toolkit.dissect.text import summary_points
    from and_toolkit.interfaces import Sampling, prompt_sha256
    from and_toolkit.pipeline.llm_chunks import chunked_generation, chunks_of

    prompts = [summary_prompt(caps) for caps in caption_lists]
    sampling = Sampling(max_new_tokens=256)
    calls = [(part, sampling) for part in chunks_of(prompts, SUMMARY_CHUNK)]
    per_call, stats, _ = chunked_generation(ctx, "summaries", ctx.cfg.summaries.llm, calls,
                                            desc="summaries")
    texts = [t for chunk in per_call for t in chunk]
    out = [(t, summary_points(t), prompt_sha256(p)) for t, p in zip(texts, prompts, strict=True)]
    return out, {"sampling": sampling.model_dump(mode="json"), "requests": stats,
                 "_execution": ctx.engine().describe("summaries")}


def stage_summaries(ctx: Context) -> dict[str, Any]:
    """Summaries of every neuron's top-K (S_h) and bottom-K (S_l) captions, per caption
    variant (stage info: the primary's counts, and ``variants.<v>`` with each pass's counts
    and wall seconds)."""
    variants = _variants(ctx)
    _drop_stale(ctx, Summary, variants)
    out: dict[str, Any] = {"variants": {}}
    for variant, captioner in variants.items():
        start = time.perf_counter()
        info = _summaries_variant(ctx, variant, captioner)
        info["wall_s"] = round(time.perf_counter() - start, 2)
        out["variants"][variant or "captions"] = info
    return {**out["variants"]["captions"], "variants": out["variants"]}


def _summaries_variant(ctx: Context, variant: str, captioner: str) -> dict[str, Any]:
    ex = ctx.run.extremes()
    captions = ctx.run.captions(captioner)
    lists = [[captions[c] for c in clips] for clips in ex["clip_ids"].to_list()]
    cfg = ctx.cfg.summaries
    extra: dict[str, Any] = {}
    if cfg.summarizer == "extractive":
        results = _summaries_extractive(ctx, lists)
        summarizer, sampling = "extractive-v1", "{}"
    else:
        results, extra = _summaries_llm(ctx, lists)
        summarizer, sampling = ctx.cfg.summaries.llm, json.dumps(extra["sampling"])
    frame = ex.select(*KEY, "side", "clip_ids").with_columns(
        pl.Series("text", [r[0] for r in results], dtype=pl.String),
        pl.Series("points", [r[1] for r in results], dtype=pl.List(pl.String)),
        pl.lit(summarizer).alias("summarizer"),
        pl.lit(sampling).alias("sampling"),
        pl.Series("prompt_sha256", [r[2] for r in results], dtype=pl.String),
    ).select(list(Summary.model_fields))
    ctx.run.write(Summary, frame, variant, summarizer=summarizer, captioner=captioner)
    distinct = len({tuple(x) for x in lists})
    return {"summaries": frame.height, "distinct_caption_lists": distinct,
            "summarizer": summarizer, "captioner": captioner, **extra}


def stage_calibrate(ctx: Context) -> dict[str, Any]:
    """Module B per caption variant: drop S_h points similar to a point of S_l."""
    variants = _variants(ctx)
    _drop_stale(ctx, CalibratedSummary, variants)
    infos = {v or "captions": _calibrate_variant(ctx, v) for v in variants}
    return {**infos["captions"], "variants": infos}


def _calibrate_variant(ctx: Context, variant: str) -> dict[str, Any]:
    from and_toolkit.dissect.calibrate import CalibrationConfig, calibrate_many

    start = time.perf_counter()
    cfg = ctx.cfg.calibrate
    sm = ctx.run.read(Summary, variant)
    high = sm.filter(pl.col("side") == "high").sort(KEY)
    low = sm.filter(pl.col("side") == "low").sort(KEY)
    if not high.select(KEY).equals(low.select(KEY)):
        raise ValueError(f"{ctx.run.path(Summary, variant)}: high and low summaries cover "
                         "other neurons")
    enc = text_encoder(ctx, cfg.encoder)
    ccfg = CalibrationConfig(compat="reference" if cfg.rule == "reference" else "none",
                             threshold=cfg.threshold)
    result = calibrate_many(high["points"].to_list(), low["points"].to_list(), enc, ccfg)
    frame = high.select(KEY).with_columns(
        pl.Series("kept", [list(r.kept) for r in result], dtype=pl.List(pl.String)),
        pl.Series("dropped", [list(r.dropped) for r in result], dtype=pl.List(pl.String)),
        pl.Series("dropped_match", [list(r.dropped_match) for r in result],
                  dtype=pl.List(pl.String)),
        pl.Series("dropped_cos", [list(r.dropped_cos) for r in result],
                  dtype=pl.List(pl.Float32)),
        pl.lit(ccfg.t).alias("threshold"),
        pl.lit(ccfg.rule).alias("rule"),
        pl.lit(enc.id).alias("encoder"),
    )
    ctx.run.write(CalibratedSummary, frame, variant, rule=ccfg.rule, threshold=ccfg.t,
                  encoder=enc.id)
    n_dropped = sum(len(r.dropped) for r in result)
    return {"neurons": frame.height, "dropped_points": n_dropped,
            "kept_points": sum(len(r.kept) for r in result), "threshold": ccfg.t,
            "encoder_inputs": enc.n_inputs, "encoded": enc.n_encoded,
            "wall_s": round(time.perf_counter() - start, 2)}


def _acoustic_filter(ctx: Context) -> tuple[Any, str]:
    """The adjective filter: offline lexicon, or the LLM asked once per distinct word."""
    if ctx.cfg.open.adjective_filter == "lexicon":
        return None, "lexicon"
    from and_toolkit.dissect.icl import llm_is_acoustic

    model = llm(ctx, ctx.cfg.open.llm)

    def many(words: list[str]) -> list[bool]:
        verdicts = llm_is_acoustic(words, model)
        return [verdicts[w] for w in words]

    return many, f"llm:{model.id}"


def stage_open(ctx: Context) -> dict[str, Any]:
    """Module C per caption variant: adjectives (C_open-set) with filter verdicts (method
    ``open_method(variant)``) and, for the captions alone, the noun / verb / prep lists."""
    many, filter_id = _acoustic_filter(ctx)
    frames, info = [], {}
    for variant in _variants(ctx):
        start = time.perf_counter()
        rows, kept, n = _open_rows(ctx, variant, many)
        frames.append(ConceptSet.frame(rows) if rows else ConceptSet.empty())
        info[variant or "captions"] = {"neurons": n, "kept_adjectives": kept,
                                       "wall_s": round(time.perf_counter() - start, 2)}
    ctx.run.replace_concepts("open", pl.concat(frames), adjective_filter=filter_id)
    return {**info["captions"], "adjective_filter": filter_id, "variants": info}


def _open_rows(ctx: Context, variant: str, many: Any) -> tuple[list[dict[str, Any]], int, int]:
    """ConceptSet rows of one caption variant, kept adjectives and neurons."""
    from and_toolkit.dissect.open_concepts import OpenConceptsConfig, open_concepts_many

    cal = ctx.run.read(CalibratedSummary, variant).sort(KEY)
    cfg = OpenConceptsConfig(include_vbn=ctx.cfg.open.include_vbn)
    results = open_concepts_many(cal["kept"].to_list(), tagger(ctx), cfg=cfg,
                                 is_acoustic_many=many)
    method = open_method(variant)
    rows: list[dict[str, Any]] = []
    keys = cal.select(KEY).rows()
    for (model, layer, unit), res in tqdm(list(zip(keys, results, strict=True)),
                                          desc=f"open {method}", unit="neuron",
                                          disable=not ctx.progress):
        base = {"model": model, "layer": layer, "unit": unit, "kind": "open", "score": None,
                "similarity": ""}
        for rank, c in enumerate(res.concepts):
            rows.append({**base, "method": method, "concept": c.concept, "rank": rank,
                         "pos": "ADJ", "verdict": c.verdict})
        if variant:  # the descriptor sentences add adjectives only
            continue
        for pos, words in (("NOUN", res.nouns), ("VERB", res.verbs), ("ADP", res.preps)):
            for rank, w in enumerate(dict.fromkeys(words)):
                rows.append({**base, "method": POS_METHODS[pos], "concept": w, "rank": rank,
                             "pos": pos, "verdict": "kept"})
    return rows, sum(len(r.kept) for r in results), len(results)
