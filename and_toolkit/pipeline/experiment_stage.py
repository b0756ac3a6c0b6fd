"""The experiments stage: every paper table / figure over the run's records.

Each job calls the pure functions of :mod:`and_toolkit.experiments` and returns ResultRow frames
in the encoding the report expects (docs/report.md). A job whose backend is unavailable becomes
"not run: <reason>" rows; pruning evaluations are cached on disk (a warm re-run does no forward
pass).
"""

from __future__ import annotations

import fnmatch
import json
import time
from collections.abc import Callable
from typing import Any

import polars as pl

from and_toolkit.errors import StageNotRun
from and_toolkit.experiments import encoding as enc
from and_toolkit.experiments.human_ratings import DESCRIBED_SIMILARITY, rating_table
from and_toolkit.experiments.paper import PAPER_NEURONS, PAPER_TEST_ACCURACY, SIMILARITIES
from and_toolkit.experiments.rows import result_key, result_row
from and_toolkit.pipeline.audio_text_model import recorded_audio_text
from and_toolkit.pipeline.backends import loaded_text_encoder, text_encoder
from and_toolkit.pipeline.context import Context
from and_toolkit.pipeline.experiment_inputs import (
    Inputs,
    JobResult,
    adjective_source,
    clip_measures,
    closed_not_run,
    closed_reasons,
    concat_results,
    minilm_cos,
    model_info,
    not_run_frame,
    variant_concepts,
    variant_reason,
    variant_suffix,
)
from and_toolkit.pipeline.pruning_jobs import (
    job_ablation,
    job_ablation_descriptors,
    job_dose,
    job_unlearning,
)
from and_toolkit.records.models import (
    CAPTION_VARIANTS,
    CalibratedSummary,
    ConceptSet,
    Rating,
    ResultRow,
)


# ----- Tables 7 / 2 -------------------------------------------------------------------------
def job_last_layer(inp: Inputs) -> JobResult:
    """Tables 7 and 2 on every target's classifier layer."""
    from and_toolkit.experiments.last_layer import LastLayerConfig, table2, table7

    cos = minilm_cos(inp.ctx)
    t7s, t2s = [], []
    for info in inp.infos:
        not_run, icl = closed_not_run(inp.concepts, inp.reasons, info.id, info.classifier,
                                      SIMILARITIES)
        cfg = LastLayerConfig(model=info.id, layer=info.classifier,
                              icl_top1_similarity=icl[0], icl_top5_similarity=icl[1],
                              paper_model=info.paper_model)  # type: ignore[arg-type]
        t7 = table7(inp.concepts, info.class_names, cos, cfg, not_run=not_run)
        t7s.append(t7)
        t2s.append(table2(t7, cfg))
    tab = tab_model_note(inp.ctx)
    if tab:  # TAB's rows say which audio-text model made them
        t7s, t2s = ([f.with_columns(pl.when(pl.col("group") == "TAB").then(
            pl.concat_str(pl.col("note"), pl.lit(f"; {tab}"))).otherwise(pl.col("note"))
            .alias("note")) for f in frames] for frames in (t7s, t2s))
    return JobResult({"table7": concat_results(t7s), "table2": concat_results(t2s)},
                     {"cos_encoder": "minilm", "layers": {i.id: i.classifier for i in inp.infos}})


# ----- Figs 3, 9, 5 -------------------------------------------------------------------------
def job_adjectives(inp: Inputs) -> JobResult:
    """Fig 3 (AST top-10), Fig 9 (top-20 per model), Fig 5 (adjectives per block + fits)."""
    from and_toolkit.experiments.adjectives import (
        AdjectiveConfig,
        BlockAdjectiveConfig,
        adjectives_per_block,
        top_adjectives,
    )

    pm = inp.paper_models
    ast = [m for m, p in pm.items() if p == "AST"]
    out: dict[str, pl.DataFrame] = {}
    for variant in CAPTION_VARIANTS:
        fig3, fig9, fig5 = (f"{e}{variant_suffix(variant)}" for e in ("fig3", "fig9", "fig5"))
        why = variant_reason(inp.ctx, inp.concepts, variant)
        if why is not None:
            out.update({e: not_run_frame(e, why) for e in (fig3, fig9, fig5)})
            continue
        concepts = variant_concepts(inp.concepts, variant)
        out[fig9], _ = top_adjectives(concepts, AdjectiveConfig(top_n=20, experiment=fig9,
                                                                paper_model=pm))
        if ast:
            out[fig3], _ = top_adjectives(concepts.filter(pl.col("model").is_in(ast)),
                                          AdjectiveConfig(top_n=10, experiment=fig3,
                                                          paper_model=pm))
        else:
            out[fig3] = not_run_frame(fig3, "no target stands for the paper's AST")
        out[fig5], _ = adjectives_per_block(concepts, inp.neurons(),
                                            BlockAdjectiveConfig(paper_model=pm,
                                                                 experiment=fig5))
    return JobResult(out, {"paper_models": pm})


# ----- Figs 6, 11-13, Table 8 ---------------------------------------------------------------
def _extremes_by_k(inp: Inputs) -> dict[int, pl.DataFrame]:
    out = {inp.ctx.cfg.record.k: inp.extremes}
    for k in inp.ctx.cfg.record.extra_k:
        if inp.ctx.run.has_extremes(k):
            out[k] = inp.ctx.run.extremes(k).filter(
                pl.col("model").is_in([i.id for i in inp.infos]))
    return dict(sorted(out.items()))


def job_interpretability(inp: Inputs) -> JobResult:
    """Elbow, Fig 6, Figs 11-13 (both rules, elbow k and the configured k, every K) and
    Table 8 (word frequencies of the configured clustering)."""
    from and_toolkit.experiments import interpretability as interp
    from and_toolkit.records.models import Caption

    ctx, exp = inp.ctx, inp.ctx.cfg.experiments
    captioner = ctx.cfg.captions.captioner_id if exp.cluster_captions == "base" \
        else ctx.active_captioner()
    caps = ctx.run.read(Caption).filter(pl.col("captioner") == captioner)
    pool = interp.build_sentence_pool(caps)
    emb = text_encoder(ctx, "minilm").encode(pool["sentence"].to_list())
    ccfg = interp.ClusterConfig(seed=ctx.cfg.seed)
    curve = interp.inertia_curve(emb, ccfg)
    elbow = interp.elbow_k(curve["k"].to_list(), curve["inertia"].to_list())
    ks = sorted({exp.clusters, elbow})
    fig6, fig11, sublayers, table8 = [], [], [], ResultRow.empty()
    neurons = inp.neurons()
    for k in ks:
        label = f"k={k}"
        labels = interp.kmeans_labels(emb, k, ccfg)
        clusters = interp.clip_clusters(pool, labels, caps["clip_id"].to_list())
        for extremes in _extremes_by_k(inp).values():
            icfg = interp.InterpretabilityConfig(clustering=label, paper_model=inp.paper_models)
            rows, _ = interp.uninterpretable_neurons(extremes, clusters, neurons, icfg)
            fig11.append(rows.filter(pl.col("experiment") == "fig11_13"))
            if k == exp.clusters:
                fig6.append(rows.filter(pl.col("experiment") == "fig6"))
                sublayers.append(rows.filter(pl.col("experiment") == "fig6_sublayers"))
        if k == exp.clusters:
            table8, _ = interp.cluster_words(pool, labels, clustering=label, top_n=40,
                                             extra_stopwords=("sound", "sounds", "audio"))
    fig6.append(interp.pool_rows(pool, caps["clip_id"].to_list(), label=captioner))
    return JobResult({"elbow": interp.elbow_rows(curve, elbow), "fig6": concat_results(fig6),
                      "fig11_13": concat_results(fig11),
                      "fig6_sublayers": concat_results(sublayers),
                      "table8": table8},
                     {"captioner": captioner, "sentences": pool.height, "elbow_k": elbow,
                      "clusterings": ks, "encoder": text_encoder(ctx, "minilm").id})


def job_table8_descriptors(inp: Inputs) -> JobResult:
    """Table 8 on the captions + descriptors variant: the configured k-means clustering of the
    sentence pool of the captions with descriptor sentences (``table8_descriptors``)."""
    from and_toolkit.experiments import interpretability as interp
    from and_toolkit.records.models import Caption

    ctx, exp = inp.ctx, inp.ctx.cfg.experiments
    name = f"table8{variant_suffix('descriptors')}"
    if not ctx.cfg.captions.descriptors:
        return JobResult({name: not_run_frame(name, "captions.descriptors is off")})
    captioner = ctx.active_captioner()
    pool = interp.build_sentence_pool(ctx.run.read(Caption).filter(
        pl.col("captioner") == captioner))
    emb = text_encoder(ctx, "minilm").encode(pool["sentence"].to_list())
    labels = interp.kmeans_labels(emb, exp.clusters, interp.ClusterConfig(seed=ctx.cfg.seed))
    rows, _ = interp.cluster_words(pool, labels, clustering=f"k={exp.clusters}", top_n=40,
                                   extra_stopwords=("sound", "sounds", "audio"),
                                   experiment=name)
    return JobResult({name: rows}, {"captioner": captioner, "sentences": pool.height})


# ----- Fig 8 --------------------------------------------------------------------------------
def job_acoustic(inp: Inputs) -> JobResult:
    """Fig 8: amplitude / MDF of top-K clips for neurons with vs without 'loud' / 'high-pitched'."""
    from and_toolkit.experiments.acoustic import AcousticConfig, acoustic_groups

    out: dict[str, pl.DataFrame] = {}
    sources: dict[str, str] = {}
    for variant in CAPTION_VARIANTS:
        exp = f"fig8{variant_suffix(variant)}"
        why = variant_reason(inp.ctx, inp.concepts, variant)
        if why is not None:
            out[exp] = not_run_frame(exp, why)
            continue
        sources[exp] = adjective_source(inp.ctx, variant)
        out[exp], _ = acoustic_groups(
            inp.extremes, variant_concepts(inp.concepts, variant), clip_measures(inp.ctx),
            AcousticConfig(paper_model=inp.paper_models, experiment=exp,
                           adjective_source=sources[exp]))
    return JobResult(out, {"k": inp.ctx.cfg.record.k, "adjective_source": sources})


# ----- Table 6, Table 3, annotation sheet ---------------------------------------------------
def job_qualitative(inp: Inputs) -> JobResult:
    """Table 6 (+ its neuron table for the report), the annotation sheet and Table 3."""
    from and_toolkit.experiments import qualitative as Q
    from and_toolkit.records.models import Summary

    ctx, exp = inp.ctx, inp.ctx.cfg.experiments
    run = ctx.run
    calibrated, probe = run.read(CalibratedSummary), ctx.probe()
    sims = dict(DESCRIBED_SIMILARITY)
    rows6, table = Q.qualitative_table(
        inp.neurons(), inp.extremes, probe, run.read(Summary), calibrated, inp.concepts,
        Q.QualitativeConfig(n_per_model=exp.qualitative_neurons, seed=ctx.cfg.seed,
                            similarity=sims))
    table = table.with_columns(pl.col("clip_labels").map_elements(
        lambda xs: enc.label_counts(list(xs)), return_dtype=pl.List(pl.String)))
    run.write_text(run.table6_path, json.dumps(table.drop("clip_paths").to_dicts(), indent=1,
                                             sort_keys=True, ensure_ascii=False) + "\n")
    aliases = {(m, layer): a for m, layer, a in
               inp.neurons().select("model", "layer", "alias").unique().iter_rows() if a}
    rows6 = enc.table6_rows(rows6, aliases)
    ast = [i for i in inp.infos if i.paper_model == "AST"] or inp.infos
    sheet = Q.annotation_sheet(inp.neurons(ast), inp.extremes, probe, calibrated, inp.concepts,
                               Q.AnnotationConfig(n_per_block=exp.annotation_neurons,
                                                  seed=ctx.cfg.seed, similarity=sims))
    run.write_text(run.annotation_sheet_path, sheet.write_csv())
    sheet_name = run.annotation_sheet_path.name
    prov: dict[str, Any] = {"sheet": sheet_name, "sheet_rows": sheet.height}
    if exp.annotations:
        ann = Q.load_annotations(exp.annotations)
        table3 = Q.human_evaluation(ann, text_encoder(ctx, "minilm"), Q.HumanEvalConfig())
        prov["annotations"] = exp.annotations
    elif run.has(Rating):  # the explorer's rating mode (and-toolkit explore RUN)
        table3 = rating_table(run.ratings(), Q.HumanEvalConfig(), inp.paper_models,
                              run.ratings_path.name)
        prov["ratings"] = {"file": run.ratings_path.name, "rows": run.rows(Rating)}
    else:
        table3 = not_run_frame("table3", "no human ratings (experiments.annotations is not set "
                               f"and the run has no ratings); rate <run>/{sheet_name} and set "
                               "it, or rate in `and-toolkit explore RUN`")
    return JobResult({"table6": rows6, "table3": table3}, prov)


def job_accuracy(inp: Inputs) -> JobResult:
    """Fold accuracy and neuron counts of every target, beside those of the paper model it
    stands for (paper Sec. 4: 95.0 / 89.75 / 84.75 %; :data:`PAPER_TEST_ACCURACY`,
    :data:`PAPER_NEURONS`)."""
    targets = inp.ctx.run.stage_info("targets")
    rows = []
    for info in inp.infos:
        acc = (targets.get(info.id) or {}).get("test_accuracy")
        paper = info.paper_model
        rows += [
            result_row("target_accuracy", result_key(info.id, "test_accuracy"), "test_accuracy", acc,
                       model=info.id, group=paper, paper_value=PAPER_TEST_ACCURACY[paper],
                       note=f"paper: {paper}'s fold-1 accuracy (Sec. 4)"),
            result_row("target_accuracy", result_key(info.id, "neurons"), "neurons",
                       float(sum(info.layers.values())), model=info.id, group=paper,
                       paper_value=float(PAPER_NEURONS[paper]),
                       note=f"paper: {paper}'s linear-layer neurons"),
        ]
    return JobResult({"target_accuracy": ResultRow.frame(rows)})


def tab_model_note(ctx: Context) -> str | None:
    """One line naming TAB's trained audio-text model (None for CLAP or when TAB did not run):
    what it is, what it was trained on, its zero-shot fold accuracy."""
    from and_toolkit.experiments.last_layer import TAB_MODEL_NOTE, zero_shot_text

    made = recorded_audio_text(ctx)
    if not made:
        return None
    return (f"{TAB_MODEL_NOTE} {made['model']}, trained here on the {made['trained_on']}, "
            f"{made['train_clips']} clips, {made['epochs']} epochs, seed {made['seed']} "
            f"(the paper's CLAP never saw ESC-50); zero-shot fold-{made['test_fold']} "
            f"accuracy {zero_shot_text(made)}")


def job_tab_model(inp: Inputs) -> JobResult:
    """Zero-shot accuracy of TAB's trained audio-text model on the held-out fold (one text
    per class: the class name), beside chance (1 / classes)."""
    ctx = inp.ctx
    made = recorded_audio_text(ctx)
    if not made:
        reason = closed_reasons(ctx).get("TAB") if "TAB" in ctx.cfg.closed.methods else None
        why = ("TAB uses CLAP (closed.tab_model = 'clap'), no model was trained here"
               if ctx.cfg.closed.tab_model == "clap" else reason or "TAB did not run")
        return JobResult({"tab_model": not_run_frame("tab_model", why)})
    model, classes = str(made["model"]), len(ctx.class_names())
    note = (f"{made['zero_shot_clips']} clips of fold {made['test_fold']}; prompt: "
            f"{made['zero_shot_prompt']}; trained on the {made['trained_on']} "
            f"({made['train_clips']} clips, {made['epochs']} epochs, seed {made['seed']}, "
            f"{made['train_seconds']} s); no paper value: the paper used LAION-CLAP")
    rows = [result_row("tab_model", result_key(model, "zero_shot_accuracy"),
                       "zero_shot_accuracy", made.get("zero_shot_accuracy"), model=model,
                       group="trained audio-text", series="zero-shot", note=note),
            result_row("tab_model", result_key(model, "chance"), "zero_shot_accuracy",
                       1.0 / classes, model=model, group="chance", series="zero-shot",
                       note=f"1 / {classes} classes")]
    return JobResult({"tab_model": ResultRow.frame(rows)}, {"tab_model": made})


JOBS: tuple[tuple[tuple[str, ...], Callable[[Inputs], JobResult]], ...] = (
    (("target_accuracy",), job_accuracy),
    (("tab_model",), job_tab_model),
    (("table7", "table2"), job_last_layer),
    (("table4", "table4_classes", "fig10"), job_unlearning),
    (("fig3", "fig9", "fig5", "fig3_descriptors", "fig9_descriptors", "fig5_descriptors"),
     job_adjectives),
    (("ablation_dose",), job_dose),
    (("fig4a", "fig4b", "fig4c", "fig4_seeds"), job_ablation),
    (("fig4b_descriptors", "fig4c_descriptors", "fig4_seeds_descriptors"),
     job_ablation_descriptors),
    (("elbow", "fig6", "fig11_13", "fig6_sublayers", "table8"), job_interpretability),
    (("table8_descriptors",), job_table8_descriptors),
    (("fig8", "fig8_descriptors"), job_acoustic),
    (("table6", "table3"), job_qualitative),
)
"""Every job and the experiment ids it writes, in run order."""
EXPERIMENT_IDS: tuple[str, ...] = tuple(e for ids, _ in JOBS for e in ids)


def stage_experiments(ctx: Context) -> dict[str, Any]:
    """Run every included experiment and write ``results/<id>.parquet``.

    Returns:
        Stage info: rows and seconds per experiment, not-run reasons, pruning evaluations
        (calls / forward passes), backends used.
    """
    from and_toolkit.pipeline.targets import untrained_reason

    if (why := untrained_reason(ctx)) is not None:
        return {"skipped": why}
    patterns = ctx.cfg.experiments.include
    wanted = [e for e in EXPERIMENT_IDS if any(fnmatch.fnmatchcase(e, p) for p in patterns)]
    mine = pl.col("model").is_in([t.id for t in ctx.cfg.targets])
    inp = Inputs(ctx=ctx, infos=[model_info(ctx, t) for t in ctx.cfg.targets],
                 concepts=ctx.run.read(ConceptSet).filter(mine),
                 extremes=ctx.run.extremes().filter(mine), reasons=closed_reasons(ctx))
    info: dict[str, Any] = {"experiments": {}, "not_run": {}}
    for ids, job in JOBS:
        todo = [e for e in ids if e in wanted]
        if not todo:
            continue
        start = time.perf_counter()
        try:
            result = job(inp)
        except StageNotRun as exc:
            result = JobResult({e: not_run_frame(e, str(exc)) for e in ids})
        seconds = round(time.perf_counter() - start, 2)
        print(f"[experiments] {job.__name__[4:]}: {seconds:.1f} s")
        for e in todo:
            frame = result.frames[e]
            ctx.run.write_result(e, frame, job=job.__name__, **result.provenance)
            notes = [n for n in frame["note"].to_list() if n.startswith("not run")]
            info["experiments"][e] = {"rows": frame.height, "seconds": seconds}
            if notes:
                info["not_run"][e] = sorted(set(notes))
    for e in sorted(set(EXPERIMENT_IDS) - set(wanted)):
        ctx.run.remove_result(e)
    info["pruning"] = {m: ev.timing() for m, ev in inp.evaluators.items()}
    encoder = loaded_text_encoder(ctx, "minilm")
    info["backends"] = {"text_encoder": encoder.id} if encoder is not None else {}
    return info
