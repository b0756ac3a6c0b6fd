"""Experiment jobs that prune targets: Table 4 / Fig 10 (unlearning), Fig 4 (ablation, both
caption variants) and the random-ablation sanity check. Each returns ResultRow frames for
:mod:`and_toolkit.pipeline.experiment_stage`; pruned evaluations go through ``Inputs.evaluate``
(cached on disk).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from and_toolkit.experiments import encoding as enc
from and_toolkit.pipeline.backends import text_encoder
from and_toolkit.pipeline.experiment_inputs import (
    Inputs,
    JobResult,
    ModelInfo,
    caption_lengths,
    concat_results,
    not_run_frame,
    random_budget,
    select_models,
    strategy_not_run,
    target_subset,
    variant_concepts,
    variant_reason,
    variant_suffix,
    word_cos,
)
from and_toolkit.records.models import CalibratedSummary


# ----- Table 4 / Fig 10 ---------------------------------------------------------------------
def _fig10_target(info: ModelInfo) -> str:
    """Fig 10's class: water_drops (the paper's) if it has test clips, else the first class
    that has."""
    present = set(info.test_clips["label"].to_list())
    if "water_drops" in present:
        return "water_drops"
    return next((c for c in info.class_names if c in present), info.class_names[0])


def job_unlearning(inp: Inputs) -> JobResult:
    """Table 4 (strategy summary; per-class rows go to ``table4_classes``) and Fig 10."""
    from and_toolkit.experiments.unlearning import UnlearningConfig, fig10, split_table4, table4

    exp = inp.ctx.cfg.experiments
    infos = select_models(inp.infos, exp.table4_models, [i.id for i in inp.infos],
                          "experiments.table4_models")
    if not infos:
        why = "experiments.table4_models is empty"
        return JobResult({e: not_run_frame(e, why) for e in ("table4", "table4_classes",
                                                             "fig10")})
    ocp = {k: v for k, v in (("ocp_match", exp.ocp_match), ("ocp_threshold", exp.ocp_threshold),
                             ("matched_count", exp.unlearning_matched_count)) if v is not None}
    encoder = inp.ctx.cfg.calibrate.encoder
    similarity = word_cos(inp.ctx, encoder) if exp.ocp_match == "meaning" else None
    t4s, f10s, prov = [], [], {}
    for info in infos:
        names = info.class_names
        base = UnlearningConfig(
            model=info.id, classifier_layer=info.classifier,
            paper_model=info.paper_model,  # type: ignore[arg-type]
            target_classes=target_subset(names, exp.unlearning_classes, inp.ctx.cfg.seed),
            random_seed=exp.seeds[0], fig10_target=_fig10_target(info),
            ocp_encoder=text_encoder(inp.ctx, encoder).id if similarity else None, **ocp)
        not_run = strategy_not_run(inp.concepts, inp.reasons, info, base)
        runnable = [s for s in base.strategies if s != "Random" and s not in not_run]
        budget = random_budget(inp.concepts, info, base, runnable, similarity)
        cfg = base.model_copy(update={"random_count": budget})
        evaluate = inp.evaluate(info)
        t4s.append(table4(inp.concepts, info.layers, names, info.test_clips, evaluate, cfg,
                          not_run=not_run, similarity=similarity))
        if cfg.fig10_strategy in not_run:
            f10s.append(not_run_frame("fig10", not_run[cfg.fig10_strategy], info.id))
        else:
            f10s.append(enc.fig10_rows(fig10(inp.concepts, info.layers, names, info.test_clips,
                                            evaluate, cfg, similarity=similarity)))
        prov[info.id] = cfg.model_dump(mode="json")
    summary, classes = split_table4(concat_results(t4s))
    return JobResult({"table4": summary, "table4_classes": classes, "fig10": concat_results(f10s)},
                     {"configs": prov})


# ----- Fig 4 --------------------------------------------------------------------------------
def _fig4_models(inp: Inputs) -> list[ModelInfo]:
    """The Fig 4 targets: ``experiments.fig4_models``, by default those standing for the AST."""
    ast = [i.id for i in inp.infos if i.paper_model == "AST"]
    return select_models(inp.infos, inp.ctx.cfg.experiments.fig4_models, ast,
                         "experiments.fig4_models")


def _fig4_frame(inp: Inputs, infos: list[ModelInfo], variant: str,
                panels: tuple[str, ...] | None = None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Fig 4 rows (every seed) of ``infos``, neurons ranked by ``variant``'s adjectives;
    caption lengths (Fig 4a) only for the captions alone. Returns (rows, configs by model)."""
    from and_toolkit.experiments.ablation import AblationConfig, fig4, neuron_counts

    concepts = variant_concepts(inp.concepts, variant)
    calibrated = inp.ctx.run.read(CalibratedSummary) if variant == "" else None
    frames, prov = [], {}
    for info in infos:
        extra = {"panels": panels} if panels is not None else {}
        cfg = AblationConfig(model=info.id, classifier_layer=info.classifier,
                             seeds=tuple(inp.ctx.cfg.experiments.seeds),
                             paper_model=info.paper_model, **extra)  # type: ignore[arg-type]
        lengths = caption_lengths(calibrated, info.id) if calibrated is not None else None
        counts = neuron_counts(concepts, info.layers, cfg, caption_len=lengths)
        frames.append(fig4(counts, info.layers, info.test_clips, inp.evaluate(info), cfg))
        prov[info.id] = cfg.model_dump(mode="json")
    return concat_results(frames), prov


def job_ablation(inp: Inputs) -> JobResult:
    """Fig 4a/b/c (mean over the configured seeds) on the Fig 4 models, neurons ranked by the
    captions alone (the paper's setting)."""
    infos = _fig4_models(inp)
    if not infos:
        why = ("experiments.fig4_models is empty" if inp.ctx.cfg.experiments.fig4_models
               is not None else "no target stands for the paper's AST (set "
               "experiments.fig4_models)")
        return JobResult({e: not_run_frame(e, why)
                          for e in ("fig4a", "fig4b", "fig4c", "fig4_seeds")})
    rows, prov = _fig4_frame(inp, infos, "")
    return JobResult(enc.split_fig4(rows), {"configs": prov})


def job_ablation_descriptors(inp: Inputs) -> JobResult:
    """Fig 4b/c on the captions + descriptors variant (``fig4b_descriptors``, ...): the same
    models, seeds and budgets, neurons ranked by the variant's adjectives."""
    suffix = variant_suffix("descriptors")
    ids = [f"{e}{suffix}" for e in ("fig4b", "fig4c", "fig4_seeds")]
    infos = _fig4_models(inp)
    why = variant_reason(inp.ctx, inp.concepts, "descriptors") or (
        None if infos else "no Fig 4 model (see fig4a)")
    if why is not None:
        return JobResult({e: not_run_frame(e, why) for e in ids})
    rows, _ = _fig4_frame(inp, infos, "descriptors", panels=("4b", "4c"))
    split = enc.split_fig4(rows)
    return JobResult({f"{e}{suffix}": split[e].with_columns(pl.lit(f"{e}{suffix}")
                                                            .alias("experiment"))
                      for e in ("fig4b", "fig4c", "fig4_seeds")},
                     {"variant": "descriptors", "models": [i.id for i in infos]})


def job_dose(inp: Inputs) -> JobResult:
    """Pruning sanity check: random ablation from 0 % to 100 % of every target's hidden
    neurons (same masks and cached evaluation as Fig 4); accuracy must reach chance."""
    from and_toolkit.experiments.dose_response import DoseConfig, dose_response

    seeds = tuple(inp.ctx.cfg.experiments.seeds)
    frames, prov = [], {}
    for info in inp.infos:
        cfg = DoseConfig(model=info.id, classifier_layer=info.classifier, seeds=seeds,
                         group=info.paper_model,
                         paper_model=info.paper_model)  # type: ignore[arg-type]
        frames.append(dose_response(info.layers, info.test_clips, inp.evaluate(info), cfg))
        prov[info.id] = cfg.model_dump(mode="json")
    return JobResult({"ablation_dose": concat_results(frames)}, {"configs": prov})
