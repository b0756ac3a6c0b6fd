"""``and-toolkit run`` refuses bad inputs early: at load (the config alone), before the run
directory is made (paths the config names), or at the probe stage (what only the clips show);
a refused run leaves no run directory behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from and_toolkit.cli import main


def _folder(root: Path, n: int = 4, *, labels: str | None = "filename,label,fold\n") -> Path:
    """``n`` short 16 kHz clips; a labels.csv (header ``labels``; every clip in fold 1)."""
    root.mkdir(parents=True)
    rows = []
    for i in range(n):
        sf.write(root / f"c{i}.wav", np.full(1600, 0.1 * (i + 1), np.float32), 16000)
        rows.append(f"c{i}.wav,{'ab'[i % 2]},1\n")
    if labels is not None:
        (root / "labels.csv").write_text(labels + "".join(rows))
    return root


def _run(tmp_path: Path, toml: str, capsys: pytest.CaptureFixture[str],
         *extra: str) -> tuple[int, str, str]:
    cfg = tmp_path / "run.toml"
    cfg.write_text('name = "x"\n' + toml)
    code = main(["run", str(cfg), "--run-dir", str(tmp_path / "run"), "--no-progress", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_an_overrides_typo_is_refused_before_the_probe(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(tmp_path, '[[targets]]\nid = "cnn"\narch = "cnn"\n'
                          "overrides = { batch_sise = 16 }\n", capsys)
    assert code == 2 and "[probe]" not in out
    assert str(tmp_path / "run.toml") in err
    assert "targets.0.overrides.batch_sise: unknown key" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("toml, message", [
    ('[probe]\nkind = "folder"\nfolder = "{t}/nowhere"\n',
     "probe.folder: {t}/nowhere: probe folder does not exist"),
    ('[probe]\nkind = "folder"\nfolder = "{t}/clips"\nlabels_csv = "other.csv"\n',
     "probe.labels_csv: {t}/clips/other.csv: label CSV does not exist"),
    ('[captions]\nsource = "file"\nfile = "{t}/caps.csv"\n',
     "captions.file: {t}/caps.csv: caption file does not exist"),
    ('[captions]\nsource = "captioner"\ncaptioner_path = "{t}/lm"\n',
     "captions.captioner_path: {t}/lm: captioner directory does not exist"),
    ('[captions]\nsource = "file"\n', "captions.file: required"),
    ('[[targets]]\nid = "m"\npretrained = "{t}/model"\n',
     "{t}/model: pretrained model directory does not exist"),
    ('[[targets]]\nid = "m"\nfactory = "tests.external.nothing:make"\n',
     "factory 'tests.external.nothing:make': cannot import module"),
    ('[closed]\nclap_path = "{t}/clap"\n', "closed.clap_path: {t}/clap: CLAP directory does"),
    ('[experiments]\nannotations = "{t}/sheet.csv"\n',
     "experiments.annotations: {t}/sheet.csv: annotation CSV does not exist"),
])
def test_missing_paths_are_refused_before_the_run_directory(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, message: str) -> None:
    _folder(tmp_path / "clips")
    code, out, err = _run(tmp_path, toml.format(t=tmp_path), capsys)
    assert code == 2 and message.format(t=tmp_path) in err, err
    assert "[probe]" not in out
    assert not (tmp_path / "run").exists()


def test_folder_options_without_a_labels_csv_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Options describing a labels CSV were silently ignored when the folder had none."""
    _folder(tmp_path / "clips", labels=None)
    code, _, err = _run(tmp_path, f'[probe]\nkind = "folder"\nfolder = "{tmp_path}/clips"\n'
                        'folder_options = { filename_col = "file" }\n', capsys)
    assert code == 2 and "probe.folder_options: ['filename_col'] describe a labels CSV" in err
    assert not (tmp_path / "run").exists()


def test_a_folder_options_typo_is_named_at_load(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    _folder(tmp_path / "clips")
    code, out, err = _run(tmp_path, f'[probe]\nkind = "folder"\nfolder = "{tmp_path}/clips"\n'
                          'folder_options = { filename_colum = "file" }\n', capsys)
    assert code == 2 and "[probe]" not in out
    assert str(tmp_path / "run.toml") in err
    assert "probe.folder_options.filename_colum: unknown key" in err


FOLDS = '[probe]\nkind = "folder"\nfolder = "{t}/clips"\nfolder_options = {{ fold_col = "fold" }}\n'


def test_trained_tab_without_training_clips_is_refused_at_the_probe(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every clip in the test fold: refused at the probe stage (not after every stage before
    closed, as a raw ValueError), and the fresh run directory is removed."""
    _folder(tmp_path / "clips")
    code, out, err = _run(tmp_path, FOLDS.format(t=tmp_path)
                          + '[record]\nk = 2\n[closed]\ntab_model = "trained"\n', capsys)
    assert code == 2 and "[probe] running" in out and "[targets]" not in out
    assert "closed.tab_model = 'trained' trains TAB's audio-text model on the clips outside " \
           "closed.audio_text.test_fold (1), but 0 of the 4 clips are" in err
    assert not (tmp_path / "run").exists()


def test_k_above_the_clips_is_refused_at_the_probe(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _folder(tmp_path / "clips", 3)
    code, out, err = _run(tmp_path, FOLDS.format(t=tmp_path) + "[record]\nk = 5\n", capsys)
    assert code == 2 and "[targets]" not in out
    assert "record.k: K=5 exceeds the 3 clips of the probe set" in err
    assert not (tmp_path / "run").exists()


def test_a_refused_resumed_run_keeps_its_directory(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Only a run directory made by the refused call is removed: a run holding completed
    stages stays resumable."""
    _folder(tmp_path / "clips", 3)
    probe = 'stages = ["probe"]\n' + FOLDS.format(t=tmp_path)
    assert _run(tmp_path, probe, capsys)[0] == 0
    assert (tmp_path / "run" / "probe.parquet").is_file()
    code, _, err = _run(tmp_path, FOLDS.format(t=tmp_path) + "[record]\nk = 5\n", capsys,
                        "--force")
    assert code == 2 and "record.k: K=5" in err
    assert (tmp_path / "run" / "probe.parquet").is_file()
