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

from and_toolkit.errors import StageNotRun
from and_toolkit.pipeline.backends import llm, text_encoder
from and_toolkit.pipeline.context import Context
from and_toolkit.pipeline.data_stages import active_captions
from and_toolkit.pipeline.dissect_stages import replace_closed
from and_toolkit.records.models import CalibratedSummary, ConceptSet

ICL_SIMILARITY = {1: "icl-top1", 5: "icl-top5"}
"""ConceptSet ``similarity`` of the two ICL runs (top-1 prompt, top-5 prompt)."""
ICL_MAX_TOKENS = {1: 32, 5: 64}
"""Greedy decoding budget of the two ICL runs (an answer is one or five class names)."""
ICL_CHUNK = 8
"""Summaries per LLM call (the unit of caching)."""


def class_names(ctx: Context) -> list[str]:
    """The concept set D_c: class names ordered by class id (target)."""
    pairs = ctx.probe().select("target", "label").unique().sort("target")
    return pairs["label"].to_list()


def concept_texts(names: list[str]) -> list[str]:
    """Text encoded for each concept name (underscores as spaces: 'water drops')."""
    return [n.replace("_", " ") for n in names]


def _layer_matrix(path: Any) -> tuple[str, str, np.ndarray, np.ndarray]:
    """(model, layer, units [n], activations [N, n]) of one ActivationTable file."""
    df = pl.read_parquet(path, columns=["model", "layer", "unit", "values"]).sort("unit")
    values = np.array(df["values"].to_numpy(), dtype=np.float32)  # [n, N], writable copy
    return df["model"][0], df["layer"][0], df["unit"].to_numpy(), values.T


def _evidence_db(ctx: Context, names: list[str]) -> tuple[np.ndarray, str]:
    from and_toolkit.dissect.closed import db_evidence

    enc = text_encoder(ctx, ctx.cfg.closed.encoder)
    caps = active_captions(ctx)
    clips = ctx.probe()["clip_id"].to_list()
    cap_emb = enc.encode([caps[c] for c in clips])
    con_emb = enc.encode(concept_texts(names))
    return np.asarray(db_evidence(cap_emb, con_emb, mode=ctx.cfg.closed.db_evidence)), enc.id


def _evidence_tab(ctx: Context, names: list[str]) -> tuple[np.ndarray, str]:
    from and_toolkit.dissect.closed import tab_evidence

    path = ctx.cfg.closed.clap_path
    if not path:
        raise StageNotRun("TAB needs CLAP weights (closed.clap_path); none are available "
                          "offline here")
    try:
        from and_toolkit.backends.clap import ClapEncoder

        clap = ctx.backend(f"clap:{path}", lambda: ClapEncoder.load(path))
    except (FileNotFoundError, OSError, ImportError) as exc:
        raise StageNotRun(f"TAB: CLAP weights unavailable: {exc}") from exc
    sr = int(ctx.probe()["sample_rate"][0])
    audio = clap.encode_audio(ctx.waveforms(), sr)
    text = clap.encode_text(concept_texts(names))
    return np.asarray(tab_evidence(audio, text)), str(clap.id)


def _db_tab_rows(ctx: Context, names: list[str], info: dict[str, Any]) -> list[pl.DataFrame]:
    from and_toolkit.dissect.closed import ClosedConfig, closed_concepts, concept_set_frame

    cfg = ClosedConfig(population=ctx.cfg.closed.population)
    frames: list[pl.DataFrame] = []
    for method, make in (("DB", _evidence_db), ("TAB", _evidence_tab)):
        if method not in ctx.cfg.closed.methods:
            continue
        try:
            P, encoder_id = make(ctx, names)
        except StageNotRun as exc:
            info["not_run"][method] = str(exc)
            continue
        info["backends"][method] = encoder_id
        files = ctx.run.activation_files()
        for path in tqdm(files, desc=f"Module A {method}", unit="layer",
                         disable=not ctx.progress):
            model, layer, units, U = _layer_matrix(path)
            for sim, (idx, scores) in closed_concepts(P, U, names, cfg).items():
                frames.append(concept_set_frame(model, layer, units, method, sim, idx, scores,
                                                names))
    return frames


def _icl_rows(ctx: Context, names: list[str], info: dict[str, Any]) -> list[pl.DataFrame]:
    from and_toolkit.backends.llm import Sampling
    from and_toolkit.dissect.icl import icl_concepts

    if "ICL" not in ctx.cfg.closed.methods:
        return []
    try:
        model = llm(ctx, ctx.cfg.closed.icl_llm)
    except StageNotRun as exc:
        info["not_run"]["ICL"] = str(exc)
        return []
    cal = ctx.run.read(CalibratedSummary).sort(["model", "layer", "unit"])
    if ctx.cfg.closed.icl_layers == "classifier":
        last = _classifier_layers(ctx)
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
        for (m, lay, unit), concepts in zip(cal.select("model", "layer", "unit").rows(), picked,
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


def _classifier_layers(ctx: Context) -> dict[str, str]:
    """``{model: classifier layer}``: the last recorded layer of each target."""
    from and_toolkit.pipeline.model_stages import load_target, recorded_layers

    return {t.id: recorded_layers(ctx, load_target(ctx, t))[-1] for t in ctx.cfg.targets}


def stage_closed(ctx: Context) -> dict[str, Any]:
    """Module A: ConceptSet(closed) rows for DB / TAB (all layers) and ICL."""
    names = class_names(ctx)
    info: dict[str, Any] = {"not_run": {}, "backends": {}, "concepts": len(names)}
    frames = _db_tab_rows(ctx, names, info) + _icl_rows(ctx, names, info)
    closed = pl.concat(frames) if frames else ConceptSet.empty()
    replace_closed(ctx, closed, closed_backends=info["backends"], not_run=info["not_run"])
    info["rows"] = closed.height
    return info
