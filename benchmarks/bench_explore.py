"""Benchmark of the neuron explorer's queries on the ESC-50 run (issue 13; goal <= 200 ms).

Loads the run once (as ``and-toolkit explore`` does), then times representative searches:
the pure Polars query (:func:`and_toolkit.explore.queries.search`) and the same request
through the app (``GET /api/neurons`` with Starlette's TestClient: parsing, query, JSON), plus
the neuron endpoint (``GET /api/neurons/{model}/{layer}/{unit}``) on sampled neurons. Each
query runs ``--repeat`` times after one warm-up; median and p95 in milliseconds. The run is
only read (no rating is posted).

Usage: python benchmarks/bench_explore.py [--run runs/esc50] [--repeat 30]
                                          [--out benchmarks/results/explore.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOAL_MS = 200.0
QUERIES: dict[str, dict[str, str]] = {
    "first page, no filter": {},
    "full text: one term": {"q": "dog"},
    "full text: two terms, one model": {"q": "engine idling", "model": "ast"},
    "layer alias + model": {"model": "ast", "layer": "block6.fc1"},
    "DB cos_cubed, sort by score": {"method": "DB", "similarity": "cos_cubed", "sort": "score"},
    "concept, any method": {"concept": "dog"},
    "DB wpmi concept + text, by score": {"method": "DB", "similarity": "wpmi",
                                         "concept": "rain", "q": "water", "sort": "score"},
    "open concept (OCP)": {"method": "OCP", "concept": "loud"},
    "deep page (offset 10000, 200 rows)": {"offset": "10000", "limit": "200"},
}


def _stats(ms: list[float]) -> dict[str, float]:
    arr = np.asarray(ms)
    return {"median_ms": round(float(np.median(arr)), 2),
            "p95_ms": round(float(np.percentile(arr, 95)), 2),
            "max_ms": round(float(arr.max()), 2)}


def _timed(fn: Any, repeat: int) -> tuple[list[float], Any]:
    out = fn()  # warm-up
    ms = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        ms.append((time.perf_counter() - t) * 1000)
    return ms, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=str(ROOT / "runs" / "esc50"))
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "explore.json"))
    args = ap.parse_args()
    run_dir = Path(args.run)
    if not (run_dir / "manifest.json").is_file():
        print(f"bench_explore: no run at {run_dir} (make it with `and-toolkit run "
              "configs/esc50.toml`, or pass --run)", file=sys.stderr)
        return 1

    from starlette.testclient import TestClient

    from and_toolkit.explore.app import create_app
    from and_toolkit.explore.queries import NeuronQuery, search

    t = time.perf_counter()
    app = create_app(run_dir)
    load_s = time.perf_counter() - t
    tables = app.state.explorer.t
    client = TestClient(app)
    results: dict[str, Any] = {}
    for name, params in QUERIES.items():
        query = NeuronQuery.model_validate(params)
        pure, page = _timed(lambda q=query: search(tables.browse, tables.closed, q), args.repeat)

        def http(p: dict[str, str] = params) -> Any:
            r = client.get("/api/neurons", params=p)
            r.raise_for_status()
            return r.json()

        over_http, body = _timed(http, args.repeat)
        assert body["total"] == page.total
        results[name] = {"params": params, "total": page.total, "rows": len(page.items),
                         "query": _stats(pure), "http": _stats(over_http)}
        print(f"{name:40s} total {page.total:6d}  query median {results[name]['query']['median_ms']:7.2f}"
              f" p95 {results[name]['query']['p95_ms']:7.2f} ms  http median "
              f"{results[name]['http']['median_ms']:7.2f} p95 {results[name]['http']['p95_ms']:7.2f} ms")
    rng = np.random.default_rng(0)
    keys = tables.view.select("model", "layer", "unit").rows()
    picks = [keys[i] for i in rng.choice(len(keys), size=min(args.repeat, len(keys)),
                                         replace=False)]
    detail_ms = []
    for m, layer, u in picks:
        t = time.perf_counter()
        client.get(f"/api/neurons/{m}/{layer}/{u}").raise_for_status()
        detail_ms.append((time.perf_counter() - t) * 1000)
    worst_p95 = max(max(r["query"]["p95_ms"], r["http"]["p95_ms"]) for r in results.values())
    out = {
        "benchmark": "explore", "date": dt.date.today().isoformat(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "run": str(run_dir), "neurons": tables.browse.height, "repeat": args.repeat,
        "load_s": round(load_s, 2), "queries": results,
        "neuron_endpoint": {"neurons": len(picks), **_stats(detail_ms)},
        "goal_ms": GOAL_MS, "worst_p95_ms": worst_p95,
        "meets_goal": bool(worst_p95 <= GOAL_MS),
        "note": ("query = the pure Polars search over the in-memory frames; http = the same "
                 "request through the app (TestClient, JSON included). Measured on a shared "
                 "2-core machine with other jobs running."),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n", "utf-8")
    print(f"load {load_s:.2f} s; neuron endpoint median {out['neuron_endpoint']['median_ms']} "
          f"ms; worst p95 {worst_p95} ms (goal {GOAL_MS} ms) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
