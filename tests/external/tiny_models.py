"""Tiny random-weight transformers audio models saved to directories, one per family.

Each builder writes ``config.json``, the weights and ``preprocessor_config.json`` with
``save_pretrained`` (what a user's directory holds) and returns the directory.
"""

from __future__ import annotations

from pathlib import Path

import torch

FAMILIES = ("ast", "wav2vec2", "hubert", "whisper", "clap")


def build(family: str, root: Path, *, group_norm: bool = False) -> Path:
    """Save a tiny model of ``family`` (seeded) under ``root/family`` and return the path."""
    import transformers as T

    torch.manual_seed(0)
    conv = {"conv_dim": (16, 16), "conv_stride": (5, 2), "conv_kernel": (10, 3),
            "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2,
            "feat_extract_norm": "group" if group_norm else "layer",
            "do_stable_layer_norm": not group_norm}
    small = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64}
    if family == "ast":
        model = T.ASTForAudioClassification(T.ASTConfig(
            **small, num_mel_bins=32, max_length=64, patch_size=16, frequency_stride=16,
            time_stride=16, num_labels=3))
        fe = T.ASTFeatureExtractor(num_mel_bins=32, max_length=64)
    elif family in ("wav2vec2", "hubert"):
        cfg_cls = T.Wav2Vec2Config if family == "wav2vec2" else T.HubertConfig
        model_cls = T.Wav2Vec2Model if family == "wav2vec2" else T.HubertModel
        model = model_cls(cfg_cls(**small, **conv))
        fe = T.Wav2Vec2FeatureExtractor(return_attention_mask=not group_norm)
    elif family == "whisper":
        model = T.WhisperModel(T.WhisperConfig(
            d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=16,
            max_source_positions=50, max_target_positions=16, vocab_size=64, pad_token_id=1,
            bos_token_id=1, eos_token_id=2, decoder_start_token_id=1, suppress_tokens=[],
            begin_suppress_tokens=[]))
        fe = T.WhisperFeatureExtractor(feature_size=16, chunk_length=1)  # 1 s window, 100 frames
    elif family == "clap":
        model = T.ClapAudioModel(T.ClapAudioConfig(
            spec_size=64, num_mel_bins=16, window_size=4, hidden_size=32, patch_size=4,
            patch_stride=(4, 4), depths=[1, 1], num_attention_heads=[1, 2], projection_dim=16,
            patch_embeds_hidden_size=8))
        fe = T.ClapFeatureExtractor(feature_size=16, sampling_rate=48000, max_length_s=1,
                                    fft_window_size=1024, hop_length=480,
                                    truncation="rand_trunc")
    else:
        raise ValueError(family)
    out = root / (family + ("-group" if group_norm else ""))
    model.save_pretrained(out)
    fe.save_pretrained(out)
    return out
