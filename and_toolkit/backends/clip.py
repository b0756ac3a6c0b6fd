"""CLIP text tower via transformers: the DB concept / description encoder of Module A.

Reference: reference-spec §3.1 (DB): descriptions and raw concept names are CLIP-tokenised with
truncation to 77 tokens, encoded by the ViT-B/32 text tower and L2-normalised. The authors used
OpenAI's ``clip`` package; :class:`CLIPTextEncoder` runs the same weights through transformers'
``CLIPTextModelWithProjection`` (text tower + projection, no vision tower).

Padding: the authors pad every text to 77 tokens. CLIP's text transformer is causal and pools
the end-of-text position, so tokens after it never influence the embedding; we pad to the
longest text of each batch (same result, less work).

Also holds :func:`load_hf_pretrained`, the offline ``from_pretrained`` wrapper shared with
:mod:`and_toolkit.backends.clap`. Model loading happens only in ``load`` methods.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from and_toolkit.backends.encoders import _check_texts
from and_toolkit.backends.hf_loading import weights_fingerprint
from and_toolkit.interfaces import l2_normalise

CLIP_DEFAULT = "openai/clip-vit-base-patch32"
CLIP_MAX_TOKENS = 77

_T = TypeVar("_T")


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists()


def _weights_hint(source: str, local_files_only: bool) -> str:
    mode = ("downloads are disabled (local_files_only=True)" if local_files_only
            else "the download failed")
    return (f"the weights must be available locally (a model directory) or in the Hugging Face "
            f"cache (HF_HOME / HF_HUB_CACHE); {mode}. Source: {source!r}")


def load_hf_pretrained(loader: Any, name_or_path: str | Path, *,
                       local_files_only: bool = True) -> tuple[Any, str, bool]:
    """``loader.from_pretrained`` that fails fast and clearly when weights are missing.

    Args:
        loader: a transformers class with ``from_pretrained`` (a model class, AutoTokenizer,
            ClapProcessor...).
        name_or_path: a local directory or a hub id such as ``"openai/clip-vit-base-patch32"``.
        local_files_only: never download (default); set ``HF_HUB_OFFLINE=1`` as well so a
            missing model does not trigger network retries.

    Returns:
        (loaded object, resolved source string, whether the source is a local path).

    Raises:
        FileNotFoundError: naming the path / hub id when the files are not available (the
            transformers ``OSError`` / ``ValueError`` is chained).
    """
    name = str(name_or_path)
    is_local = isinstance(name_or_path, Path) or _looks_like_path(name)
    source = str(Path(name).expanduser()) if is_local else name
    if is_local and not Path(source).exists():
        raise FileNotFoundError(
            f"model path {source} does not exist: {_weights_hint(source, local_files_only)}")
    try:
        obj = loader.from_pretrained(source, local_files_only=local_files_only)
    except (OSError, ValueError) as err:
        raise FileNotFoundError(
            f"cannot load {getattr(loader, '__name__', loader)} from {source}: "
            f"{_weights_hint(source, local_files_only)} ({err})") from err
    return obj, source, is_local


def weights_tag(model: Any, source: str, is_local: bool) -> str:
    """Short tag naming a weights version: local fingerprint or hub commit.

    Args:
        model: the loaded transformers model (its ``config._commit_hash`` is read for hub ids).
        source: local directory or hub id.
        is_local: whether ``source`` is a local path.

    Returns:
        ``"<source>@<12 hex>"``, or ``source`` alone when no commit is known.
    """
    if is_local:
        return f"{source}@{weights_fingerprint(Path(source)).removeprefix('sha256:')[:12]}"
    commit = getattr(getattr(model, "config", None), "_commit_hash", None)
    return f"{source}@{str(commit)[:12]}" if commit else source


def batches(items: Sequence[_T], batch_size: int) -> Iterator[Sequence[_T]]:
    """Consecutive chunks of ``items`` of at most ``batch_size`` elements."""
    for start in range(0, len(items), batch_size):
        yield items[start:start + batch_size]


def features_tensor(out: Any) -> torch.Tensor:
    """The embedding tensor of a ``get_*_features`` / projection output.

    transformers 4.x returns a tensor, 5.x a model output whose ``pooler_output`` holds the
    projected features; projection models expose ``text_embeds`` / ``audio_embeds``.

    Args:
        out: the model output.

    Returns:
        Tensor [n, d].

    Raises:
        ValueError: if no embedding tensor is found.
    """
    if isinstance(out, torch.Tensor):
        return out
    for name in ("text_embeds", "audio_embeds", "pooler_output"):
        value = getattr(out, name, None)
        if isinstance(value, torch.Tensor):
            return value
    raise ValueError(f"model output {type(out).__name__} holds no embedding tensor")


class CLIPTextEncoder:
    """CLIP text tower (``CLIPTextModelWithProjection``) as a :class:`TextEncoder`.

    Build with :meth:`load`; ``__init__`` takes an already-built model and tokenizer.

    Args:
        model: a ``CLIPTextModelWithProjection`` (moved to ``device`` and set to eval mode).
        tokenizer: its tokenizer (``CLIPTokenizer`` or any callable HF tokenizer).
        model_id: the ``id`` to report, e.g. ``"clip-text:openai/clip-vit-base-patch32@<rev>"``.
        batch_size: texts per forward pass.
        max_length: truncation length in tokens, including start / end tokens (77, as the
            authors and CLIP's position table).
        device: torch device string.

    Raises:
        ValueError: for a non-positive ``batch_size`` / ``max_length``, a ``max_length`` beyond
            the model's ``max_position_embeddings``, or a tokenizer whose end token cannot be
            pooled by the model (legacy configs with ``eos_token_id == 2`` pool the largest
            token id, so the tokenizer's end token must be the last id of its vocabulary).
    """

    def __init__(self, model: Any, tokenizer: Any, *, model_id: str, batch_size: int = 64,
                 max_length: int = CLIP_MAX_TOKENS, device: str = "cpu") -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        config = model.config
        max_pos = int(getattr(config, "max_position_embeddings", max_length))
        if not 2 <= max_length <= max_pos:
            raise ValueError(
                f"max_length must be in [2, max_position_embeddings={max_pos}], got {max_length}")
        eos = tokenizer.eos_token_id
        if getattr(config, "eos_token_id", None) == 2 and eos != len(tokenizer) - 1:
            raise ValueError(
                f"model config eos_token_id=2 selects argmax pooling, which needs the tokenizer's "
                f"eos_token_id ({eos}) to be its largest id ({len(tokenizer) - 1})")
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.id = model_id
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device

    @classmethod
    def load(cls, name_or_path: str | Path = CLIP_DEFAULT, device: str = "cpu",
             local_files_only: bool = True, batch_size: int = 64) -> CLIPTextEncoder:
        """Load the CLIP text tower and tokenizer (a full CLIP checkpoint works too).

        Args:
            name_or_path: local model directory or hub id (default ViT-B/32).
            device: torch device string.
            local_files_only: never download (default True).
            batch_size: texts per forward pass.

        Returns:
            The encoder; ``id`` is ``"clip-text:<source>@<revision or local fingerprint>"``.

        Raises:
            FileNotFoundError: naming the path / id when weights or tokenizer are missing.
        """
        from transformers import AutoTokenizer, CLIPTextModelWithProjection

        model, source, is_local = load_hf_pretrained(
            CLIPTextModelWithProjection, name_or_path, local_files_only=local_files_only)
        tokenizer, _, _ = load_hf_pretrained(AutoTokenizer, source,
                                             local_files_only=local_files_only)
        return cls(model, tokenizer, model_id=f"clip-text:{weights_tag(model, source, is_local)}",
                   batch_size=batch_size, device=device)

    @property
    def dim(self) -> int:
        """Embedding width d (the projection dimension, 512 for ViT-B/32)."""
        return int(self.model.config.projection_dim)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Tokenise with truncation to ``max_length`` tokens, padded to the longest text.

        Args:
            texts: strings.

        Returns:
            ``input_ids`` and ``attention_mask``, int64 tensors [n, <= max_length].
        """
        enc = self.tokenizer(list(texts), padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` (see :class:`~and_toolkit.interfaces.TextEncoder`).

        Args:
            texts: n strings.

        Returns:
            float32 array [n, d], rows L2-normalised.

        Raises:
            ValueError: if ``texts`` is a single string or holds a non-string.
        """
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = []
        with torch.inference_mode():
            for chunk in batches(texts, self.batch_size):
                enc = {k: v.to(self.device) for k, v in self.tokenize(list(chunk)).items()}
                emb = features_tensor(self.model(**enc))
                parts.append(emb.float().cpu().numpy())
        return l2_normalise(np.concatenate(parts, axis=0))
