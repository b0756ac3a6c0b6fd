"""Caption-sentence clustering for Sec. 4.5 / Appendix G: the sentence pool, seeded K-means,
the elbow rule, each clip's clusters, and the Table 8 word lists."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from and_toolkit.dissect.text import PointsConfig, sentence_pool
from and_toolkit.experiments.adjectives import require_columns
from and_toolkit.experiments.rows import Padded, result_key, result_row, tagged
from and_toolkit.records.models import ResultRow

_WORD = re.compile(r"[a-z]+(?:['-][a-z]+)*")

class ClusterConfig(BaseModel):
    """KMeans settings.

    Attributes:
        seed: ``random_state`` of every KMeans fit (the authors' KMeans was unseeded).
        n_init: KMeans restarts ("auto" as the authors: 1 for k-means++).
        k_min, k_max: the k range of the elbow curve (inclusive).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0
    n_init: int | Literal["auto"] = "auto"
    k_min: int = Field(default=2, ge=1)
    k_max: int = Field(default=20, ge=2)


# ----- sentence pool and clustering -------------------------------------------------------------
def build_sentence_pool(captions: pl.DataFrame, points: PointsConfig | None = None,
                        captioner: str | None = None) -> pl.DataFrame:
    """The clustering corpus: every caption's non-junk sentences.

    Args:
        captions: Caption frame of one dataset.
        points: junk settings (``PointsConfig``; default = the project's word-boundary
            matching of the authors' phrases; ``PointsConfig.reference()`` = substring).
        captioner: which captioner's captions to use; required if the frame holds several.

    Returns:
        Frame ``clip_id, sentence_index (Int32, 0-based within the caption), sentence``,
        sorted by clip_id and sentence_index. Clips whose sentences are all junk are absent.

    Raises:
        ValueError: missing columns, several datasets, or several captioners and none chosen.
    """
    require_columns(captions, ["dataset", "clip_id", "captioner", "text"], "captions")
    if captions["dataset"].n_unique() > 1:
        raise ValueError(f"captions: several datasets {captions['dataset'].unique().to_list()}")
    if captioner is not None:
        captions = captions.filter(pl.col("captioner") == captioner)
    elif captions["captioner"].n_unique() > 1:
        raise ValueError("captions: several captioners "
                         f"{sorted(captions['captioner'].unique().to_list())}; pass captioner=")
    if captions["clip_id"].is_duplicated().any():
        raise ValueError("captions: duplicate clip_id")
    rows: dict[str, list] = {"clip_id": [], "sentence_index": [], "sentence": []}
    for clip_id, text in captions.sort("clip_id").select("clip_id", "text").iter_rows():
        for i, s in enumerate(sentence_pool(text, points)):
            rows["clip_id"].append(clip_id)
            rows["sentence_index"].append(i)
            rows["sentence"].append(s)
    return pl.DataFrame(rows, schema={"clip_id": pl.String, "sentence_index": pl.Int32,
                                      "sentence": pl.String})


def _check_embeddings(embeddings: np.ndarray) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"embeddings: expected a non-empty [n, d] array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings: contains NaN or inf")
    return x


def _fit(x: np.ndarray, k: int, config: ClusterConfig) -> KMeans:
    return KMeans(n_clusters=k, n_init=config.n_init, random_state=config.seed).fit(x)


def inertia_curve(embeddings: np.ndarray, config: ClusterConfig) -> pl.DataFrame:
    """KMeans inertia for k = k_min..k_max (k < n_sentences).

    With ``n_init="auto"`` (one k-means++ start) the curve can be non-monotone; n_init=10
    smooths it at 10x the cost (ESC-50 Qwen captions, 2,015 sentences: elbow 8-10 over seeds).

    Args:
        embeddings: float [n, d], one row per pool sentence.
        config: k range, seed, n_init.

    Returns:
        Frame ``k (Int32), inertia (Float64, sum of squared distances to the centre)``.

    Raises:
        ValueError: bad embeddings, or fewer than 3 usable k values.
    """
    x = _check_embeddings(embeddings)
    ks = [k for k in range(config.k_min, config.k_max + 1) if k < x.shape[0]]
    if len(ks) < 3:
        raise ValueError(f"inertia_curve: need >= 3 k values below n={x.shape[0]}, got {ks}")
    inertias = [float(_fit(x, k, config).inertia_) for k in ks]
    return pl.DataFrame({"k": ks, "inertia": inertias},
                        schema={"k": pl.Int32, "inertia": pl.Float64})


def elbow_k(ks: Sequence[int], inertias: Sequence[float]) -> int:
    """The elbow of an inertia curve: the point farthest below its chord.

    Both axes are scaled to [0, 1]; the chord joins the first and last points; the elbow is
    the k whose scaled inertia lies farthest below the chord (equivalently, at the largest
    perpendicular distance from it, as the chord is straight). Ties go to the smaller k; a
    curve with no point below the chord returns the smallest k.

    Args:
        ks: increasing k values (>= 3 of them).
        inertias: inertia per k.

    Returns:
        The chosen k.

    Raises:
        ValueError: fewer than 3 points, unequal lengths, or k not increasing.
    """
    k = np.asarray(ks, dtype=float)
    y = np.asarray(inertias, dtype=float)
    if k.shape != y.shape or k.size < 3:
        raise ValueError(f"elbow_k: need >= 3 (k, inertia) pairs, got {k.size} and {y.size}")
    if np.any(np.diff(k) <= 0):
        raise ValueError("elbow_k: ks must be strictly increasing")
    span = y.max() - y.min()
    if span == 0:
        return int(k[0])
    xs = (k - k[0]) / (k[-1] - k[0])
    ys = (y - y.min()) / span
    gap = ys[0] + (ys[-1] - ys[0]) * xs - ys
    i = int(np.argmax(gap))
    return int(k[i]) if gap[i] > 0 else int(k[0])


def kmeans_labels(embeddings: np.ndarray, k: int, config: ClusterConfig) -> np.ndarray:
    """Seeded KMeans cluster of every pool sentence, clusters numbered by size.

    Args:
        embeddings: float [n, d].
        k: number of clusters (2 <= k <= n).
        config: seed and n_init.

    Returns:
        int32 [n]: cluster id in 0..k-1; 0 is the largest cluster (ties by KMeans' own id),
        so ids are stable under label permutations.

    Raises:
        ValueError: bad embeddings or k.
    """
    x = _check_embeddings(embeddings)
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"k must be in [1, n={x.shape[0]}], got {k}")
    raw = _fit(x, k, config).labels_
    sizes = np.bincount(raw, minlength=k)
    order = sorted(range(k), key=lambda c: (-sizes[c], c))
    relabel = np.empty(k, dtype=np.int32)
    relabel[order] = np.arange(k, dtype=np.int32)
    return relabel[raw]


def clip_clusters(pool: pl.DataFrame, labels: np.ndarray,
                  clip_ids: Sequence[str] | None = None) -> pl.DataFrame:
    """The multiset of clusters of each caption's sentences.

    Args:
        pool: :func:`build_sentence_pool` output, n rows.
        labels: int [n] cluster of each pool row.
        clip_ids: every captioned clip (e.g. ``captions["clip_id"]``); those without a pool
            sentence get an empty multiset (they still count as a top-K caption). Default:
            the pool's clips.

    Returns:
        Frame ``clip_id, clusters (List(Int32), sorted, with repeats)``.

    Raises:
        ValueError: if ``labels`` does not match the pool.
    """
    require_columns(pool, ["clip_id", "sentence"], "pool")
    labels = np.asarray(labels)
    if labels.shape != (pool.height,):
        raise ValueError(f"labels: shape {labels.shape} does not match pool rows {pool.height}")
    df = pool.select("clip_id").with_columns(pl.Series("cluster", labels.astype(np.int32)))
    out = df.group_by("clip_id").agg(pl.col("cluster").sort().alias("clusters"))
    if clip_ids is not None:
        every = pl.DataFrame({"clip_id": list(dict.fromkeys(clip_ids))},
                             schema={"clip_id": pl.String})
        out = every.join(out, on="clip_id", how="left").with_columns(
            pl.col("clusters").fill_null(pl.lit([], dtype=pl.List(pl.Int32))))
    return out.sort("clip_id")


POOL_SENTENCES_PER_CAPTION_PAPER = 4.9
"""The authors' ESC-50 pool: 9,793-9,856 SALMONN sentences for 2,000 captions
(reference-spec §12.1, from the fig6 notebook's 154 MiniLM batches of 64)."""


def pool_rows(pool: pl.DataFrame, clip_ids: Sequence[str], *, experiment: str = "fig6",
              label: str = "") -> pl.DataFrame:
    """ResultRow frame of the sentence pool's shape: what bounds Algorithm 1.

    A multiset intersection over K captions is at most the fewest sentences of any of them,
    so a pool of about one sentence per caption makes |∩ C_i| >= τ >= 2 impossible.

    Args:
        pool: :func:`build_sentence_pool` output.
        clip_ids: every captioned clip (captions without a pool sentence count 0).
        experiment: experiment id.
        label: series of every row (e.g. the captioner id).

    Returns:
        Rows (x null, group "sentence pool"): ``captions``, ``sentences``,
        ``sentences_per_caption`` (mean; paper value 4.9), ``max_sentences_per_caption`` and
        ``pct_captions_2plus`` (% of captions with >= 2 pool sentences).
    """
    require_columns(pool, ["clip_id", "sentence"], "pool")
    every = list(dict.fromkeys(clip_ids))
    per = dict(pool.group_by("clip_id").agg(pl.len()).iter_rows())
    counts = np.array([per.get(c, 0) for c in every], dtype=np.int64)
    n = max(counts.size, 1)
    values = {"captions": (float(counts.size), None),
              "sentences": (float(pool.height), None),
              "sentences_per_caption": (float(counts.sum() / n),
                                        POOL_SENTENCES_PER_CAPTION_PAPER),
              "max_sentences_per_caption": (float(counts.max(initial=0)), None),
              "pct_captions_2plus": (100.0 * float((counts >= 2).sum() / n), None)}
    return ResultRow.frame([
        result_row(experiment, result_key("pool", metric), metric, v, group="sentence pool",
                   series=label, paper_value=pv,
                   note="authors' SALMONN pool (reference-spec §12.1)" if pv else "")
        for metric, (v, pv) in values.items()])


# ----- elbow rows and Table 8 -------------------------------------------------------------------
def elbow_rows(curve: pl.DataFrame, chosen_k: int, experiment: str = "elbow") -> pl.DataFrame:
    """ResultRow frame of an inertia curve and the elbow it gave.

    Args:
        curve: :func:`inertia_curve` output.
        chosen_k: :func:`elbow_k` of the curve.
        experiment: experiment id.

    Returns:
        One "inertia" row per k (x = k) and one "elbow_k" row (paper value 11).
    """
    rows = [result_row(experiment, result_key(tagged("k", k)), "inertia", inertia,
                       group="inertia", x=k)
            for k, inertia in curve.select("k", "inertia").iter_rows()]
    rows.append(result_row(experiment, result_key("elbow_k"), "elbow_k", float(chosen_k),
                           group="elbow", paper_value=11.0,
                           note="max distance below the chord of the scaled inertia curve"))
    return ResultRow.frame(rows)


def cluster_words(pool: pl.DataFrame, labels: np.ndarray, *, clustering: str = "k=11",
                  top_n: int = 50, extra_stopwords: Sequence[str] = (),
                  experiment: str = "table8") -> tuple[pl.DataFrame, pl.DataFrame]:
    """Table 8: size and most frequent words of every cluster (the word-cloud input).

    Words are lower-case ``[a-z]+`` runs with inner hyphens / apostrophes ("high-pitched"),
    minus scikit-learn's English stop words and ``extra_stopwords``, at least 2 letters.

    Args:
        pool: :func:`build_sentence_pool` output.
        labels: int [n] cluster of each pool row.
        clustering: label of the clustering, first part of every key.
        top_n: words kept per cluster.
        extra_stopwords: more words to drop (e.g. "sound").
        experiment: experiment id.

    Returns:
        (rows, words): ``rows`` is a ResultRow frame, group "cluster <c> (<n> sentences)":
        metrics "n_captions" and "n_sentences" (x null), and one "frequency" row per top
        word (series = word, x = rank, value = count; the word-cloud input). Keys
        "<clustering>/cluster=<c, 3 digits>/<metric | word=<w>>" sort the clusters in numeric
        order. ``words`` is ``cluster (Int32), word, count (Int64), rank (Int32, 1 = most
        frequent)``.
    """
    require_columns(pool, ["clip_id", "sentence"], "pool")
    labels = np.asarray(labels)
    if labels.shape != (pool.height,):
        raise ValueError(f"labels: shape {labels.shape} does not match pool rows {pool.height}")
    stop = ENGLISH_STOP_WORDS | {w.lower() for w in extra_stopwords}
    counts: dict[int, Counter[str]] = {}
    for label, sentence in zip(labels.tolist(), pool["sentence"].to_list(), strict=True):
        toks = [w for w in _WORD.findall(sentence.lower()) if len(w) > 1 and w not in stop]
        counts.setdefault(int(label), Counter()).update(toks)
    wrows: dict[str, list] = {"cluster": [], "word": [], "count": [], "rank": []}
    for c in sorted(counts):
        top = sorted(counts[c].items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]
        for r, (w, n) in enumerate(top, start=1):
            for name, v in zip(wrows, (c, w, n, r), strict=True):
                wrows[name].append(v)
    words = pl.DataFrame(wrows, schema={"cluster": pl.Int32, "word": pl.String,
                                        "count": pl.Int64, "rank": pl.Int32})
    sizes = (pool.select("clip_id").with_columns(pl.Series("cluster", labels.astype(np.int32)))
             .group_by("cluster").agg(pl.len().alias("n_sentences"),
                                      pl.col("clip_id").n_unique().alias("n_captions"))
             .sort("cluster"))
    rows = []
    group: dict[int, str] = {}
    for c, n_sent, n_cap in sizes.iter_rows():
        group[c] = f"cluster {c} ({n_sent} sentences)"
        for metric, v in (("n_captions", n_cap), ("n_sentences", n_sent)):
            rows.append(result_row(experiment, _cluster_key(clustering, c, metric), metric,
                                   float(v), group=group[c]))
    for c, w, n, r in words.iter_rows():
        rows.append(result_row(experiment, _cluster_key(clustering, c, tagged("word", w)),
                               "frequency", float(n), group=group[c], series=w, x=r))
    return ResultRow.frame(rows), words


def _cluster_key(clustering: str, cluster: int, last: str) -> str:
    """Table 8 key: clusters zero-padded to 3 digits so that they sort numerically."""
    return result_key(clustering, tagged("cluster", Padded(cluster, 3)), last)

