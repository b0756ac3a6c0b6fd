"""Every bad model input is an error naming the directory, file or factory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from and_toolkit.errors import ConfigError
from and_toolkit.targets.external import load_external, load_factory, load_pretrained
from tests.external.tiny_models import build


@pytest.fixture(scope="module")
def ast_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build("ast", tmp_path_factory.mktemp("m"))


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope: pretrained model directory does not exist"):
        load_pretrained(tmp_path / "nope")


@pytest.mark.parametrize(("name", "what"), [("config.json", "missing model config"),
                                            ("preprocessor_config.json",
                                             "missing feature-extractor config")])
def test_missing_files(ast_dir: Path, tmp_path: Path, name: str, what: str) -> None:
    d = tmp_path / "copy"
    shutil.copytree(ast_dir, d)
    (d / name).unlink()
    with pytest.raises(ConfigError, match=rf"{name}: {what}"):
        load_pretrained(d)


def test_unsupported_model_type(ast_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "copy"
    shutil.copytree(ast_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "model_type": "bert"}))
    with pytest.raises(ConfigError, match=r"config.json: model_type 'bert' is not a supported"):
        load_pretrained(d)


def test_missing_weights(ast_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "copy"
    shutil.copytree(ast_dir, d)
    for w in d.glob("*.safetensors"):
        w.unlink()
    with pytest.raises(ConfigError, match=r"copy: transformers cannot load the model"):
        load_pretrained(d)


@pytest.mark.parametrize(("spec", "message"), [
    ("no_colon", r"factory 'no_colon': expected 'package.module:function'"),
    ("tests.external.nothere:cnn", r"cannot import module 'tests.external.nothere' "
                                   r"\(ModuleNotFoundError"),
    ("tests.external.factories:missing", r"has no callable 'missing'"),
    ("tests.external.factories:NOT_CALLABLE", r"has no callable 'NOT_CALLABLE'"),
    ("tests.external.factories:raises", r"raised RuntimeError: weights file corrupt"),
    ("tests.external.factories:not_a_tuple", r"must return \(torch.nn.Module, preprocess\), "
                                             r"got TinyCNN"),
    ("tests.external.factories:no_rate", r"preprocess must be callable with an int "
                                         r"sample_rate .* sample_rate=None"),
])
def test_factory_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_factory(spec)


def test_exactly_one_source() -> None:
    with pytest.raises(ConfigError, match="exactly one of pretrained"):
        load_external()
    with pytest.raises(ConfigError, match="exactly one of pretrained"):
        load_external(pretrained="x", factory="a:b")


def test_factory_cnn_records_conv2d() -> None:
    ext = load_factory("tests.external.factories:cnn")
    assert (ext.family, ext.sample_rate) == ("factory", 8000)
    assert ext.source["factory"] == "tests.external.factories:cnn"


def test_clip_too_short_for_the_convolutions(tmp_path: Path) -> None:
    import numpy as np

    ext = load_pretrained(build("wav2vec2", tmp_path))
    with pytest.raises(ValueError, match=r"clip 1 of the batch has 8 samples: too short"):
        ext.prepare([np.zeros(16000, np.float32), np.zeros(8, np.float32)])
