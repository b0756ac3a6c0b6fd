"""Stage orchestration: run the configured stages in order, resuming what a run already holds.

Each stage has a fingerprint = hash(previous stage's fingerprint, this stage's config section,
the stamps of the external inputs it reads: :mod:`and_toolkit.pipeline.inputs`). A stage whose
fingerprint is recorded in the manifest and whose files are all there
(:func:`and_toolkit.stage_outputs.missing_outputs`) is skipped; a changed section, a changed
input or a missing file re-runs that stage and every stage after it, and the run says why.
Every file a stage writes is atomic, so a run killed at any point resumes to the same result;
expensive work (training, features, generations, embeddings) is in the content-addressed cache
and is not redone.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from and_toolkit.cache import Cache
from and_toolkit.config import STAGES, RunConfig
from and_toolkit.errors import AndToolkitError, ConfigError, DataError
from and_toolkit.pipeline.context import Context, section_sha
from and_toolkit.pipeline.input_checks import check_inputs
from and_toolkit.pipeline.inputs import InputStamp, input_changes, input_stamps
from and_toolkit.report.publish import Published, publish_report
from and_toolkit.resources import measured
from and_toolkit.run import Run
from and_toolkit.stage_outputs import missing_outputs
from and_toolkit.versions import package_versions

StageFn = Callable[[Context], dict[str, Any]]

REPORT_OUTPUTS = ("report/index.html", "report/summary.json")
"""What the report stage writes in the run, part of its fingerprint: a run rendered before the
stage wrote ``summary.json`` beside the page renders again (publishing needs both)."""


def _stage_functions() -> dict[str, StageFn]:
    from and_toolkit.pipeline.closed_stage import stage_closed
    from and_toolkit.pipeline.data_stages import stage_captions, stage_probe
    from and_toolkit.pipeline.dissect_stages import stage_calibrate, stage_open, stage_summaries
    from and_toolkit.pipeline.experiment_stage import stage_experiments
    from and_toolkit.pipeline.model_stages import stage_extremes, stage_record, stage_targets
    from and_toolkit.pipeline.report_stage import stage_report
    from and_toolkit.pipeline.score_stage import stage_score

    return {
        "probe": stage_probe, "targets": stage_targets, "record": stage_record,
        "extremes": stage_extremes, "captions": stage_captions, "summaries": stage_summaries,
        "calibrate": stage_calibrate, "open": stage_open, "closed": stage_closed,
        "score": stage_score, "experiments": stage_experiments, "report": stage_report,
    }


def _sections(cfg: RunConfig) -> dict[str, tuple[Any, ...]]:
    """The config parts each stage depends on (besides upstream stages)."""
    return {
        "probe": (cfg.probe, cfg.seed), "targets": (cfg.features, *cfg.targets),
        "record": (cfg.record.pooling, cfg.record.include, cfg.record.exclude),
        "extremes": (cfg.record.k, cfg.record.extra_k), "captions": (cfg.captions,),
        "summaries": (cfg.summaries,), "calibrate": (cfg.calibrate,), "open": (cfg.open,),
        "closed": (cfg.closed,), "score": (cfg.score,), "experiments": (cfg.experiments,),
        "report": (REPORT_OUTPUTS,),
    }


def fingerprints(cfg: RunConfig, stamps: Mapping[str, Sequence[InputStamp]] | None = None
                 ) -> dict[str, str]:
    """Fingerprint of every stage (chained in stage order).

    Args:
        cfg: the run configuration.
        stamps: the external inputs of each stage (:func:`~and_toolkit.pipeline.inputs.
            input_stamps`); None or a stage without any: its config section alone (the
            fingerprints of runs without external inputs, e.g. the synthetic and ESC-50
            configs, are those of the config alone).
    """
    out: dict[str, str] = {}
    prev = ""
    sections = _sections(cfg)
    for stage in STAGES:
        parts = sections[stage]
        mine = (stamps or {}).get(stage)
        if mine:
            parts = (*parts, {"inputs": {s.key: s.as_dict() for s in mine}})
        prev = section_sha(prev, *parts)
        out[stage] = prev
    return out


def _why_run(run: Run, stage: str, fingerprint: str, before: Mapping[str, Any],
             done: Mapping[str, Any], stamps: Mapping[str, Sequence[InputStamp]],
             rerun: str | None) -> str | None:
    """Why ``stage`` must run: None when it is up to date, "" when it never ran, else the reason
    (an input it or an earlier stage reads changed, its config changed, its files are missing,
    an earlier stage re-ran). ``before``: the manifest's stages when this call started;
    ``done``: now (stages after a re-run one are dropped)."""
    entry = done.get(stage)
    if not isinstance(entry, dict):
        return f"after [{rerun}] re-ran" if rerun and stage in before else ""
    if entry.get("fingerprint") != fingerprint:
        for s in STAGES[:STAGES.index(stage) + 1]:
            old = before.get(s)
            changes = input_changes(old.get("inputs"), stamps.get(s, [])) if isinstance(
                old, dict) else []
            if changes:
                return "inputs changed" + ("" if s == stage else f" (read by [{s}])") + ": " + (
                    "; ".join(changes))
        return "configuration changed (this stage's section or an earlier one's)"
    missing = missing_outputs(run, stage, entry)
    if missing:
        return "outputs missing: " + ", ".join(str(p.relative_to(run.root)) for p in missing)
    return None


def run_pipeline(
    cfg: RunConfig,
    *,
    run_dir: str | Path | None = None,
    only: list[str] | None = None,
    force: bool = False,
    cache: Cache | None = None,
    progress: bool = True,
) -> Run:
    """Execute the configured stages of ``cfg``, skipping those the run already holds.

    A stage runs when the manifest does not record it with the same fingerprint (config section
    and input stamps, see :func:`fingerprints`), when a file it wrote is missing, or when an
    earlier stage ran; the printed line says why. The inputs are stamped once per call.

    Args:
        cfg: validated run configuration.
        run_dir: run directory (default ``cfg.run_dir`` or ``runs/<name>``).
        only: run just these stages (they still skip when done, unless ``force``).
        force: recompute stages even when their fingerprint matches.
        cache: content-addressed cache (default: ``$AND_CACHE_DIR``).
        progress: show progress bars (the command line shows them on a terminal only).

    Returns:
        The :class:`Run`.

    Raises:
        ValueError: a name in ``only`` that is not a stage (nothing is written).
        RuntimeError: a stage returned without writing a file it declares
            (:func:`~and_toolkit.stage_outputs.stage_outputs`); it is not marked done.
        ConfigError: an input the stages to run need is missing (``pipeline.input_checks``):
            refused before the run directory is made. A refusal (any AndToolkitError) before
            the first stage completes removes a run directory this call made.
    """
    unknown = [s for s in only or [] if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}: the stages are {', '.join(STAGES)}")
    root = Path(run_dir or cfg.run_dir or Path("runs") / cfg.name)
    run = Run.at(root)
    fresh = not root.exists()
    stamps = input_stamps(cfg, exclude=root)
    prints = fingerprints(cfg, stamps)
    before = dict(run.manifest().get("stages", {}))
    selected = [s for s in STAGES if s in cfg.stages and (not only or s in only)]
    stale = [s for s in selected
             if force or _why_run(run, s, prints[s], before, before, stamps, None) is not None]
    # a re-run stage re-runs every later one: the inputs of all of them are checked
    check_inputs(cfg, selected[selected.index(stale[0]):] if stale else [])
    ctx = Context(cfg=cfg, run=run, cache=cache or Cache(), progress=progress)
    run.update_manifest(config=cfg.model_dump(mode="json"), versions=package_versions(),
                        seed=cfg.seed)
    functions = _stage_functions()
    done = before
    rerun: str | None = None
    try:
        for stage in selected:
            why = "forced" if force else _why_run(run, stage, prints[stage], before, done,
                                                   stamps, rerun)
            if why is None:
                print(f"[{stage}] up to date")
                continue
            print(f"[{stage}] running" + (f" ({why})" if why else ""), flush=True)
            with measured() as usage:
                info = functions[stage](ctx)
            missing = missing_outputs(run, stage, info)
            if missing:
                raise RuntimeError(f"[{stage}] finished without writing {[str(p) for p in missing]}"
                                   " (not marked done)")
            inputs = {s.key: s.as_dict() for s in stamps.get(stage, [])}
            run.mark_stage(stage, fingerprint=prints[stage], seconds=round(usage.wall_s, 2),
                           resources=usage.as_dict(), **({"inputs": inputs} if inputs else {}),
                           **info)
            print(f"[{stage}] done in {usage.wall_s:.1f} s (cpu {usage.cpu_s:.1f} s, "
                  f"peak {usage.peak_rss_mib:.0f} MiB)", flush=True)
            rerun = rerun or stage
            # a re-run stage invalidates every later stage
            done = {s: v for s, v in run.manifest().get("stages", {}).items()
                    if STAGES.index(s) <= STAGES.index(stage)}
            manifest = run.manifest()
            manifest["stages"] = done
            run.write_manifest(manifest)
    except AndToolkitError:
        # refused before any stage completed: a run directory made here holds nothing to resume
        if fresh and not run.manifest().get("stages"):
            shutil.rmtree(root, ignore_errors=True)
        raise
    finally:
        ctx.close()
    cache_stats = {ns: vars(s) for ns, s in sorted(ctx.cache.stats.items())}
    if cache_stats:
        run.update_manifest(cache=cache_stats)
    return run


def publish_check(cfg: RunConfig, only: list[str] | None = None) -> None:
    """Refuse ``--publish`` before any work when the run would have no report to publish.

    Raises:
        ConfigError: the config's stages leave out ``report``, or ``only`` does.
    """
    if "report" not in cfg.stages:
        raise ConfigError(f"--publish: run {cfg.name!r} has no report to publish: its config's "
                          f"stages ({', '.join(cfg.stages)}) leave out 'report'")
    if only and "report" not in only:
        raise ConfigError(f"--publish: --stage {' --stage '.join(only)} leaves out the report "
                          "(add --stage report)")


def publish_run(cfg: RunConfig, run: Run, reports: str | Path) -> Published:
    """Publish the run's report to ``reports`` (:func:`and_toolkit.report.publish.publish_report`)
    when the report stage of ``cfg`` is current in the run.

    Raises:
        DataError: the run's report is missing, was skipped (a user's model) or is stale
            (rendered under another config).
    """
    info = run.manifest().get("stages", {}).get("report")
    if not isinstance(info, dict):
        raise DataError(f"--publish: {run.root} holds no rendered report (the report stage has "
                        "not run)")
    if "skipped" in info:
        raise DataError(f"--publish: {run.root}: the report stage was skipped: {info['skipped']}")
    current = fingerprints(cfg, input_stamps(cfg, exclude=run.root))["report"]
    if info.get("fingerprint") != current:
        raise DataError(f"--publish: {run.root}'s report is stale (rendered under another "
                        "config or from other inputs): and-toolkit run CONFIG renders it again")
    return publish_report(run, reports)
