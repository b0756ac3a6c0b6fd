"""``dissect`` end to end per family, from a saved directory, on a folder of clips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from and_toolkit import neurons
from and_toolkit.cache import Cache
from and_toolkit.own_model import SKIPPED_REASON, dissect
from and_toolkit.recording.hooks import select_layers
from and_toolkit.recording.record import record_activations
from and_toolkit.run import Run
from and_toolkit.targets.external import batches_of, load_external
from and_toolkit.validation import info_text, run_info, validate_path
from tests.external.tiny_models import FAMILIES, build

FAST: dict[str, Any] = {
    "calibrate": {"encoder": "hashing"},
    "closed": {"methods": ["DB"], "encoder": "hashing"},
    "record": {"k": 2, "batch_size": 4},
    "score": {"encoder": "hashing"},
}
LABELS = ("dog", "rain", "bell")


def _write_folder(root: Path, *, rate: int = 22050, labels: bool = True) -> Path:
    """Six clips (two per label), stereo at 22.05 kHz, different lengths."""
    rng = np.random.default_rng(3)
    root.mkdir(parents=True)
    rows = ["filename,label"]
    for i in range(6):
        n = int(rate * (0.5 + 0.1 * i))
        t = np.arange(n) / rate
        tone = 0.2 * np.sin(2 * np.pi * (150 + 200 * (i % 3)) * t)
        stereo = np.stack([tone + 0.02 * rng.standard_normal(n), tone], axis=1)
        sf.write(root / f"c{i}.wav", stereo.astype(np.float32), rate)
        rows.append(f"c{i}.wav,{LABELS[i % 3]}")
    if labels:
        (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_folder(tmp_path_factory.mktemp("probe") / "clips")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.mark.parametrize("family", [*FAMILIES, "factory"])
def test_dissect_family_end_to_end(family: str, folder: Path, models: Path, tmp_path: Path
                                   ) -> None:
    spec = "tests.external.factories:cnn" if family == "factory" else str(build(family, models))
    run_dir = tmp_path / "run"
    dissect(spec, folder, run_dir=run_dir, overrides=FAST, cache=Cache(tmp_path / "c"))
    assert validate_path(run_dir) == []
    view = neurons(run_dir).collect()
    assert view.height == sum(len(u) for _, _, u in Run.at(run_dir).activation_units())
    info = run_info(run_dir)
    assert info["skipped"]["experiments"] == SKIPPED_REASON
    # every description scored on held-out clips, as in any run (no stage skipped silently)
    assert set(info["skipped"]) == {"experiments", "report"}
    assert Run.at(run_dir).stage_done("score")
    assert any(c.startswith("auc_") for c in view.columns)
    assert any("descriptor sentences only" in w for w in info["warnings"])
    assert "WARNING captions:" in info_text(info)
    # provenance: the files' 22.05 kHz resampled to the model's rate, stereo downmixed
    model_id = Run.at(run_dir).activation_layers()[0][0]
    audio = Run.at(run_dir).stage_info("record")[model_id]["audio"]
    ext = load_external(factory=spec) if family == "factory" else load_external(pretrained=spec)
    assert audio["front_end_rate"] == ext.sample_rate
    assert audio["file_rates"] == {"22050": 6} and audio["resampled_clips"] == 6
    assert audio["downmix"] is True
    # the run's activations are the library's recording of the same audio
    from and_toolkit.probe.audio import load_audio

    waves = [load_audio(folder / f"c{i}.wav", ext.sample_rate, True, downmix=True)
             for i in range(6)]
    layers = Run.at(run_dir).recorded_layers(model_id)
    assert layers == select_layers(ext.module, types=ext.types,
                                   exclude=[*Run.at(run_dir).manifest()["config"]["record"]
                                            ["exclude"], *ext.exclude])
    want = record_activations(ext.module, ((p.inputs, p.frames) for p in batches_of(
        ext, iter(waves), 4)), layers, "mean", progress=False, n_clips=6)
    for layer in layers:
        got = Run.at(run_dir).activation_matrix(model_id, layer).values
        np.testing.assert_array_equal(got, want[layer])
    closed = json.loads((run_dir / "manifest.json").read_text())["stages"]["closed"]
    assert closed["concept_source"] == "probe labels" and closed["concepts"] == 3


def test_unlabelled_folder_with_captions_and_concepts(models: Path, tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "clips", labels=False)
    captions = tmp_path / "captions.csv"
    captions.write_text("filename,caption\n" + "".join(
        f"c{i}.wav,A loud dog barks near a quiet bell.\n" for i in range(6)))
    concepts = tmp_path / "concepts.txt"
    concepts.write_text("dog\n# a comment\nbell\n\nrain\n")
    run_dir = tmp_path / "run"
    dissect(str(build("ast", models)), folder, captions=captions, concepts=concepts,
            run_dir=run_dir, overrides=FAST, cache=Cache(tmp_path / "c"))
    assert validate_path(run_dir) == []
    probe = pl.read_parquet(run_dir / "probe.parquet")
    assert set(probe["label"]) == {"unlabelled"} and set(probe["fold"]) == {1}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["closed"]["concept_source"] == "closed.concepts"
    assert run_info(run_dir)["warnings"] == []


def test_paper_experiments_are_skipped_with_a_reason(folder: Path, tmp_path: Path) -> None:
    from and_toolkit.own_model import DISSECT_STAGES

    run_dir = tmp_path / "run"
    stages = [*DISSECT_STAGES, "experiments", "report"]
    dissect("tests.external.factories:cnn", folder, run_dir=run_dir,
            overrides={**FAST, "stages": stages}, cache=Cache(tmp_path / "c"))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for stage in ("experiments", "report"):
        assert "need targets trained here" in manifest["stages"][stage]["skipped"]
    # the score stage's result only: no paper experiment ran
    assert [p.name for p in (run_dir / "results").iterdir()] == ["explanation_scores.parquet"]
    assert not (run_dir / "report").exists()
    assert "skipped experiments:" in info_text(run_info(run_dir))


def test_configured_captioner_captions_the_clips(folder: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --captions, a configured captioner (here the fake one) makes the captions."""
    import and_toolkit.pipeline.data_stages as stages
    from and_toolkit.backends.captioner import FakeCaptioner

    seen: list[str | None] = []

    def fake(ctx: Any, path: str | None) -> FakeCaptioner:
        seen.append(path)
        return FakeCaptioner()

    monkeypatch.setattr(stages, "captioner", fake)
    run_dir = tmp_path / "run"
    (tmp_path / "audio-lm").mkdir()
    dissect("tests.external.factories:cnn", folder, captioner=str(tmp_path / "audio-lm"),
            run_dir=run_dir, overrides=FAST, cache=Cache(tmp_path / "c"))
    assert seen == [str(tmp_path / "audio-lm")]
    caps = Run.at(run_dir).captions("audio-lm")
    assert len(caps) == 6 and all(caps.values())
    assert run_info(run_dir)["warnings"] == []


def test_captioner_that_cannot_load_is_named(folder: Path, tmp_path: Path) -> None:
    from and_toolkit.errors import ConfigError

    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(ConfigError, match=r"not-a-model: cannot load the audio captioner"):
        dissect("tests.external.factories:cnn", folder, captioner=str(tmp_path / "not-a-model"),
                run_dir=tmp_path / "run", overrides=FAST, cache=Cache(tmp_path / "c"))


def test_unlisted_clips_dropped_on_request_are_reported(tmp_path: Path) -> None:
    """``drop_unlisted``: the clips the labels CSV leaves out are dropped and ``info`` says how
    many; ``k`` sets record.k."""
    clips = _write_folder(tmp_path / "clips", labels=False)
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,label\nc0.wav,dog\nc1.wav,rain\nc2.wav,bell\n")
    run_dir = tmp_path / "run"
    dissect("tests.external.factories:cnn", clips, labels=labels, drop_unlisted=True, k=1,
            run_dir=run_dir, overrides={**FAST, "record": {"batch_size": 4}},
            cache=Cache(tmp_path / "c"))
    assert pl.read_parquet(run_dir / "probe.parquet")["clip_id"].to_list() == ["c0", "c1", "c2"]
    warning = [w for w in run_info(run_dir)["warnings"] if w.startswith("probe:")]
    assert len(warning) == 1 and "3 audio file(s) of" in warning[0]
    assert "c3.wav, c4.wav, c5.wav" in warning[0]
    assert Run.at(run_dir).manifest()["config"]["record"]["k"] == 1
