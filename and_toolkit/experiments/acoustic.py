"""Basic acoustic properties of neurons' top clips, split by open-set adjective: Fig 8.

Reference: reference-spec §9 (Appendix C, no authors' code) and §15 item 19; paper Appendix C.

Neurons are split by whether a word ("loud", "high-pitched") is in their C_open-set. For each
neuron, each clip measure is averaged over its top-K clips; the two groups' distributions are
compared by their medians and a Mann-Whitney U test. Per-clip measures come from
:func:`clip_acoustics` (computed by the caller from the audio, once per clip):

* ``amplitude``: mean |x_t| of the waveform (the paper's "averaged waveform amplitude" is not
  defined further), full scale = 1.
* ``rms_db``: RMS level, 10 log10 mean(x²) (= 20 log10 RMS), dBFS, floored at -120
  (:func:`and_toolkit.signal.rms_dbfs`, the definition the caption descriptors use).
* ``mdf_hz``: median frequency, the smallest f with Σ_{f_i <= f} P(f_i) >= ½ Σ P(f_i), P the
  power spectrum |rFFT|² of the whole clip (DC removed first by default), in Hz
  (:func:`and_toolkit.signal.median_frequency`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Literal, NamedTuple

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from and_toolkit.experiments.adjectives import (
    KEY,
    open_adjectives,
    require_columns,
)
from and_toolkit.experiments.rows import neuron_part, result_key, result_row
from and_toolkit.records.models import ResultRow
from and_toolkit.signal import check_waveform, median_frequency, rms_dbfs

Measure = Literal["amplitude", "rms_db", "mdf_hz"]
MEASURES: tuple[Measure, ...] = ("amplitude", "rms_db", "mdf_hz")

#: Appendix C: AST neurons with / without "loud" in C_open-set.
PAPER_APPENDIX_C_LOUD: Mapping[str, float] = MappingProxyType(
    {"n_with": 22612.0, "n_without": 32734.0})


class ClipAcoustics(NamedTuple):
    """Whole-clip acoustic measures (see the module docstring for definitions)."""

    amplitude: float
    rms_db: float
    mdf_hz: float


def clip_acoustics(waveform: np.ndarray, sample_rate: int, *,
                   remove_dc: bool = True) -> ClipAcoustics:
    """Mean absolute amplitude, RMS level and median frequency of one clip.

    Args:
        waveform: float [T] mono samples, full scale = 1.
        sample_rate: Hz (> 0).
        remove_dc: subtract the mean before the spectrum (a DC offset would otherwise pull
            the MDF towards 0 Hz); amplitude and RMS use the raw samples.

    Returns:
        :class:`ClipAcoustics`. A silent clip has amplitude 0, rms_db -120 and mdf_hz 0.

    Raises:
        ValueError: waveform not 1-D, empty or non-finite; sample_rate not a positive integer
            (see :func:`and_toolkit.signal.check_waveform`).
    """
    x = check_waveform(waveform, sample_rate, dtype=np.float64)
    return ClipAcoustics(float(np.mean(np.abs(x))), rms_dbfs(x),
                         median_frequency(x, sample_rate, remove_dc=remove_dc))


def acoustics_frame(clips: Iterable[tuple[str, np.ndarray, int]]) -> pl.DataFrame:
    """Per-clip measures of several clips.

    Args:
        clips: (clip_id, waveform [T], sample_rate) triples.

    Returns:
        Frame ``clip_id, amplitude, rms_db, mdf_hz`` (Float64), in input order.
    """
    rows = [(cid, *clip_acoustics(w, sr)) for cid, w, sr in clips]
    return pl.DataFrame(rows, schema={"clip_id": pl.String, "amplitude": pl.Float64,
                                      "rms_db": pl.Float64, "mdf_hz": pl.Float64}, orient="row")


class AcousticConfig(BaseModel):
    """Fig 8 settings.

    Attributes:
        words: adjectives that split the neurons (Fig 8a "loud", 8b "high-pitched").
        method, pos: ConceptSet rows of C_open-set (see ``adjectives.open_adjectives``).
        alternative: Mann-Whitney alternative for "with word" vs "without" ("two-sided", or
            "greater" = with-word neurons have larger values).
        figure_pairs: (word, measure) pairs whose per-neuron values go into the rows as
            distributions (Fig 8a: loud / amplitude, Fig 8b: high-pitched / mdf_hz).
        experiment: experiment id.
        paper_model: our model id -> paper model name (else the id itself).
        adjective_source: where the words come from and whether that source is independent
            of the clip measurements (a neuron tagged "loud" by an RMS rule has loud clips by
            construction); appended to the note of every summary row.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    words: tuple[str, ...] = ("loud", "high-pitched")
    method: str = "OCP"
    pos: str | None = "ADJ"
    alternative: Literal["two-sided", "greater", "less"] = "two-sided"
    figure_pairs: tuple[tuple[str, Measure], ...] = (
        ("loud", "amplitude"), ("loud", "rms_db"), ("high-pitched", "mdf_hz"))
    experiment: str = "fig8"
    paper_model: dict[str, str] = Field(default_factory=dict)
    adjective_source: str = ""


def neuron_acoustics(extremes: pl.DataFrame, clip_measures: pl.DataFrame) -> pl.DataFrame:
    """Mean of each clip measure over every neuron's top-K clips.

    Args:
        extremes: Extremes frame (side 'high' rows are used).
        clip_measures: ``clip_id, amplitude, rms_db, mdf_hz`` (one row per clip).

    Returns:
        Frame ``model, layer, unit, amplitude, rms_db, mdf_hz`` (Float64), sorted by neuron.

    Raises:
        ValueError: missing columns, duplicate or non-finite clip measures, or a top-K clip
            without measures (the message names up to five such clip ids).
    """
    require_columns(extremes, [*KEY, "side", "clip_ids"], "extremes")
    require_columns(clip_measures, ["clip_id", *MEASURES], "clip_measures")
    cm = clip_measures.select("clip_id", *[pl.col(m).cast(pl.Float64) for m in MEASURES])
    if cm["clip_id"].is_duplicated().any():
        raise ValueError("clip_measures: duplicate clip_id")
    for m in MEASURES:
        if not cm[m].is_finite().all():
            raise ValueError(f"clip_measures: field {m!r} has null, NaN or inf values")
    long = (extremes.filter(pl.col("side") == "high").select(*KEY, "clip_ids")
            .explode("clip_ids").rename({"clip_ids": "clip_id"}))
    joined = long.join(cm, on="clip_id", how="left")
    absent = joined.filter(pl.col(MEASURES[0]).is_null())["clip_id"].unique().sort()
    if absent.len():
        raise ValueError(f"clip_measures: {absent.len()} top-K clips have no measures, e.g. "
                         f"{absent.head(5).to_list()}")
    return joined.group_by(*KEY).agg(pl.col(m).mean() for m in MEASURES).sort(list(KEY))


def _group_rows(exp: str, model: str, word: str, measure: str, with_v: np.ndarray,
                without_v: np.ndarray, alternative: str) -> list[dict[str, object]]:
    """Medians, means, AUC and Mann-Whitney p of one (word, measure) split."""
    if with_v.size == 0 or without_v.size == 0:
        note = "not computable: one group is empty"
        return [result_row(exp, result_key(model, word, measure, m), m, None, model=model,
                           group=word, series=measure, note=note)
                for m in ("median_with", "median_without", "mean_with", "mean_without",
                          "auc", "p_value")]
    res = stats.mannwhitneyu(with_v, without_v, alternative=alternative)
    u1 = float(stats.mannwhitneyu(with_v, without_v, alternative="two-sided").statistic)
    auc = u1 / (with_v.size * without_v.size)
    vals = {"median_with": float(np.median(with_v)), "median_without": float(np.median(without_v)),
            "mean_with": float(with_v.mean()), "mean_without": float(without_v.mean()),
            "auc": auc, "p_value": float(res.pvalue)}
    notes = {"auc": "P(with > without) + ½ P(tie), = U / (n_with n_without)",
             "p_value": f"Mann-Whitney U, {alternative}"}
    return [result_row(exp, result_key(model, word, measure, m), m, v, model=model, group=word,
                       series=measure, note=notes.get(m, "")) for m, v in vals.items()]


def _distribution(per_neuron: pl.DataFrame, exp: str, word: str,
                  measure: Measure) -> list[dict[str, object]]:
    """ResultRow rows of one Fig 8 panel: one per neuron (x = its row number in
    ``per_neuron``), series "with" / "without"."""
    cols = per_neuron.select("model", "layer", "unit", "words", measure).iter_rows()
    return [result_row(exp, result_key(model, word, measure, neuron_part(layer, unit)), measure,
                       value, model=model, group=word, x=float(i),
                       series="with" if word in words else "without")
            for i, (model, layer, unit, words, value) in enumerate(cols)]


def acoustic_groups(extremes: pl.DataFrame, concepts: pl.DataFrame,
                    clip_measures: pl.DataFrame, config: AcousticConfig) -> tuple[
        pl.DataFrame, pl.DataFrame]:
    """Fig 8: acoustic measures of neurons with vs without a word in C_open-set.

    The population is every neuron with a top-K Extremes row; a neuron without open concepts
    is "without" every word.

    Args:
        extremes: Extremes frame (side 'high').
        concepts: ConceptSet frame.
        clip_measures: per-clip ``clip_id, amplitude, rms_db, mdf_hz`` (see
            :func:`acoustics_frame`).
        config: words, concept selection, test alternative, experiment id.

    Returns:
        (rows, per_neuron). ``rows`` is a ResultRow frame. Summary rows (x null), group =
        word, series = measure ("amplitude", "rms_db", "mdf_hz"): "n_with" / "n_without"
        (paper values for AST "loud": 22,612 / 32,734), "median_with", "median_without",
        "mean_with", "mean_without", "auc" and "p_value"; each summary note ends with
        ``config.adjective_source``. Distribution rows for each
        ``config.figure_pairs`` (word, measure): one per neuron, group = word, series
        "with" / "without", metric = measure, value = the neuron's mean, x = row number
        (key "<model>/<word>/<measure>/<layer>#<unit>"). ``per_neuron`` is the
        distribution frame: ``model, layer, unit, amplitude, rms_db, mdf_hz, words`` (List(String):
        which of ``config.words`` the neuron has).

    Raises:
        ValueError: see :func:`neuron_acoustics`; missing ConceptSet columns.
    """
    per_neuron = neuron_acoustics(extremes, clip_measures)
    adj = open_adjectives(concepts, config.method, config.pos, merges=None)
    words = (adj.filter(pl.col("concept").is_in(list(config.words)))
             .group_by(*KEY).agg(pl.col("concept").sort().alias("words")))
    per_neuron = (per_neuron.join(words, on=list(KEY), how="left")
                  .with_columns(pl.col("words").fill_null(pl.lit([], dtype=pl.List(pl.String)))))
    rows: list[dict[str, object]] = []
    exp = config.experiment
    for model in per_neuron["model"].unique().sort().to_list():
        pm = per_neuron.filter(pl.col("model") == model)
        is_ast = config.paper_model.get(model, model) == "AST"
        for word in config.words:
            has = pm["words"].list.contains(word).to_numpy()
            for measure in MEASURES:
                for m, n in (("n_with", int(has.sum())), ("n_without", int((~has).sum()))):
                    pv = PAPER_APPENDIX_C_LOUD[m] if is_ast and word == "loud" else None
                    rows.append(result_row(exp, result_key(model, word, measure, m), m,
                                           float(n), model=model, group=word, series=measure,
                                           paper_value=pv))
                v = pm[measure].to_numpy()
                rows += _group_rows(exp, model, word, measure, v[has], v[~has],
                                    config.alternative)
    if config.adjective_source:
        src = config.adjective_source
        rows = [{**r, "note": f"{r['note']}; {src}" if r["note"] else src} for r in rows]
    for w, m in config.figure_pairs:
        rows += _distribution(per_neuron, exp, w, m)
    return ResultRow.frame(rows), per_neuron
