"""Benchmark: do shared-prefix decoding's ICL answers equal those a run cached before it?

Shared-prefix attention (``backends/shared_attention.py``) computes the same attention as one
softmax over the prefix and the row's tokens, up to float32 rounding, and keeps the backend id, so
answers cached by the earlier repeated-prefix / plain decoders stay valid. This checks that on
every ICL prompt of a finished run: it rebuilds the closed stage's prompts (both ICL prompts, the
classifier layers' calibrated summaries, the run's concept set and token budgets), decodes them
anew with SmolLM2 on the shared-prefix path in calls of ``ICL_CHUNK`` prompts, and compares each
answer with the run's cached generation (same generation key) token for token. The smallest top-2
logit gap seen while decoding says how close to a tie any step came. Records the CPU model, core
count and load average beside the figures.

Usage::

    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 AND_DATA_DIR=../shared/data
    python benchmarks/bench_icl_agreement.py --config configs/esc50.toml --run runs/esc50
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

from bench_llm_prefix import cpu_model

from and_toolkit.backends.llm import generation_key
from and_toolkit.backends.llm_transformers import SmolLM2LLM
from and_toolkit.cache import Cache
from and_toolkit.config import load_config
from and_toolkit.dissect.icl import ICL_MAX_TOKENS, ICL_SIMILARITY, icl_prompt_top
from and_toolkit.dissect.prompts import icl_prompt
from and_toolkit.interfaces import Sampling
from and_toolkit.pipeline.backends import LLMCacheAdapter
from and_toolkit.pipeline.closed_stage import ICL_CHUNK, concept_set, icl_neurons
from and_toolkit.pipeline.context import Context
from and_toolkit.run import Run

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "esc50.toml")
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "esc50")
    ap.add_argument("--out", type=Path,
                    default=ROOT / "benchmarks" / "results" / "icl_agreement.json")
    args = ap.parse_args()

    if not (args.run / "manifest.json").is_file():
        raise SystemExit(f"{args.run}: no finished run here; run `and-toolkit run {args.config}` "
                         "first (its closed stage caches the answers compared)")
    cfg = load_config(args.config)
    ctx = Context(cfg=cfg, run=Run.at(args.run), cache=Cache(), progress=False)
    names, _ = concept_set(ctx)
    cal, summaries = icl_neurons(ctx)
    llm = SmolLM2LLM.load()
    stored = LLMCacheAdapter(ctx.cache)
    load_before = os.getloadavg()
    compared = identical = missing = 0
    differing: list[dict[str, str]] = []
    seconds = 0.0
    for k in ICL_SIMILARITY:
        sampling = Sampling(max_new_tokens=ICL_MAX_TOKENS[k])
        prompts = [icl_prompt(s, names, top=icl_prompt_top(k)) for s in summaries]
        for lo in range(0, len(prompts), ICL_CHUNK):
            part = prompts[lo:lo + ICL_CHUNK]
            t0 = time.perf_counter()
            fresh = llm.generate(part, sampling)
            seconds += time.perf_counter() - t0
            assert llm.last_decoder == "shared-prefix", llm.last_decoder
            for prompt, text in zip(part, fresh, strict=True):
                old = stored.get(generation_key(llm, prompt, sampling))
                if old is None:
                    missing += 1
                    continue
                compared += 1
                tok = llm.tokenizer
                if tok(old, add_special_tokens=False)["input_ids"] == \
                        tok(text, add_special_tokens=False)["input_ids"]:
                    identical += 1
                elif len(differing) < 5:
                    differing.append({"k": str(k), "cached": old, "shared_prefix": text})
            print(f"top-{k} prompts {lo + len(part)}/{len(prompts)}: {identical}/{compared} "
                  f"identical, {missing} not cached", flush=True)
    result = {
        "benchmark": "icl_agreement", "date": datetime.datetime.now(datetime.UTC).isoformat(),
        "machine": {"platform": platform.platform(), "cpu_model": cpu_model(),
                    "cpus": os.cpu_count(), "load_average_1_5_15_before": list(load_before),
                    "load_average_1_5_15_after": list(os.getloadavg())},
        "run": str(args.run), "config": str(args.config), "model": llm.id,
        "neurons": cal.height, "prompts": 2 * cal.height, "compared": compared,
        "identical": identical, "not_cached": missing, "differing_examples": differing,
        "min_top2_logit_gap": llm.decode_stats.min_top2_gap,
        "seconds_per_prompt": seconds / max(2 * cal.height, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("prompts", "compared", "identical", "not_cached",
                                             "min_top2_logit_gap", "seconds_per_prompt")}))


if __name__ == "__main__":
    main()
