"""Score stage: every description of every neuron scored on the clips that did not produce it.

Reads the run's descriptions (closed top-1 concepts, calibrated summaries, open concepts; per
caption variant), its Extremes (the run's K and every extra K: the clips excluded per neuron),
captions and activations; encodes each distinct description and each distinct caption once;
scores every layer with ``dissect.scoring`` and writes ``scores.parquet`` (ExplanationScore)
and the report's ``results/explanation_scores.parquet``. The audio-side variant runs through
TAB's audio-text model: the one trained here (``closed.tab_model = "trained"``; its rows say it
learned from the probe's captions) or CLAP (``closed.clap_path``); without either it is
recorded under ``not_run`` with the reason.

Each layer's rows are kept in the content cache (namespace ``scores``), keyed by what they are
computed from: the layer's activations and units, its excluded clips, its description rows
(group, unit, text), the clip sides (encoder id, clip embeddings), ``q``, ``seed`` and
:data:`SCORE_VERSION`; a run that changes one target rescores only that target's layers.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from and_toolkit.cache import cache_key
from and_toolkit.dissect.captions import caption_variants
from and_toolkit.dissect.closed import distinct_texts
from and_toolkit.dissect.explanations import descriptions, excluded_clips
from and_toolkit.dissect.scoring import (
    LayerScores,
    TextSums,
    activation_ranks,
    heldout_mask,
    layer_seed,
    score_layer,
    text_sums,
)
from and_toolkit.errors import DataError, StageNotRun
from and_toolkit.pipeline.audio_text_model import load_audio_text
from and_toolkit.pipeline.backends import clap, text_encoder
from and_toolkit.pipeline.context import Context
from and_toolkit.records.models import CalibratedSummary, ConceptSet, ExplanationScore
from and_toolkit.store import bytes_frame, frame_bytes
from and_toolkit.targets.features import features_sha

RESULT_ID = "explanation_scores"
"""Experiment id of the report's "Explanation quality" rows."""
GROUP = ["kind", "method", "similarity", "variant"]
SCORE_THREADS = max(1, min(4, os.cpu_count() or 1))
"""Layers scored at once (threads; the result does not depend on it)."""
SCORE_VERSION = 1
"""Part of every cached layer's key: bump it when scoring changes what it computes."""


@dataclass(frozen=True)
class ClipSide:
    """One way of embedding the probe clips against the descriptions.

    Attributes:
        clip_emb: float32 [C, d] distinct clip embeddings; clip_rows: int64 [N] row per clip.
        desc_emb: float32 [U, d] embeddings of the distinct descriptions (same space).
        encoder: encoder id.
    """

    clip_emb: np.ndarray
    clip_rows: np.ndarray
    desc_emb: np.ndarray
    encoder: str


def _caption_sides(ctx: Context, variants: dict[str, str], texts: list[str]
                   ) -> dict[tuple[str, str], ClipSide]:
    enc = text_encoder(ctx, ctx.cfg.score.encoder)
    desc_emb = enc.encode(texts)
    clip_ids = ctx.probe()["clip_id"].to_list()
    out = {}
    for variant, captioner in variants.items():
        caps = ctx.run.captions(captioner)
        missing = [c for c in clip_ids if c not in caps]
        if missing:
            raise DataError(f"{ctx.run.root}/captions.parquet: captioner {captioner!r} has no "
                            f"caption for {len(missing)} probe clips (e.g. {missing[:3]})")
        distinct, rows = distinct_texts([caps[c] for c in clip_ids])
        out[("caption", variant)] = ClipSide(enc.encode(distinct), rows, desc_emb, enc.id)
    return out


def _audio_sides(ctx: Context, variants: dict[str, str], texts: list[str],
                 info: dict[str, Any]) -> dict[tuple[str, str], ClipSide]:
    """The audio side through TAB's audio-text model: the one trained here
    (``closed.tab_model = "trained"``, noted in ``info["audio_note"]``: it learned from the
    probe's captions) or CLAP (StageNotRun when its weights are unavailable)."""
    if ctx.cfg.closed.tab_model == "trained":
        trained = load_audio_text(ctx, text_encoder(ctx, ctx.cfg.closed.encoder))
        audio = np.asarray(trained.encoder.encode_features(ctx.features()), np.float32)
        desc_emb = np.asarray(trained.encoder.encode_text(texts), dtype=np.float32)
        encoder_id = str(trained.encoder.id)
        info["audio_row_note"] = (f"audio side through {encoder_id}, trained here on the "
                                  "probe's captions: not independent of the captioner")
        info["audio_note"] = (
            f"audio side through TAB's audio-text model {encoder_id}, trained here on "
            f"{trained.provenance['trained_on']}: it learned to match these clips' audio to "
            "their captions, so this side is not independent of the captioner, and the clips "
            "it was trained on are among those scored")
    else:
        encoder = clap(ctx, ctx.cfg.closed.clap_path)  # StageNotRun when unavailable
        audio = np.asarray(encoder.encode_audio(ctx.waveforms(), ctx.sample_rate()), np.float32)
        desc_emb = np.asarray(encoder.encode_text(texts), dtype=np.float32)
        encoder_id = str(encoder.id)
    side = ClipSide(audio, np.arange(audio.shape[0]), desc_emb, encoder_id)
    return {("audio", v): side for v in variants}


def _frame(model: str, layer: str, units: np.ndarray, group: tuple[str, ...], source: str,
           side: ClipSide, desc_of: np.ndarray, texts: list[str], s: LayerScores, q: float
           ) -> pl.DataFrame:
    kind, method, similarity, variant = group
    m = s.rows.size

    def score(a: np.ndarray) -> pl.Series:
        return pl.Series(values=np.asarray(a, dtype=np.float64), nan_to_null=True)

    donors = np.where(s.donors >= 0, units[np.maximum(s.donors, 0)], np.nan)
    return pl.DataFrame({
        "model": [model] * m, "layer": [layer] * m,
        "unit": pl.Series(units[s.rows], dtype=pl.Int32),
        "kind": [kind] * m, "method": [method] * m, "similarity": [similarity] * m,
        "variant": [variant] * m, "source": [source] * m,
        "description": [texts[i] for i in desc_of[s.rows]], "encoder": [side.encoder] * m,
        "q": [q] * m, "n_heldout": pl.Series(s.real.n_heldout, dtype=pl.Int32),
        "n_positive": pl.Series(s.real.n_positive, dtype=pl.Int32),
        "auc": score(s.real.auc), "spearman": score(s.real.spearman),
        "null_auc": score(s.null.auc), "null_spearman": score(s.null.spearman),
        "null_unit": score(donors).cast(pl.Int32),
    })


def score_run(ctx: Context, info: dict[str, Any]) -> pl.DataFrame:
    """ExplanationScore rows of every neuron of the run's targets (see the module docstring)."""
    cfg = ctx.cfg.score
    run = ctx.run
    mine = [t.id for t in ctx.cfg.targets]
    variants = caption_variants(ctx.cfg.captions.captioner_id, ctx.cfg.captions.descriptors)
    if not cfg.descriptors:
        variants = {"": variants[""]}
    concepts = run.read(ConceptSet).filter(pl.col("model").is_in(mine))
    desc = pl.concat([descriptions(concepts, run.read(CalibratedSummary, v)
                                   if run.has(CalibratedSummary, v) else None, v)
                      for v in variants])
    texts, inverse = distinct_texts(desc["description"].to_list())
    desc = desc.with_columns(pl.Series("text_row", inverse))
    t0 = time.perf_counter()
    sides = _caption_sides(ctx, variants, texts)
    try:
        sides |= _audio_sides(ctx, variants, texts, info)
    except StageNotRun as exc:
        info["not_run"]["audio"] = str(exc)
    info["encoders"] = sorted({s.encoder for s in sides.values()})
    side_ids = {f"{src}/{var}": [s.encoder, features_sha(s.clip_emb), features_sha(s.clip_rows)]
                for (src, var), s in sides.items()}
    info["texts"] = {"descriptions": len(texts), "encode_s": round(time.perf_counter() - t0, 2)}
    t0 = time.perf_counter()
    clip_index = {c: i for i, c in enumerate(ctx.probe()["clip_id"].to_list())}
    extremes = [run.extremes()] + [run.extremes(k) for k in ctx.cfg.record.extra_k
                                   if run.has_extremes(k)]
    info["excluded_from"] = {"k": [ctx.cfg.record.k, *[k for k in ctx.cfg.record.extra_k
                                                       if run.has_extremes(k)]]}
    excluded = excluded_clips(extremes).with_columns(
        pl.col("clip_id").replace_strict(clip_index, return_dtype=pl.Int64).alias("clip_idx"))
    ex_by_layer = excluded.partition_by(["model", "layer"], as_dict=True)
    desc_by_layer = desc.partition_by(["model", "layer"], as_dict=True)
    n_clips = len(clip_index)

    cached: list[str] = []

    def one_layer(model: str, layer: str) -> list[pl.DataFrame]:
        acts = run.activation_matrix(model, layer)
        units = acts.units
        ex = ex_by_layer.get((model, layer))
        if ex is None:
            raise DataError(f"{run.extremes_path()}: no Extremes for {model} {layer}")
        rows = desc_by_layer[(model, layer)].select(*GROUP, "unit", "description").rows()
        key = cache_key(kind="explanation-scores", version=SCORE_VERSION, model=model,
                        layer=layer, acts=[features_sha(acts.values), features_sha(units)],
                        n_clips=n_clips,
                        excluded=[features_sha(ex["unit"].to_numpy()),
                                  features_sha(ex["clip_idx"].to_numpy())],
                        descriptions=hashlib.sha256(json.dumps(rows).encode()).hexdigest(),
                        sides=side_ids, q=cfg.q, seed=cfg.seed)
        hit = ctx.cache.get_bytes("scores", key)
        if hit is not None:
            cached.append(f"{model}/{layer}")
            frame = bytes_frame(ExplanationScore, hit, f"cache scores/{key}")
            return [frame] if frame.height else []
        out = _score_layer(model, layer, acts.values, units, ex)
        ctx.cache.put_bytes("scores", key, frame_bytes(
            ExplanationScore, pl.concat(out) if out else ExplanationScore.empty()))
        return out

    def _score_layer(model: str, layer: str, values: np.ndarray, units: np.ndarray,
                     ex: pl.DataFrame) -> list[pl.DataFrame]:
        keep = heldout_mask(n_clips, units.size, _rows(units, ex["unit"], layer),
                            ex["clip_idx"].to_numpy())
        ranks = activation_ranks(np.ascontiguousarray(values.T), keep, cfg.q)
        out = []
        layer_sums: dict[tuple[str, str], TextSums] = {}  # per clip side, shared by the kinds
        done: dict[tuple[Any, ...], LayerScores] = {}
        for group, g in sorted(desc_by_layer[(model, layer)].partition_by(
                GROUP, as_dict=True).items()):
            desc_of = np.full(units.size, -1, dtype=np.int64)
            desc_of[_rows(units, g["unit"], layer)] = g["text_row"].to_numpy()
            seed = layer_seed(cfg.seed, model, layer, *group[:3])
            for source in ("caption", "audio"):
                side = sides.get((source, str(group[3])))
                if side is None:
                    continue
                key = (source, str(group[3]))
                # the audio side embeds the same clips in every variant: a description kind
                # whose texts do not change with the variant (closed concepts) scores the same
                same = (source, *map(str, group[:3]), desc_of.tobytes(), id(side))
                if same in done:
                    s = done[same]
                else:
                    if key not in layer_sums:
                        layer_sums[key] = text_sums(ranks, side.clip_rows,
                                                    side.clip_emb.shape[0])
                    s = done[same] = score_layer(side.clip_emb, side.clip_rows, side.desc_emb,
                                                 desc_of, ranks, seed, sums=layer_sums[key])
                out.append(_frame(model, layer, units, tuple(map(str, group)), source,
                                  side, desc_of, texts, s, cfg.q))
        return out

    layers = [ml for ml in run.activation_layers() if ml in desc_by_layer]
    # numpy sorts and reductions release the GIL: layers in parallel threads, results in order
    with ThreadPoolExecutor(max_workers=SCORE_THREADS) as pool:
        frames = [f for part in pool.map(lambda ml: one_layer(*ml), layers) for f in part]
    info["layers_s"] = round(time.perf_counter() - t0, 2)
    info["cached_layers"] = len(cached)
    info["layers"] = len(layers)
    return pl.concat(frames) if frames else ExplanationScore.empty()


def _rows(units: np.ndarray, wanted: pl.Series, layer: str) -> np.ndarray:
    """Row of each wanted unit in the layer's ascending ``units``; DataError if absent."""
    w = wanted.to_numpy().astype(np.int64)
    idx = np.clip(np.searchsorted(units, w), 0, max(units.size - 1, 0))
    if units.size == 0 or not np.array_equal(units[idx], w):
        raise DataError(f"layer {layer}: a described / excluded unit has no activations")
    return idx


def stage_score(ctx: Context) -> dict[str, Any]:
    """Write ExplanationScore rows and the ``explanation_scores`` result frame."""
    from and_toolkit.experiments.explanation_quality import quality_rows

    info: dict[str, Any] = {"not_run": {}}
    start = time.perf_counter()
    scores = score_run(ctx, info)
    info["scoring_s"] = round(time.perf_counter() - start, 2)
    cfg = ctx.cfg.score
    ctx.run.write(ExplanationScore, scores, q=cfg.q, seed=cfg.seed, encoders=info["encoders"],
                  not_run=info["not_run"])
    index = ctx.run.neuron_index().filter(pl.col("model").is_in([t.id for t in ctx.cfg.targets]))
    result = quality_rows(scores, index, not_run=info["not_run"],
                          audio_note=info.get("audio_row_note", ""))
    ctx.run.write_result(RESULT_ID, result, job="score", q=cfg.q, seed=cfg.seed)
    info["rows"] = scores.height
    return info
