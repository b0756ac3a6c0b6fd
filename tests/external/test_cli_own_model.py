"""``and-toolkit layers`` and ``and-toolkit dissect`` on the command line: output and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from and_toolkit.cli import main
from tests.external.tiny_models import build


@pytest.fixture(scope="module")
def w2v(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build("wav2vec2", tmp_path_factory.mktemp("m"))


def test_layers_lists_shapes_pooling_and_neurons(w2v: Path, capsys: pytest.CaptureFixture[str]
                                                 ) -> None:
    assert main(["layers", "--model", str(w2v)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[2:-1]}
    # 1 s at 16 kHz: conv (kernel 10, stride 5) -> 3199 frames, then (3, 2) -> 1599
    assert "1x16x3199" in lines["feature_extractor.conv_layers.0.conv"]
    assert "mean over T of conv1d [B, C, T]" in lines["feature_extractor.conv_layers.0.conv"]
    assert "1x1599x64" in lines["encoder.layers.0.feed_forward.intermediate_dense"]
    assert lines["encoder.layers.0.attention.q_proj"].rstrip().endswith("no")
    assert lines["encoder.pos_conv_embed.conv"].rstrip().endswith("no")
    assert out.splitlines()[-1] == "9 layers recorded by default, 320 neurons"


def test_layers_conv2d_factory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["layers", "--model", "tests.external.factories:cnn"]) == 0
    out = capsys.readouterr().out
    assert "mean over F, T of conv2d [B, C, F, T]" in out and "none ([B, D])" in out


def test_layers_pattern_matching_nothing_names_closest(w2v: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["layers", "--model", str(w2v), "--include", "*intermediate_dens"]) == 2
    err = capsys.readouterr().err
    assert "pattern '*intermediate_dens' matches no" in err
    assert "closest module paths: encoder.layers.0.feed_forward.intermediate_dense" in err


def test_dissect_missing_model_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sf.write(tmp_path / "a.wav", np.zeros(1600, np.float32) + 0.1, 16000)
    code = main(["dissect", "--model", str(tmp_path / "nomodel"), "--probe", str(tmp_path),
                 "--run-dir", str(tmp_path / "run")])
    assert code == 2
    out, err = capsys.readouterr()
    assert "nomodel: pretrained model directory does not exist" in err
    assert "[probe]" not in out and not (tmp_path / "run").exists()


def test_dissect_folder_without_audio(w2v: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "clips").mkdir()
    code = main(["dissect", "--model", str(w2v), "--probe", str(tmp_path / "clips"),
                 "--run-dir", str(tmp_path / "run")])
    assert code == 2
    assert "clips: no audio files" in capsys.readouterr().err


def test_dissect_bad_concepts_file(w2v: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c.txt").write_text("only-one\n")
    code = main(["dissect", "--model", str(w2v), "--probe", str(tmp_path), "--concepts",
                 str(tmp_path / "c.txt")])
    assert code == 2
    assert "c.txt: needs at least two concepts" in capsys.readouterr().err


def _clips(root: Path, n: int, listed: int | None = None) -> Path:
    """``n`` clips at 8 kHz (the factory's rate); a labels CSV listing the first ``listed``."""
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        sf.write(root / f"c{i:02d}.wav", (0.1 * rng.standard_normal(4000)).astype(np.float32),
                 8000)
    if listed is not None:
        (root.parent / "labels.csv").write_text("filename,label\n" + "".join(
            f"c{i:02d}.wav,{'ab'[i % 2]}\n" for i in range(listed)))
    return root


FACTORY = "tests.external.factories:cnn"


@pytest.mark.parametrize("flag, message", [
    ("--captions", "caps.csv: caption file (--captions) does not exist"),
    ("--captioner", "lm: captioner directory (--captioner) does not exist"),
    ("--labels", "labels.csv: label CSV does not exist"),
])
def test_dissect_missing_paths_are_refused_before_anything_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, message: str) -> None:
    """Every path argument is checked up front (a missing caption file or captioner used to
    surface at the captions stage, after probe, record and extremes had written a run)."""
    clips = _clips(tmp_path / "clips", 4)
    name = {"--captions": "caps.csv", "--captioner": "lm", "--labels": "labels.csv"}[flag]
    code = main(["dissect", "--model", FACTORY, "--probe", str(clips), flag,
                 str(tmp_path / name), "--run-dir", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert code == 2 and message in err
    assert "[probe]" not in out and not (tmp_path / "run").exists()


def test_dissect_refuses_clips_without_a_label_row(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A labels CSV listing 4 of 20 clips used to drop the other 16 silently."""
    clips = _clips(tmp_path / "clips", 20, listed=4)
    code = main(["dissect", "--model", FACTORY, "--probe", str(clips), "--labels",
                 str(tmp_path / "labels.csv"), "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert "16 audio file(s) under" in err and "(c04.wav, c05.wav, c06.wav, ... (13 more))" in err
    assert "--drop-unlisted" in err
    assert not (tmp_path / "run").exists()


def test_dissect_k_above_the_clips_is_refused_before_recording(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With the unlisted clips dropped, 4 clips remain: K = 5 (the default) is refused at the
    probe stage, naming record.k and --k (it used to fail after recording)."""
    clips = _clips(tmp_path / "clips", 20, listed=4)
    argv = ["dissect", "--model", FACTORY, "--probe", str(clips), "--labels",
            str(tmp_path / "labels.csv"), "--drop-unlisted", "--run-dir", str(tmp_path / "run")]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "record.k: K=5 exceeds the 4 clips" in err and "--k" in err
    assert "[record]" not in out and not (tmp_path / "run").exists()
    assert main([*argv, "--k", "9"]) == 2
    assert "record.k: K=9 exceeds the 4 clips" in capsys.readouterr().err


def test_dissect_drop_unlisted_needs_a_labels_csv(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    clips = _clips(tmp_path / "clips", 4)
    code = main(["dissect", "--model", FACTORY, "--probe", str(clips), "--drop-unlisted",
                 "--run-dir", str(tmp_path / "run")])
    assert code == 2 and "--drop-unlisted: drops the audio files a labels CSV does not list, " \
        "but there is none" in capsys.readouterr().err
