"""Stage orchestration: run the configured stages in order, resuming what a run already holds.

Each stage has a fingerprint = hash(previous stage's fingerprint, this stage's config section).
A stage whose fingerprint is recorded in the manifest is skipped; a changed section re-runs that
stage and every stage after it. Every file a stage writes is atomic, so a run killed at any
point resumes to the same result; expensive work (training, features, generations, embeddings)
is in the content-addressed cache and is not redone.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from and_toolkit.cache import Cache
from and_toolkit.config import STAGES, RunConfig
from and_toolkit.errors import AndToolkitError
from and_toolkit.pipeline.context import Context, section_sha
from and_toolkit.pipeline.inputs import check_inputs
from and_toolkit.resources import measured
from and_toolkit.run import Run
from and_toolkit.versions import package_versions

StageFn = Callable[[Context], dict[str, Any]]


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
        "closed": (cfg.closed,), "score": (cfg.score,), "experiments": (cfg.experiments,), "report": (),
    }


def fingerprints(cfg: RunConfig) -> dict[str, str]:
    """Fingerprint of every stage (chained in stage order)."""
    out: dict[str, str] = {}
    prev = ""
    sections = _sections(cfg)
    for stage in STAGES:
        prev = section_sha(prev, *sections[stage])
        out[stage] = prev
    return out


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
        ConfigError: an input the stages to run need is missing (``pipeline.inputs``): refused
            before the run directory is made. A refusal (any AndToolkitError) before the first
            stage completes removes a run directory this call made.
    """
    root = Path(run_dir or cfg.run_dir or Path("runs") / cfg.name)
    run = Run.at(root)
    fresh = not root.exists()
    prints = fingerprints(cfg)
    done = run.manifest().get("stages", {})
    selected = [s for s in STAGES if s in cfg.stages and (not only or s in only)]
    stale = [s for s in selected if force or done.get(s, {}).get("fingerprint") != prints[s]]
    # a re-run stage re-runs every later one: the inputs of all of them are checked
    check_inputs(cfg, selected[selected.index(stale[0]):] if stale else [])
    ctx = Context(cfg=cfg, run=run, cache=cache or Cache(), progress=progress)
    run.update_manifest(config=cfg.model_dump(mode="json"), versions=package_versions(),
                        seed=cfg.seed)
    functions = _stage_functions()
    try:
        for stage in selected:
            if not force and done.get(stage, {}).get("fingerprint") == prints[stage]:
                print(f"[{stage}] up to date")
                continue
            print(f"[{stage}] running", flush=True)
            with measured() as usage:
                info = functions[stage](ctx)
            run.mark_stage(stage, fingerprint=prints[stage], seconds=round(usage.wall_s, 2),
                           resources=usage.as_dict(), **info)
            print(f"[{stage}] done in {usage.wall_s:.1f} s (cpu {usage.cpu_s:.1f} s, "
                  f"peak {usage.peak_rss_mib:.0f} MiB)", flush=True)
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
