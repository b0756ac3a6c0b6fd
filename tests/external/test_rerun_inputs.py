"""Re-running ``dissect`` on the same run directory after its inputs changed: the stage that
reads the changed input re-runs with every stage after it, and says why; unchanged inputs re-run
nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from and_toolkit.cache import Cache
from and_toolkit.cli import main
from and_toolkit.own_model import DISSECT_STAGES, dissect
from and_toolkit.records.models import ProbeClip
from and_toolkit.run import Run
from tests.external.tiny_models import build
from tests.tone_clips import write_tones

FACTORY = "tests.external.factories:cnn"
FAST: dict[str, Any] = {
    "calibrate": {"encoder": "hashing"},
    "closed": {"methods": ["DB"], "encoder": "hashing"},
    "record": {"k": 2, "batch_size": 4},
}
LABELS = ("dog", "rain", "bell")


def _clips(root: Path, n: int, *, labels: tuple[str, ...] = LABELS) -> Path:
    """``n`` tones at 16 kHz (``c<i>.wav``), their labels.csv and, beside the folder,
    captions.csv (``<root>.captions.csv``); clips already there stay."""
    root.mkdir(parents=True, exist_ok=True)
    rows, caps = write_tones(root, n, labels, rate=16000, base_s=0.4, step_s=0.05, f0=150,
                             df=90, keep=True)
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    _captions(root).write_text("\n".join(caps) + "\n")
    return root


def _captions(folder: Path) -> Path:
    return folder.with_suffix(".captions.csv")


def _stage_lines(out: str) -> dict[str, str]:
    """``{stage: what its line says}``: "up to date", "running", "running (reason)"."""
    return {m[1]: m[2] for m in re.finditer(r"^\[(\w+)\] (up to date|running.*)$", out, re.M)}


def test_added_clips_rerun_the_probe_and_everything_after(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _clips(tmp_path / "clips", 6)
    run_dir, cache = tmp_path / "run", Cache(tmp_path / "cache")
    captions = _captions(folder)
    dissect(FACTORY, folder, captions=captions, run_dir=run_dir, overrides=FAST, cache=cache)
    capsys.readouterr()
    dissect(FACTORY, folder, captions=captions, run_dir=run_dir, overrides=FAST, cache=cache)
    assert set(_stage_lines(capsys.readouterr().out).values()) == {"up to date"}

    _clips(folder, 9)  # 3 clips added, labels.csv and captions rewritten to name them
    dissect(FACTORY, folder, captions=captions, run_dir=run_dir, overrides=FAST, cache=cache)
    lines = _stage_lines(capsys.readouterr().out)
    assert lines["probe"].startswith("running (inputs changed: probe.folder: 3 file(s) added "
                                     f"under {folder.resolve()} (6 -> 9); probe.labels_csv ")
    assert all(lines[s] == "running (after [probe] re-ran)" for s in DISSECT_STAGES[1:]), lines
    run = Run.at(run_dir)
    assert run.rows(ProbeClip) == 9
    assert all(run.activation_matrix(m, layer).values.shape[0] == 9
               for m, layer in run.activation_layers())


def test_rewritten_label_and_caption_csvs_rerun_their_stages(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _clips(tmp_path / "clips", 6)
    captions = _captions(folder)
    run_dir, cache = tmp_path / "run", Cache(tmp_path / "cache")
    dissect(FACTORY, folder, captions=captions, run_dir=run_dir, overrides=FAST, cache=cache)
    run = Run.at(run_dir)

    captions.write_text("filename,caption\n" + "".join(f"c{i}.wav,rain falls softly\n"
                                                       for i in range(6)))
    capsys.readouterr()
    dissect(FACTORY, folder, captions=captions, run_dir=run_dir, overrides=FAST, cache=cache)
    lines = _stage_lines(capsys.readouterr().out)
    assert [s for s, v in lines.items() if v == "up to date"] == ["probe", "targets", "record",
                                                                  "extremes"]
    assert lines["captions"] == (f"running (inputs changed: captions.file {captions.resolve()}"
                                 ": contents changed)")
    assert set(run.captions("imported").values()) == {"rain falls softly"}

    _clips(folder, 6, labels=("cat", "owl"))  # same files, new labels (and captions)
    captions.write_text("filename,caption\n" + "".join(f"c{i}.wav,rain falls softly\n"
                                                       for i in range(6)))
    dissect(FACTORY, folder, captions=captions, run_dir=run_dir, overrides=FAST, cache=cache)
    lines = _stage_lines(capsys.readouterr().out)
    assert lines["probe"] == (f"running (inputs changed: probe.labels_csv "
                              f"{(folder / 'labels.csv').resolve()}: contents changed)")
    assert set(run.read(ProbeClip)["label"]) == {"cat", "owl"}
    closed = json.loads((run_dir / "manifest.json").read_text())["stages"]["closed"]
    assert closed["concepts"] == 2


def test_resaved_model_weights_rerun_targets_and_record(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import Wav2Vec2Model

    model_dir = build("wav2vec2", tmp_path / "models")
    folder = _clips(tmp_path / "clips", 6)
    run_dir, cache = tmp_path / "run", Cache(tmp_path / "cache")
    dissect(str(model_dir), folder, captions=_captions(folder), run_dir=run_dir,
            overrides=FAST, cache=cache)
    run = Run.at(run_dir)
    model_id, layer = run.activation_layers()[0]
    before = run.activation_matrix(model_id, layer).values
    sha = run.stage_info("targets")[model_id]["weights_sha256"]

    net = Wav2Vec2Model.from_pretrained(model_dir)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1.5)
    net.save_pretrained(model_dir)  # same files, same sizes: other weights
    capsys.readouterr()
    dissect(str(model_dir), folder, captions=_captions(folder), run_dir=run_dir,
            overrides=FAST, cache=cache)
    lines = _stage_lines(capsys.readouterr().out)
    assert lines["probe"] == "up to date"
    assert lines["targets"].startswith(f"running (inputs changed: targets[{model_id}]."
                                       f"pretrained: files changed under {model_dir.resolve()}")
    assert run.stage_info("targets")[model_id]["weights_sha256"] != sha
    assert not np.array_equal(run.activation_matrix(model_id, layer).values, before)


def test_dissect_force_reruns_every_stage(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    folder = _clips(tmp_path / "clips", 6)
    run_dir, cache = tmp_path / "run", Cache(tmp_path / "cache")
    dissect(FACTORY, folder, run_dir=run_dir, overrides=FAST, cache=cache)
    capsys.readouterr()
    dissect(FACTORY, folder, run_dir=run_dir, overrides=FAST, cache=cache, force=True)
    lines = _stage_lines(capsys.readouterr().out)
    assert list(lines) == list(DISSECT_STAGES) and set(lines.values()) == {"running (forced)"}


def test_cli_dissect_force_reaches_the_pipeline(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import and_toolkit.own_model as own

    seen: list[bool] = []

    def fake(*args: Any, force: bool, **kwargs: Any) -> Run:
        seen.append(force)
        return Run.at(tmp_path)

    monkeypatch.setattr(own, "dissect", fake)
    args = ["dissect", "--model", FACTORY, "--probe", str(tmp_path), "--no-progress"]
    assert main(args) == 0 and main([*args, "--force"]) == 0
    assert seen == [False, True]
