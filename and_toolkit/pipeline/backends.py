"""Backend factories of the pipeline: the one place that decides which model serves a stage.

Encoders and LLMs are wrapped so that their expensive outputs go through the run's
content-addressed cache (embeddings keyed by encoder id + the exact text list; generations by
backend, weights, prompt, sampling and seed).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from and_toolkit.cache import Cache, cache_key
from and_toolkit.errors import ConfigError, StageNotRun
from and_toolkit.pipeline.context import Context, array_bytes, bytes_array


@dataclass
class DiskCachedEncoder:
    """A TextEncoder whose ``encode`` results are stored in the content-addressed cache.

    Each call is keyed by (encoder id, sha256 of the exact text list); distinct texts are
    embedded once per call by the wrapped encoder (callers pass distinct lists).
    """

    inner: Any
    cache: Cache
    n_inputs: int = 0
    n_encoded: int = 0

    @property
    def id(self) -> str:
        return str(self.inner.id)

    def encode(self, texts: list[str]) -> np.ndarray:
        """float32 [n, d] L2-normalised embeddings of ``texts``."""
        texts = list(texts)
        self.n_inputs += len(texts)
        distinct = list(dict.fromkeys(texts))
        digest = hashlib.sha256(json.dumps(distinct).encode("utf-8")).hexdigest()
        key = cache_key(kind="embeddings", encoder=self.id, texts=digest)
        raw = self.cache.get_bytes("embeddings", key)
        if raw is None:
            emb = np.asarray(self.inner.encode(distinct), dtype=np.float32)
            self.n_encoded += len(distinct)
            self.cache.put_bytes("embeddings", key, array_bytes(emb))
        else:
            emb = bytes_array(raw)
        row = {t: i for i, t in enumerate(distinct)}
        return emb[[row[t] for t in texts]] if texts else emb[:0]


class LLMCacheAdapter:
    """The LLM layer's ``Cache`` protocol (str get/put) over the content-addressed cache."""

    def __init__(self, cache: Cache, namespace: str = "llm") -> None:
        self.cache = cache
        self.namespace = namespace

    def get(self, key: str) -> str | None:
        raw = self.cache.get_bytes(self.namespace, key)
        return None if raw is None else raw.decode("utf-8")

    def put(self, key: str, value: str) -> None:
        self.cache.put_bytes(self.namespace, key, value.encode("utf-8"))


def minilm_onnx(cache: Cache) -> bytes:
    """The packaged MiniLM exported to ONNX
    (:func:`~and_toolkit.backends.minilm_onnx.export_onnx`), from ``cache`` (namespace
    ``onnx``) or exported now and stored there."""
    from and_toolkit.backends.minilm_onnx import export_key_parts, export_onnx

    key = cache_key(**export_key_parts())
    raw = cache.get_bytes("onnx", key)
    if raw is None:
        raw = export_onnx()
        cache.put_bytes("onnx", key, raw)
    return raw


def text_encoder(ctx: Context, name: str) -> DiskCachedEncoder:
    """The sentence encoder ``name``, cached on disk: 'minilm' (all-MiniLM-L6-v2 on ONNX
    Runtime, :mod:`~and_toolkit.backends.minilm_onnx`), 'clip' or 'hashing'.

    Raises:
        StageNotRun: the encoder's weights are not available here.
    """
    def make() -> DiskCachedEncoder:
        from and_toolkit.backends.encoders import HashingEncoder

        if name == "minilm":
            from and_toolkit.backends.minilm_onnx import OnnxMiniLMEncoder

            inner: Any = OnnxMiniLMEncoder.load(minilm_onnx(ctx.cache))
        elif name == "hashing":
            inner = HashingEncoder()
        elif name == "clip":
            from and_toolkit.backends.clip import CLIPTextEncoder

            try:
                inner = CLIPTextEncoder.load()
            except (FileNotFoundError, OSError) as exc:
                raise StageNotRun(f"CLIP ViT-B/32 text tower unavailable: {exc}") from exc
        else:
            raise StageNotRun(f"text encoder {name!r} is not available offline")
        return DiskCachedEncoder(inner, ctx.cache)

    return ctx.backend(f"encoder:{name}", make)  # type: ignore[no-any-return]


def tagger(ctx: Context) -> Any:
    """spaCy POS tagger (en_core_web_sm, hyphenated words merged)."""
    from and_toolkit.backends.tagger import SpacyTagger

    return ctx.backend("tagger", SpacyTagger.load)


UNAVAILABLE = (FileNotFoundError, OSError, ImportError)
"""Errors that mean an LLM's weights cannot be loaded here (the stage is then not run)."""


def make_llm(name: str, cache: Cache, lookup_drafts: int = 0) -> Any:
    """The LLM backend ``name`` wrapped in a :class:`~and_toolkit.backends.llm.CachedLLM`
    over ``cache`` (no per-process memo: see :func:`llm`; a Ray LLM actor calls this once).
    SmolLM2's weights load on its first cache miss
    (:class:`~and_toolkit.backends.llm.DeferredLLM`). ``lookup_drafts`` > 0 turns on
    prompt-lookup decoding (transformers backends only).

    Names: ``"smollm2"`` (offline SmolLM2-135M), ``"vllm:<model dir>"`` (vLLM on a GPU, extra
    ``vllm`` in its own environment), anything else a transformers model directory or hub id.

    Raises:
        StageNotRun: the backend cannot be loaded here (message says why).
        ConfigError: ``lookup_drafts`` with a vLLM backend.
    """
    from and_toolkit.backends.llm import CachedLLM, DeferredLLM

    if lookup_drafts and name.startswith("vllm:"):
        raise ConfigError(f"closed.icl_lookup_drafts = {lookup_drafts}: prompt-lookup decoding "
                          f"is for transformers backends, not {name!r} (use vLLM's own "
                          "speculative decoding)")

    def build() -> Any:
        if name == "smollm2":
            from and_toolkit.backends.llm_transformers import SmolLM2LLM

            ids = SmolLM2LLM.ids(lookup_drafts)  # the weights load on a cache miss
            load = partial(SmolLM2LLM.load, lookup_drafts=lookup_drafts, weights_id=ids[1])
            return DeferredLLM(*ids, partial(_loaded, name, load))
        if name.startswith("vllm:"):
            from and_toolkit.backends.llm_vllm import VLLMLLM

            return VLLMLLM(name.removeprefix("vllm:"))
        from and_toolkit.backends.llm_transformers import TransformersLLM

        return TransformersLLM.from_pretrained(name, lookup_drafts=lookup_drafts)

    return CachedLLM(_loaded(name, build), LLMCacheAdapter(cache))


def _loaded(name: str, load: Any) -> Any:
    """``load()``, its :data:`UNAVAILABLE` errors as StageNotRun: the one translation for an
    eager load in :func:`make_llm` and a deferred one on the first cache miss."""
    try:
        return load()
    except UNAVAILABLE as exc:
        raise StageNotRun(f"LLM {name!r} unavailable: {exc}") from exc


@dataclass(frozen=True)
class LLMSource:
    """What an engine needs to load an LLM backend in another process: its name and the
    content-addressed cache its generations go through (picklable)."""

    name: str
    cache: Cache
    lookup_drafts: int = 0

    def load(self) -> Any:
        """The cached backend (:func:`make_llm`)."""
        return make_llm(self.name, self.cache, self.lookup_drafts)


def llm(ctx: Context, name: str, lookup_drafts: int = 0) -> Any:
    """A cached, deduplicating LLM backend by name ('smollm2' or a local model path), loaded
    once per process.

    Raises:
        StageNotRun: the backend cannot be loaded here (message says why).
    """
    key = f"llm:{name}" + (f"+lookup{lookup_drafts}" if lookup_drafts else "")
    return ctx.backend(key, lambda: make_llm(name, ctx.cache, lookup_drafts))


def clap(ctx: Context, path: str | None) -> Any:
    """The audio-text encoder (LAION CLAP through transformers) from local weights at ``path``.

    Raises:
        StageNotRun: no path is configured, or the weights cannot be loaded here.
    """
    if not path:
        raise StageNotRun("TAB needs CLAP weights (closed.clap_path); none are available "
                          "offline here")

    def make() -> Any:
        try:
            from and_toolkit.backends.clap import ClapEncoder

            return ClapEncoder.load(path)
        except (FileNotFoundError, OSError, ImportError) as exc:
            raise StageNotRun(f"TAB: CLAP weights unavailable: {exc}") from exc

    return ctx.backend(f"clap:{path}", make)


def load_captioner(path: str) -> Any:
    """The audio captioner at ``path`` (a transformers audio LM directory), loaded here.

    Raises:
        ConfigError: the model cannot be loaded from it (naming the path).
    """
    from and_toolkit.backends.captioner import TransformersAudioCaptioner

    try:
        return TransformersAudioCaptioner.from_pretrained(path)
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot load the audio captioner: {exc}") from None


def captioner(ctx: Context, path: str | None) -> Any:
    """The configured audio captioner (a transformers audio LM from a local directory).

    Raises:
        ConfigError: no path, or the model cannot be loaded from it (naming the path).
    """
    if not path:
        raise ConfigError("captions.captioner_path: required when captions.source = 'captioner'")
    return ctx.backend(f"captioner:{path}", lambda: load_captioner(path))


CAPTION_CHUNK = 64
"""Clips per captioner work item under an engine with actors: a multiple of the captioner's
batch (4), so each ``generate`` call sees the local engine's batch."""


@dataclass(frozen=True)
class ClipCaptions:
    """An audio captioner per worker, captioning clip ranges it loads itself (picklable; an
    :meth:`~and_toolkit.pipeline.engine.Engine.actor_map` source).

    Attributes:
        path: the captioner's directory (``captions.captioner_path``), on storage every worker
            mounts.
        audio: the probe's clips at the rate ``Context.waveforms`` has (the rate the local
            engine passes to ``caption``).
    """

    path: str
    audio: Any

    def load(self) -> Any:
        """``run((start, stop)) -> (captioner id, prompt, captions of those clips)``.

        Raises:
            ConfigError: the captioner cannot be loaded.
        """
        model = load_captioner(self.path)

        def run(item: tuple[int, int]) -> tuple[str, str, list[str]]:
            start, stop = item
            if start % model.batch_size:
                raise ValueError(f"captions: chunk start {start} is not a multiple of the "
                                 f"captioner's batch ({model.batch_size}): other batches than "
                                 "the local engine's")
            texts = model.caption(self.audio.waveforms(start, stop), self.audio.sample_rate)
            return str(model.id), str(getattr(model, "prompt", "")), list(texts)

        return run


def loaded_text_encoder(ctx: Context, name: str) -> DiskCachedEncoder | None:
    """The text encoder ``name`` if this process has loaded it, else None (for provenance)."""
    enc = ctx.loaded_backend(f"encoder:{name}")
    return enc if isinstance(enc, DiskCachedEncoder) else None
