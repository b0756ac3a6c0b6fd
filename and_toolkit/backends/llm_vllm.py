"""vLLM offline batch generation (GPU only; vLLM lives in its own environment).

vLLM pins its own torch and transformers versions (design §11), so it is an optional extra
(``and-toolkit[vllm]``) installed in a separate GPU environment; it is imported lazily, only
when a :class:`VLLMLLM` is built. Prefix caching is on (the ICL and adjective prompts share
long few-shot prefixes). Each prompt gets its own seed
(:func:`~and_toolkit.backends.llm.prompt_seed`) through a per-request
``SamplingParams(seed=...)``, so outputs do not depend on batching. Prompts are tokenised here
(chat template for message prompts, no added special tokens for raw strings) and passed as
token ids, exactly as :class:`~and_toolkit.backends.llm_transformers.TransformersLLM` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from and_toolkit.backends.hf_loading import resolve_model_source, weights_fingerprint
from and_toolkit.backends.llm import _check_prompts, prompt_seed
from and_toolkit.interfaces import Prompt, Sampling

VLLM_MISSING = ("vLLM is not installed. It needs a CUDA GPU and its own environment "
                "(it pins torch and transformers): pip install 'and-toolkit[vllm]' there, or use "
                "the transformers backend.")


def import_vllm() -> Any:
    """Import and return the ``vllm`` module.

    Raises:
        ImportError: with installation advice if vLLM is missing.
    """
    try:
        import vllm
    except ImportError as err:
        raise ImportError(VLLM_MISSING) from err
    return vllm


def cached_snapshot(repo_id: str) -> str:
    """Local directory of a hub model already in the Hugging Face cache (no network).

    Args:
        repo_id: hub id such as ``meta-llama/Llama-2-13b-chat-hf``.

    Returns:
        The snapshot directory.

    Raises:
        FileNotFoundError: naming ``repo_id`` if it is not cached.
    """
    from huggingface_hub import snapshot_download

    try:
        return str(snapshot_download(repo_id, local_files_only=True))
    except Exception as err:  # LocalEntryNotFoundError, RepositoryNotFoundError, ...
        raise FileNotFoundError(
            f"model {repo_id!r} is not in the local Hugging Face cache and downloads are "
            "disabled; pass a local path or allow_download=True") from err


class VLLMLLM:
    """An :class:`~and_toolkit.interfaces.LLM` backed by ``vllm.LLM`` (offline batch).

    Args:
        model: local model directory (or a hub id already in the HF cache).
        tensor_parallel_size: GPUs per model.
        gpu_memory_utilization: fraction of GPU memory vLLM may take.
        dtype: vLLM dtype string ("auto", "float16", "bfloat16").
        max_model_len: context length cap (None: the model's).
        seed: engine seed (per-request seeds are derived from ``Sampling.seed``).
        allow_download: permit hub downloads (default False).
        **engine_kwargs: passed to ``vllm.LLM``.

    Raises:
        FileNotFoundError: if a local path does not exist.
        ImportError: if vLLM is not installed.
    """

    def __init__(self, model: str | Path, *, tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9, dtype: str = "auto",
                 max_model_len: int | None = None, seed: int = 0, allow_download: bool = False,
                 **engine_kwargs: Any) -> None:
        source, is_local = resolve_model_source(model)
        vllm = import_vllm()
        if not is_local and not allow_download:
            source, is_local = cached_snapshot(source), True
        self._vllm = vllm
        self._engine = vllm.LLM(model=source, tensor_parallel_size=tensor_parallel_size,
                                gpu_memory_utilization=gpu_memory_utilization, dtype=dtype,
                                max_model_len=max_model_len, seed=seed,
                                enable_prefix_caching=True, **engine_kwargs)
        self._tokenizer = self._engine.get_tokenizer()
        self.id = f"vllm:{source}"
        self.weights_id = weights_fingerprint(Path(source)) if is_local else f"hub:{source}"

    def render(self, prompt: Prompt) -> str:
        """The exact text fed to the tokenizer (chat template applied to message prompts)."""
        if isinstance(prompt, str):
            return prompt
        return str(self._tokenizer.apply_chat_template(prompt, tokenize=False,
                                                       add_generation_prompt=True))

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[str]:
        """Generate one completion per prompt in one ``vllm.LLM.generate`` call."""
        batch = _check_prompts(prompts)
        if not batch:
            return []
        inputs = [{"prompt_token_ids": self._tokenizer.encode(self.render(p),
                                                              add_special_tokens=False)}
                  for p in batch]
        params = [self._vllm.SamplingParams(
            temperature=sampling.temperature, top_p=1.0 if sampling.greedy else sampling.top_p,
            max_tokens=sampling.max_new_tokens, seed=prompt_seed(sampling.seed, p))
            for p in batch]
        outputs = self._engine.generate(inputs, params, use_tqdm=False)
        return [o.outputs[0].text for o in outputs]
