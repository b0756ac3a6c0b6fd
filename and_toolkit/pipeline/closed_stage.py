"""Module A stage: closed-set concepts of every neuron by DB, TAB and ICL.

DB and TAB run over every recorded layer with all five similarity functions (vectorised over
neuron chunks); each distinct caption and concept is encoded once per run (and cached on disk).
ICL asks the LLM once per distinct summary, for the classifier neurons (like the paper) or for
every neuron. A method whose backend is unavailable is recorded under ``not_run`` with the
reason, and the experiments report it as "not run: <reason>".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from and_toolkit.dissect.closed import CLOSED_METHODS, concept_texts
from and_toolkit.dissect.icl import ICL_MAX_TOKENS, ICL_SIMILARITY
from and_toolkit.errors import DataError, StageNotRun
from and_toolkit.pipeline.backends import clap, llm, text_encoder
from and_toolkit.pipeline.context import Context
from and_toolkit.pipeline.targets import audio_text_zero_shot, load_audio_text
from and_toolkit.records.models import NEURON_KEY, CalibratedSummary, ConceptSet

ICL_CHUNK = 8
"""Summaries per LLM call (the unit of caching)."""


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
        info["tab_model"] = {**trained.provenance, **zero_shot,
                             "zero_shot_prompt": "the class name, underscores as spaces "
                                                 "(the concept texts TAB scores)"}
        return np.asarray(tab_evidence(audio, concepts)), str(trained.encoder.id)
    encoder = clap(ctx, ctx.cfg.closed.clap_path)
    sr = ctx.sample_rate()  # waveforms are at the front end's rate
    audio = encoder.encode_audio(ctx.waveforms(), sr)
    return np.asarray(tab_evidence(audio, encoder.encode_text(text))), str(encoder.id)


def _db_tab_rows(ctx: Context, names: list[str], info: dict[str, Any]) -> list[pl.DataFrame]:
    from and_toolkit.dissect.closed import ClosedConfig, closed_concepts, concept_set_frame

    # a concept set smaller than the default k keeps every concept, ranked
    cfg = ClosedConfig(population=ctx.cfg.closed.population,
                       k=min(ClosedConfig.model_fields["k"].default, len(names)))
    frames: list[pl.DataFrame] = []
    evidence = {"DB": _evidence_db, "TAB": _evidence_tab}
    for method in CLOSED_METHODS:
        if method not in evidence or method not in ctx.cfg.closed.methods:
            continue
        make = evidence[method]
        try:
            P, encoder_id = make(ctx, names, info)
        except StageNotRun as exc:
            info["not_run"][method] = str(exc)
            continue
        info["backends"][method] = encoder_id
        layers = ctx.run.activation_layers()
        for model, layer in tqdm(layers, desc=f"Module A {method}", unit="layer",
                                 disable=not ctx.progress):
            acts = ctx.run.activation_matrix(model, layer)
            for sim, (idx, scores) in closed_concepts(P, acts.values, names, cfg).items():
                frames.append(concept_set_frame(model, layer, acts.units, method, sim, idx,
                                                scores, names))
    return frames


def _icl_rows(ctx: Context, names: list[str], info: dict[str, Any]) -> list[pl.DataFrame]:
    from and_toolkit.dissect.icl import icl_concepts
    from and_toolkit.interfaces import Sampling

    if "ICL" not in ctx.cfg.closed.methods:
        return []
    try:
        model = llm(ctx, ctx.cfg.closed.icl_llm)
    except StageNotRun as exc:
        info["not_run"]["ICL"] = str(exc)
        return []
    cal = ctx.run.read(CalibratedSummary).sort(list(NEURON_KEY))
    if ctx.cfg.closed.icl_layers == "classifier":
        last = {t.id: ctx.run.recorded_layers(t.id)[-1] for t in ctx.cfg.targets}
        cal = cal.filter(pl.struct("model", "layer").is_in(
            [{"model": m, "layer": lay} for m, lay in last.items()]))
    summaries = [" ".join(p) if p else "No common description." for p in cal["kept"].to_list()]
    enc = text_encoder(ctx, ctx.cfg.closed.encoder)
    rows: list[dict[str, Any]] = []
    for k, sim in ICL_SIMILARITY.items():
        sampling = Sampling(max_new_tokens=ICL_MAX_TOKENS[k])
        picked: list[list[str]] = []
        # chunks: each finished chunk is in the cache, so a killed run loses at most one chunk
        for i in tqdm(range(0, len(summaries), ICL_CHUNK), desc=f"ICL top-{k}", unit="chunk",
                      disable=not ctx.progress):
            picked += icl_concepts(summaries[i:i + ICL_CHUNK], names, model, enc, k,
                                   sampling=sampling)
        for (m, lay, unit), concepts in zip(cal.select(NEURON_KEY).rows(), picked,
                                            strict=True):
            for rank, concept in enumerate(dict.fromkeys(concepts)):
                rows.append({"model": m, "layer": lay, "unit": unit, "method": "ICL",
                             "similarity": sim, "concept": concept, "kind": "closed",
                             "rank": rank, "score": None, "pos": None, "verdict": "kept"})
    info["backends"]["ICL"] = model.id
    stats = model.stats
    info["icl_requests"] = {"requested": stats.requested, "unique": stats.unique,
                            "cache_hits": stats.cache_hits, "generated": stats.generated,
                            "neurons": cal.height,
                            "requests_per_neuron": round(stats.generated / max(cal.height, 1), 3)}
    return [ConceptSet.frame(rows)] if rows else []


def _concept_set(ctx: Context) -> tuple[list[str], str]:
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
    """Module A: ConceptSet(closed) rows for DB / TAB (all layers) and ICL."""
    names, origin = _concept_set(ctx)
    info: dict[str, Any] = {"not_run": {}, "backends": {}, "concepts": len(names),
                            "concept_source": origin}
    frames = _db_tab_rows(ctx, names, info) + _icl_rows(ctx, names, info)
    closed = pl.concat(frames) if frames else ConceptSet.empty()
    extra = {"tab_model": info["tab_model"]} if "tab_model" in info else {}
    ctx.run.replace_concepts("closed", closed, closed_backends=info["backends"],
                             not_run=info["not_run"], **extra)
    info["rows"] = closed.height
    return info
