"""What the targets stage has to train: each target's resolved config, weights key, whether the
cache holds it and how long its training should take; a line per long training before it
starts; and the trainings side by side in worker processes when cores sit idle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from and_toolkit.config import TargetSection
from and_toolkit.pipeline.context import Context
from and_toolkit.pipeline.targets import (
    inputs_of,
    labels_of,
    resolved_train_config,
    weights_key_of,
)
from and_toolkit.targets.concurrent import (
    MIN_WORKER_S,
    TrainJob,
    estimated_seconds,
    long_enough,
    optimiser_steps,
    train_concurrently,
    workers_for,
)
from and_toolkit.targets.config import TrainConfig

__all__ = ["Planned", "announce", "duration", "plan_trainings", "train_in_workers"]


@dataclass(frozen=True)
class Planned:
    """One target trained here, before the targets stage loads or trains it.

    Attributes:
        target: its config section.
        cfg: the resolved training config (concrete precision and threads).
        choice: how precision and threads were chosen (the decision's ``as_dict()``).
        key: its weights key.
        cached: the cache holds its weights and curve (nothing to train).
        steps: optimiser steps of a full training (epochs x batches).
        estimate_s: seconds of those steps and of each epoch's test-fold evaluation from the
            target's own measured step at the chosen threads (``concurrent.estimated_seconds``),
            or None when the step was not measured (pretrained archs).
    """

    target: TargetSection
    cfg: TrainConfig
    choice: dict[str, Any]
    key: str
    cached: bool
    steps: int
    estimate_s: float | None


def plan_trainings(ctx: Context) -> list[Planned]:
    """:class:`Planned` for every target of the run trained here (not the user's own models),
    in config order. Resolves each target's precision and threads (measured once per machine,
    then remembered)."""
    _, folds = labels_of(ctx)
    out = []
    for target in ctx.cfg.targets:
        if target.external:
            continue
        cfg, choice = resolved_train_config(ctx, target, fresh=True)
        key = weights_key_of(ctx, cfg)
        cached = bool(ctx.cache.payload_digest("weights", key)
                      and ctx.cache.payload_digest("curves", key))
        n_train = int((folds != cfg.test_fold).sum())
        n_test = len(folds) - n_train
        out.append(Planned(target, cfg, choice, key, cached, optimiser_steps(cfg, n_train),
                           None if cached
                           else estimated_seconds(cfg, choice, n_train, n_test)))
    return out


def duration(seconds: float) -> str:
    """``"45 s"``, ``"35 min"`` or ``"1 h 05 min"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def announce(plan: list[Planned], min_s: float = MIN_WORKER_S) -> list[str]:
    """One line per training estimated at ``min_s`` or more, printed before the stage trains
    (a log gets it too: it is the one warning that the next lines are an hour away); the
    lines printed."""
    lines = []
    for p in plan:
        if p.cached or p.estimate_s is None or p.estimate_s < min_s:
            continue
        lines.append(f"[targets] {p.target.id}: training {p.cfg.epochs} epochs ({p.steps} "
                     f"steps), about {duration(p.estimate_s)} ({p.cfg.precision}, "
                     f"{p.cfg.threads} thread(s); estimated from its measured step)")
    for line in lines:
        print(line, flush=True)
    return lines


def train_in_workers(ctx: Context, plan: list[Planned]) -> dict[str, dict[str, Any]]:
    """Train the run's uncached targets side by side in worker processes when the chosen
    thread counts leave cores idle (:mod:`and_toolkit.targets.concurrent`; ``[execution]
    train_workers`` overrides the count); the weights land in the cache, where the stage's
    loop then finds them. Per target trained so: ``trained_here``, the worker count
    (``training_workers``: trainings at once), the other targets trained in workers in this
    stage (``trained_alongside``) and the worker's own resources. Unless ``train_workers`` is
    set, only a training worth a worker goes to one (``concurrent.long_enough``: estimated
    from its measured step at a minute or more; starting a worker costs seconds). Empty when
    fewer than two such targets need training, one worker is all that fits, or the cache is
    disabled (the workers hand their weights over through it): the loop then trains in this
    process."""
    if not ctx.cache.enabled:
        return {}
    targets, folds = labels_of(ctx)
    jobs = [TrainJob(p.target.id, p.cfg, p.key, inputs_of(ctx, p.cfg), targets, folds)
            for p in plan if not p.cached and (ctx.cfg.execution.train_workers is not None
                                               or long_enough([p.estimate_s])[0])]
    workers = workers_for([j.cfg.threads or 1 for j in jobs], len(jobs),
                          ctx.cfg.execution.train_workers)
    if len(jobs) < 2 or workers < 2:
        return {}
    ids = [j.target_id for j in jobs]
    out: dict[str, dict[str, Any]] = {}
    left = {j.target_id: j.cfg.epochs for j in jobs}  # epochs not yet reported
    with tqdm(total=sum(left.values()), desc=f"training {len(jobs)} targets, {workers} at a "
              "time", unit="epoch", disable=not ctx.progress) as bar:
        def epoch(tid: str, row: dict[str, Any]) -> None:
            if "loss" not in row:  # pretraining rows come first and carry "loss"
                left[tid] -= 1
                bar.update(1)

        def done(tid: str, usage: dict[str, Any]) -> None:
            out[tid] = {"trained_here": True, "training_workers": workers,
                        "trained_alongside": [i for i in ids if i != tid],
                        "worker_resources": usage}
            bar.total -= max(left[tid], 0)  # early stopping ended it before its last epoch
            bar.set_postfix_str(f"{tid} done")

        train_concurrently(jobs, ctx.cache, workers, on_epoch=epoch, on_done=done)
    return out
