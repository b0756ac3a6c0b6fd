"""Interpretability rules, τ grid, elbow, seeded KMeans and the Fig 6 / 11-13 / Table 8 rows."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from and_toolkit.experiments.interpretability import (
    ClusterConfig,
    InterpretabilityConfig,
    build_sentence_pool,
    clip_clusters,
    cluster_words,
    elbow_k,
    elbow_rows,
    inertia_curve,
    kmeans_labels,
    max_cluster_support,
    multiset_intersection_size,
    neuron_scores,
    pool_rows,
    tau_grid,
    uninterpretable_neurons,
)
from and_toolkit.records import Caption, Extremes, ResultRow


def captions(texts: dict[str, str], captioner: str = "file") -> pl.DataFrame:
    return Caption.frame([{"dataset": "toy", "clip_id": c, "captioner": captioner, "text": t,
                           "prompt": "", "provenance": "{}"} for c, t in texts.items()])


def extremes(neurons: dict[tuple[str, int], list[str]]) -> pl.DataFrame:
    return Extremes.frame([{"model": "toy", "layer": layer, "unit": unit, "side": "high",
                            "k": len(clips), "clip_ids": clips,
                            "values": [float(-i) for i in range(len(clips))]}
                           for (layer, unit), clips in neurons.items()])


def test_rules_on_the_spec_toy_case() -> None:
    toy = [[1], [1], [1], [1], [2]]
    assert max_cluster_support(toy) == 4  # interpretable at τ = 4
    assert multiset_intersection_size(toy) == 0  # ∩ = ∅ -> not interpretable
    assert max_cluster_support([]) == 0 and multiset_intersection_size([]) == 0


def test_rules_count_distinct_captions_vs_multiplicity() -> None:
    # a caption with two sentences in cluster 1 counts once for support
    assert max_cluster_support([[1, 1], [2], [3]]) == 1
    # multiset ∩ of {1,1,2}, {1,1}, {1,1,3} = {1,1}
    assert multiset_intersection_size([[1, 1, 2], [1, 1], [1, 1, 3]]) == 2
    assert multiset_intersection_size([[1, 1, 2], [1], [1, 1, 3]]) == 1


@pytest.mark.parametrize(("k", "grid"), [(5, (3, 4, 5)), (10, (6, 8, 10)), (20, (12, 16, 20)),
                                         (7, (5, 6, 7))])
def test_tau_grid(k: int, grid: tuple[int, int, int]) -> None:
    assert tau_grid(k) == grid


def blobs(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0, 0, 0], [10, 0, 0, 0], [0, 10, 0, 0]])
    return np.concatenate([c + rng.normal(0, 0.5, (40, 4)) for c in centres])


def test_elbow_on_three_blobs_is_three() -> None:
    cfg = ClusterConfig(seed=0, k_min=2, k_max=10)
    curve = inertia_curve(blobs(), cfg)
    assert curve["k"].to_list() == list(range(2, 11))
    assert elbow_k(curve["k"].to_list(), curve["inertia"].to_list()) == 3
    rows = elbow_rows(curve, 3)
    ResultRow.validate_frame(rows)
    assert rows.filter(pl.col("key") == "elbow_k")["value"][0] == 3.0


def test_elbow_k_hand_curve_and_errors() -> None:
    # scaled: y = 1, .111, .056, .022, 0; chord 1 - x; gaps 0, .639, .444, .228, 0 -> k = 2
    assert elbow_k([1, 2, 3, 4, 5], [100, 20, 15, 12, 10]) == 2
    assert elbow_k([1, 2, 3], [5, 5, 5]) == 1  # flat curve
    with pytest.raises(ValueError, match=">= 3"):
        elbow_k([1, 2], [3, 1])
    with pytest.raises(ValueError, match="increasing"):
        elbow_k([1, 3, 2], [3, 2, 1])


def test_kmeans_is_deterministic_with_a_seed_and_numbers_clusters_by_size() -> None:
    x = np.concatenate([blobs()[:40], blobs()[40:60], blobs()[80:]])  # sizes 40, 20, 40
    cfg = ClusterConfig(seed=3)
    a, b = kmeans_labels(x, 3, cfg), kmeans_labels(x, 3, cfg)
    assert np.array_equal(a, b)
    assert np.bincount(a).tolist() == [40, 40, 20]
    assert len(set(a[:40].tolist())) == 1 and a[40] == 2
    with pytest.raises(ValueError, match="k must be"):
        kmeans_labels(x, 0, cfg)
    with pytest.raises(ValueError, match="NaN"):
        kmeans_labels(np.full((3, 2), np.nan), 2, cfg)


def test_sentence_pool_drops_junk_and_keeps_empty_captions_in_clip_clusters() -> None:
    caps = captions({"c1": "A dog barks. Sure, here is more. It is loud.",
                     "c2": "Please let me know."})
    pool = build_sentence_pool(caps)
    assert pool.rows() == [("c1", 0, "A dog barks."), ("c1", 1, "It is loud.")]
    cc = clip_clusters(pool, np.array([4, 1]), clip_ids=caps["clip_id"].to_list())
    assert cc.rows() == [("c1", [1, 4]), ("c2", [])]
    with pytest.raises(ValueError, match="several captioners"):
        build_sentence_pool(pl.concat([caps, captions({"c1": "x"}, captioner="other")]))
    assert build_sentence_pool(pl.concat([caps, captions({"c1": "x"}, captioner="o")]),
                               captioner="o").height == 1


def toy_population() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Neuron A (fc1): clips in clusters {1},{1},{1},{1},{2}; neuron B (o_proj): all
    different; neuron C (fc1, block 2): 4 captioned clips all in cluster {3,3}, 1 uncaptioned."""
    clusters = pl.DataFrame(
        {"clip_id": ["a1", "a2", "a3", "a4", "a5", "b1", "b2", "b3", "b4", "b5",
                     "c1", "c2", "c3", "c4"],
         "clusters": [[1], [1], [1], [1], [2], [1], [2], [3], [4], [5],
                      [3, 3], [3, 3], [3, 3, 1], [3, 3]]},
        schema={"clip_id": pl.String, "clusters": pl.List(pl.Int32)})
    ex = extremes({("blocks.0.fc1", 0): ["a1", "a2", "a3", "a4", "a5"],
                   ("blocks.0.o_proj", 0): ["b1", "b2", "b3", "b4", "b5"],
                   ("blocks.1.fc1", 0): ["c1", "c2", "lost", "c3", "c4"]})
    neurons = pl.DataFrame(
        {"model": ["toy"] * 3, "layer": ["blocks.0.fc1", "blocks.0.o_proj", "blocks.1.fc1"],
         "unit": [0, 0, 0], "block": [1, 1, 2],
         "alias": ["block1.fc1", "block1.o_proj", "block2.fc1"]},
        schema={"model": pl.String, "layer": pl.String, "unit": pl.Int32, "block": pl.Int32,
                "alias": pl.String})
    return clusters, ex, neurons


def test_neuron_scores_skip_uncaptioned_clips() -> None:
    clusters, ex, _ = toy_population()
    scores = neuron_scores(ex, clusters).sort("layer")
    assert scores.select("layer", "n_clips", "n_missing", "max_cluster_support",
                         "multiset_intersection").rows() == [
        ("blocks.0.fc1", 5, 0, 4, 0), ("blocks.0.o_proj", 5, 0, 1, 0),
        ("blocks.1.fc1", 4, 1, 4, 2)]


def test_uninterpretable_percentages_per_block_and_sublayer() -> None:
    clusters, ex, neurons = toy_population()
    cfg = InterpretabilityConfig(paper_model={"toy": "AST"})
    rows, per_neuron = uninterpretable_neurons(ex, clusters, neurons, cfg)
    ResultRow.validate_frame(rows)
    assert per_neuron.height == 3

    def val(exp: str, key: str) -> float:
        return rows.filter((pl.col("experiment") == exp) & (pl.col("key") == key))["value"][0]

    # curves: <model>/curve/<K>/<τ>/<rule>/<clustering>/<block>, zero-padded
    mcs = "max_cluster_support/k=11"
    assert val("fig11_13", f"toy/curve/05/04/{mcs}/001") == 50.0
    assert val("fig11_13", f"toy/curve/05/05/{mcs}/001") == 100.0
    assert val("fig11_13", f"toy/curve/05/03/{mcs}/002") == 0.0
    assert val("fig11_13", f"toy/all/{mcs}/05/04") == pytest.approx(100 / 3)
    ms = "multiset_intersection/k=11"
    # |∩| <= the fewest sentences of a top-K caption (at most 2 here) < every τ of K=5:
    # 100 % by construction, tabulated with the reason, never a curve
    assert rows.filter(pl.col("key").str.contains(ms) & pl.col("x").is_not_null()).height == 0
    assert val("fig11_13", f"toy/all/{ms}/05/03") == 100.0
    assert val("fig11_13", f"toy/can_pass/{ms}/05/03") == 0.0
    assert rows.filter(pl.col("key") == f"toy/all/{ms}/05/03")["note"].item().startswith(
        "not plotted: no neuron can reach K=5, \u03c4=3 under multiset intersection")
    assert val("fig11_13", f"toy/can_pass/{mcs}/05/05") == pytest.approx(200 / 3)
    assert val("fig11_13", "toy/k=11/K=5/n_missing_clips") == 1.0
    one = rows.filter(pl.col("key") == f"toy/curve/05/04/{mcs}/001")
    assert one.select("group", "series", "metric", "x").row(0) == (
        "K=5, \u03c4=4", "max_cluster_support (k=11)", "pct_uninterpretable", 1.0)
    assert one["paper_value"][0] == 42.0
    overall = rows.filter(pl.col("key") == f"toy/all/{mcs}/05/04")
    assert overall.select("group", "series", "metric").row(0) == (
        "all blocks", "max_cluster_support (k=11)", "K=5, \u03c4=4")
    # Fig 6's setting per sub-layer: max cluster support only, one table row per sub-layer
    sub = rows.filter(pl.col("experiment") == "fig6_sublayers")
    assert sorted(sub.select("key", "group", "series", "metric", "value").rows()) == [
        ("toy/fc1/001", "max cluster support, k=11", "fc1", "block 1", 0.0),
        ("toy/fc1/002", "max cluster support, k=11", "fc1", "block 2", 0.0),
        ("toy/o_proj/001", "max cluster support, k=11", "o_proj", "block 1", 100.0)]
    assert sub["x"].is_null().all()
    fig6 = rows.filter(pl.col("experiment") == "fig6")
    assert fig6.height == 3  # max cluster support x 2 blocks (τ = 4) + Algorithm 1's reason
    assert fig6.filter(pl.col("x") == 1)["paper_value"].to_list() == [42.0]
    assert set(fig6["group"]) == {"max_cluster_support", "multiset_intersection"}
    assert fig6.filter(pl.col("group") == "multiset_intersection")["x"].is_null().all()
    assert val("fig6", "toy/k=11/max_cluster_support/block=1") == 50.0
    # the report tabulates x-null rows by (model, group, series) x metric: one cell each
    tabled = rows.filter(pl.col("x").is_null())
    assert not tabled.select("experiment", "model", "group", "series",
                             "metric").is_duplicated().any()
    assert not rows.select("experiment", "key").is_duplicated().any()


def test_missing_clip_counts_only_when_some_are_missing() -> None:
    clusters, ex, neurons = toy_population()
    ex = ex.filter(pl.col("layer") != "blocks.1.fc1")
    neurons = neurons.filter(pl.col("layer") != "blocks.1.fc1")
    rows, _ = uninterpretable_neurons(ex, clusters, neurons, InterpretabilityConfig())
    assert rows.filter(pl.col("metric") == "n_missing_clips").height == 0
    assert rows.filter(pl.col("metric") == "n_neurons").height == 0
    plotted = rows.filter(pl.col("x").is_not_null())
    assert not plotted.select("experiment", "model", "group", "series", "metric",
                              "x").is_duplicated().any()


def test_uninterpretable_neurons_requires_extremes_for_every_neuron() -> None:
    clusters, ex, neurons = toy_population()
    with pytest.raises(ValueError, match="no 'high' row"):
        uninterpretable_neurons(ex.filter(pl.col("layer") != "blocks.0.fc1"), clusters,
                                neurons, InterpretabilityConfig())


def test_k10_has_no_fig6_rows() -> None:
    clusters = pl.DataFrame({"clip_id": [f"x{i}" for i in range(10)],
                             "clusters": [[0]] * 8 + [[1]] * 2},
                            schema={"clip_id": pl.String, "clusters": pl.List(pl.Int32)})
    ex = extremes({("l", 0): [f"x{i}" for i in range(10)]})
    neurons = pl.DataFrame({"model": ["toy"], "layer": ["l"], "unit": [0], "block": [1],
                            "alias": ["block1.fc1"]},
                           schema={"model": pl.String, "layer": pl.String, "unit": pl.Int32,
                                   "block": pl.Int32, "alias": pl.String})
    rows, _ = uninterpretable_neurons(ex, clusters, neurons, InterpretabilityConfig())
    assert set(rows["experiment"]) == {"fig11_13"}
    pct = rows.filter(pl.col("metric") == "pct_uninterpretable")
    got = {(g, s): v for g, s, v in pct.select("group", "series", "value").iter_rows()}
    assert got[("K=10, \u03c4=8", "max_cluster_support (k=11)")] == 0.0  # support 8 >= 8
    assert got[("K=10, \u03c4=10", "max_cluster_support (k=11)")] == 100.0
    assert set(pct["key"]) == {f"toy/curve/10/{t:02d}/max_cluster_support/k=11/001"
                               for t in (6, 8, 10)}  # one sentence per caption: no Alg. 1 curve
    assert pct["paper_value"].null_count() == pct.height


def _one_neuron(captions_text: dict[str, str], k_clusters: int) -> pl.DataFrame:
    """Fig 6 rows of one block-1 neuron whose top-5 clips are the given captions, clustered
    from the real sentence pool (one cluster per distinct sentence, at most k_clusters)."""
    caps = captions(captions_text)
    pool = build_sentence_pool(caps)
    sentences = sorted(set(pool["sentence"]))
    labels = np.array([min(sentences.index(x), k_clusters - 1) for x in pool["sentence"]])
    clusters = clip_clusters(pool, labels, caps["clip_id"].to_list())
    ex = extremes({("l", 0): list(captions_text)})
    neurons = pl.DataFrame({"model": ["toy"], "layer": ["l"], "unit": [0], "block": [1],
                            "alias": ["block1.fc1"]},
                           schema={"model": pl.String, "layer": pl.String, "unit": pl.Int32,
                                   "block": pl.Int32, "alias": pl.String})
    return uninterpretable_neurons(ex, clusters, neurons, InterpretabilityConfig())[0]


def test_algorithm1_is_degenerate_with_one_sentence_per_caption() -> None:
    """Issue 9 item 7: with one pool sentence per caption (our Qwen2-Audio captions: 2,015
    sentences for 2,000 clips) |∩ C_i| <= 1 < τ for every K and τ, so Algorithm 1 said 100 %
    uninterpretable in every block by construction. It is tabulated with that reason, not
    plotted; with several sentences per caption it is plotted as before."""
    same = {f"c{i}": "A dog barks." for i in range(5)}  # identical captions: best case
    one = _one_neuron(same, 11)
    alg1 = one.filter(pl.col("key").str.contains("multiset_intersection"))
    assert alg1.filter(pl.col("x").is_not_null()).height == 0
    fig6 = alg1.filter(pl.col("experiment") == "fig6")
    assert fig6["value"].to_list() == [100.0] and fig6["x"].is_null().all()
    assert "max 1" in fig6["note"].item()
    can = alg1.filter(pl.col("group").str.starts_with("neurons that can reach"))
    assert can["value"].to_list() == [0.0, 0.0, 0.0]
    # the authors' rule on the same captions: 5 captions share a cluster -> interpretable
    mcs = one.filter((pl.col("experiment") == "fig6") & (pl.col("x") == 1))
    assert mcs["value"].to_list() == [0.0]
    text = "A dog barks. It is loud. It repeats. It echoes. It fades."
    rich = _one_neuron({f"c{i}": text for i in range(5)}, 11)
    stats = {m: v for m, v in pool_rows(build_sentence_pool(captions(
        {"a": "One. Two.", "b": "One.", "c": "Uh"})), ["a", "b", "c", "d"]).select(
        "metric", "value").iter_rows()}
    assert stats == {"captions": 4.0, "sentences": 4.0, "sentences_per_caption": 1.0,
                     "max_sentences_per_caption": 2.0, "pct_captions_2plus": 25.0}
    curve = rich.filter((pl.col("experiment") == "fig6") & pl.col("x").is_not_null())
    assert set(curve["group"]) == {"max_cluster_support", "multiset_intersection"}
    assert curve.filter(pl.col("group") == "multiset_intersection")["value"].to_list() == [0.0]


def test_cluster_words_counts_without_stopwords() -> None:
    pool = pl.DataFrame({"clip_id": ["a", "a", "b", "c"],
                         "sentence": ["The dog barks loudly.", "A dog and a high-pitched dog.",
                                      "The dog is barking.", "An engine runs."]})
    rows, words = cluster_words(pool, np.array([0, 0, 0, 1]), top_n=2)
    ResultRow.validate_frame(rows)
    assert words.filter(pl.col("cluster") == 0).select("word", "count", "rank").rows() == [
        ("dog", 4, 1), ("barking", 1, 2)]
    assert words.filter(pl.col("cluster") == 1)["word"].to_list() == ["engine", "runs"]
    vals = dict(rows.select("key", "value").iter_rows())
    assert vals["k=11/cluster=000/n_sentences"] == 3.0
    assert vals["k=11/cluster=000/n_captions"] == 2.0
    assert vals["k=11/cluster=000/word=dog"] == 4.0
    cloud = rows.filter(pl.col("x").is_not_null()
                        & (pl.col("group") == "cluster 0 (3 sentences)"))
    assert cloud.select("series", "value", "x").rows() == [("dog", 4.0, 1.0),
                                                           ("barking", 1.0, 2.0)]


def test_cluster_words_keys_sort_clusters_numerically() -> None:
    labels = np.array([0] * 3 + [1] * 4 + [2] * 5 + [10] * 13)
    pool = pl.DataFrame({"clip_id": [f"c{i}" for i in range(labels.size)],
                         "sentence": ["A dog barks."] * labels.size})
    rows, _ = cluster_words(pool, labels, clustering="k=11", top_n=1)
    ResultRow.validate_frame(rows)
    groups = list(dict.fromkeys(rows.sort("key")["group"]))
    assert groups == ["cluster 0 (3 sentences)", "cluster 1 (4 sentences)",
                      "cluster 2 (5 sentences)", "cluster 10 (13 sentences)"]
    assert rows.sort("key")["key"].to_list()[:3] == [
        "k=11/cluster=000/n_captions", "k=11/cluster=000/n_sentences",
        "k=11/cluster=000/word=barks"]  # ties by word
