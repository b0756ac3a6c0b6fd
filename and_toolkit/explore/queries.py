"""Search, filter, sort and page the neurons of a run: pure Polars over in-memory frames.

Two frames, built once per server by :func:`and_toolkit.explore.data.load_tables`:

* ``browse``: one row per neuron (``model, layer, unit, alias, block, summary`` (S_h^c points
  joined, else S_h), ``open_concepts`` (list), ``search`` (lower-cased text of everything
  searchable: alias, layer, summaries, calibrated points, every closed rank-0 concept, the open
  concepts, nouns and verbs)).
* ``closed``: the rank-0 closed concept of every (neuron, method, similarity) with its score
  (``model, layer, unit, method, similarity, concept, score``).

:func:`search` answers one :class:`NeuronQuery` with a :class:`Page`; nothing here reads files.
"""

from __future__ import annotations

from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

KEY = ["model", "layer", "unit"]
OPEN_METHODS = {"OCP": "open_concepts"}
"""Open-set methods a query can filter on -> browse column holding their kept concepts."""
MAX_LIMIT = 200
"""Largest page size (rows)."""
KNOWN_LAYERS_SHOWN = 40
"""Known layers an unknown ``layer`` error lists (then how many there are in all)."""


class NeuronQuery(BaseModel):
    """One search over the neurons (every field optional).

    Attributes:
        q: full-text terms (whitespace-separated, case-insensitive, all must occur) over
            summaries, calibrated points, concepts, layer names.
        model, layer: exact filters (``layer`` also matches the short alias, e.g. ``block3.fc1``).
        method: keep neurons with a rank-0 concept of this method (``DB``, ``TAB``, ``ICL``)
            or kept open concepts (``OCP``); its concept and score are returned per row.
        similarity: with a closed method, the similarity function (``cos_cubed``, ``wpmi``, ...).
        concept: keep neurons whose concept (under ``method`` / ``similarity`` when given, any
            closed rank-0 or open concept otherwise) is this one; case and ``_`` vs space
            ignored.
        sort: ``key`` (model, layer, unit) or ``score`` (needs a closed ``method`` with scores).
        order: ``asc`` / ``desc``; default ascending for ``key``, descending for ``score``.
        limit, offset: the page (rows).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    q: str = Field("", max_length=200)
    model: str | None = Field(None, min_length=1, max_length=200)
    layer: str | None = Field(None, min_length=1, max_length=300)
    method: str | None = Field(None, min_length=1, max_length=40)
    similarity: str | None = Field(None, min_length=1, max_length=40)
    concept: str | None = Field(None, min_length=1, max_length=200)
    sort: Literal["key", "score"] = "key"
    order: Literal["asc", "desc"] | None = None
    limit: int = Field(50, ge=1, le=MAX_LIMIT)
    offset: int = Field(0, ge=0)


class Page(BaseModel):
    """One page of results: ``total`` matching neurons, ``items`` the rows of this page."""

    model_config = ConfigDict(frozen=True)

    total: int
    limit: int
    offset: int
    items: list[dict[str, Any]]


def _norm(text: pl.Expr | str) -> Any:
    """Concept names compared case-insensitively with ``_`` as a space."""
    if isinstance(text, str):
        return text.lower().replace("_", " ").strip()
    return text.str.to_lowercase().str.replace_all("_", " ").str.strip_chars()


def _check(query: NeuronQuery, browse: pl.DataFrame, closed: pl.DataFrame) -> None:
    """Refuse unknown models / layers / methods / similarities and an unsortable sort.

    Raises:
        ValueError: naming the field, the value and what is known.
    """
    models = set(browse["model"].unique().to_list())
    if query.model is not None and query.model not in models:
        raise ValueError(f"model: unknown {query.model!r}; known: {sorted(models)}")
    if query.layer is not None:
        _check_layer(query.layer, query.model, browse)
    methods = sorted({*closed["method"].unique().to_list(), *OPEN_METHODS})
    if query.method is not None and query.method not in methods:
        raise ValueError(f"method: unknown {query.method!r}; known: {methods}")
    if query.similarity is not None:
        rows = closed if query.method is None else closed.filter(pl.col("method") == query.method)
        sims = sorted(rows["similarity"].unique().to_list())
        if query.similarity not in sims:
            raise ValueError(f"similarity: unknown {query.similarity!r} for method "
                             f"{query.method or 'any'}; known: {sims}")
    if query.sort == "score":
        scored = closed.filter(pl.col("score").is_not_null())["method"].unique().to_list()
        if query.method not in scored:
            raise ValueError(f"sort: 'score' needs a method with scores ({sorted(scored)}); "
                             f"got method={query.method!r}")
        of_method = closed.filter(pl.col("method") == query.method)["similarity"].unique()
        if query.similarity is None and of_method.len() > 1:
            raise ValueError(f"sort: 'score' of method {query.method} needs a similarity "
                             f"(scores of {sorted(of_method.to_list())} are not comparable)")


def _check_layer(layer: str, model: str | None, browse: pl.DataFrame) -> None:
    """Refuse a layer that is neither a module path nor an alias of ``model``'s neurons (of
    any model's when ``model`` is None), naming the known ones (alias where there is one).

    Raises:
        ValueError: naming the field, the value and the known layers.
    """
    rows = browse if model is None else browse.filter(pl.col("model") == model)
    if layer in set(rows["layer"].to_list()) or layer in set(rows["alias"].to_list()):
        return
    names = rows.select(pl.coalesce(pl.col("alias"), pl.col("layer")).alias("name"))
    known = sorted(set(names["name"].to_list()))
    shown = ", ".join(repr(k) for k in known[:KNOWN_LAYERS_SHOWN])
    more = (f", ... ({len(known)} in all)" if len(known) > KNOWN_LAYERS_SHOWN else "")
    raise ValueError(f"layer: unknown {layer!r}{f' for model {model!r}' if model else ''} "
                     f"(a module path or an alias); known: [{shown}{more}]")


def search(browse: pl.DataFrame, closed: pl.DataFrame, query: NeuronQuery) -> Page:
    """Answer one query.

    Args:
        browse: one row per neuron (module docstring).
        closed: rank-0 closed concepts (module docstring).
        query: the filters, sort and page.

    Returns:
        The page: ``items`` carry ``model, layer, unit, alias, block, summary,
        open_concepts`` and, with a ``method``, its ``concept`` and ``score``
        (``similarity`` too for a closed method).

    Raises:
        ValueError: an unknown model / layer / method / similarity, or ``sort=score`` without a
            scored method (see :func:`_check`).
    """
    _check(query, browse, closed)
    lf = browse.lazy()
    if query.model is not None:
        lf = lf.filter(pl.col("model") == query.model)
    if query.layer is not None:
        lf = lf.filter((pl.col("layer") == query.layer) | (pl.col("alias") == query.layer))
    for term in query.q.lower().split():
        lf = lf.filter(pl.col("search").str.contains(term, literal=True))
    extra: list[str] = []
    concept = _norm(query.concept) if query.concept is not None else None
    if query.method in OPEN_METHODS:
        col = OPEN_METHODS[query.method]
        lf = lf.filter(pl.col(col).list.len() > 0)
        if concept is not None:
            lf = lf.filter(pl.col(col).list.eval(_norm(pl.element())).list.contains(concept))
    elif query.method is not None or query.similarity is not None:
        c = closed.lazy()
        if query.method is not None:
            c = c.filter(pl.col("method") == query.method)
        if query.similarity is not None:
            c = c.filter(pl.col("similarity") == query.similarity)
        if concept is not None:
            c = c.filter(_norm(pl.col("concept")) == concept)
        # one row per neuron: the first (method, similarity) by name when several remain
        c = c.sort([*KEY, "method", "similarity"]).unique(KEY, keep="first",
                                                            maintain_order=True)
        lf = lf.join(c.select(*KEY, "method", "similarity", "concept", "score"), on=KEY)
        extra = ["method", "similarity", "concept", "score"]
    elif concept is not None:
        hits = closed.lazy().filter(_norm(pl.col("concept")) == concept).select(KEY).unique()
        in_open = pl.col("open_concepts").list.eval(_norm(pl.element())).list.contains(concept)
        lf = lf.join(hits.with_columns(pl.lit(True).alias("_hit")), on=KEY, how="left").filter(
            pl.col("_hit").fill_null(False) | in_open.fill_null(False)).drop("_hit")
    if query.sort == "score":
        descending = query.order != "asc"
        lf = lf.sort(["score", *KEY], descending=[descending, False, False, False],
                     nulls_last=True)
    else:
        lf = lf.sort(KEY, descending=query.order == "desc")
    cols = [*KEY, "alias", "block", "summary", "open_concepts", *extra]
    total_and_page = lf.select(cols).with_columns(pl.len().alias("_total"))
    page = total_and_page.slice(query.offset, query.limit).collect()
    total = int(page["_total"][0]) if page.height else _count(lf)
    return Page(total=total, limit=query.limit, offset=query.offset,
                items=page.drop("_total").to_dicts())


def _count(lf: pl.LazyFrame) -> int:
    """Matching rows when the page itself is empty (offset past the end)."""
    return int(lf.select(pl.len()).collect().item())
