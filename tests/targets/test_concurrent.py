"""Training side by side in worker processes: the stored weights and curves equal an in-process
training's byte for byte; a failing worker names its target; the worker-count rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from and_toolkit.cache import Cache
from and_toolkit.targets.concurrent import (
    TRAININGS,
    TrainJob,
    train_and_store,
    train_concurrently,
    workers_for,
)

from .conftest import tiny_cfg

Data = tuple[np.ndarray, np.ndarray, np.ndarray]


def _jobs(data: Data) -> list[TrainJob]:
    features, targets, folds = data
    return [TrainJob("cnn", tiny_cfg("cnn", epochs=2, threads=1), "k-cnn", features, targets,
                     folds),
            TrainJob("ast", tiny_cfg("ast", epochs=2, threads=1), "k-ast", features, targets,
                     folds)]


def test_workers_store_what_an_in_process_training_stores(tiny_data: Data, tmp_path: Path
                                                          ) -> None:
    here, there = Cache(tmp_path / "here"), Cache(tmp_path / "workers")
    for job in _jobs(tiny_data):
        train_and_store(here, job.cfg, job.key, job.inputs, job.targets, job.folds,
                        progress=False)
    epochs: list[tuple[str, int]] = []
    done: dict[str, dict[str, float]] = {}
    train_concurrently(_jobs(tiny_data), there, workers=2,
                       on_epoch=lambda tid, row: epochs.append((tid, int(row["epoch"]))),
                       on_done=lambda tid, usage: done.__setitem__(tid, usage))
    for key in ("k-cnn", "k-ast"):
        assert there.get_bytes("weights", key) == here.get_bytes("weights", key), key
        curve_here, curve_there = here.get_json("curves", key), there.get_json("curves", key)
        drop = [{k: v for k, v in row.items() if k != "seconds"} for row in curve_here]
        assert [{k: v for k, v in row.items() if k != "seconds"} for row in curve_there] == drop
        # what each training ran with is stored beside its weights, the same from a worker
        made = there.get_json(TRAININGS, key)
        assert made == here.get_json(TRAININGS, key)
        assert made["threads"] == 1 and made["precision"] == "fp32" and made["capability"]
    assert sorted(epochs) == [("ast", 1), ("ast", 2), ("cnn", 1), ("cnn", 2)]
    assert set(done) == {"cnn", "ast"} and all(u["wall_s"] > 0 for u in done.values())


def test_a_failing_worker_names_its_target_and_stores_nothing(tiny_data: Data, tmp_path: Path
                                                              ) -> None:
    features, targets, folds = tiny_data
    bad = TrainJob("broken", tiny_cfg("cnn", epochs=1, threads=1), "k-bad", features,
                   np.full_like(targets, 99), folds)  # class ids out of range
    cache = Cache(tmp_path)
    with pytest.raises(RuntimeError,
                       match=r"(?s)training 'broken' failed in its worker.*must lie in 0\.\.4"):
        train_concurrently([bad], cache, workers=1)
    assert cache.get_bytes("weights", "k-bad") is None


@pytest.mark.parametrize(("threads", "jobs", "requested", "cores", "expected"), [
    ([1, 1, 1], 3, None, 2, 2),   # one thread each on two cores: two at a time
    ([2, 1], 2, None, 2, 1),      # a two-thread training fills two cores
    ([1, 1], 2, None, 8, 2),      # never more workers than trainings
    ([1, 1, 1], 3, 1, 8, 1),      # the config's count wins
    ([], 0, None, 2, 1),
])
def test_workers_for(threads: list[int], jobs: int, requested: int | None, cores: int,
                     expected: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("and_toolkit.targets.concurrent.usable_cores", lambda: cores)
    assert workers_for(threads, jobs, requested) == expected


def test_workers_for_refuses_zero() -> None:
    with pytest.raises(ValueError, match="train_workers"):
        workers_for([1], 2, 0)


def test_only_trainings_estimated_long_enough_get_a_worker() -> None:
    from and_toolkit.targets.concurrent import MIN_WORKER_S, estimated_seconds, long_enough

    cfg = tiny_cfg("cnn", epochs=10, batch_size=8, threads=2)
    target = {"threads_source": "target", "thread_seconds": {"1": 0.9, "2": 0.5}}
    # 10 epochs x ceil(30 / 8) = 40 steps at the chosen (2-thread) step time
    assert estimated_seconds(cfg, target, 30) == pytest.approx(20.0)
    # + each epoch's evaluation of 12 test clips: a third of a step per batch of 8
    assert estimated_seconds(cfg, target, 30, 12) == pytest.approx(20.0 + 10 * 0.5 * 1.5 / 3)
    assert estimated_seconds(cfg, {**target, "threads_source": "probe"}, 30) is None
    assert long_enough([20.0, MIN_WORKER_S, None]) == [False, True, True]
