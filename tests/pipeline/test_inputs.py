"""Input stamps: what each stage reads from a user's path, and when its stamp changes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from and_toolkit.config import load_config, parse_config
from and_toolkit.pipeline import fingerprints
from and_toolkit.pipeline.inputs import (
    MISSING,
    input_changes,
    input_stamps,
    stamp_file,
    stamp_folder,
)

ROOT = Path(__file__).resolve().parents[2]
AUDIO = (".wav", ".flac")


def _write(path: Path, data: bytes, mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def test_folder_stamp_sees_added_removed_and_rewritten_files(tmp_path: Path) -> None:
    _write(tmp_path / "a.wav", b"1" * 10, 10**18)
    _write(tmp_path / "sub" / "b.FLAC", b"2" * 10, 10**18)
    _write(tmp_path / "notes.txt", b"ignored")
    first = stamp_folder("probe.folder", tmp_path, suffixes=AUDIO)
    assert first.files == 2 and first.path == str(tmp_path.resolve())
    (tmp_path / "notes.txt").write_text("still ignored, not audio")
    assert stamp_folder("probe.folder", tmp_path, suffixes=AUDIO) == first
    # same size, new bytes written later (save_pretrained of other weights does this)
    _write(tmp_path / "a.wav", b"3" * 10, 10**18 + 1)
    rewritten = stamp_folder("probe.folder", tmp_path, suffixes=AUDIO)
    assert rewritten.files == 2 and rewritten.digest != first.digest
    _write(tmp_path / "c.wav", b"4")
    added = stamp_folder("probe.folder", tmp_path, suffixes=AUDIO)
    assert added.files == 3
    assert input_changes({"probe.folder": first.as_dict()}, [added]) == [
        f"probe.folder: 1 file(s) added under {tmp_path.resolve()} (2 -> 3)"]
    assert input_changes({"probe.folder": first.as_dict()}, [rewritten]) == [
        f"probe.folder: files changed under {tmp_path.resolve()} (size or modification time)"]
    assert input_changes({"probe.folder": added.as_dict()}, [added]) == []


def test_model_folder_stamp_skips_hidden_files_and_the_run(tmp_path: Path) -> None:
    _write(tmp_path / "config.json", b"{}")
    _write(tmp_path / "model.safetensors", b"w" * 100)
    before = stamp_folder("m", tmp_path, exclude=tmp_path / "run")
    _write(tmp_path / ".cache" / "lock", b"x")
    _write(tmp_path / "run" / "manifest.json", b"{}")
    assert stamp_folder("m", tmp_path, exclude=tmp_path / "run") == before
    assert stamp_folder("m", tmp_path).files == 3  # the run's file, without exclude


def test_file_stamp_is_its_content(tmp_path: Path) -> None:
    path = _write(tmp_path / "labels.csv", b"filename,label\na.wav,dog\n", 10**18)
    first = stamp_file("probe.labels_csv", path)
    os.utime(path, ns=(10**18 + 5, 10**18 + 5))  # touched: same bytes, same stamp
    assert stamp_file("probe.labels_csv", path) == first
    path.write_bytes(b"filename,label\na.wav,cat\n")
    assert stamp_file("probe.labels_csv", path).digest != first.digest
    path.unlink()
    gone = stamp_file("probe.labels_csv", path)
    assert gone.digest == MISSING
    assert input_changes({"probe.labels_csv": first.as_dict()}, [gone]) == [
        f"probe.labels_csv {path.resolve()}: missing"]


def _folder_cfg(tmp_path: Path, **over: Any) -> Any:
    data: dict[str, Any] = {
        "name": "t", "probe": {"kind": "folder", "folder": str(tmp_path / "clips")},
        "targets": [{"id": "m", "pretrained": str(tmp_path / "model")},
                    {"id": "f", "factory": "tests.external.factories:cnn"}]}
    for key, value in over.items():
        data[key] = {**data.get(key, {}), **value}
    return parse_config(data)


def test_each_input_goes_to_the_first_stage_reading_it(tmp_path: Path) -> None:
    _write(tmp_path / "clips" / "a.wav", b"x")
    _write(tmp_path / "model" / "config.json", b"{}")
    llm = _write(tmp_path / "llm" / "config.json", b"{}").parent
    caps = _write(tmp_path / "caps.csv", b"filename,caption\n")
    notes = _write(tmp_path / "ratings.csv", b"x\n")
    cfg = _folder_cfg(tmp_path, captions={"source": "file", "file": str(caps)},
                      summaries={"summarizer": "llm", "llm": str(llm)},
                      open={"llm": str(llm)},  # lexicon filter: the LLM is not read
                      closed={"methods": ["DB", "ICL"], "icl_llm": f"vllm:{llm}"},
                      experiments={"annotations": str(notes)})
    stamps = {stage: [s.key for s in found] for stage, found in input_stamps(cfg).items()}
    assert stamps == {
        "probe": ["probe.folder", "probe.labels_csv"],
        "targets": ["targets[m].pretrained", "targets[f].factory"],
        "captions": ["captions.file"], "summaries": ["summaries.llm"],
        "closed": ["closed.icl_llm"], "experiments": ["experiments.annotations"]}
    found = input_stamps(cfg)
    assert found["targets"][1].path == str(ROOT / "tests" / "external" / "factories.py")
    assert found["probe"][1].digest == MISSING  # no labels.csv yet: one appearing re-runs


def test_factory_module_source_is_stamped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    _write(tmp_path / "clips" / "a.wav", b"x")
    src = _write(tmp_path / "mods" / "userfac.py", b"SCALE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    cfg = parse_config({"name": "t", "probe": {"kind": "folder", "folder": str(tmp_path)},
                        "targets": [{"id": "u", "factory": "userfac:build"}]})
    before = fingerprints(cfg, input_stamps(cfg))
    src.write_text("SCALE = 2\n")
    after = fingerprints(cfg, input_stamps(cfg))
    assert [s for s in before if before[s] != after[s]][0] == "targets"
    assert before["probe"] == after["probe"]


def test_a_changed_input_changes_its_stage_and_every_later_one(tmp_path: Path) -> None:
    _write(tmp_path / "clips" / "a.wav", b"x")
    _write(tmp_path / "model" / "config.json", b"{}")
    cfg = _folder_cfg(tmp_path)
    before = fingerprints(cfg, input_stamps(cfg))
    _write(tmp_path / "model" / "model.safetensors", b"w")
    after = fingerprints(cfg, input_stamps(cfg))
    assert [s for s in before if before[s] != after[s]] == [
        "targets", "record", "extremes", "captions", "summaries", "calibrate", "open", "closed",
        "score", "experiments", "report"]


@pytest.mark.parametrize("name", ["demo", "esc50"])
def test_built_in_configs_keep_their_fingerprints(name: str) -> None:
    """The synthetic demo and the ESC-50 run read nothing stamped (ESC-50 and the captions
    shipped beside it under $AND_DATA_DIR are read-only reference data), so existing runs of
    them are not re-run by this change."""
    cfg = load_config(ROOT / "configs" / f"{name}.toml")
    assert input_stamps(cfg) == {}
    assert fingerprints(cfg, input_stamps(cfg)) == fingerprints(cfg)


def test_hub_ids_and_the_packaged_llm_are_not_stamped(tmp_path: Path) -> None:
    cfg = parse_config({"name": "t", "targets": [{"id": "h", "pretrained": "org/model",
                                                  "online": True}],
                        "summaries": {"summarizer": "llm", "llm": "smollm2"},
                        "captions": {"source": "file", "file": "esc50/captions/x.csv"}})
    assert input_stamps(cfg) == {}
