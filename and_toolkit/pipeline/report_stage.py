"""The report stage: render the run's result frames as one self-contained HTML page.

:func:`stage_report` renders the results with the paper's claims re-tested
(:mod:`and_toolkit.report.findings`) and the run's provenance. The page carries no timestamp
or timing, so rendering the same run twice gives byte-identical HTML.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from and_toolkit.atomic import atomic_write_bytes
from and_toolkit.cache import sha256_file
from and_toolkit.config import STAGES, TargetSection
from and_toolkit.pipeline.audio_text_model import recorded_audio_text
from and_toolkit.pipeline.context import Context
from and_toolkit.pipeline.input_checks import data_path
from and_toolkit.records.models import (
    CalibratedSummary,
    Caption,
    ExplanationScore,
    ProbeClip,
)
from and_toolkit.report.context import ExtraTable, Provenance, ReportContext
from and_toolkit.report.findings import ModelFacts, paper_findings
from and_toolkit.report.publish import report_summary_path
from and_toolkit.report.setup import RunFacts, TargetFacts, setup_items, target_line
from and_toolkit.report.timings import stage_times

__all__ = ["build_report_context", "run_facts", "stage_report"]

NOT_GRADED = {"synthetic": "synthetic data"}
"""Probe kinds whose runs grade none of the paper's claims, with the reason shown."""

BACKEND_KEYS = ("captioners", "summarizer", "adjective_filter", "encoder", "llm", "icl_llm",
                "tagger", "text_encoder", "audio_text_encoder", "backend")
"""Stage-info keys (manifest ``stages.<stage>``) that name a backend."""
TABLE6_COLUMNS = {"model": "model", "neuron": "neuron", "block": "block",
                  "clip_labels": "top-K clip labels", "s_h_c": "calibrated summary S_h^c",
                  "DB": "DB", "TAB": "TAB", "ICL": "ICL", "open_concepts": "open concepts"}


def _flat(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)


def manifest_backends(manifest: Mapping[str, Any]) -> dict[str, str]:
    """``{"<stage>.<role>": backend id}`` from the stage infos of a manifest."""
    out: dict[str, str] = {}
    for stage, info in sorted((manifest.get("stages") or {}).items()):
        if not isinstance(info, dict):
            continue
        for key, value in info.items():
            if key == "backends" and isinstance(value, dict):
                out.update({f"{stage}.{k}": _flat(v) for k, v in value.items()})
            elif key in BACKEND_KEYS and value not in (None, "", [], {}):
                out[f"{stage}.{key}"] = _flat(value)
    return out


def _sha_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def data_hashes(ctx: Context) -> dict[str, str]:
    """Hashes of the inputs: probe table, clip order, captions, trained weights."""
    out: dict[str, str] = {}
    if ctx.run.has(ProbeClip):
        out["probe table (sha256)"] = ctx.data_sha()
        out["probe clip order (sha256)"] = ctx.probe_sha()
    caps = ctx.cfg.captions
    if caps.source == "file" and caps.file:
        path = data_path(caps.file)
        if path.is_file():
            out["caption file (sha256)"] = sha256_file(path)
    elif ctx.run.has(Caption):
        rows = ctx.run.read(Caption).sort("captioner", "clip_id").select("clip_id", "text")
        out["captions (sha256 of the table)"] = _sha_json(rows.rows())
    for tid, info in sorted(ctx.run.stage_info("targets").items()):
        if isinstance(info, dict) and info.get("weights_key"):
            out[f"weights {tid} (cache key)"] = str(info["weights_key"])
    return out


def _table6(ctx: Context) -> tuple[ExtraTable, ...]:
    path = ctx.run.table6_path
    if not path.is_file():
        return ()
    rows = json.loads(path.read_text("utf-8"))
    out = []
    for r in rows:
        r["neuron"] = f"{r.get('alias') or r['layer']} #{r['unit']}"
        out.append({k: r.get(k) for k in TABLE6_COLUMNS})
    table = ExtraTable(title="Sampled neurons", columns=tuple(TABLE6_COLUMNS.values()),
                       rows=tuple({TABLE6_COLUMNS[k]: v for k, v in r.items()} for r in out),
                       caption="Random neurons per model (seeded): the labels of their top-K "
                       "clips, the calibrated summary, the top closed-set concept of each "
                       "method and the kept open-set adjectives.")
    return (table,)


def _best_worst(ctx: Context) -> tuple[ExtraTable, ...]:
    """The best- and worst-scored neurons of each description kind (score stage)."""
    from and_toolkit.experiments.explanation_quality import best_worst

    if not ctx.run.has(ExplanationScore):
        return ()
    rows = best_worst(ctx.run.read(ExplanationScore), ctx.run.neuron_index())
    if not rows:
        return ()
    return (ExtraTable.from_rows(
        "Best- and worst-scored neurons", rows,
        caption="Per description kind (captions alone), the 3 neurons whose description best "
        "and worst predicts their held-out activations (AUC), with the null AUC of a shuffled "
        "description on the same neuron. Descriptions are model output, shown verbatim."),)


def _settings(prov: Mapping[str, Any]) -> list[str]:
    """``key: value`` lines; a dict of dicts (e.g. configs per model) gives one line each."""
    out = []
    for key, value in sorted(prov.items()):
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            out += [f"{key} {sub}: {_flat(v)}" for sub, v in sorted(value.items())]
        else:
            out.append(f"{key}: {_flat(value)}")
    return out


def result_provenance(ctx: Context, results: Mapping[str, Any]) -> dict[str, tuple[ExtraTable,
                                                                                  ...]]:
    """A small "Provenance" table per result with values: its file, job and settings."""
    from and_toolkit.report.views import not_run_reason

    out: dict[str, tuple[ExtraTable, ...]] = {}
    for exp, frame in sorted(results.items()):
        path = ctx.run.result_path(exp)
        if not path.is_file() or not_run_reason(frame, exp) is not None:
            continue
        prov = ctx.run.result_provenance(exp)
        settings = _settings({k: v for k, v in prov.items() if k != "job"})
        row: dict[str, Any] = {"file": f"data/{exp}.parquet", "job": str(prov.get("job", "")),
                               "settings": settings or ["—"]}
        out[exp] = (ExtraTable(title="Provenance", columns=("file", "job", "settings"),
                               rows=(row,)),)
    return out


def record_backends(ctx: Context) -> dict[str, str]:
    """Backends named in record provenance but not in the manifest (calibration encoder)."""
    if not ctx.run.has(CalibratedSummary):
        return {}
    enc = ctx.run.provenance(CalibratedSummary).get("encoder")
    return {"calibrate.encoder": str(enc)} if enc else {}


def _neurons(results: Mapping[str, Any]) -> dict[str, int]:
    frame = results.get("target_accuracy")
    if frame is None:
        return {}
    rows = frame.filter(frame["metric"] == "neurons").select("model", "value").rows()
    return {m: int(v) for m, v in rows if v is not None}


def _tab_model_fact(ctx: Context) -> str:
    """The setup line of TAB's audio-text model (CLAP path, or the model trained here)."""
    closed = ctx.cfg.closed
    if "TAB" not in closed.methods:
        return "none (TAB not in closed.methods)"
    if closed.tab_model == "clap":
        return f"CLAP from {closed.clap_path}" if closed.clap_path else "none (TAB not run)"
    from and_toolkit.experiments.last_layer import zero_shot_text

    made = recorded_audio_text(ctx)
    if not made:
        return "trained here (closed.tab_model = 'trained'), not recorded: TAB did not run"
    acc = zero_shot_text(made)
    return (f"{made['model']}: {made['architecture']}; trained here on the "
            f"{made['trained_on']} ({made['train_clips']} clips: the probe set's other folds, "
            f"unlike the paper's CLAP), {made['epochs']} epochs, seed {made['seed']}; zero-shot "
            f"fold-{made['test_fold']} accuracy {acc}")


def run_facts(ctx: Context, results: Mapping[str, Any]) -> RunFacts:
    """This run's side of the setup section, from its config, manifest and result frames."""
    cfg = ctx.cfg
    stages = ctx.run.manifest().get("stages") or {}
    targets = stages.get("targets") or {}
    neurons = _neurons(results)
    facts = tuple(TargetFacts(t.id, str(t.arch), t.paper_model_id,
                              (targets.get(t.id) or {}).get("test_accuracy"), neurons.get(t.id))
                  for t in cfg.targets)
    probe = stages.get("probe") or {}
    clips, classes = probe.get("clips"), probe.get("classes")
    size = (f"{clips:,} clips, {classes} classes" if isinstance(clips, int)
            and isinstance(classes, int) else "size not recorded")
    caps = cfg.captions
    summarizer = (f"LLM {cfg.summaries.llm}" if cfg.summaries.summarizer == "llm"
                  else "extractive (sentences copied from the captions)")
    icl = cfg.closed.icl_llm if "ICL" in cfg.closed.methods else "ICL not run"
    subset = ", ".join(cfg.probe.classes) if cfg.probe.classes else "all classes of the probe"
    unlearning = cfg.experiments.unlearning_classes
    items = {
        "probing set": f"{cfg.probe.kind}: {size}",
        "captioner": f"{caps.captioner_id} ({'caption file' if caps.source == 'file' else caps.source})",
        "descriptor sentences": "yes: captions + our acoustic-descriptor sentence"
                                if caps.descriptors else "no: captions only",
        "summariser": summarizer,
        "ICL LLM": icl,
        "text encoder": f"{cfg.closed.encoder} (Module A, Cos); {cfg.calibrate.encoder} "
                        "(calibration)",
        "TAB audio-text model": _tab_model_fact(ctx),
        "K": f"{cfg.record.k} top clips (more K: {', '.join(map(str, cfg.record.extra_k)) or 'none'})",
        "classes": f"{subset}; Table 4 / Fig 10 over "
                   f"{unlearning if unlearning else 'all'} target classes",
    }
    same = {"K"} if cfg.record.k == 5 and {10, 20} <= set(cfg.record.extra_k) else set()
    if cfg.probe.kind == "esc50" and clips == 2000:
        same.add("probing set")
    if not caps.descriptors:
        same.add("descriptor sentences")
    if not cfg.probe.classes and not unlearning:
        same.add("classes")
    return RunFacts(targets=facts, items=items, same=frozenset(same))


def _model_facts(ctx: Context, target: Any, trained: Mapping[str, Any],
                 n_classes: int | None) -> ModelFacts:
    """The claims' facts of one target: paper model, test accuracy, test clips (the probe's
    clips in the target's test fold, when the targets stage recorded it) and classes."""
    fold = trained.get("test_fold")
    n_test = (int((ctx.probe()["fold"] == fold).sum()) if isinstance(fold, int) else None)
    return ModelFacts(target.paper_model_id, trained.get("test_accuracy"),
                      n_test=n_test or None, n_classes=n_classes)


def _pretraining(target: TargetSection, trained: dict[str, Any]) -> str:
    """How ``target`` was pretrained, with the blocks fine-tuned here when the targets stage
    recorded them (``yamnet_tuned_blocks``)."""
    text = str(target.pretraining)
    blocks = trained.get("yamnet_tuned_blocks")
    if isinstance(blocks, int):
        text += (f" (its top {blocks} separable blocks and the head; the layers below frozen)"
                 if blocks <= 13 else " (every layer, the stem included)")
    return text


def build_report_context(ctx: Context, results: Mapping[str, Any]) -> ReportContext:
    """Provenance, findings, extra tables and notes of the run's report (no timestamps).

    Args:
        ctx: the pipeline context.
        results: experiment id -> ResultRow frame.

    Returns:
        The :class:`ReportContext`.
    """
    manifest = ctx.run.manifest()
    stages = manifest.get("stages") or {}
    targets = stages.get("targets") or {}
    n_classes = len(ctx.class_names()) or None
    facts = {t.id: _model_facts(ctx, t, targets.get(t.id) or {}, n_classes)
             for t in ctx.cfg.targets}
    mapping = ", ".join(f"{t.id} → {t.paper_model_id}"
                        + (f" ({_pretraining(t, targets.get(t.id) or {})})" if t.pretraining
                           else "") for t in ctx.cfg.targets)
    ours = ("ours from small models trained here" if not any(
        t.pretraining for t in ctx.cfg.targets) else "ours from small models trained here "
        "and from the pretrained networks named")
    notes = [f"Targets and the paper models they stand in for: {mapping}. The paper's numbers "
             f"come from pretrained AST / BEATs on ESC-50; {ours}."]
    for t in ctx.cfg.targets:
        window = (t.overrides or {}).get("whisper_window_seconds")
        if t.arch == "whisper-frozen" and window is not None and float(window) < 30.0:
            notes.append(f"{t.id} reads a {float(window):g} s window, not Whisper's own 30 s "
                         "(overrides.whisper_window_seconds); the 30 s window pads each clip "
                         "with silence. Its effect is measured in "
                         "benchmarks/results/whisper_window.json.")
    closed = stages.get("closed") or {}
    for method, reason in sorted((closed.get("not_run") or {}).items()):
        notes.append(f"{method} not run: {reason}")
    sheet = ctx.run.annotation_sheet_path
    if sheet.is_file():
        notes.append(f"Annotation sheet for Table 3's human ratings: {sheet.name} in the run "
                     "directory (rate it, then set experiments.annotations).")
    provenance = Provenance(config=ctx.cfg.model_dump(mode="json"),
                            backends={**record_backends(ctx), **manifest_backends(manifest)},
                            versions={str(k): str(v) for k, v in
                                      (manifest.get("versions") or {}).items()},
                            data_hashes=data_hashes(ctx))
    extra = result_provenance(ctx, results)
    if t6 := _table6(ctx):
        extra["table6"] = (*t6, *extra.get("table6", ()))
    if scored := _best_worst(ctx):
        extra["explanation_scores"] = (*scored, *extra.get("explanation_scores", ()))
    return ReportContext(run_name=ctx.cfg.name, title="AND reproduction report",
                         provenance=provenance, findings=tuple(paper_findings(results, facts)),
                         extra_tables=extra, notes=tuple(notes),
                         setup=setup_items(run_facts(ctx, results)),
                         timings=stage_times({k: v for k, v in stages.items() if k != "report"},
                                             STAGES),
                         not_graded=NOT_GRADED.get(ctx.cfg.probe.kind, ""))


def stage_report(ctx: Context) -> dict[str, Any]:
    """Render ``<run>/report/index.html`` and write ``<run>/report/summary.json`` beside it (run
    name, models with accuracy, summary line). Nothing is written outside the run: publishing
    to a reports folder is :func:`and_toolkit.report.publish.publish_report`
    (``and-toolkit run CONFIG --publish DIR``).

    Returns:
        Stage info: paths, section counts and verdicts (no timings).
    """
    from and_toolkit.pipeline.targets import untrained_reason

    if (why := untrained_reason(ctx)) is not None:
        return {"skipped": why}
    from and_toolkit.report.render import render_report, summary_line

    results = ctx.run.results()
    context = build_report_context(ctx, results)
    html = render_report(results, context)
    data = html.encode("utf-8")
    line = summary_line(results, context)
    summary = {"name": ctx.cfg.name, "summary": line,
               "models": [target_line(t) for t in run_facts(ctx, results).targets]}
    text = json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    meta = report_summary_path(ctx.run)
    atomic_write_bytes(meta, lambda tmp: tmp.write_text(text, "utf-8"))
    atomic_write_bytes(ctx.run.report_path, lambda tmp: tmp.write_bytes(data))
    return {"report": str(ctx.run.report_path), "summary_file": str(meta), "summary": line,
            "sha256": hashlib.sha256(data).hexdigest(),
            "verdicts": {f.claim: "not graded" if context.not_graded else f.verdict
                         for f in context.findings}}
