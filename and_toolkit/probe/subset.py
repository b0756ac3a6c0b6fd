"""Subsets of a probing set and its class ids (pure functions on ProbeClip frames)."""

from __future__ import annotations

import polars as pl

from and_toolkit.errors import ConfigError, DataError


def subset_probe(probe: pl.DataFrame, max_clips: int | None = None, per_class: int | None = None,
                 classes: list[str] | None = None) -> pl.DataFrame:
    """Keep the named classes, at most ``per_class`` clips per class spread round-robin over the
    folds (so every fold keeps clips), and ``max_clips`` overall; re-index 0..N-1 in the
    original order. Class ids stay dense (0..C-1 in the original order), so classifier unit j
    is class id j.

    Args:
        probe: ProbeClip frame.
        max_clips, per_class, classes: the limits (None: no limit).

    Raises:
        ConfigError: a named class is not in the probing set.
    """
    probe = probe.sort("index")
    if classes is not None:
        unknown = sorted(set(classes) - set(probe["label"].to_list()))
        if unknown:
            raise ConfigError(f"probe.classes: unknown class(es) {unknown}")
        probe = probe.filter(pl.col("label").is_in(classes))
        probe = probe.with_columns(
            (pl.col("target").rank("dense") - 1).cast(pl.Int32).alias("target"))
    if per_class is not None:
        turn = pl.int_range(pl.len()).over("label", "fold")  # i-th clip of its (class, fold)
        order = pl.struct(turn, pl.col("fold")).rank("ordinal").over("label")
        probe = probe.filter(order <= per_class)
    if max_clips is not None:
        probe = probe.head(max_clips)
    return probe.with_columns(pl.int_range(pl.len(), dtype=pl.Int32).alias("index"))


def class_names(probe: pl.DataFrame) -> list[str]:
    """Label of every class id 0..C-1 of a ProbeClip frame (the concept set D_c).

    Raises:
        DataError: class ids that are not 0..C-1, or a class id with two labels.
    """
    pairs = probe.select("target", "label").unique().sort("target")
    ids = pairs["target"].to_list()
    if ids != list(range(len(ids))) or pairs["target"].is_duplicated().any():
        raise DataError(f"probe.target: expected class ids 0..C-1 with one label each, "
                        f"got {ids[:10]}")
    return [str(x) for x in pairs["label"].to_list()]
