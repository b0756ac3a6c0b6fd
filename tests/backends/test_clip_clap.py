"""CLIP text and CLAP audio-text backends on tiny randomly initialised models (no downloads).

The tokenizers are stand-ins built here: a character-level byte-level BPE vocabulary without
merges (one token per character, ``</w>`` marking word ends for CLIP, ``Ġ`` marking spaces for
the RoBERTa-style CLAP tokenizer). The CLAP feature extractor is a real ``ClapFeatureExtractor``
with small settings (16 mel bins, 1 s at 48 kHz, hop 960) that fit the tiny HTSAT (spec 32).
"""

from __future__ import annotations

import os
import string
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from and_toolkit.backends.clap import ClapEncoder, int16_round_trip
from and_toolkit.backends.clip import CLIPTextEncoder, load_hf_pretrained
from and_toolkit.interfaces import AudioTextEncoder, TextEncoder
from and_toolkit.signal import resample

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

transformers = pytest.importorskip("transformers")

CHARS = list(string.ascii_lowercase + string.digits + ".,!?'-")
DIM = 16
SR = 48_000


def clip_tokenizer() -> Any:
    """Character-level CLIPTokenizer; start / end tokens are the two largest ids (as CLIP)."""
    vocab = {c: i for i, c in enumerate(CHARS)}
    vocab.update({c + "</w>": len(CHARS) + i for i, c in enumerate(CHARS)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return transformers.CLIPTokenizer(vocab=vocab, merges=[])


def roberta_tokenizer() -> Any:
    """Character-level RobertaTokenizer (pad id 1, as RoBERTa)."""
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    for c in [*CHARS, "Ġ"]:
        vocab[c] = len(vocab)
    return transformers.RobertaTokenizer(vocab=vocab, merges=[])


@pytest.fixture(scope="module")
def clip_parts() -> tuple[Any, Any]:
    tok = clip_tokenizer()
    cfg = transformers.CLIPTextConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, projection_dim=DIM, max_position_embeddings=77,
        eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
        pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    return transformers.CLIPTextModelWithProjection(cfg).eval(), tok


@pytest.fixture(scope="module")
def clip_enc(clip_parts: tuple[Any, Any]) -> CLIPTextEncoder:
    model, tok = clip_parts
    return CLIPTextEncoder(model, tok, model_id="clip-text:tiny", batch_size=4)


@pytest.fixture(scope="module")
def clap_parts() -> tuple[Any, Any, Any]:
    tok = roberta_tokenizer()
    fe = transformers.ClapFeatureExtractor(
        feature_size=16, sampling_rate=SR, hop_length=960, max_length_s=1,
        fft_window_size=1024, frequency_min=50, frequency_max=14_000,
        truncation="rand_trunc", padding="repeatpad")
    text = transformers.ClapTextConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=100, pad_token_id=tok.pad_token_id)
    audio = transformers.ClapAudioConfig(
        window_size=4, num_mel_bins=16, spec_size=32, patch_size=4, patch_stride=(4, 4),
        hidden_size=32, depths=(1, 1), num_attention_heads=(2, 2), patch_embeds_hidden_size=16,
        num_classes=10)
    cfg = transformers.ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(),
                                  projection_dim=DIM)
    torch.manual_seed(0)
    return transformers.ClapModel(cfg).eval(), fe, tok


def clap_encoder(parts: tuple[Any, Any, Any], **kwargs: Any) -> ClapEncoder:
    model, fe, tok = parts
    return ClapEncoder(model, fe, tok, model_id="clap:tiny", **kwargs)


@pytest.fixture(scope="module")
def clap_enc(clap_parts: tuple[Any, Any, Any]) -> ClapEncoder:
    return clap_encoder(clap_parts, audio_batch_size=4, text_batch_size=4)


TEXTS = ["a dog barks", "rain falls on a roof", "x", "a loud, high-pitched alarm rings twice",
         "birds chirp", "engine idling 2 min", "glass breaks!"]


def clips(n: int, sr: int = SR, seconds: float = 0.6, seed: int = 0) -> list[np.ndarray]:
    """n different clips: a sine (frequency depends on the index) plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    return [(0.4 * np.sin(2 * np.pi * (300 + 450 * i) * t)
             + 0.05 * rng.standard_normal(t.size)).astype(np.float32) for i in range(n)]


def assert_unit_rows(x: np.ndarray, n: int) -> None:
    assert x.shape == (n, DIM)
    assert x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


# ------------------------------------------------------------------------------- CLIP text


def test_clip_shapes_norms_determinism(clip_enc: CLIPTextEncoder) -> None:
    assert isinstance(clip_enc, TextEncoder)
    a = clip_enc.encode(TEXTS)
    assert_unit_rows(a, len(TEXTS))
    np.testing.assert_array_equal(a, clip_enc.encode(TEXTS))
    assert np.abs(a @ a.T - np.eye(len(TEXTS))).max() > 1e-3  # different texts, different rows
    assert clip_enc.encode([]).shape == (0, DIM)
    with pytest.raises(ValueError, match="single string"):
        clip_enc.encode("a dog")  # type: ignore[arg-type]


def test_clip_batching_invariance(clip_parts: tuple[Any, Any]) -> None:
    model, tok = clip_parts
    one = CLIPTextEncoder(model, tok, model_id="t", batch_size=1).encode(TEXTS)
    four = CLIPTextEncoder(model, tok, model_id="t", batch_size=4).encode(TEXTS)
    np.testing.assert_allclose(one, four, atol=1e-5)


def test_clip_truncates_at_77_tokens(clip_enc: CLIPTextEncoder) -> None:
    long_a, long_b = "x " * 80 + "dog", "x " * 80 + "cat"
    ids = clip_enc.tokenize([long_a])["input_ids"][0]
    assert ids.numel() == 77
    assert int(ids[0]) == clip_enc.tokenizer.bos_token_id
    assert int(ids[-1]) == clip_enc.tokenizer.eos_token_id
    emb = clip_enc.encode([long_a, long_b, "x " * 10 + "dog", "x " * 10 + "cat"])
    np.testing.assert_allclose(emb[0], emb[1], atol=1e-6)  # the differing word is cut off
    assert np.abs(emb[2] - emb[3]).max() > 1e-3  # short texts keep it


def test_clip_config_checks(clip_parts: tuple[Any, Any]) -> None:
    model, tok = clip_parts
    with pytest.raises(ValueError, match="max_position_embeddings=77"):
        CLIPTextEncoder(model, tok, model_id="t", max_length=78)
    with pytest.raises(ValueError, match="batch_size"):
        CLIPTextEncoder(model, tok, model_id="t", batch_size=0)
    legacy = transformers.CLIPTextModelWithProjection(
        transformers.CLIPTextConfig(**{**model.config.to_dict(), "eos_token_id": 2}))
    CLIPTextEncoder(legacy, tok, model_id="t")  # end token is the largest id: argmax pooling ok
    bad_tok = transformers.CLIPTokenizer(
        vocab={"<|startoftext|>": 0, "<|endoftext|>": 1, **{c: i + 2 for i, c in enumerate("ab")}},
        merges=[])
    with pytest.raises(ValueError, match="eos_token_id"):
        CLIPTextEncoder(legacy, bad_tok, model_id="t")


def test_clip_load_from_local_directory(clip_parts: tuple[Any, Any], clip_enc: CLIPTextEncoder,
                                        tmp_path: Path) -> None:
    model, tok = clip_parts
    model.save_pretrained(tmp_path / "clip")
    tok.save_pretrained(tmp_path / "clip")
    loaded = CLIPTextEncoder.load(tmp_path / "clip")
    assert loaded.id.startswith(f"clip-text:{tmp_path / 'clip'}@")
    np.testing.assert_allclose(loaded.encode(TEXTS), clip_enc.encode(TEXTS), atol=1e-6)


def test_clip_load_from_full_clip_checkpoint(clip_parts: tuple[Any, Any],
                                             tmp_path: Path) -> None:
    """A full CLIPModel directory (text + vision towers), like openai/clip-vit-base-patch32."""
    model, tok = clip_parts
    vision = transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=64,
                                           num_hidden_layers=1, num_attention_heads=2,
                                           image_size=32, patch_size=16, projection_dim=DIM)
    full = transformers.CLIPModel(transformers.CLIPConfig(
        text_config=model.config.to_dict(), vision_config=vision.to_dict(), projection_dim=DIM))
    full.text_model.load_state_dict(model.text_model.state_dict())
    full.text_projection.load_state_dict(model.text_projection.state_dict())
    full.save_pretrained(tmp_path / "full")
    tok.save_pretrained(tmp_path / "full")
    loaded = CLIPTextEncoder.load(tmp_path / "full")
    want = CLIPTextEncoder(model, tok, model_id="t").encode(TEXTS)
    np.testing.assert_allclose(loaded.encode(TEXTS), want, atol=1e-6)


# ------------------------------------------------------------------------------- missing weights


def test_load_missing_path_fails_fast(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    t0 = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="no-such-model") as err:
        CLIPTextEncoder.load(missing)
    assert "Hugging Face cache" in str(err.value)
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        ClapEncoder.load(str(missing))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty") as err:
        CLIPTextEncoder.load(tmp_path / "empty")
    assert isinstance(err.value.__cause__, OSError)
    with pytest.raises(FileNotFoundError, match="and-toolkit-tests/no-such-clap"):
        ClapEncoder.load("and-toolkit-tests/no-such-clap")
    assert time.perf_counter() - t0 < 5.0


def test_load_directory_without_tokenizer(clip_parts: tuple[Any, Any], tmp_path: Path) -> None:
    clip_parts[0].save_pretrained(tmp_path / "weights-only")
    with pytest.raises(FileNotFoundError, match="weights-only"):
        CLIPTextEncoder.load(tmp_path / "weights-only")
    with pytest.raises(FileNotFoundError, match="weights-only"):
        load_hf_pretrained(transformers.AutoTokenizer, str(tmp_path / "weights-only"))


# ------------------------------------------------------------------------------- CLAP


def test_clap_text_shapes_norms_batching(clap_parts: tuple[Any, Any, Any],
                                         clap_enc: ClapEncoder) -> None:
    assert isinstance(clap_enc, AudioTextEncoder)
    a = clap_enc.encode_text(TEXTS)
    assert_unit_rows(a, len(TEXTS))
    np.testing.assert_array_equal(a, clap_enc.encode_text(TEXTS))
    one = clap_encoder(clap_parts, text_batch_size=1).encode_text(TEXTS)
    np.testing.assert_allclose(one, a, atol=1e-5)
    assert clap_enc.encode_text([]).shape == (0, DIM)
    long_a, long_b = "x " * 80 + "dog", "x " * 80 + "cat"
    emb = clap_enc.encode_text([long_a, long_b])
    np.testing.assert_allclose(emb[0], emb[1], atol=1e-6)  # truncated at 77 tokens


def test_clap_audio_shapes_norms_determinism_batching(clap_parts: tuple[Any, Any, Any],
                                                      clap_enc: ClapEncoder) -> None:
    waves = clips(6)
    a = clap_enc.encode_audio(waves, SR)
    assert_unit_rows(a, 6)
    np.testing.assert_array_equal(a, clap_enc.encode_audio(waves, SR))
    assert np.abs(a[0] - a[3]).max() > 1e-4
    one = clap_encoder(clap_parts, audio_batch_size=1).encode_audio(waves, SR)
    np.testing.assert_allclose(one, a, atol=1e-5)
    assert clap_enc.encode_audio([], SR).shape == (0, DIM)
    # texts and audio share the projection space
    assert (clap_enc.encode_text(TEXTS[:2]) @ a.T).shape == (2, 6)


def test_clap_resamples_16k_input(clap_parts: tuple[Any, Any, Any],
                                  clap_enc: ClapEncoder) -> None:
    w16 = clips(2, sr=16_000, seed=1)
    got = clap_enc.encode_audio(w16, 16_000)
    by_hand = [int16_round_trip(resample(w, 16_000, SR)) for w in w16]
    for p, h in zip(clap_enc.prepare(w16, 16_000), by_hand, strict=True):
        np.testing.assert_array_equal(p, h)
    plain = clap_encoder(clap_parts, quantize_int16=False)
    np.testing.assert_allclose(got, plain.encode_audio(by_hand, SR), atol=1e-6)
    # read as if it were 48 kHz audio, the same samples give other embeddings
    assert np.abs(got - clap_enc.encode_audio(w16, SR)).max() > 1e-4


def test_int16_round_trip_values() -> None:
    x = np.array([0.0, 0.5, -0.5, 1.5, -2.0, 1e-5, -1e-5, 0.25], dtype=np.float32)
    got = int16_round_trip(x)
    want = np.array([0, 16383, -16383, 32767, -32767, 0, 0, 8191], dtype=np.float32) / 32767.0
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)
    assert got.dtype == np.float32
    noise = np.random.default_rng(0).uniform(-1, 1, 1000).astype(np.float32)
    assert np.abs(int16_round_trip(noise) - noise).max() <= 1 / 32767


def test_clap_int16_switch(clap_parts: tuple[Any, Any, Any], clap_enc: ClapEncoder) -> None:
    loud = [2.0 * w for w in clips(2, seed=2)]  # peaks beyond +-1: clipped only when quantising
    plain = clap_encoder(clap_parts, quantize_int16=False)
    assert np.abs(plain.prepare(loud, SR)[0]).max() > 1.0
    assert np.abs(clap_enc.prepare(loud, SR)[0]).max() == 1.0
    on, off = clap_enc.encode_audio(loud, SR), plain.encode_audio(loud, SR)
    assert_unit_rows(off, 2)
    assert np.abs(on - off).max() > 1e-4
    np.testing.assert_allclose(on, plain.encode_audio([int16_round_trip(w) for w in loud], SR),
                               atol=1e-6)


def test_clap_crop_long_clips(clap_parts: tuple[Any, Any, Any], clap_enc: ClapEncoder) -> None:
    long = clips(1, seconds=2.5, seed=3)[0]
    head = clap_enc.encode_audio([long], SR)
    np.testing.assert_allclose(head, clap_enc.encode_audio([long[:SR]], SR), atol=1e-6)
    random_window = clap_encoder(clap_parts, crop="processor").encode_audio([long], SR)
    assert_unit_rows(random_window, 1)
    with pytest.raises(ValueError, match="crop"):
        clap_encoder(clap_parts, crop="middle")  # type: ignore[arg-type]


def test_waveform_checks(clap_enc: ClapEncoder) -> None:
    """Malformed clips are refused by the shared check (see tests/test_signal.py)."""
    ok = np.zeros(10, dtype=np.float32)
    with pytest.raises(ValueError, match=r"waveforms\[1\].*shape \(2, 5\)"):
        clap_enc.encode_audio([ok, np.zeros((2, 5))], SR)
    with pytest.raises(ValueError, match="sample_rate"):
        clap_enc.prepare([ok], 16_000.5)  # type: ignore[arg-type]


def test_clap_load_from_local_directory(clap_parts: tuple[Any, Any, Any],
                                        clap_enc: ClapEncoder, tmp_path: Path) -> None:
    model, fe, tok = clap_parts
    target = tmp_path / "clap"
    model.save_pretrained(target)
    transformers.ClapProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(target)
    loaded = ClapEncoder.load(target)
    assert loaded.id.startswith(f"clap:{target}@") and loaded.sample_rate == SR
    assert ClapEncoder.load(target, quantize_int16=False).id == loaded.id + "+noint16"
    waves = clips(2, seed=4)
    np.testing.assert_allclose(loaded.encode_audio(waves, SR), clap_enc.encode_audio(waves, SR),
                               atol=1e-6)
    np.testing.assert_allclose(loaded.encode_text(TEXTS), clap_enc.encode_text(TEXTS), atol=1e-6)


def test_clap_directory_missing_files_are_named(clap_parts: tuple[Any, Any, Any],
                                                tmp_path: Path) -> None:
    model, fe, tok = clap_parts
    target = tmp_path / "clap"
    model.save_pretrained(target)
    transformers.ClapProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(target)
    ClapEncoder.load(target)  # complete
    for name in ("preprocessor_config.json", "processor_config.json"):
        (target / name).unlink(missing_ok=True)
    for name in ("tokenizer.json", "vocab.json"):
        (target / name).unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError, match=r"lacks: preprocessor_config\.json or "
                                                r"processor_config\.json; "
                                                r"tokenizer\.json or vocab\.json \+ merges"):
        ClapEncoder.load(target)
    for weights in target.glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors or"):
        ClapEncoder.load(target)
