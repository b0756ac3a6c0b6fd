"""Reserved key/value cache layers: the same logits, bit for bit, as transformers' own."""

from __future__ import annotations

import pytest
import torch

from and_toolkit.backends import lookup_decode, prefix_cache, reserved_cache
from and_toolkit.backends.llm_transformers import TransformersLLM


def _steps(llm: TransformersLLM, reserve: bool) -> torch.Tensor:
    """Logits [3, 12, V] of 12 greedy steps after a shared prefix (rows 1-2 end early at
    step 6, as rows leaving a batch), in blocks of 1 and 3 tokens."""
    prefix = list(range(300, 300 + prefix_cache.MIN_SHARED_PREFIX + 4))
    enc = prefix_cache.batch_inputs(prefix, [[5, 6, 7], [8], [9, 10]], 0,
                                    prefix_cache.prefill(llm.model, prefix, "cpu"), "cpu")
    cache, mask = enc["cache"], enc["attention_mask"]
    if reserve:
        reserved_cache.reserve(cache, 4)  # little room: the buffers must grow on the way
    ids = enc["input_ids"][:, len(prefix):]
    logits = []
    with torch.inference_mode():
        for step in range(8):
            if step == 5:
                cache.batch_select_indices(torch.tensor([0]))
                mask, ids = mask[:1], ids[:1]
            mask = torch.cat([mask, torch.ones_like(ids)], dim=1) if step else mask
            pos = (mask.cumsum(-1) - 1)[:, -ids.shape[1]:]
            out = llm.model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache,
                            use_cache=True)
            logits.append(out.logits[0, -1])
            width = 3 if step % 2 else 1
            ids = out.logits[:, -1:].argmax(-1).repeat(1, width)
    return torch.stack(logits)


def test_reserved_layers_give_identical_logits(tiny_llm: TransformersLLM) -> None:
    assert torch.equal(_steps(tiny_llm, reserve=True), _steps(tiny_llm, reserve=False))


def test_reserved_layer_growth_crop_and_repeat(tiny_llm: TransformersLLM) -> None:
    cache = prefix_cache.prefill(tiny_llm.model, list(range(40, 60)), "cpu")
    reserved_cache.reserve(cache, 2)
    layer = cache.layers[0]
    assert isinstance(layer, reserved_cache.ReservedLayer)
    k = torch.randn(1, layer.keys.shape[1], 5, layer.keys.shape[3])
    keys, _ = layer.update(k, k)  # 5 > 2 spare columns: the buffer grows
    assert keys.shape[-2] == 25 and torch.equal(keys[:, :, 20:], k)
    assert cache.layers[1].get_seq_length() == 20  # other layers were not updated
    layer.crop(-5)
    assert layer.get_seq_length() == 20
    layer.batch_repeat_interleave(3)
    assert layer.keys.shape[0] == 3
    with pytest.raises(ValueError, match="negative"):
        layer.crop(2)
    with pytest.raises(TypeError, match="ReservedLayer"):
        reserved_cache.reserve(cache, 2)


def test_lookup_with_and_without_reserved_cache(tiny_llm: TransformersLLM) -> None:
    enc = tiny_llm.tokenizer(["the sound of rain is wet; the sound of rain is", "a b a b a b"],
                             padding=True, return_tensors="pt")
    runs = [lookup_decode.greedy_decode(tiny_llm.model, enc["input_ids"], enc["attention_mask"],
                                        None, max_new_tokens=20, eos_ids=[], pad_id=0,
                                        draft_tokens=3, reserve_cache=r) for r in (True, False)]
    assert runs[0] == runs[1]
