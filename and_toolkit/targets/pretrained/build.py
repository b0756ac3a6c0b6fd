"""Pretrained targets for ESC-50: a packaged backbone with a new ``classifier`` (its logits).

``yamnet-frozen`` / ``yamnet``: :class:`~and_toolkit.targets.pretrained.yamnet.YAMNet` with the
AudioSet classifier replaced by ``Linear(1024, n_classes)`` (seeded by the caller's RNG);
``-frozen`` leaves only ``classifier.*`` trainable. ``whisper-frozen``: Whisper-base's encoder
with a linear head (:mod:`and_toolkit.targets.pretrained.whisper`).
"""

from __future__ import annotations

from torch import nn

__all__ = ["build_pretrained"]


def build_pretrained(arch: str, n_classes: int, whisper_window_seconds: float = 30.0
                     ) -> nn.Module:
    """The pretrained target of ``arch`` with a fresh head (current torch RNG), in train mode.

    Raises:
        DataError: the weight package is missing or not the pinned file.
        ValueError: unknown ``arch``.
    """
    if arch in ("yamnet", "yamnet-frozen"):
        from and_toolkit.targets.pretrained.yamnet import EMBEDDING_DIM, load_yamnet

        model: nn.Module = load_yamnet()
        model.classifier = nn.Linear(EMBEDDING_DIM, n_classes)
    elif arch == "whisper-frozen":
        from and_toolkit.targets.pretrained.whisper import load_whisper_classifier

        model = load_whisper_classifier(n_classes, whisper_window_seconds)
    else:
        raise ValueError(f"arch {arch!r}: not a pretrained target")
    if arch.endswith("-frozen"):
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("classifier."))
    return model.train()
