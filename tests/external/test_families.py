"""Each family's recorded activations equal a hand-written forward pass with hooks.

The reference runs every clip alone (no padding), on audio read with soundfile, averaged over
channels and resampled with scipy's polyphase filter (Kaiser beta 5, as documented for the
toolkit), through the family's feature extractor, with plain forward hooks and a hand-written
mean over the frames that hold audio. The toolkit records batches of clips of different lengths
(padded, masked). Tolerance: float32 results whose summation order differs with the batch shape
(matmuls, attention softmax over padded keys set to -inf, layer norms) agree to a few hundred
float32 ulps of the layer's scale; we allow 1e-4 x the layer's max |activation| (~840 eps32). A
single padded frame leaking into a mean would move it by about 1/T of an activation (T <= 100
frames here), i.e. by >= 1e-2 of the scale: two orders above the tolerance.
"""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly

from and_toolkit.probe.audio import load_audio
from and_toolkit.recording.hooks import select_layers
from and_toolkit.recording.record import record_activations
from and_toolkit.targets.external import batches_of, load_pretrained
from tests.external.tiny_models import FAMILIES, build

FILE_RATE = 22050
LENGTHS_S = (0.9, 0.55, 0.7)  # different lengths: padding in a batch


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    dirs = {f: build(f, root) for f in FAMILIES}
    dirs["wav2vec2-group"] = build("wav2vec2", root, group_norm=True)
    return dirs


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Stereo clips at 22.05 kHz (need downmixing and resampling for every family)."""
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(1)
    paths = []
    for i, sec in enumerate(LENGTHS_S):
        n = int(sec * FILE_RATE)
        t = np.arange(n) / FILE_RATE
        left = 0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + 0.05 * rng.standard_normal(n)
        right = 0.1 * rng.standard_normal(n)
        path = root / f"clip{i}.wav"
        sf.write(path, np.stack([left, right], axis=1).astype(np.float32), FILE_RATE,
                 subtype="FLOAT")
        paths.append(path)
    return paths


def _by_hand_audio(path: Path, rate: int) -> np.ndarray:
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    mono = data.mean(axis=1).astype(np.float64)
    g = gcd(sr, rate)
    return resample_poly(mono, rate // g, sr // g, window=("kaiser", 5.0)).astype(np.float32)


def _by_hand(family: str, model_dir: Path, waves: list[np.ndarray], layers: list[str]
             ) -> dict[str, np.ndarray]:
    """Each clip alone through the feature extractor and the model, hooks, mean over frames."""
    import transformers as T

    fe = T.AutoFeatureExtractor.from_pretrained(model_dir)
    if family == "ast":
        model = T.ASTForAudioClassification.from_pretrained(model_dir)
    elif family == "clap":
        model = T.ClapAudioModel.from_pretrained(model_dir)
    else:
        model = T.AutoModel.from_pretrained(model_dir)
    if family == "whisper":
        model = model.get_encoder()
    model.eval()
    mods = dict(model.named_modules())
    rows: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    for wave in waves:
        seen: dict[str, torch.Tensor] = {}
        hooks = [mods[name].register_forward_hook(
            lambda m, i, o, name=name, seen=seen: seen.__setitem__(name, o[0] if isinstance(o, tuple)
                                                        else o)) for name in layers]
        if family == "ast":
            x = {"input_values": fe([wave], sampling_rate=16000,
                                    return_tensors="pt")["input_values"]}
        elif family in ("wav2vec2", "hubert"):
            x = {"input_values": fe([wave], sampling_rate=16000,
                                    return_tensors="pt")["input_values"]}
        elif family == "whisper":
            x = {"input_features": fe([wave], sampling_rate=16000,
                                      return_tensors="pt")["input_features"]}
        else:
            f = fe([wave[:48000]], sampling_rate=48000, return_tensors="pt")
            x = {"input_features": f["input_features"], "is_longer": f["is_longer"]}
        with torch.no_grad():
            model(**x)
        for h in hooks:
            h.remove()
        for name in layers:
            out = seen[name][0]  # one clip
            if out.ndim == 1:
                rows[name].append(out.numpy())
                continue
            conv = isinstance(mods[name], torch.nn.Conv1d)
            if family == "whisper":  # frames covering the clip: 160-sample mel hop, conv2 / 2
                mel = -(-len(wave) // 160)
                keep = mel if out.shape[-1 if conv else 0] == 100 else -(-mel // 2)
                out = out[:, :keep] if conv else out[:keep]
            rows[name].append((out.mean(dim=1) if conv else out.mean(dim=0)).numpy())
    return {name: np.stack(r) for name, r in rows.items()}


@pytest.mark.parametrize("family", [*FAMILIES, "wav2vec2-group"])
def test_recorded_equals_hand_written_forward(family: str, model_dirs: dict[str, Path],
                                              clip_files: list[Path]) -> None:
    ext = load_pretrained(model_dirs[family])
    base = family.removesuffix("-group")
    assert ext.family == base
    waves = [load_audio(p, ext.sample_rate, resample=True, downmix=True) for p in clip_files]
    layers = select_layers(ext.module, types=ext.types,
                           exclude=[*ext.exclude, "*q_proj", "*k_proj", "*v_proj", "*query",
                                    "*key", "*value"])
    batches = ((p.inputs, p.frames) for p in batches_of(ext, iter(waves), 8))
    got = record_activations(ext.module, batches, layers, "mean", progress=False,
                             n_clips=len(waves))
    want = _by_hand(base, model_dirs[family], [_by_hand_audio(p, ext.sample_rate)
                                               for p in clip_files], layers)
    assert len(layers) >= 4
    for name in layers:
        scale = float(np.abs(want[name]).max())
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-4 * scale,
                                   err_msg=f"{family} {name}")


def test_factory_cnn_equals_hand_written(clip_files: list[Path]) -> None:
    """A plain CNN through ``factory``: conv2d outputs [B, C, F, T] mean-pooled over F and T."""
    from and_toolkit.targets.external import load_factory
    from tests.external.factories import RATE, _waves_to_tensor, cnn

    ext = load_factory("tests.external.factories:cnn")
    waves = [load_audio(p, RATE, resample=True, downmix=True) for p in clip_files]
    layers = select_layers(ext.module, types=ext.types, exclude=list(ext.exclude))
    assert layers == ["conv1", "conv2", "head"]
    got = record_activations(ext.module, ((p.inputs, p.frames) for p in batches_of(
        ext, iter(waves), 2)), layers, "mean", progress=False, n_clips=len(waves))
    net, _ = cnn()
    net.eval()
    seen: dict[str, list[np.ndarray]] = {n: [] for n in layers}
    mods = dict(net.named_modules())
    hooks = [mods[n].register_forward_hook(
        lambda m, i, o, n=n: seen[n].append(o.mean(dim=(2, 3)).numpy() if o.ndim == 4
                                            else o.numpy())) for n in layers]
    with torch.no_grad():
        for p in clip_files:
            net(_waves_to_tensor([_by_hand_audio(p, RATE)]))
    for h in hooks:
        h.remove()
    for n in layers:
        want = np.concatenate(seen[n])
        np.testing.assert_allclose(got[n], want, rtol=0, atol=1e-4 * float(np.abs(want).max()))
