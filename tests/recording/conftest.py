"""Shared fixtures of the recording tests: one torch thread (the machine is shared)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_ast() -> torch.nn.Module:
    """A 2-block, 32-wide AST built from a config (random weights, eval mode)."""
    from transformers import ASTConfig, ASTForAudioClassification

    torch.manual_seed(0)
    cfg = ASTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        patch_size=16, frequency_stride=16, time_stride=16, max_length=48, num_mel_bins=16,
    )
    cfg.num_labels = 5
    return ASTForAudioClassification(cfg).eval()
