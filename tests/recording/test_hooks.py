"""Layer selection, naming and pooling, with hand-computed outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from and_toolkit.recording.hooks import (
    Pooling,
    block_index,
    layer_aliases,
    resolve_modules,
    select_layers,
)
from and_toolkit.recording.record import record_activations

# x[b, t, d]: batch of 2 clips, 3 tokens, 2 features
X_TOK = torch.tensor([
    [[1.0, -1.0], [3.0, 5.0], [2.0, -4.0]],
    [[-2.0, 0.0], [0.0, 1.0], [4.0, 2.0]],
])


class Identity2(nn.Module):
    """Linear(2, 2) with identity weight and bias [10, 20]."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(2))
            self.fc.bias.copy_(torch.tensor([10.0, 20.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


@pytest.mark.parametrize(("pooling", "expected"), [
    ("first", [[11.0, 19.0], [8.0, 20.0]]),
    ("cls", [[11.0, 19.0], [8.0, 20.0]]),
    ("mean", [[12.0, 20.0], [10.0 + 2.0 / 3.0, 21.0]]),
    ("max", [[13.0, 25.0], [14.0, 22.0]]),
])
def test_token_pooling_hand_computed(pooling: str, expected: list[list[float]]) -> None:
    acts = record_activations(Identity2(), [X_TOK], ["fc"], pooling, progress=False)
    np.testing.assert_allclose(acts["fc"], np.array(expected, np.float32), rtol=1e-6)
    assert acts["fc"].dtype == np.float32


def test_2d_output_is_kept_and_batches_concatenate() -> None:
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    acts = record_activations(Identity2(), [x[:2], x[2:]], ["fc"], "mean", progress=False)
    np.testing.assert_array_equal(acts["fc"], [[11, 22], [13, 24], [15, 26]])
    pre = record_activations(Identity2(), [x[:2], x[2:]], ["fc"], "mean", progress=False,
                             n_clips=3)
    np.testing.assert_array_equal(pre["fc"], acts["fc"])


class TinyConv(nn.Module):
    """Conv2d(1, 2, 1x1): channel 0 = x, channel 1 = -x + 0.5."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            assert self.conv.bias is not None
            self.conv.bias.copy_(torch.tensor([0.0, 0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


X_IMG = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])  # [1, 1, 2, 2]


@pytest.mark.parametrize(("pooling", "expected"), [
    (Pooling(spatial="mean"), [[3.0, -2.5]]),
    (Pooling(spatial="max"), [[6.0, -0.5]]),
    ("first", [[3.0, -2.5]]),  # token pooling does not apply to conv outputs
])
def test_conv_pooling_hand_computed(pooling: Pooling | str, expected: list[list[float]]) -> None:
    acts = record_activations(TinyConv(), [X_IMG], ["conv"], pooling, progress=False)
    np.testing.assert_allclose(acts["conv"], expected, rtol=1e-6)


class ToyAttention(nn.Module):
    def __init__(self, names: tuple[str, str, str]) -> None:
        super().__init__()
        for n in names:
            setattr(self, n, nn.Linear(4, 4))
        self.o_proj = nn.Linear(4, 4)


class ToyBlock(nn.Module):
    def __init__(self, names: tuple[str, str, str]) -> None:
        super().__init__()
        self.attention = ToyAttention(names)
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 4)


class ToyTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([ToyBlock(("q_proj", "k_proj", "v_proj")),
                                     ToyBlock(("query", "key", "value"))])
        self.classifier = nn.Linear(4, 3)


def test_selection_excludes_qkv_and_keeps_order() -> None:
    layers = select_layers(ToyTransformer())
    assert layers == [
        "layers.0.attention.o_proj", "layers.0.fc1", "layers.0.fc2",
        "layers.1.attention.o_proj", "layers.1.fc1", "layers.1.fc2", "classifier",
    ]
    with_qkv = select_layers(ToyTransformer(), exclude=())
    assert "layers.0.attention.q_proj" in with_qkv and "layers.1.attention.value" in with_qkv
    assert select_layers(ToyTransformer(), include=["*.fc1"]) == ["layers.0.fc1", "layers.1.fc1"]
    assert select_layers(ToyTransformer(), exclude=["classifier", "*.attention.*"]) == [
        "layers.0.fc1", "layers.0.fc2", "layers.1.fc1", "layers.1.fc2"]


def test_selection_errors() -> None:
    with pytest.raises(ValueError, match=r"pattern '\*\.fc9' matches no Linear/Conv2d.*fc1"):
        select_layers(ToyTransformer(), include=["*.fc9"])
    with pytest.raises(ValueError, match="no Linear module left"):
        select_layers(ToyTransformer(), types=(nn.Linear,), exclude=["*"])


def test_tiny_ast_default_selection(tiny_ast: nn.Module) -> None:
    layers = select_layers(tiny_ast)
    assert layers == [
        "audio_spectrogram_transformer.layers.0.attention.o_proj",
        "audio_spectrogram_transformer.layers.0.mlp.fc1",
        "audio_spectrogram_transformer.layers.0.mlp.fc2",
        "audio_spectrogram_transformer.layers.1.attention.o_proj",
        "audio_spectrogram_transformer.layers.1.mlp.fc1",
        "audio_spectrogram_transformer.layers.1.mlp.fc2",
        "classifier.dense",
    ]
    aliases = layer_aliases(layers)
    assert aliases[layers[1]] == "block1.fc1" and aliases[layers[3]] == "block2.o_proj"
    assert aliases["classifier.dense"] == "classifier.dense"
    acts = record_activations(tiny_ast, [torch.randn(3, 48, 16)], layers, "cls", progress=False)
    assert {k: v.shape for k, v in acts.items()} == {
        layers[0]: (3, 32), layers[1]: (3, 64), layers[2]: (3, 32), layers[3]: (3, 32),
        layers[4]: (3, 64), layers[5]: (3, 32), "classifier.dense": (3, 5)}


def test_cls_pooling_on_ast_is_token_zero(tiny_ast: nn.Module) -> None:
    captured: list[torch.Tensor] = []
    fc1 = resolve_modules(tiny_ast, ["audio_spectrogram_transformer.layers.1.mlp.fc1"])
    handle = next(iter(fc1.values())).register_forward_hook(
        lambda m, i, o: captured.append(o.detach().clone()))
    x = torch.randn(2, 48, 16)
    with torch.no_grad():
        tiny_ast(x)
    handle.remove()
    for mode, ref in [("cls", captured[0][:, 0]), ("mean", captured[0].mean(1)),
                      ("max", captured[0].amax(1))]:
        acts = record_activations(tiny_ast, [x], list(fc1), mode, progress=False)
        np.testing.assert_allclose(acts[next(iter(fc1))], ref.numpy(), rtol=1e-5, atol=1e-6)


def test_block_index_and_aliases() -> None:
    assert block_index("audio_spectrogram_transformer.layers.3.mlp.fc1") == 4
    assert block_index("encoder.layer.11.output.dense") == 12
    assert block_index("blocks.0.conv1") == 1
    assert block_index("classifier.dense") is None
    assert block_index("mylayers.3.fc") is None
    hf4 = ["encoder.layer.0.attention.output.dense", "encoder.layer.0.intermediate.dense",
           "encoder.layer.0.output.dense", "classifier.dense"]
    assert layer_aliases(hf4) == {
        hf4[0]: "block1.attention.output.dense", hf4[1]: "block1.intermediate.dense",
        hf4[2]: "block1.output.dense", hf4[3]: "classifier.dense"}
    assert layer_aliases(["blocks.2.conv1", "head"], {"head": "fc"}) == {
        "blocks.2.conv1": "block3.conv1", "head": "fc"}
    with pytest.raises(ValueError, match="both map to 'x'"):
        layer_aliases(["a", "b"], {"a": "x", "b": "x"})


def test_unknown_layer_lists_available() -> None:
    with pytest.raises(ValueError, match=r"unknown layer 'layers\.0\.fc3'.*layers\.0\.fc1"):
        record_activations(ToyTransformer(), [torch.randn(1, 4)], ["layers.0.fc3"],
                           progress=False)


def test_pooling_parse() -> None:
    assert Pooling.parse("max") == Pooling(tokens="max", spatial="max")
    with pytest.raises(ValueError, match="pooling"):
        Pooling.parse("median")


def test_cnn_target_selection_includes_convs() -> None:
    from and_toolkit.targets.cnn import CNNArchConfig, build_cnn

    torch.manual_seed(0)
    model = build_cnn(CNNArchConfig(channels=(4, 8), num_mel_bins=16), 3)
    layers = select_layers(model)
    assert layers == ["blocks.0.conv1", "blocks.0.conv2", "blocks.1.conv1", "blocks.1.conv2",
                      "head"]
    assert layer_aliases(layers)["blocks.1.conv2"] == "block2.conv2"
    x = torch.randn(3, 32, 16)
    acts = record_activations(model, [x], layers, "mean", progress=False)
    assert {k: v.shape for k, v in acts.items()} == {
        "blocks.0.conv1": (3, 4), "blocks.0.conv2": (3, 4), "blocks.1.conv1": (3, 8),
        "blocks.1.conv2": (3, 8), "head": (3, 3)}
    with torch.no_grad():
        model.eval()
        np.testing.assert_allclose(acts["head"], model(x).numpy(), rtol=1e-5, atol=1e-6)
