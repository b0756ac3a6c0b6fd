"""A :class:`~and_toolkit.compare.snapshot.Snapshot` stored as a regression baseline.

Two files beside each other: ``<name>.yml`` holds labels and concepts (probe clip ids, the
neurons, their top / bottom clips, summary and calibrated points, open concepts and ranked
closed concepts, the result rows' ids), readable and reviewable in a diff; ``<name>.npz``
holds the numbers (extreme activations float32, closed-concept scores and result values
float64, with null masks), in the YAML's order. Loading gives back a snapshot that
:func:`and_toolkit.compare.compare.diff_snapshots` compares like a run.

YAML layout::

    format: and-toolkit-dissection-baseline
    version: 1
    records: {ProbeClip: 1, Extremes: 1, ...}        # schema versions of the kinds held
    probe: [{dataset: esc50, clip_ids: [...]}]       # probe order
    neurons:
      <model>:
        <layer>:
          <unit>: {top_clips: [...], bottom_clips: [...], summary_high: [...],
                   summary_low: [...], calibrated: [...], open: [...],
                   closed: {<method>: {<similarity>: [concepts by rank]}}}
    results: {<experiment>: {<key>: {model: ..., metric: ...}}}

Ranks are list positions (open concepts: the order of the kept ones), identically for both
sides of a comparison of two baselines.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from and_toolkit.atomic import atomic_write_bytes
from and_toolkit.compare.snapshot import COMPARED, SCHEMAS, SORT_KEYS, Snapshot
from and_toolkit.errors import DataError

FORMAT = "and-toolkit-dissection-baseline"
VERSION = 1
NEURON_FIELDS = ("top_clips", "bottom_clips", "summary_high", "summary_low", "calibrated",
                 "open", "closed")
_SIDES = {"high": ("top_clips", "summary_high"), "low": ("bottom_clips", "summary_low")}
_FRAMES = ("probe", "extremes", "summaries", "calibrated", "open", "closed", "results")
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def npz_path(yml: str | Path) -> Path:
    """The ``.npz`` beside a baseline's ``.yml``."""
    return Path(yml).with_suffix(".npz")


def write_baseline(snapshot: Snapshot, yml: str | Path) -> list[Path]:
    """Write ``snapshot`` as ``yml`` + its ``.npz`` (atomic each). Returns both paths."""
    yml = Path(yml)
    names = [n for n in _FRAMES if snapshot.frame(n) is not None]
    lazies = [snapshot.neurons.sort(SORT_KEYS["neurons"])]
    lazies += [snapshot.frame(n).sort(SORT_KEYS[n]) for n in names]  # type: ignore[union-attr]
    got = pl.collect_all(lazies)
    neurons_df, frames = got[0], dict(zip(names, got[1:], strict=True))

    tree: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
    for model, layer, unit in neurons_df.iter_rows():
        tree.setdefault(model, {}).setdefault(layer, {})[int(unit)] = {}

    def entry(r: dict[str, Any]) -> dict[str, Any]:
        return tree[r["model"]][r["layer"]][int(r["unit"])]

    arrays: dict[str, np.ndarray] = {}
    if "extremes" in frames:
        values: list[float] = []
        for r in frames["extremes"].iter_rows(named=True):
            entry(r)[_SIDES[r["side"]][0]] = list(r["clip_ids"])
            values += list(r["values"])
        arrays["extremes_values"] = np.asarray(values, dtype=np.float32)
    if "summaries" in frames:
        for r in frames["summaries"].iter_rows(named=True):
            entry(r)[_SIDES[r["side"]][1]] = list(r["points"])
    if "calibrated" in frames:
        for r in frames["calibrated"].iter_rows(named=True):
            entry(r)["calibrated"] = list(r["kept"])
    if "open" in frames:
        for r in frames["open"].iter_rows(named=True):
            entry(r).setdefault("open", []).append(r["concept"])
    if "closed" in frames:
        for r in frames["closed"].iter_rows(named=True):
            (entry(r).setdefault("closed", {}).setdefault(r["method"], {})
             .setdefault(r["similarity"], []).append(r["concept"]))
        arrays.update(_floats("closed_scores", frames["closed"]["score"]))
    doc: dict[str, Any] = {"format": FORMAT, "version": VERSION,
                           "records": dict(sorted(snapshot.versions.items())),
                           "probe": None, "neurons": tree, "results": None}
    if "probe" in frames:
        runs: list[dict[str, Any]] = []
        for dataset, clip_id, _ in frames["probe"].iter_rows():
            if not runs or runs[-1]["dataset"] != dataset:
                runs.append({"dataset": dataset, "clip_ids": []})
            runs[-1]["clip_ids"].append(clip_id)
        doc["probe"] = runs
    if "results" in frames:
        res: dict[str, dict[str, dict[str, str]]] = {}
        for r in frames["results"].iter_rows(named=True):
            res.setdefault(r["experiment"], {})[r["key"]] = {"model": r["model"],
                                                              "metric": r["metric"]}
        doc["results"] = res
        arrays.update(_floats("result_values", frames["results"]["value"]))

    text = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=None, width=100)
    atomic_write_bytes(yml, lambda tmp: tmp.write_text(text, "utf-8"))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    atomic_write_bytes(npz_path(yml), lambda tmp: tmp.write_bytes(buf.getvalue()))
    return [yml, npz_path(yml)]


def _floats(name: str, s: pl.Series) -> dict[str, np.ndarray]:
    null = s.is_null().to_numpy()
    return {name: s.fill_null(0.0).to_numpy().astype(np.float64), f"{name}_null": null}


def _unfloats(arrays: Any, name: str, n: int, source: Path) -> list[float | None]:
    if n == 0:
        return []
    try:
        values, null = arrays[name], arrays[f"{name}_null"]
    except KeyError:
        raise DataError(f"{source}: baseline arrays lack {name!r}") from None
    if len(values) != n:
        raise DataError(f"{source}: {name} holds {len(values)} values for {n} rows")
    return [None if m else float(v) for v, m in zip(values, null, strict=True)]


def read_baseline(yml: str | Path, npz: str | Path | None = None) -> Snapshot:
    """Load a baseline written by :func:`write_baseline` as a snapshot.

    Raises:
        DataError: missing / unreadable files, another format version, record schema
            versions other than this package's, or arrays that do not match the YAML.
    """
    yml = Path(yml)
    npz = Path(npz) if npz is not None else npz_path(yml)
    try:
        doc = yaml.load(yml.read_text("utf-8"), Loader=_Loader)
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DataError(f"{yml}: not a readable baseline: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DataError(f"{yml}: not an and-toolkit dissection baseline")
    if doc.get("version") != VERSION:
        raise DataError(f"{yml}: baseline format version {doc.get('version')!r}, this "
                        f"and-toolkit reads {VERSION}: regenerate it (--force-regen)")
    ours = {r.record_name: r.schema_version for r in COMPARED}
    versions = {str(k): int(v) for k, v in (doc.get("records") or {}).items()}
    for name, v in versions.items():
        if ours.get(name) != v:
            raise DataError(f"{yml}: written with {name} schema version {v}, this and-toolkit "
                            f"reads {ours.get(name)}: regenerate it (--force-regen)")
    try:
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{npz}: not a readable baseline array file: {exc}") from None
    return _snapshot(doc, arrays, versions, yml)


def _snapshot(doc: dict[str, Any], arrays: dict[str, np.ndarray], versions: dict[str, int],
              source: Path) -> Snapshot:
    present = set(versions)
    cols: dict[str, dict[str, list[Any]]] = {n: {c: [] for c in SCHEMAS[n]} for n in SCHEMAS}

    def add(name: str, **row: Any) -> None:
        for c, v in row.items():
            cols[name][c].append(v)

    for model, layers in (doc.get("neurons") or {}).items():
        for layer, units in (layers or {}).items():
            for unit, fields in (units or {}).items():
                key = {"model": str(model), "layer": str(layer), "unit": int(unit)}
                add("neurons", **key)
                f = fields or {}
                for side, (clips, points) in _SIDES.items():
                    if clips in f:
                        add("extremes", **key, side=side, clip_ids=list(f[clips]), values=None)
                    if points in f:
                        add("summaries", **key, side=side, points=list(f[points]))
                if "calibrated" in f:
                    add("calibrated", **key, kept=list(f["calibrated"]))
                for rank, concept in enumerate(f.get("open") or []):
                    add("open", **key, concept=str(concept), rank=rank)
                for method, sims in (f.get("closed") or {}).items():
                    for sim, concepts in (sims or {}).items():
                        for rank, concept in enumerate(concepts or []):
                            add("closed", **key, method=str(method), similarity=str(sim),
                                concept=str(concept), rank=rank, score=None)
    for run in doc.get("probe") or []:
        for clip_id in run["clip_ids"]:
            add("probe", dataset=str(run["dataset"]), clip_id=str(clip_id),
                index=len(cols["probe"]["clip_id"]))
    for experiment, keys in (doc.get("results") or {}).items():
        for key, meta in (keys or {}).items():
            add("results", experiment=str(experiment), key=str(key), model=meta["model"],
                metric=meta["metric"], value=None)

    ext = cols["extremes"]
    if ext["clip_ids"]:
        flat = arrays.get("extremes_values", np.zeros(0, np.float32))
        sizes = [len(c) for c in ext["clip_ids"]]
        if sum(sizes) != len(flat):
            raise DataError(f"{source}: extremes_values holds {len(flat)} values for "
                            f"{sum(sizes)} clips")
        bounds = np.cumsum([0, *sizes])
        ext["values"] = [flat[i:j].tolist() for i, j in zip(bounds[:-1], bounds[1:],
                                                             strict=True)]
    cols["closed"]["score"] = _unfloats(arrays, "closed_scores", len(cols["closed"]["rank"]),
                                        source)
    cols["results"]["value"] = _unfloats(arrays, "result_values",
                                         len(cols["results"]["key"]), source)

    def frame(name: str, held: bool) -> pl.LazyFrame | None:
        return pl.DataFrame(cols[name], schema=SCHEMAS[name]).lazy() if held else None

    return Snapshot(
        label=str(source), present=frozenset(present), versions=versions,
        neurons=pl.DataFrame(cols["neurons"], schema=SCHEMAS["neurons"]).lazy(),
        probe=frame("probe", "ProbeClip" in present),
        extremes=frame("extremes", "Extremes" in present),
        summaries=frame("summaries", "Summary" in present),
        calibrated=frame("calibrated", "CalibratedSummary" in present),
        open=frame("open", "ConceptSet" in present),
        closed=frame("closed", "ConceptSet" in present),
        results=frame("results", "ResultRow" in present))
