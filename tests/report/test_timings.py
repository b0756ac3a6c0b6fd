"""The setup section's timing table, from hand-made manifest stages."""

from __future__ import annotations

from and_toolkit.config import STAGES
from and_toolkit.report.timings import stage_times


def test_rows_follow_pipeline_order_and_separate_cached_training() -> None:
    stages = {
        "closed": {"resources": {"wall_s": 10.0, "cpu_s": 15.0, "peak_rss_mib": 800.0}},
        "probe": {"resources": {"wall_s": 0.5, "cpu_s": 0.25}},
        "targets": {"resources": {"wall_s": 2.0, "cpu_s": 2.0},
                    "fingerprint": "abc",
                    "cnn": {"arch": "cnn", "precision": "fp32", "threads": 2,
                            "train_seconds": 1200.0, "resources": {"wall_s": 1.0}},
                    "ast": {"arch": "ast", "precision": "bf16", "threads": 1,
                            "train_seconds": 300.0, "resources": {"wall_s": 310.0}}},
        "summaries": {"seconds": 4.0},  # no resources: not a row
    }
    rows = stage_times(stages, STAGES)
    assert [r.stage for r in rows] == ["probe", "targets", "targets · ast training",
                                       "targets · cnn training", "closed", "total"]
    by = {r.stage: r for r in rows}
    assert by["total"].wall_s == 12.5 and by["total"].cpu_s == 17.25
    assert "trained in this run" in by["targets · ast training"].note
    assert "from the cache" in by["targets · cnn training"].note
    assert by["targets · cnn training"].wall_s == 1200.0
    assert by["probe"].peak_rss_mib is None


def test_no_resources_no_rows() -> None:
    assert stage_times({"probe": {"seconds": 1.0}}, STAGES) == ()
    assert stage_times({}, STAGES) == ()


def test_record_and_pruning_rows_per_target_follow_their_stage() -> None:
    stages = {
        "record": {"resources": {"wall_s": 50.0, "cpu_s": 90.0},
                   "_execution": {"engine": "local"},
                   "cnn": {"layers": ["a"], "resources": {"wall_s": 40.0, "cpu_s": 70.0}},
                   "ast": {"layers": ["a"], "reused": "0123abcd"}},
        "experiments": {"resources": {"wall_s": 30.0, "cpu_s": 55.0},
                        "pruning": {"cnn": {"calls": 9, "forward_passes": 3, "wall_s": 20.0,
                                            "cpu_s": 38.0, "cached": 4,
                                            "cached_cost_wall_s": 26.4,
                                            "cached_cost_cpu_s": 51.0,
                                            "cached_without_cost": 1}}},
    }
    rows = stage_times(stages, STAGES)
    assert [r.stage for r in rows] == ["record", "record · ast", "record · cnn", "experiments",
                                       "experiments · cnn pruning", "total"]
    by = {r.stage: r for r in rows}
    assert by["total"].wall_s == 80.0  # per-target rows are parts of their stage, not added
    assert by["record · ast"].wall_s is None and "kept" in by["record · ast"].note
    assert by["record · cnn"].cpu_s == 70.0
    note = by["experiments · cnn pruning"].note
    assert note == ("3 pruned fold-1 pass(es) run here; 3 read from the cache, whose production "
                    "took 26 s wall / 51 s CPU; 1 more read from the cache, cached before their "
                    "cost was recorded")
    old = stage_times({"experiments": {"resources": {"wall_s": 1.0}, "pruning": {"ast": {
        "forward_passes": 0, "wall_s": 0.0, "cached": 5, "cached_without_cost": 5}}}}, STAGES)
    assert old[1].note == ("0 pruned fold-1 pass(es) run here; 5 read from the cache, cached "
                           "before their cost was recorded")


def test_training_row_says_where_the_run_trained_it() -> None:
    stages = {"targets": {
        "resources": {"wall_s": 5.0, "cpu_s": 9.0},
        # trained in a worker: the stage's own read of the weights took no time
        "ast": {"arch": "ast", "precision": "fp32", "threads": 1, "train_seconds": 300.0,
                "resources": {"wall_s": 0.1}, "trained_here": True,
                "trained_alongside": ["cnn"], "training_workers": 2,
                "estimated_train_s": 280.4},
        # a fast cache read of weights trained by another run, whatever the timings say
        "cnn": {"arch": "cnn", "precision": "fp32", "threads": 1, "train_seconds": 1.0,
                "resources": {"wall_s": 4.0}, "trained_here": False}}}
    by = {r.stage: r for r in stage_times(stages, STAGES)}
    assert by["targets · ast training"].note == ("fp32, 1 thread(s); trained in this run, in a "
                                                  "worker process (2 trainings at once, with "
                                                  "cnn); estimated beforehand from its "
                                                  "measured step: 280 s")
    assert "from the cache" in by["targets · cnn training"].note


def test_training_row_never_guesses_an_unrecorded_thread_count() -> None:
    """Weights cached before their training's thread count was stored (manifest ``threads``
    None) say so; the reading run's own choice is not shown as the training's."""
    stages = {"targets": {"resources": {"wall_s": 0.2},
                          "cnn": {"arch": "cnn", "precision": "bf16", "threads": None,
                                  "train_seconds": 10.0, "resources": {"wall_s": 0.1},
                                  "trained_here": False,
                                  "training_choice": {"threads": 2}}}}
    row = {r.stage: r for r in stage_times(stages, STAGES)}["targets · cnn training"]
    assert row.note.startswith("bf16, thread count not recorded; weights read from the cache")


def test_closed_rows_say_where_module_a_spent_its_time() -> None:
    """The closed stage's per-method seconds become rows after ``closed``: TAB says whether
    it trained its audio-text model, ICL how many answers it generated and the LLM's load."""
    stages = {"closed": {"resources": {"wall_s": 60.0, "cpu_s": 80.0},
                         "method_seconds": {"DB": 2.0, "TAB": 20.0, "ICL": 38.0},
                         "tab_trained_here": True, "tab_model": {"train_seconds": 17.5},
                         "icl_requests": {"generated": 70, "cache_hits": 2,
                                          "llm_load_s": 9.5}},
              "score": {"resources": {"wall_s": 5.0}}}
    rows = stage_times(stages, STAGES)
    assert [r.stage for r in rows] == ["closed", "closed · DB", "closed · TAB", "closed · ICL",
                                       "score", "total"]
    by = {r.stage: r for r in rows}
    assert by["closed · TAB"].note == "includes training its audio-text model (17.5 s)"
    assert by["closed · ICL"].note == ("70 answer(s) generated, 2 read from the cache; loading "
                                       "the LLM took 9.5 s")
    assert by["total"].wall_s == 65.0  # the method rows are parts of the closed stage
    warm = {"closed": {"resources": {"wall_s": 1.0}, "method_seconds": {"TAB": 0.5},
                       "tab_trained_here": False, "tab_model": {"train_seconds": 17.5}}}
    assert stage_times(warm, STAGES)[1].note == "its audio-text model read from the cache"
    # manifests written before the stage timed its methods: no method rows
    assert [r.stage for r in stage_times({"closed": {"resources": {"wall_s": 1.0}}}, STAGES)] \
        == ["closed", "total"]
