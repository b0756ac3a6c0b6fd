"""The Ray engine writes the local engine's records, byte for byte, whatever its worker count.

One local Ray cluster (2 CPUs, the ``ray_cluster`` fixture of conftest.py) serves the whole
test session. The Ray tests skip only when
``ray`` cannot be imported (CI installs the ``ray`` extra, so they run there); the import
contract (no Ray needed by the local engine) is tested without Ray.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from and_toolkit.cache import Cache
from and_toolkit.config import parse_config
from and_toolkit.errors import ConfigError
from and_toolkit.pipeline import run_pipeline
from and_toolkit.pipeline.model_stages import ACTIVATIONS_NAMESPACE

ROOT = Path(__file__).resolve().parents[2]
STAGES = ["probe", "targets", "record", "extremes", "captions", "closed"]


def _demo(**execution: Any) -> dict[str, Any]:
    """configs/demo.toml shrunk: 4 clips per class, small log-mels, one epoch, tiny targets,
    Module A's DB with the hashing encoder."""
    cfg = tomllib.loads((ROOT / "configs" / "demo.toml").read_text("utf-8"))
    cfg["probe"]["per_class"] = 4
    cfg["features"] = {"num_mel_bins": 32, "max_length": 64}
    tiny_ast = {"num_layers": 2, "hidden_size": 24, "num_heads": 2, "intermediate_size": 48}
    for target in cfg["targets"]:
        target["epochs"] = 1
        target["overrides"] = {"batch_size": 8, "cnn": {"channels": [4, 8]}, "ast": tiny_ast}
    cfg["record"].update(batch_size=8)
    cfg["closed"] = {"methods": ["DB"], "encoder": "hashing"}
    cfg["stages"] = STAGES
    cfg["execution"] = execution
    return cfg


def _run(root: Path, cache: Path, **execution: Any) -> dict[str, bytes]:
    # every run records: recorded files from an earlier run are not copied from the cache
    shutil.rmtree(cache / ACTIVATIONS_NAMESPACE, ignore_errors=True)
    run_pipeline(parse_config(_demo(**execution)), run_dir=root, cache=Cache(cache),
                 progress=False)
    record = json.loads((root / "manifest.json").read_text())["stages"]["record"]
    assert not any(isinstance(e, dict) and "from_cache" in e for e in record.values())
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


@pytest.fixture(scope="module")
def runs(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory
         ) -> dict[str, dict[str, bytes]]:
    base = tmp_path_factory.mktemp("ray")
    cache = base / "cache"  # shared: the targets train once
    return {
        "local": _run(base / "local", cache),
        # 16 clips per partition, batches of 8: 3 partitions over 48 clips
        "ray2": _run(base / "ray2", cache, engine="ray", partition_clips=16,
                     stages={"record": {"workers": 2}, "extremes": {"workers": 2},
                             "captions": {"workers": 2}, "closed": {"workers": 2}}),
        "ray1": _run(base / "ray1", cache, engine="ray", partition_clips=16,
                     stages={"record": {"workers": 1}, "extremes": {"workers": 1},
                             "captions": {"workers": 1}, "closed": {"workers": 1}}),
    }


def test_ray_engine_writes_the_local_bytes(runs: dict[str, dict[str, bytes]]) -> None:
    local, ray2 = runs["local"], runs["ray2"]
    assert sum(name.startswith("activations/") for name in local) >= 10
    assert {"extremes.parquet", "concepts.parquet"} <= set(local)
    assert set(ray2) == set(local)
    differ = [name for name in local if local[name] != ray2[name]]
    assert differ == []


def test_one_and_two_workers_give_the_same_bytes(runs: dict[str, dict[str, bytes]]) -> None:
    assert set(runs["ray1"]) == set(runs["ray2"])
    differ = [name for name in runs["ray1"] if runs["ray1"][name] != runs["ray2"][name]]
    assert differ == []


def test_partitions_are_whole_batches_covering_the_probe() -> None:
    from and_toolkit.pipeline.ray_engine import partitions

    for n, bs, want in [(48, 8, 16), (50, 8, 20), (7, 32, 512), (1000, 32, 100)]:
        parts = partitions(n, bs, want)
        assert parts[0][0] == 0 and parts[-1][1] == n
        assert all(a % bs == 0 for a, _ in parts)
        assert all(b == c for (_, b), (c, _) in zip(parts, parts[1:], strict=False))
        assert all(b - a >= min(want, n - a) for a, b in parts)


def _slow_square(shared: float, item: int) -> int:
    time.sleep(shared * (3 - item))  # the first items finish last
    return item * item


def test_map_returns_results_in_item_order(ray_cluster: Any) -> None:
    from and_toolkit.config import ExecutionSection
    from and_toolkit.pipeline.ray_engine import RayEngine

    engine = RayEngine(ExecutionSection(engine="ray", stages={"extremes": {"workers": 2}}))
    assert engine.map("extremes", _slow_square, [0, 1, 2, 3], 0.2) == [0, 1, 4, 9]
    engine.close()  # the session's cluster was not started by the engine: still running
    assert ray_cluster.is_initialized()


def test_more_workers_than_cpus_is_a_config_error(ray_cluster: Any) -> None:
    from and_toolkit.config import ExecutionSection
    from and_toolkit.pipeline.ray_engine import RayEngine

    engine = RayEngine(ExecutionSection(engine="ray", stages={"record": {"workers": 3}}))
    with pytest.raises(ConfigError, match=r"execution\.stages\.record\.workers"):
        engine.workers("record")


def test_local_engine_and_cli_never_import_ray() -> None:
    """With ``ray`` unimportable, the CLI and every stage import, the local engine is made,
    and engine = "ray" fails with a clear error naming the extra."""
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "import and_toolkit.cli, and_toolkit.pipeline as p\n"
        "p._stage_functions()\n"
        "from and_toolkit.config import ExecutionSection\n"
        "from and_toolkit.pipeline.context import make_engine\n"
        "assert make_engine(ExecutionSection()).name == 'local'\n"
        "try:\n"
        "    make_engine(ExecutionSection(engine='ray'))\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.startswith("ConfigError")
    assert "and-toolkit[ray]" in out.stdout


def test_only_the_ray_engine_module_imports_ray() -> None:
    import ast

    importers = []
    for path in sorted((ROOT / "and_toolkit").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "ray" or n.startswith("ray.") for n in names):
                importers.append(path.relative_to(ROOT).as_posix())
    assert sorted(set(importers)) == ["and_toolkit/pipeline/ray_engine.py"]


def test_execution_is_not_part_of_any_fingerprint() -> None:
    from and_toolkit.pipeline import fingerprints

    local = parse_config(_demo())
    ray = parse_config(_demo(engine="ray", address="auto", stages={"record": {"num_gpus": 1}}))
    assert fingerprints(local) == fingerprints(ray)
    with pytest.raises(ConfigError, match=r"execution\.stages\.calibrate"):
        parse_config(_demo(engine="ray", stages={"calibrate": {"workers": 2}}))


def test_non_finite_activations_are_refused_before_any_file(ray_cluster: Any,
                                                             tmp_path: Path) -> None:
    """A NaN in clip row 5 (third partition of 2 clips) names that global row; nothing written."""
    import numpy as np
    import torch
    from torch import nn

    from and_toolkit.config import ExecutionSection
    from and_toolkit.errors import RecordValidationError
    from and_toolkit.pipeline.engine import RecordJob
    from and_toolkit.pipeline.ray_engine import RayEngine
    from and_toolkit.run import Run

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    inputs = np.ones((8, 4), np.float32)
    inputs[5, 1] = np.nan
    run = Run.at(tmp_path / "run")
    engine = RayEngine(ExecutionSection(engine="ray", partition_clips=2,
                                        stages={"record": {"workers": 2}}))
    job = RecordJob(model=model, inputs=inputs, batch_size=2, layers=["0", "2"],
                    pooling="mean", run=run, model_id="m", probe_sha256="0" * 64)
    try:
        with pytest.raises(RecordValidationError, match=r"clip rows \[5\]"):
            engine.record(job)
    finally:
        engine.close()
    assert not (tmp_path / "run" / "activations").exists()


def test_framed_multi_block_recording_gives_the_local_bytes(
        ray_cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Valid frames (``RecordJob.frames``) reach the actors, and a layer wider than one block
    (40 units in row groups of 16 + 16 + 8), recorded in 3 partitions, is written by an actor
    from the partitions' scratch blocks with the local bytes; the driver receives no array."""
    import numpy as np
    import pyarrow.parquet as pq
    import torch
    from torch import nn

    import and_toolkit.recording.record as rec
    from and_toolkit.config import ExecutionSection
    from and_toolkit.pipeline.engine import LocalEngine, RecordJob
    from and_toolkit.pipeline.ray_engine import RayEngine
    from and_toolkit.run import Run

    n, t = 10, 6
    monkeypatch.setattr(rec, "CHUNK_BYTES", 16 * 4 * n)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 40), nn.ReLU(), nn.Linear(40, 3))
    inputs = np.random.default_rng(0).standard_normal((n, t, 4)).astype(np.float32)
    frames = {t: np.array([1, 2, 3, 4, 5, 6, 6, 5, 4, 3])}

    def job(root: Path, with_frames: bool) -> RecordJob:
        return RecordJob(model=model, inputs=inputs, batch_size=2, layers=["0", "2"],
                         pooling="mean", run=Run.at(root), model_id="m", probe_sha256="0" * 64,
                         frames=frames if with_frames else None)

    local = LocalEngine().record(job(tmp_path / "local", True))
    unmasked = LocalEngine().record(job(tmp_path / "unmasked", False))
    engine = RayEngine(ExecutionSection(engine="ray", partition_clips=4,
                                        stages={"record": {"workers": 2}}))
    try:
        ray = engine.record(job(tmp_path / "ray", True))
        assert engine.received_arrays == 0  # the layers never passed through the driver
    finally:
        engine.close()
    assert pq.ParquetFile(local["0"]).num_row_groups == 3
    for layer in ("0", "2"):
        assert ray[layer].read_bytes() == local[layer].read_bytes()
        # the frames changed the values (padded frames were left out)
        assert unmasked[layer].read_bytes() != local[layer].read_bytes()


def _tone_folder(root: Path, n: int = 10, rate: int = 22050) -> list[str]:
    """``n`` stereo WAV clips at 22.05 kHz of different lengths (resampled and downmixed)."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(5)
    root.mkdir(parents=True)
    names = []
    for i in range(n):
        m = int(rate * (0.4 + 0.05 * i))
        t = np.arange(m) / rate
        tone = 0.2 * np.sin(2 * np.pi * (150 + 90 * i) * t)
        stereo = np.stack([tone + 0.02 * rng.standard_normal(m), tone], axis=1)
        sf.write(root / f"c{i}.wav", stereo.astype(np.float32), rate)
        names.append(f"c{i}.wav")
    return names


def test_actors_load_resample_and_featurize_their_clips(ray_cluster: Any, tmp_path: Path
                                                        ) -> None:
    """Record actors given a ClipInputs feed (files at 22.05 kHz, resampled to 16 kHz,
    downmixed, log-mel) write the bytes of the local engine fed the driver's whole feature
    array, with 2 workers and with 1; the driver receives no array (metadata and paths only)."""
    import numpy as np
    import torch
    from torch import nn

    from and_toolkit.config import ExecutionSection
    from and_toolkit.pipeline.clip_inputs import ClipAudio, ClipInputs
    from and_toolkit.pipeline.engine import LocalEngine, RecordJob
    from and_toolkit.pipeline.ray_engine import RayEngine
    from and_toolkit.probe.audio import load_clips
    from and_toolkit.run import Run
    from and_toolkit.targets.features import FeatureConfig, logmel_features

    names = _tone_folder(tmp_path / "clips")
    fc = FeatureConfig(num_mel_bins=16, max_length=48)
    audio = ClipAudio(sample_rate=16000, clip_rates=(22050,) * len(names), paths=tuple(names),
                      root=str(tmp_path / "clips"), resample=True, downmix=True,
                      clip_ids=tuple(names))
    feats = logmel_features(load_clips(tmp_path / "clips", names, 16000, True, downmix=True), fc)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48 * 16, 24), nn.ReLU(), nn.Linear(24, 3))

    def job(root: Path, **inputs: Any) -> RecordJob:
        return RecordJob(model=model, batch_size=2, layers=["1", "3"], pooling="mean",
                         run=Run.at(root), model_id="m", probe_sha256="0" * 64, **inputs)

    local = LocalEngine().record(job(tmp_path / "local", inputs=feats))
    got = {}
    for workers in (2, 1):
        engine = RayEngine(ExecutionSection(engine="ray", partition_clips=4,
                                            stages={"record": {"workers": workers}}))
        try:
            got[workers] = engine.record(job(tmp_path / f"ray{workers}", inputs=None,
                                             clips=ClipInputs(audio, "logmel", features=fc)))
            assert engine.received_arrays == 0
        finally:
            engine.close()
        assert not list((tmp_path / f"ray{workers}").glob(".record-*"))  # scratch removed
    for layer in ("1", "3"):
        assert got[2][layer].read_bytes() == local[layer].read_bytes()
        assert got[1][layer].read_bytes() == local[layer].read_bytes()
    assert np.isfinite(feats).all() and feats.shape == (len(names), 48, 16)


def test_users_model_is_recorded_in_actors_with_the_local_bytes(
        ray_cluster: Any, tmp_path: Path) -> None:
    """A user's model (a tiny wav2vec2 directory: valid frames per batch) on a folder of
    22.05 kHz stereo clips: record actors (2 and 1), each loading the model from its directory,
    write the local engine's bytes.

    The local run uses one torch thread like each actor: this model's linear layers round
    differently in the last bit with 2 threads (1e-9; the trained targets of the demo and of
    ESC-50 do not), so byte identity is between equal thread counts (docs/scale-out.md)."""
    import torch

    from and_toolkit.own_model import dissect_config
    from tests.external.tiny_models import build

    folder = tmp_path / "clips"
    _tone_folder(folder)
    (folder / "labels.csv").write_text("filename,label\n" + "".join(
        f"c{i}.wav,{'ab'[i % 2]}\n" for i in range(10)))
    model = str(build("wav2vec2", tmp_path / "models"))
    files: dict[str, dict[str, bytes]] = {}
    for name, execution in [
        ("local", {}),
        ("ray2", {"engine": "ray", "partition_clips": 4, "stages": {"record": {"workers": 2}}}),
        ("ray1", {"engine": "ray", "partition_clips": 4, "stages": {"record": {"workers": 1}}}),
    ]:
        cfg = dissect_config(model, folder, overrides={
            "stages": ["probe", "targets", "record"], "record": {"batch_size": 2},
            "execution": execution})
        root = tmp_path / name
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            run_pipeline(cfg, run_dir=root, cache=Cache(tmp_path / "cache"), progress=False)
        finally:
            torch.set_num_threads(threads)
        files[name] = {str(p.relative_to(root)): p.read_bytes()
                       for p in sorted((root / "activations").rglob("*.parquet"))}
        info = json.loads((root / "manifest.json").read_text())["stages"]["record"]
        assert all("engine" not in v for v in info.values() if isinstance(v, dict) and "layers" in v)
        assert info["_execution"]["engine"] == execution.get("engine", "local")
    assert len(files["local"]) >= 4
    assert files["ray2"] == files["local"]
    assert files["ray1"] == files["local"]


def test_users_model_without_exact_padding_is_recorded_on_the_driver(
        ray_cluster: Any, tmp_path: Path) -> None:
    """A wav2vec2 with group norm ends its batches where the clip length changes, so partitions
    of whole batches cannot be cut in advance: the Ray engine records it in the driver and says
    so in the stage info (``engine: local``)."""
    from and_toolkit.own_model import dissect_config
    from tests.external.tiny_models import build

    folder = tmp_path / "clips"
    _tone_folder(folder, n=4)
    model = str(build("wav2vec2", tmp_path / "models", group_norm=True))
    cfg = dissect_config(model, folder, overrides={
        "stages": ["probe", "targets", "record"], "record": {"batch_size": 2},
        "execution": {"engine": "ray", "stages": {"record": {"workers": 1}}}})
    run_pipeline(cfg, run_dir=tmp_path / "run", cache=Cache(tmp_path / "cache"), progress=False)
    info = json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]["record"]
    entries = [v for v in info.values() if isinstance(v, dict) and "layers" in v]
    assert len(entries) == 1 and entries[0]["engine"] == "local"
    assert list((tmp_path / "run" / "activations").rglob("data.parquet"))
