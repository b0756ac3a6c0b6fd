"""record_activations / record_to_run: one pass, deterministic files, clear failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from and_toolkit.errors import RecordValidationError
from and_toolkit.recording.hooks import select_layers
from and_toolkit.recording.record import (
    probe_sha256,
    record_activations,
    record_to_run,
)
from and_toolkit.records import ActivationTable
from and_toolkit.run import Run
from and_toolkit.store import provenance_of, read_records


def _batches(n: int = 7, bs: int = 3) -> list[torch.Tensor]:
    x = torch.randn(n, 48, 16, generator=torch.Generator().manual_seed(1))
    return list(x.split(bs))


def test_probe_sha256_is_order_sensitive() -> None:
    assert probe_sha256(["a", "b"]) == probe_sha256(("a", "b"))
    assert probe_sha256(["a", "b"]) != probe_sha256(["b", "a"])
    assert probe_sha256(["a,b"]) != probe_sha256(["a", "b"])
    assert len(probe_sha256([])) == 64


def test_same_input_twice_writes_identical_bytes(tiny_ast: nn.Module, tmp_path: Path) -> None:
    layers = select_layers(tiny_ast)
    sha = probe_sha256([f"c{i}" for i in range(7)])
    runs = []
    for name in ("a", "b"):
        runs.append(record_to_run(tiny_ast, _batches(), layers, "cls", Run.at(tmp_path / name),
                                  "ast-tiny", sha, n_clips=7, progress=False))
    for layer in layers:
        assert runs[0][layer].read_bytes() == runs[1][layer].read_bytes()
        assert runs[0][layer] == Run.at(tmp_path / "a").activation_path("ast-tiny", layer)
        assert runs[0][layer].parts[-3:] == ("model=ast-tiny", f"layer={layer}", "data.parquet")


def test_files_match_in_memory_recording(tiny_ast: nn.Module, tmp_path: Path) -> None:
    layers = select_layers(tiny_ast)
    acts = record_activations(tiny_ast, _batches(), layers, "mean", progress=False)
    sha = probe_sha256([f"c{i}" for i in range(7)])
    paths = record_to_run(tiny_ast, _batches(), layers, "mean", Run.at(tmp_path), "ast-tiny", sha,
                          aliases={"classifier.dense": "fc"}, n_clips=7, progress=False,
                          provenance={"weights": "random"})
    fc1 = "audio_spectrogram_transformer.layers.1.mlp.fc1"
    df = read_records(ActivationTable, paths[fc1])
    assert df.height == 64 and df["unit"].to_list() == list(range(64))
    assert set(df["alias"]) == {"block2.fc1"} and set(df["block"]) == {2}
    assert set(df["pooling"]) == {"mean"} and set(df["probe_sha256"]) == {sha}
    np.testing.assert_array_equal(df["values"].to_numpy().T, acts[fc1])
    fc = read_records(ActivationTable, paths["classifier.dense"])
    assert set(fc["alias"]) == {"fc"} and fc["block"].null_count() == 5
    assert set(fc["pooling"]) == {"none"}
    assert provenance_of(paths[fc1]) == {"n_clips": 7, "weights": "random"}


def test_batch_sizes_do_not_change_values(tiny_ast: nn.Module) -> None:
    layers = select_layers(tiny_ast, include=["*.fc2"])
    a = record_activations(tiny_ast, _batches(bs=7), layers, "cls", progress=False)
    b = record_activations(tiny_ast, _batches(bs=2), layers, "cls", progress=False)
    for layer in layers:
        np.testing.assert_allclose(a[layer], b[layer], rtol=1e-5, atol=1e-6)


def test_wrong_clip_count_writes_nothing(tiny_ast: nn.Module, tmp_path: Path) -> None:
    layers = ["classifier.dense"]
    with pytest.raises(ValueError, match="expected n_clips=8 clips, got 7"):
        record_to_run(tiny_ast, _batches(), layers, "cls", Run.at(tmp_path), "m", "x", n_clips=8,
                      progress=False)
    with pytest.raises(ValueError, match="more than n_clips=6"):
        record_to_run(tiny_ast, _batches(), layers, "cls", Run.at(tmp_path), "m", "x", n_clips=6,
                      progress=False)
    assert not any(tmp_path.rglob("*.parquet"))


def test_non_finite_activations_write_nothing(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    x = torch.tensor([[1.0, 2.0], [float("nan"), 0.0]])
    with pytest.raises(RecordValidationError, match=r"layer '0'.*non-finite.*rows \[1\]"):
        record_to_run(model, [x], ["0", "1"], "cls", Run.at(tmp_path), "m", "x", n_clips=2,
                      progress=False)
    assert not any(tmp_path.rglob("*.parquet"))


def test_unsafe_model_id(tmp_path: Path) -> None:
    for bad in ("../evil", "a/b", ".hidden", ""):
        with pytest.raises(ValueError, match="not a safe path component"):
            Run.at(tmp_path).activation_path(bad, "fc")


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.fc(x))


def test_module_run_twice_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"exactly once.*'fc': 2"):
        record_activations(Twice(), [torch.randn(1, 2)], ["fc"], progress=False)


class DictModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 1)
        self.drop = nn.Dropout(0.9)

    def forward(self, input_values: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(input_values)) * scale


def test_dict_batches_eval_mode_and_cleanup() -> None:
    model = DictModel().train()
    batch = {"input_values": torch.ones(4, 2), "scale": torch.tensor(2.0)}
    acts = record_activations(model, [batch], ["fc"], progress=False)
    expected = (model.fc.weight.sum() + model.fc.bias).item()
    np.testing.assert_allclose(acts["fc"], np.full((4, 1), expected), rtol=1e-6)  # no dropout
    assert model.training and model.drop.training
    assert not model.fc._forward_hooks
    with pytest.raises(TypeError, match="tensor or a dict"):
        record_activations(model, [[torch.ones(1, 2)]], ["fc"], progress=False)  # type: ignore[list-item]
    assert not model.fc._forward_hooks and model.training
