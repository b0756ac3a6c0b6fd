"""Inputs of the experiments stage: per-model facts, cached pruning evaluation, encoders.

Everything here reads the run (records, manifest) or loads a backend; the experiment functions
of :mod:`and_toolkit.experiments` stay pure and get these values passed in.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from and_toolkit.cache import cache_key
from and_toolkit.config import PaperModel, TargetSection
from and_toolkit.dissect.closed_methods import CLOSED_METHODS
from and_toolkit.dissect.icl import ICL_SIMILARITY
from and_toolkit.errors import ConfigError
from and_toolkit.experiments.rows import result_key, result_row
from and_toolkit.pipeline.backends import text_encoder
from and_toolkit.pipeline.context import Context
from and_toolkit.pipeline.pruned_eval import CachedEvaluate
from and_toolkit.pipeline.targets import check_weights, train_config
from and_toolkit.records.models import CAPTION_VARIANTS, ResultRow, open_method


@dataclass
class ModelInfo:
    """What the experiments need to know about one target network.

    Attributes:
        target: its config section.
        paper_model: the paper model it stands for.
        layers: ``{module path: n_units}`` of every recorded layer, in module order (the
            classifier is last).
        classifier: module path of the classifier layer.
        class_names: ``class_names[j]`` = label of target id j.
        test_rows: probe rows of the test fold, int64 [n_test], in probe order.
        test_clips: ProbeClip rows of the test fold (same order as ``test_rows``).
        neurons: one row per recorded neuron: ``model, layer, unit, block, alias``.
    """

    target: TargetSection
    paper_model: PaperModel
    layers: dict[str, int]
    classifier: str
    class_names: list[str]
    test_rows: np.ndarray
    test_clips: pl.DataFrame
    neurons: pl.DataFrame

    @property
    def id(self) -> str:
        return self.target.id


def model_info(ctx: Context, target: TargetSection) -> ModelInfo:
    """Facts of one target, from the run's records (no model is loaded).

    Raises:
        DataError: the target's weights changed since the run's targets stage, or the record
            stage has not recorded it.
        ValueError: activations of layers the record stage did not record.
    """
    check_weights(ctx, target)
    order = ctx.run.recorded_layers(target.id)
    neurons = ctx.run.neuron_index(target.id)
    sizes = dict(neurons.group_by("layer").agg(pl.len()).iter_rows())
    unknown = sorted(set(sizes) - set(order))
    if unknown:
        raise ValueError(f"activations of {target.id!r}: layers {unknown[:3]} are not among "
                         f"the recorded layers of {ctx.run.manifest_path}")
    layers = {name: int(sizes[name]) for name in order if name in sizes}
    classifier = order[-1]
    if classifier not in layers:
        raise ValueError(f"activations of {target.id!r}: classifier layer {classifier!r} was "
                         "not recorded")
    probe = ctx.probe()
    fold = train_config(ctx, target).test_fold
    rows = np.flatnonzero(probe["fold"].to_numpy() == fold).astype(np.int64)
    return ModelInfo(target=target, paper_model=target.paper_model_id, layers=layers,
                     classifier=classifier, class_names=ctx.class_names(), test_rows=rows,
                     test_clips=probe[rows.tolist()], neurons=neurons)


def select_models(infos: Sequence[ModelInfo], ids: Sequence[str] | None, default: Sequence[str],
                  field_name: str) -> list[ModelInfo]:
    """The ModelInfos named by a config list (``None``: ``default``).

    Raises:
        ConfigError: an id that is not a target (naming ``field_name``).
    """
    known = [i.id for i in infos]
    chosen = list(default if ids is None else ids)
    bad = [m for m in chosen if m not in known]
    if bad:
        raise ConfigError(f"{field_name}: unknown target ids {bad}; targets are {known}")
    return [i for i in infos if i.id in chosen]


@dataclass
class Inputs:
    """Records and facts shared by the jobs (read once per stage)."""

    ctx: Context
    infos: list[ModelInfo]
    concepts: pl.DataFrame
    extremes: pl.DataFrame
    reasons: dict[str, str]
    evaluators: dict[str, CachedEvaluate] = field(default_factory=dict)

    @property
    def paper_models(self) -> dict[str, str]:
        return {i.id: i.paper_model for i in self.infos}

    def neurons(self, infos: list[ModelInfo] | None = None) -> pl.DataFrame:
        return pl.concat([i.neurons for i in (self.infos if infos is None else infos)])

    def evaluate(self, info: ModelInfo) -> CachedEvaluate:
        if info.id not in self.evaluators:
            self.evaluators[info.id] = CachedEvaluate(self.ctx, info.target, info.test_rows)
        return self.evaluators[info.id]


@dataclass
class JobResult:
    """Frames by experiment id, the provenance written with them, and stage-info extras."""

    frames: dict[str, pl.DataFrame]
    provenance: dict[str, Any] = field(default_factory=dict)


def not_run_frame(experiment: str, reason: str, model: str = "") -> pl.DataFrame:
    """One ResultRow saying ``not run: <reason>``."""
    return ResultRow.frame([result_row(experiment, result_key(model or "all", "not_run"), "not_run", None,
                                       model=model, note=f"not run: {reason}")])


def concat_results(frames: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(frames) if frames else ResultRow.empty()


# ----- text encoders, run facts -----------------------------------------------------------------
def minilm_cos(ctx: Context) -> Any:
    """``cos_fn(preds, gts) -> cos [n]`` with the cached MiniLM encoder (pairs joined by ', ')."""
    from and_toolkit.interfaces import l2_normalise

    enc = text_encoder(ctx, "minilm")

    def cos(preds: Sequence[str | tuple[str, str]], gts: Sequence[str]) -> np.ndarray:
        left = [p if isinstance(p, str) else ", ".join(p) for p in preds]
        texts = list(dict.fromkeys([*left, *gts]))
        emb = l2_normalise(np.asarray(enc.encode(texts), dtype=np.float64))
        row = {t: i for i, t in enumerate(texts)}
        return np.array([float(emb[row[a]] @ emb[row[b]]) for a, b in
                         zip(left, gts, strict=True)])

    return cos


def word_cos(ctx: Context, name: str) -> Any:
    """``sim(words, phrases) -> cos [n_words, n_phrases]`` with the cached text encoder
    ``name`` (OCP's ``meaning`` rule; texts embedded once per call)."""
    from and_toolkit.interfaces import l2_normalise

    enc = text_encoder(ctx, name)

    def sim(words: Sequence[str], phrases: Sequence[str]) -> np.ndarray:
        texts = list(dict.fromkeys([*words, *phrases]))
        emb = l2_normalise(np.asarray(enc.encode(texts), dtype=np.float64))
        row = {t: i for i, t in enumerate(texts)}
        return emb[[row[w] for w in words]] @ emb[[row[p] for p in phrases]].T

    return sim


def closed_reasons(ctx: Context) -> dict[str, str]:
    """Why each Module A method may be missing: not configured, stage not run, or the reason
    the closed stage recorded in the manifest (``stages.closed.not_run``)."""
    stage = ctx.run.stage_info("closed") if ctx.run.stage_done("closed") else None
    out: dict[str, str] = {}
    for method in CLOSED_METHODS:
        if method not in ctx.cfg.closed.methods:
            out[method] = f"{method} is not in closed.methods"
        elif stage is None:
            out[method] = "the closed-set stage (Module A) has not run"
        elif method in (stage.get("not_run") or {}):
            out[method] = str(stage["not_run"][method])
        else:
            out[method] = "no ConceptSet rows"
    return out


def clip_measures(ctx: Context) -> pl.DataFrame:
    """Per-clip ``clip_id, amplitude, rms_db, mdf_hz`` in probe order (cached by data hash)."""
    from and_toolkit.experiments.acoustic import MEASURES, clip_acoustics

    probe = ctx.probe()
    key = cache_key(kind="clip-acoustics-v2", data=ctx.data_sha(), probe=ctx.probe_sha(),
                    source=ctx.cfg.probe.model_dump(mode="json"), seed=ctx.cfg.seed)

    def compute() -> np.ndarray:
        srs = [ctx.sample_rate()] * probe.height  # waveforms are at the front end's rate
        return np.array([tuple(clip_acoustics(w, sr)) for w, sr in
                         zip(ctx.waveforms(), srs, strict=True)], dtype=np.float64)

    arr = ctx.cached_array("acoustics", key, compute).reshape(probe.height, len(MEASURES))
    columns: dict[str, Any] = {"clip_id": probe["clip_id"]}
    columns.update({m: arr[:, i] for i, m in enumerate(MEASURES)})
    return pl.DataFrame(columns)


def caption_lengths(calibrated: pl.DataFrame, model: str) -> pl.DataFrame:
    """``layer, unit, caption_len``: whitespace tokens of each neuron's calibrated summary."""
    sub = calibrated.filter(pl.col("model") == model)
    return sub.select("layer", "unit", pl.col("kept").list.join(" ").str.split(" ")
                      .list.eval(pl.element().filter(pl.element() != "")).list.len()
                      .cast(pl.Int64).alias("caption_len"))


# ----- what did not run, and the unlearning budget ----------------------------------------------
def _icl_runs(sims: set[str]) -> tuple[str, str] | None:
    """(top-1 run, top-5 run) similarity labels of the ICL rows present, or None."""
    top1 = next((s for s in (ICL_SIMILARITY[1], "") if s in sims), None)
    if top1 is None:
        return None
    return top1, ICL_SIMILARITY[5] if ICL_SIMILARITY[5] in sims else top1


def closed_not_run(concepts: pl.DataFrame, reasons: Mapping[str, str], model: str, layer: str,
                   similarities: Sequence[str]) -> tuple[dict[str, str], tuple[str, str]]:
    """Closed-set methods / similarities without rows on one layer, and the ICL runs to use.

    Args:
        concepts: ConceptSet frame.
        reasons: :func:`closed_reasons` (used for a method with no rows at all).
        model, layer: the layer (e.g. a classifier).
        similarities: the DB / TAB similarity ids expected.

    Returns:
        (``{method | "method/similarity": reason}``, (ICL top-1 run, ICL top-5 run) labels).
    """
    rows = concepts.filter((pl.col("model") == model) & (pl.col("layer") == layer)
                           & (pl.col("kind") == "closed"))
    out: dict[str, str] = {}
    icl: tuple[str, str] = ("", "")
    for method in CLOSED_METHODS:
        sims = set(rows.filter(pl.col("method") == method)["similarity"].unique().to_list())
        runs = _icl_runs(sims) if method == "ICL" else None
        if not sims or (method == "ICL" and runs is None):
            out[method] = reasons[method]
        elif runs is not None:
            icl = runs
        else:
            out.update({f"{method}/{s}": f"no {method} rows with similarity {s!r}"
                        for s in similarities if s not in sims})
    return out, icl


def strategy_not_run(concepts: pl.DataFrame, reasons: Mapping[str, str], info: ModelInfo,
                     cfg: Any) -> dict[str, str]:
    """Table 4 strategies whose concepts are missing on the hidden layers, with the reason."""
    hidden = concepts.filter((pl.col("model") == info.id) & (pl.col("layer") != info.classifier))
    out: dict[str, str] = {}
    for method, sim in (("DB", cfg.db_similarity), ("TAB", cfg.tab_similarity)):
        if hidden.filter((pl.col("kind") == "closed") & (pl.col("method") == method)
                         & (pl.col("similarity") == sim)).height == 0:
            out[method] = reasons[method] if reasons[method] != "no ConceptSet rows" \
                else f"no {method} concepts with similarity {sim!r} on hidden layers"
    nouns = hidden.filter((pl.col("kind") == "open") & pl.col("pos").is_in(cfg.ocp_pos))
    if nouns.height == 0:
        out["OCP"] = "no open-set nouns (run the open stage)"
    return out


def target_subset(names: Sequence[str], n: int | None, seed: int) -> tuple[str, ...] | None:
    """A seeded subset of ``n`` class names in class order (None: every class)."""
    if n is None or n >= len(names):
        return None
    chosen = set(random.Random(seed).sample(sorted(names), n))
    return tuple(c for c in names if c in chosen)


def random_budget(concepts: pl.DataFrame, info: ModelInfo, cfg: Any,
                  runnable: Sequence[Any], similarity: Any = None) -> int:
    """Units Random prunes: the mean count of the other strategies' masks (the paper's counts
    were similar); without any, the paper's share (3000 of 55,296 AST neurons)."""
    from and_toolkit.experiments.masks import hidden_layers, n_pruned
    from and_toolkit.experiments.unlearning_masks import select_masks

    hidden = hidden_layers(info.layers, info.classifier)
    targets = list(cfg.target_classes or info.class_names)
    counts = [n_pruned(m) for s in runnable for m in select_masks(
        s, concepts, hidden, info.class_names, targets, cfg, similarity=similarity).values()]
    if counts and sum(counts):
        return max(1, round(sum(counts) / len(counts)))
    return max(1, round(sum(hidden.values()) * 3000 / 55296))


# ----- caption variants of the adjective-based results --------------------------------------------
def variant_suffix(variant: str) -> str:
    """Experiment-id suffix of a caption variant: "" for the captions alone (the paper's
    setting, under the paper's id), ``report.sections.DESCRIPTOR_SUFFIX`` for descriptors."""
    from and_toolkit.report.sections import DESCRIPTOR_SUFFIX

    return DESCRIPTOR_SUFFIX if variant == "descriptors" else ""


def variant_concepts(concepts: pl.DataFrame, variant: str) -> pl.DataFrame:
    """The ConceptSet rows an experiment of one caption variant reads, with that variant's
    Module C adjectives under method "OCP" (so every experiment function reads one method).

    Variant "": every row except other variants' adjectives (closed concepts, OCP, POS:*).
    Variant "descriptors": closed concepts and the OCP+descriptors adjectives relabelled OCP
    (the variant has no POS lists of its own: its sentences add adjectives only).
    """
    others = [open_method(v) for v in CAPTION_VARIANTS if v]
    if not variant:
        return concepts.filter(~pl.col("method").is_in(others))
    method = open_method(variant)
    return concepts.filter((pl.col("kind") == "closed") | (pl.col("method") == method)) \
        .with_columns(pl.when(pl.col("method") == method).then(pl.lit(open_method("")))
                      .otherwise(pl.col("method")).alias("method"))


def variant_reason(ctx: Context, concepts: pl.DataFrame, variant: str) -> str | None:
    """Why a caption variant's results are not run (None: they run)."""
    if not variant:
        return None
    if not ctx.cfg.captions.descriptors:
        return "captions.descriptors is off (no captions + descriptors variant)"
    if concepts.filter(pl.col("method") == open_method(variant)).height == 0:
        return f"no {open_method(variant)} concepts (re-run the open stage)"
    return None


def adjective_source(ctx: Context, variant: str) -> str:
    """Where the adjectives of a variant come from, and whether Fig 8 may count as a finding
    (only when the adjective source is independent of the clip measurements)."""
    if variant:
        return ("sanity check of the descriptor captioner, not a finding: 'loud' / "
                "'high-pitched' come from our RMS / median-frequency percentile rules on these "
                "clips")
    if ctx.cfg.captions.source == "synthetic":
        return ("adjectives from captions generated from the synthetic clips' parameters "
                "(loudness, pitch): not independent of the measurement, a sanity check")
    return ("adjectives from the imported captions alone, independent of the measured "
            "amplitude / RMS / MDF")
