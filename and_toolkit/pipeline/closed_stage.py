"""Module A stage: closed-set concepts of every neuron by DB, TAB and ICL.

DB and TAB run over every recorded layer with all five similarity functions (vectorised over
neuron chunks); each distinct caption and concept is encoded once per run (and cached on disk).
ICL asks the LLM once per distinct summary, for the classifier neurons (like the paper) or for
every neuron. A method whose backend is unavailable is recorded under ``not_run`` with the
reason, and the experiments report it as "not run: <reason>".
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from and_toolkit.dissect.closed import ClosedConfig, concept_texts
from and_toolkit.dissect.closed_methods import CLOSED_METHODS
from and_toolkit.dissect.icl import ICL_MAX_TOKENS, ICL_SIMILARITY
from and_toolkit.errors import DataError, StageNotRun
from and_toolkit.pipeline.audio_text_model import audio_text_zero_shot, load_audio_text
from and_toolkit.pipeline.backends import clap, text_encoder
from and_toolkit.pipeline.context import Context
from and_toolkit.records.models import NEURON_KEY, CalibratedSummary, ConceptSet
from and_toolkit.run import Run

ICL_CHUNK = 64
"""Summaries per LLM call (a progress step; under Ray, the unit handed to an LLM actor). Each
prompt is cached on its own; 64 fills one shared-prefix decode batch
(``llm_transformers.SHARED_BATCH``)."""


def _evidence_db(ctx: Context, names: list[str], info: dict[str, Any]
                 ) -> tuple[np.ndarray, str]:
    from and_toolkit.dissect.closed import db_evidence

    enc = text_encoder(ctx, ctx.cfg.closed.encoder)
    # the imported captions alone (the paper's setting): descriptor sentences would add our
    # own template's words to every clip's evidence
    caps = ctx.run.captions(ctx.cfg.captions.captioner_id)
    clips = ctx.probe()["clip_id"].to_list()
    cap_emb = enc.encode([caps[c] for c in clips])
    con_emb = enc.encode(concept_texts(names))
    return np.asarray(db_evidence(cap_emb, con_emb, mode=ctx.cfg.closed.db_evidence)), enc.id


def _evidence_tab(ctx: Context, names: list[str], info: dict[str, Any]
                  ) -> tuple[np.ndarray, str]:
    """TAB's evidence P [N clips, C concepts]: CLAP (``closed.tab_model = "clap"``) or the
    audio-text model trained here ("trained"; its provenance and fold zero-shot accuracy go
    into ``info["tab_model"]``)."""
    from and_toolkit.dissect.closed import tab_evidence

    text = concept_texts(names)
    if ctx.cfg.closed.tab_model == "trained":
        trained = load_audio_text(ctx, text_encoder(ctx, ctx.cfg.closed.encoder))
        audio, concepts, zero_shot = audio_text_zero_shot(ctx, trained, text)
        info["tab_trained_here"] = trained.trained_now  # manifest only: records stay equal
        info["tab_model"] = {**trained.provenance, **zero_shot,
                             "zero_shot_prompt": "the class name, underscores as spaces "
                                                 "(the concept texts TAB scores)"}
        return np.asarray(tab_evidence(audio, concepts)), str(trained.encoder.id)
    encoder = clap(ctx, ctx.cfg.closed.clap_path)
    sr = ctx.sample_rate()  # waveforms are at the front end's rate
    audio = encoder.encode_audio(ctx.waveforms(), sr)
    return np.asarray(tab_evidence(audio, encoder.encode_text(text))), str(encoder.id)


def layer_concepts(shared: tuple[Run, np.ndarray, list[str], ClosedConfig, str],
                   item: tuple[str, str]) -> list[pl.DataFrame]:
    """Module A rows of one layer, all five similarity functions (an engine work item).

    Args:
        shared: (run, concept evidence P [N, M], the M concept names, config, method).
        item: (model, layer).
    """
    from and_toolkit.dissect.closed import closed_concepts, concept_set_frame

    run, P, names, cfg, method = shared
    acts = run.activation_matrix(*item)
    with warnings.catch_warnings():  # P is read-only when it comes from Ray's object store
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        found = closed_concepts(P, acts.values, names, cfg)
    return [concept_set_frame(item[0], item[1], acts.units, method, sim, idx, scores, names)
            for sim, (idx, scores) in found.items()]


def _db_tab_rows(ctx: Context, names: list[str], info: dict[str, Any]) -> list[pl.DataFrame]:
    # a concept set smaller than the default k keeps every concept, ranked
    cfg = ClosedConfig(population=ctx.cfg.closed.population,
                       k=min(ClosedConfig.model_fields["k"].default, len(names)))
    frames: list[pl.DataFrame] = []
    evidence = {"DB": _evidence_db, "TAB": _evidence_tab}
    engine = ctx.engine()
    info["_execution"] = engine.describe("closed")
    for method in CLOSED_METHODS:
        if method not in evidence or method not in ctx.cfg.closed.methods:
            continue
        make = evidence[method]
        start = time.perf_counter()
        try:
            P, encoder_id = make(ctx, names, info)
        except StageNotRun as exc:
            info["not_run"][method] = str(exc)
            continue
        info["backends"][method] = encoder_id
        layers = ctx.run.activation_layers()
        if not ctx.progress or engine.name != "local":
            per_layer = engine.map("closed", layer_concepts, layers,
                                   (ctx.run, P, names, cfg, method))
        else:  # one bar step per layer
            per_layer = [layer_concepts((ctx.run, P, names, cfg, method), item)
                         for item in tqdm(layers, desc=f"Module A {method}", unit="layer")]
        frames += [f for layer_frames in per_layer for f in layer_frames]
        info["method_seconds"][method] = round(time.perf_counter() - start, 2)
    return frames


def icl_neurons(ctx: Context) -> tuple[pl.DataFrame, list[str]]:
    """The neurons ICL names and what it reads: their CalibratedSummary rows (sorted by neuron;
    only the classifier layers with ``closed.icl_layers = "classifier"``) and one summary text
    per row (the kept sentences joined; "No common description." when none was kept)."""
    cal = ctx.run.read(CalibratedSummary).sort(list(NEURON_KEY))
    if ctx.cfg.closed.icl_layers == "classifier":
        last = {t.id: ctx.run.recorded_layers(t.id)[-1] for t in ctx.cfg.targets}
        cal = cal.filter(pl.struct("model", "layer").is_in(
            [{"model": m, "layer": lay} for m, lay in last.items()]))
    return cal, [" ".join(p) if p else "No common description." for p in cal["kept"].to_list()]


def _icl_rows(ctx: Context, names: list[str], info: dict[str, Any]) -> list[pl.DataFrame]:
    from and_toolkit.dissect.icl import icl_concepts_from_responses, icl_prompt_top
    from and_toolkit.dissect.prompts import icl_prompt
    from and_toolkit.interfaces import Sampling
    from and_toolkit.pipeline.llm_chunks import chunked_generation, chunks_of

    if "ICL" not in ctx.cfg.closed.methods:
        return []
    cal, summaries = icl_neurons(ctx)
    # one backend call per ICL_CHUNK summaries and k (icl_concepts' prompts); the chunks of
    # both k go to the engine together (under Ray: one LLM actor pool for the stage)
    start = time.perf_counter()
    parts = chunks_of(summaries, ICL_CHUNK)
    calls = [([icl_prompt(s, names, top=icl_prompt_top(k)) for s in part],
              Sampling(max_new_tokens=ICL_MAX_TOKENS[k]))
             for k in ICL_SIMILARITY for part in parts]
    try:
        texts, stats, backend_id = chunked_generation(
            ctx, "closed", ctx.cfg.closed.icl_llm, calls, desc="ICL",
            lookup_drafts=ctx.cfg.closed.icl_lookup_drafts)
    except StageNotRun as exc:
        info["not_run"]["ICL"] = str(exc)
        return []
    enc = text_encoder(ctx, ctx.cfg.closed.encoder)
    rows: list[dict[str, Any]] = []
    for j, (k, sim) in enumerate(ICL_SIMILARITY.items()):
        picked: list[list[str]] = []
        for responses in texts[j * len(parts):(j + 1) * len(parts)]:
            picked += icl_concepts_from_responses(responses, names, enc, k)
        for (m, lay, unit), concepts in zip(cal.select(NEURON_KEY).rows(), picked,
                                            strict=True):
            for rank, concept in enumerate(dict.fromkeys(concepts)):
                rows.append({"model": m, "layer": lay, "unit": unit, "method": "ICL",
                             "similarity": sim, "concept": concept, "kind": "closed",
                             "rank": rank, "score": None, "pos": None, "verdict": "kept"})
    info["backends"]["ICL"] = backend_id
    info["icl_requests"] = {**{k: stats[k] for k in ("requested", "unique", "cache_hits",
                                                      "generated")},
                            "neurons": cal.height,
                            "requests_per_neuron": round(stats["generated"] / max(cal.height, 1),
                                                         3),
                            **({"llm_load_s": stats["llm_load_s"]} if "llm_load_s" in stats
                               else {})}
    info["method_seconds"]["ICL"] = round(time.perf_counter() - start, 2)
    return [ConceptSet.frame(rows)] if rows else []


def concept_set(ctx: Context) -> tuple[list[str], str]:
    """The concept set D_c and where it came from: ``closed.concepts``, else (with
    ``concepts_from = "open"``) the adjectives Module C kept over all neurons, else the probe's
    label names.

    Raises:
        DataError: fewer than two concepts (Module A ranks concepts against each other).
    """
    cfg = ctx.cfg.closed
    if cfg.concepts is not None:
        names, origin = list(dict.fromkeys(c.strip() for c in cfg.concepts if c.strip())), \
            "closed.concepts"
    elif cfg.concepts_from == "open":
        open_rows = ctx.run.read(ConceptSet).filter(
            (pl.col("method") == "OCP") & (pl.col("verdict") == "kept"))
        names = sorted(set(open_rows["concept"].to_list()))
        origin = "open-set vocabulary (Module C's kept adjectives)"
    else:
        names, origin = ctx.class_names(), "probe labels"
    if len(names) < 2:
        raise DataError(f"{ctx.run.root}: the concept set ({origin}) has {len(names)} "
                        "concept(s); Module A needs at least two (give concepts, or labels)")
    return names, origin


def stage_closed(ctx: Context) -> dict[str, Any]:
    """Module A: ConceptSet(closed) rows for DB / TAB (all layers) and ICL. Stage info:
    ``method_seconds`` (wall seconds per method run; TAB's include training its audio-text
    model on a cache miss, ICL's loading the LLM: ``icl_requests.llm_load_s``), backends,
    not-run reasons."""
    names, origin = concept_set(ctx)
    info: dict[str, Any] = {"not_run": {}, "backends": {}, "concepts": len(names),
                            "concept_source": origin, "method_seconds": {}}
    frames = _db_tab_rows(ctx, names, info) + _icl_rows(ctx, names, info)
    closed = pl.concat(frames) if frames else ConceptSet.empty()
    extra = {"tab_model": info["tab_model"]} if "tab_model" in info else {}
    ctx.run.replace_concepts("closed", closed, closed_backends=info["backends"],
                             not_run=info["not_run"], **extra)
    info["rows"] = closed.height
    return info
