"""Train the ESC-50 target networks (fold 1 = test, folds 2-5 = train) and print accuracy/time.

Usage::

    export AND_DATA_DIR=/work/shared/data HF_HUB_OFFLINE=1
    python benchmarks/train_targets.py                      # all DEFAULT_TARGETS
    python benchmarks/train_targets.py --targets cnn --epochs 3 --out /tmp/and-targets

Features are cached under ``--cache`` (default /tmp/and-targets), keyed by the feature config
and the clip list; trained weights are written there too, keyed by ``weights_key``.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from and_toolkit.targets import (
    DEFAULT_TARGETS,
    FeatureConfig,
    features_sha,
    labels_sha,
    logmel_features,
    resolve_train_config,
    save_weights,
    train_target,
    weights_key,
)
from and_toolkit.targets.early_stop import final_row


def load_esc50(data_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read ESC-50 metadata in file order.

    Args:
        data_dir: ``$AND_DATA_DIR`` (contains ``esc50/meta/esc50.csv``).

    Returns:
        (audio paths, targets [N] int64, folds [N] int64).
    """
    root = data_dir / "esc50"
    paths: list[str] = []
    targets: list[int] = []
    folds: list[int] = []
    with open(root / "meta" / "esc50.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            stem = Path(row["filename"]).stem
            paths.append(str(root / "audio" / f"{stem}.flac"))
            targets.append(int(row["target"]))
            folds.append(int(row["fold"]))
    return paths, np.asarray(targets, np.int64), np.asarray(folds, np.int64)


def cached_features(paths: list[str], cfg: FeatureConfig, cache: Path) -> np.ndarray:
    """Log-mel features of all clips, cached as .npy under ``cache`` by config + file list."""
    key = hashlib.sha256(
        (cfg.model_dump_json() + "\n" + "\n".join(Path(p).name for p in paths)).encode()
    ).hexdigest()[:20]
    file = cache / f"features-{key}.npy"
    if file.exists():
        return np.load(file)
    t0 = time.perf_counter()
    waves = []
    for p in paths:
        wav, sr = sf.read(p, dtype="float32", always_2d=False)
        if sr != cfg.sample_rate:
            raise ValueError(f"{p}: sample rate {sr} != {cfg.sample_rate}")
        waves.append(wav if wav.ndim == 1 else wav.mean(axis=1))
    feats = logmel_features(waves, cfg)
    print(f"features: {feats.shape} in {time.perf_counter() - t0:.1f} s", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp.npy")
    np.save(tmp, feats)
    os.replace(tmp, file)
    return feats


def _print_epoch(name: str, row: dict[str, float]) -> None:
    print(f"  {name} {json.dumps(row)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", nargs="*", default=list(DEFAULT_TARGETS))
    ap.add_argument("--epochs", type=int, default=None, help="override epochs (tuning runs)")
    ap.add_argument("--set", nargs="*", default=[], help="override fields: key=json_value")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/and-targets"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    import torch

    data_dir = Path(os.environ.get("AND_DATA_DIR", "/work/shared/data"))
    paths, targets, folds = load_esc50(data_dir)
    feats = cached_features(paths, FeatureConfig(), args.cache)
    fsha = features_sha(feats)
    print(f"features sha {fsha[:12]}  torch threads {torch.get_num_threads()}", flush=True)
    summary = []
    for name in args.targets:
        cfg = DEFAULT_TARGETS[name]
        upd: dict[str, object] = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
        if args.epochs is not None:
            upd["epochs"] = args.epochs
        if args.threads:
            upd["threads"] = args.threads
        if upd:
            cfg = cfg.model_validate({**cfg.model_dump(), **upd})
        cfg, decision = resolve_train_config(cfg)
        print(f"{name}: precision {cfg.precision} ({decision.precision_source}), "
              f"threads {cfg.threads} ({decision.threads_source})", flush=True)
        key = weights_key(cfg, fsha, labels_sha(targets, folds))
        load0 = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        trained = train_target(
            cfg,
            feats,
            targets,
            folds,
            progress=not args.no_progress,
            on_epoch=functools.partial(_print_epoch, name),
        )
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        load1 = os.getloadavg()[0]
        save_weights(trained.model, args.cache / f"weights-{name}-{key[:16]}.safetensors")
        best = max(e["test_accuracy"] for e in trained.curve)
        final = final_row(trained.curve)["test_accuracy"]  # the kept epoch's, with patience
        line = (
            f"{name}: final fold-1 acc {final:.4f} (best epoch {best:.4f}), "
            f"{len(trained.curve)} epochs, {dt:.0f} s wall, {cpu:.0f} s cpu, loadavg {load0:.2f}->{load1:.2f}, key {key[:12]}"
        )
        print(line, flush=True)
        print(json.dumps({"config": cfg.model_dump(), "curve": trained.curve}), flush=True)
        summary.append(line)
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
