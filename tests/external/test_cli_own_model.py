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
    assert "nomodel: pretrained model directory does not exist" in capsys.readouterr().err


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
