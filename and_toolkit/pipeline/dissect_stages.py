"""Dissection stages: summaries S_h / S_l, Module B calibration, Module C open concepts.

Module A (closed concepts) lives in :mod:`and_toolkit.pipeline.closed_stage`.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl
from tqdm.auto import tqdm

from and_toolkit.pipeline.backends import llm, tagger, text_encoder
from and_toolkit.pipeline.context import Context
from and_toolkit.records.models import NEURON_KEY, CalibratedSummary, ConceptSet, Summary

KEY = list(NEURON_KEY)
POS_METHODS = {"NOUN": "POS:NOUN", "VERB": "POS:VERB", "ADP": "POS:ADP"}
"""ConceptSet ``method`` of the non-adjective part-of-speech lists of Module C."""


def _summaries_extractive(caption_lists: list[list[str]]) -> list[tuple[str, list[str], str]]:
    from and_toolkit.dissect.extractive import ExtractiveConfig, summarise_many

    cfg = ExtractiveConfig()
    out = summarise_many(caption_lists, cfg)
    return [(s.text, list(s.points), "") for s in out]


def _summaries_llm(ctx: Context, caption_lists: list[list[str]]) -> tuple[
        list[tuple[str, list[str], str]], dict[str, Any]]:
    from and_toolkit.dissect.prompts import summary_prompt
    from and_toolkit.dissect.text import summary_points
    from and_toolkit.interfaces import Sampling, prompt_sha256

    model = llm(ctx, ctx.cfg.summaries.llm)
    prompts = [summary_prompt(caps) for caps in caption_lists]
    sampling = Sampling(max_new_tokens=256)
    texts = model.generate(prompts, sampling)
    out = [(t, summary_points(t), prompt_sha256(p)) for t, p in zip(texts, prompts, strict=True)]
    return out, {"sampling": sampling.model_dump(mode="json"), "requests": vars(model.stats)}


def stage_summaries(ctx: Context) -> dict[str, Any]:
    """Summaries of every neuron's top-K (S_h) and bottom-K (S_l) captions."""
    ex = ctx.run.extremes()
    captions = ctx.run.captions(ctx.active_captioner())
    lists = [[captions[c] for c in clips] for clips in ex["clip_ids"].to_list()]
    cfg = ctx.cfg.summaries
    extra: dict[str, Any] = {}
    if cfg.summarizer == "extractive":
        results = _summaries_extractive(lists)
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
    ctx.run.write(Summary, frame, summarizer=summarizer)
    distinct = len({tuple(x) for x in lists})
    return {"summaries": frame.height, "distinct_caption_lists": distinct,
            "summarizer": summarizer, **extra}


def stage_calibrate(ctx: Context) -> dict[str, Any]:
    """Module B: drop S_h points similar to a point of S_l."""
    from and_toolkit.dissect.calibrate import CalibrationConfig, calibrate_many

    cfg = ctx.cfg.calibrate
    sm = ctx.run.read(Summary)
    high = sm.filter(pl.col("side") == "high").sort(KEY)
    low = sm.filter(pl.col("side") == "low").sort(KEY)
    if not high.select(KEY).equals(low.select(KEY)):
        raise ValueError(f"{ctx.run.path(Summary)}: high and low summaries cover other neurons")
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
    ctx.run.write(CalibratedSummary, frame, rule=ccfg.rule, threshold=ccfg.t, encoder=enc.id)
    n_dropped = sum(len(r.dropped) for r in result)
    return {"neurons": frame.height, "dropped_points": n_dropped,
            "kept_points": sum(len(r.kept) for r in result), "threshold": ccfg.t,
            "encoder_inputs": enc.n_inputs, "encoded": enc.n_encoded}


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
    """Module C: adjectives (C_open-set) with filter verdicts, and noun / verb / prep lists."""
    from and_toolkit.dissect.open_concepts import OpenConceptsConfig, open_concepts_many

    cal = ctx.run.read(CalibratedSummary).sort(KEY)
    many, filter_id = _acoustic_filter(ctx)
    cfg = OpenConceptsConfig(include_vbn=ctx.cfg.open.include_vbn)
    points = cal["kept"].to_list()
    results = open_concepts_many(points, tagger(ctx), cfg=cfg, is_acoustic_many=many)
    rows: list[dict[str, Any]] = []
    keys = cal.select(KEY).rows()
    for (model, layer, unit), res in tqdm(list(zip(keys, results, strict=True)), desc="open",
                                          unit="neuron", disable=not ctx.progress):
        base = {"model": model, "layer": layer, "unit": unit, "kind": "open", "score": None,
                "similarity": ""}
        for rank, c in enumerate(res.concepts):
            rows.append({**base, "method": "OCP", "concept": c.concept, "rank": rank,
                         "pos": "ADJ", "verdict": c.verdict})
        for pos, words in (("NOUN", res.nouns), ("VERB", res.verbs), ("ADP", res.preps)):
            for rank, w in enumerate(dict.fromkeys(words)):
                rows.append({**base, "method": POS_METHODS[pos], "concept": w, "rank": rank,
                             "pos": pos, "verdict": "kept"})
    frame = ConceptSet.frame(rows) if rows else ConceptSet.empty()
    ctx.run.replace_concepts("open", frame, adjective_filter=filter_id)
    kept = sum(len(r.kept) for r in results)
    return {"neurons": len(results), "kept_adjectives": kept, "adjective_filter": filter_id}
