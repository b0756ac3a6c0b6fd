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


# ----- which targets are pruned -------------------------------------------------------------
def _prunable(inp: Inputs, infos: list[ModelInfo]) -> list[ModelInfo]:
    """``infos`` left after ``experiments.pruning_models`` (None: all of them).

    Raises:
        ConfigError: an id in ``experiments.pruning_models`` that is not a target.
    """
    chosen = inp.ctx.cfg.experiments.pruning_models
    if chosen is None:
        return infos
    keep = {i.id for i in select_models(inp.infos, chosen, [], "experiments.pruning_models")}
    return [i for i in infos if i.id in keep]


def _unpruned_rows(inp: Inputs, experiments: tuple[str, ...] | list[str],
                   infos: list[ModelInfo]) -> dict[str, pl.DataFrame]:
    """One "not run" row per experiment for each of ``infos`` left out by
    ``experiments.pruning_models`` (empty frames when none is)."""
    kept = {i.id for i in _prunable(inp, infos)}
    return _left_out_rows(experiments, [i.id for i in infos if i.id not in kept],
                          "pruning_models", inp.ctx.cfg.experiments.pruning_models or [])


def _left_out_rows(experiments: tuple[str, ...] | list[str], models: list[str], field: str,
                   chosen: list[str]) -> dict[str, pl.DataFrame]:
    """``not run: not in experiments.<field> (<chosen>)`` for each of ``models``, per
    experiment id (empty frames when ``models`` is empty)."""
    why = f"not in experiments.{field} (" + (", ".join(chosen) or "empty") + ")"
    return {e: concat_results([not_run_frame(e, why, m) for m in models]) for e in experiments}


def _with_unpruned(frames: dict[str, pl.DataFrame],
                   extra: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """``frames`` with ``extra``'s rows appended per experiment id."""
    return {e: concat_results([f, *([extra[e]] if e in extra and extra[e].height else [])])
            for e, f in frames.items()}


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
    chosen = select_models(inp.infos, exp.table4_models, [i.id for i in inp.infos],
                           "experiments.table4_models")
    ids = ("table4", "table4_classes", "fig10")
    unpruned = _unpruned_rows(inp, ids, chosen)
    infos = _prunable(inp, chosen)
    if not infos:
        why = ("experiments.table4_models is empty" if not chosen
               else "no target in experiments.pruning_models")
        return JobResult({e: not_run_frame(e, why) for e in ids})
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
    frames = {"table4": summary, "table4_classes": classes, "fig10": concat_results(f10s)}
    return JobResult(_with_unpruned(frames, unpruned), {"configs": prov})


# ----- Fig 4 --------------------------------------------------------------------------------
def _fig4_models(inp: Inputs) -> list[ModelInfo]:
    """The Fig 4 targets: ``experiments.fig4_models``, by default those standing for the AST."""
    return _prunable(inp, _fig4_chosen(inp))


def _fig4_chosen(inp: Inputs) -> list[ModelInfo]:
    """``experiments.fig4_models``, by default the targets standing for the AST (before
    ``experiments.pruning_models``)."""
    ast = [i.id for i in inp.infos if i.paper_model == "AST"]
    return select_models(inp.infos, inp.ctx.cfg.experiments.fig4_models, ast,
                         "experiments.fig4_models")


def _fig4_left_out(inp: Inputs, ids: tuple[str, ...] | list[str]) -> dict[str, pl.DataFrame]:
    """One "not run" row per Fig 4 experiment for each target standing for the AST that an
    explicit ``experiments.fig4_models`` leaves out (so the claims name it as not tested)."""
    chosen = inp.ctx.cfg.experiments.fig4_models
    if chosen is None:
        return {}
    out = [i.id for i in inp.infos if i.paper_model == "AST" and i.id not in chosen]
    return _left_out_rows(ids, out, "fig4_models", chosen)


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
    ids = ("fig4a", "fig4b", "fig4c", "fig4_seeds")
    chosen = _fig4_chosen(inp)
    infos = _prunable(inp, chosen)
    if not infos:
        why = ("experiments.fig4_models is empty" if inp.ctx.cfg.experiments.fig4_models
               is not None else "no target stands for the paper's AST (set "
               "experiments.fig4_models)") if not chosen else (
                   "no Fig 4 target in experiments.pruning_models")
        return JobResult({e: not_run_frame(e, why) for e in ids})
    rows, prov = _fig4_frame(inp, infos, "")
    frames = _with_unpruned(enc.split_fig4(rows), _unpruned_rows(inp, ids, chosen))
    return JobResult(_with_unpruned(frames, _fig4_left_out(inp, ids)), {"configs": prov})


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
    frames = {f"{e}{suffix}": split[e].with_columns(pl.lit(f"{e}{suffix}").alias("experiment"))
              for e in ("fig4b", "fig4c", "fig4_seeds")}
    frames = _with_unpruned(frames, _unpruned_rows(inp, ids, _fig4_chosen(inp)))
    return JobResult(_with_unpruned(frames, _fig4_left_out(inp, ids)),
                     {"variant": "descriptors", "models": [i.id for i in infos]})


def job_dose(inp: Inputs) -> JobResult:
    """Pruning sanity check: random ablation from 0 % to 100 % of every target's hidden
    neurons (same masks and cached evaluation as Fig 4); accuracy must reach chance."""
    from and_toolkit.experiments.dose_response import DoseConfig, dose_response

    seeds = tuple(inp.ctx.cfg.experiments.seeds)
    frames, prov = [], {}
    for info in _prunable(inp, inp.infos):
        cfg = DoseConfig(model=info.id, classifier_layer=info.classifier, seeds=seeds,
                         group=info.paper_model,
                         paper_model=info.paper_model)  # type: ignore[arg-type]
        frames.append(dose_response(info.layers, info.test_clips, inp.evaluate(info), cfg))
        prov[info.id] = cfg.model_dump(mode="json")
    if not frames:
        return JobResult({"ablation_dose": not_run_frame(
            "ablation_dose", "no target in experiments.pruning_models")})
    return JobResult(_with_unpruned({"ablation_dose": concat_results(frames)},
                                    _unpruned_rows(inp, ("ablation_dose",), inp.infos)),
                     {"configs": prov})
