"""Ratings posted by raters: checked, then appended atomically to ``<run>/ratings.parquet``.

A post names the neuron, the method and a 1-5 rating; the description stored with it is the
one the run holds (never text from the request). Appends are serialised twice: a lock within
the process (the server's worker threads) and an exclusive ``flock`` on ``<run>/.ratings.lock``
across processes; each append reads the file, adds the row and rewrites it through
``Run.write`` (validated, temp file + rename), so concurrent posts lose no row and a crash
leaves the old file or the new one.
"""

from __future__ import annotations

import fcntl
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from and_toolkit.records.models import Rating
from and_toolkit.run import Run


class RatingPost(BaseModel):
    """The body of ``POST /api/ratings`` (JSON). Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    model: StrictStr = Field(min_length=1, max_length=200)
    layer: StrictStr = Field(min_length=1, max_length=300)
    unit: StrictInt = Field(ge=0)
    method: StrictStr = Field(min_length=1, max_length=40)
    rating: StrictInt = Field(ge=1, le=5)
    rater: StrictStr = Field(min_length=1, max_length=100)
    comment: StrictStr | None = Field(None, max_length=2000)


class RatingStore:
    """Appends Rating rows to one run and counts them."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self._lock = threading.Lock()

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        lock_path = self.run.root / ".ratings.lock"
        with self._lock, open(lock_path, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def append(self, post: RatingPost, description: str) -> dict[str, Any]:
        """Append one rating; return the stored row.

        Args:
            post: the checked request body.
            description: the description of ``post.method`` the run holds for the neuron.

        Raises:
            RecordValidationError: the row does not validate (nothing written).
        """
        row = {"rating_id": uuid.uuid4().hex, "model": post.model, "layer": post.layer,
               "unit": post.unit, "method": post.method, "description": description,
               "rating": post.rating, "rater": post.rater, "comment": post.comment or None,
               "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        new = Rating.frame([row])
        Rating.validate_frame(new, "POST /api/ratings")
        with self._exclusive():
            self.run.write(Rating, pl.concat([self.run.ratings(), new]), source="explorer")
        return row

    def counts(self, model: str | None = None, layer: str | None = None,
               unit: int | None = None) -> dict[str, Any]:
        """``total`` ratings in the run, ``by_method``, and ``neuron`` (those of one neuron
        when model, layer and unit are given, else null)."""
        df = self.run.ratings()
        out: dict[str, Any] = {
            "total": df.height,
            "by_method": dict(sorted(df.group_by("method").len().iter_rows())),
            "neuron": None}
        if model is not None and layer is not None and unit is not None:
            out["neuron"] = df.filter((pl.col("model") == model) & (pl.col("layer") == layer)
                                      & (pl.col("unit") == unit)).height
        return out
