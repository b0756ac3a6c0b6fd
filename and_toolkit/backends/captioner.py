"""Audio captioners (:class:`~and_toolkit.interfaces.Captioner`): an audio-LM backend and a fake.

:class:`TransformersAudioCaptioner` drives an audio-LM through transformers, e.g. Qwen2-Audio
(``Qwen2AudioForConditionalGeneration`` + its ``AutoProcessor``: Whisper log-mel features and a
chat template that expands one ``<|AUDIO|>`` placeholder per clip). The prompt is the paper's
"Please describe the audio in detail." (:data:`~and_toolkit.interfaces.CAPTION_PROMPT`), sent as
the user turn of :func:`caption_messages`. Clips are resampled to the processor's rate
(:func:`and_toolkit.signal.resample`); audio beyond the feature extractor's window (30 s for
Whisper-based models) is truncated by the processor. Decoding is greedy by default; sampled
decoding is seeded per clip (sha256 of the samples and the prompt), independent of batching.

The model and processor are injectable (``__init__`` takes loaded objects), so the backend is
tested on a tiny random model with a locally built processor; :meth:`from_pretrained` is the
only loader.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from and_toolkit.backends.hf_loading import (
    load_pretrained,
    resolve_model_source,
    weights_fingerprint,
)
from and_toolkit.backends.llm import prompt_seed
from and_toolkit.backends.llm_transformers import PerRowGumbelSampler, greedy_generation_config
from and_toolkit.interfaces import CAPTION_PROMPT, Sampling
from and_toolkit.signal import check_waveforms, resample, rms


def caption_messages(prompt: str = CAPTION_PROMPT) -> list[dict[str, object]]:
    """Chat conversation for an audio-language captioner: one user turn with the audio then text.

    Args:
        prompt: the instruction (default: the paper's "Please describe the audio in detail.").

    Returns:
        ``[{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": prompt}]}]``
        (the multimodal content format of transformers processors' chat templates).
    """
    return [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": prompt}]}]


def clip_seed(seed: int, waveform: np.ndarray, prompt: str) -> int:
    """Per-clip seed for sampled captioning: hashes the samples and the prompt.

    Args:
        seed: base seed.
        waveform: float32 samples.
        prompt: the instruction.

    Returns:
        An int in [0, 2**60).
    """
    digest = hashlib.sha256(np.ascontiguousarray(waveform, dtype=np.float32).tobytes()).hexdigest()
    return prompt_seed(seed, f"{digest}\x00{prompt}")


class TransformersAudioCaptioner:
    """An audio-language model (transformers) as a :class:`~and_toolkit.interfaces.Captioner`.

    Args:
        model: loaded model with ``generate`` accepting the processor's outputs.
        processor: its processor: ``apply_chat_template``, ``__call__(text=, audio=,
            sampling_rate=)``, ``feature_extractor.sampling_rate`` and ``tokenizer``.
        model_id: ``id`` to report (e.g. "transformers:Qwen/Qwen2-Audio-7B-Instruct").
        weights_id: fingerprint of the weights.
        prompt: instruction (default: the paper's "Please describe the audio in detail.").
        sampling: decoding (default greedy, 256 new tokens).
        batch_size: clips per ``generate`` call.
        device: torch device string.
    """

    def __init__(self, model: Any, processor: Any, *, model_id: str, weights_id: str = "",
                 prompt: str = CAPTION_PROMPT, sampling: Sampling | None = None,
                 batch_size: int = 4, device: str = "cpu") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.to(device).eval()
        self.processor = processor
        self.processor.tokenizer.padding_side = "left"
        self.id = model_id
        self.weights_id = weights_id
        self.prompt = prompt
        self.sampling = sampling or Sampling(max_new_tokens=256)
        self.batch_size = batch_size
        self.device = device
        self.text = str(processor.apply_chat_template(caption_messages(prompt), tokenize=False,
                                                      add_generation_prompt=True))

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, device: str = "cpu",
                        dtype: torch.dtype | None = None, prompt: str = CAPTION_PROMPT,
                        sampling: Sampling | None = None, batch_size: int = 4,
                        allow_download: bool = False,
                        model_class: Callable[..., Any] | None = None,
                        ) -> TransformersAudioCaptioner:
        """Load an audio-LM and its processor from a local directory (or the HF cache / hub).

        Args:
            name_or_path: model directory or hub id (e.g. "Qwen/Qwen2-Audio-7B-Instruct").
            device: torch device string.
            dtype: parameter dtype (default: the checkpoint's).
            prompt: captioning instruction.
            sampling: decoding parameters.
            batch_size: clips per ``generate`` call.
            allow_download: permit hub downloads (default False).
            model_class: transformers class with ``from_pretrained`` (default
                ``AutoModelForMultimodalLM``, which maps Qwen2-Audio, Voxtral, Qwen2.5-Omni...).

        Returns:
            The captioner.

        Raises:
            FileNotFoundError: naming the path / id when the weights are not available.
        """
        import transformers

        source, is_local = resolve_model_source(name_or_path)
        if model_class is None:
            model_class = getattr(transformers, "AutoModelForMultimodalLM", None) or \
                transformers.Qwen2AudioForConditionalGeneration
        processor = load_pretrained(transformers.AutoProcessor, source,
                                    allow_download=allow_download)
        kwargs: dict[str, Any] = {"dtype": dtype} if dtype is not None else {}
        model = load_pretrained(model_class, source, allow_download=allow_download, **kwargs)
        weights = (weights_fingerprint(Path(source)) if is_local else
                   f"hub:{source}@{getattr(model.config, '_commit_hash', None) or 'unknown'}")
        return cls(model, processor, model_id=f"transformers:{source}", weights_id=weights,
                   prompt=prompt, sampling=sampling, batch_size=batch_size, device=device)

    def _caption_batch(self, clips: list[np.ndarray], seeds: list[int]) -> list[str]:
        from transformers import LogitsProcessorList

        rate = int(self.processor.feature_extractor.sampling_rate)
        inputs = self.processor(text=[self.text] * len(clips), audio=clips, sampling_rate=rate,
                                return_tensors="pt", padding=True)
        inputs = {k: v.to(self.device) for k, v in inputs.items() if torch.is_tensor(v)}
        processors = LogitsProcessorList()
        if not self.sampling.greedy:
            processors.append(PerRowGumbelSampler(seeds, self.sampling.temperature,
                                                  self.sampling.top_p))
        tok = self.processor.tokenizer
        with torch.inference_mode():
            gen = greedy_generation_config(self.model, tok, self.sampling.max_new_tokens)
            out = self.model.generate(**inputs, generation_config=gen,
                                      logits_processor=processors)
        start = inputs["input_ids"].shape[1]
        return [tok.decode(row[start:], skip_special_tokens=True).strip() for row in out]

    def caption(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> list[str]:
        """Caption clips in batches of ``batch_size`` (see ``Captioner.caption``).

        Raises:
            ValueError: on malformed clips (see :func:`and_toolkit.signal.check_waveforms`).
        """
        clips = check_waveforms(waveforms, sample_rate)
        rate = int(self.processor.feature_extractor.sampling_rate)
        clips = [resample(c, sample_rate, rate) for c in clips]
        seeds = [clip_seed(self.sampling.seed, c, self.prompt) for c in clips]
        out: list[str] = []
        for lo in range(0, len(clips), self.batch_size):
            out.extend(self._caption_batch(clips[lo:lo + self.batch_size],
                                           seeds[lo:lo + self.batch_size]))
        return out


class FakeCaptioner:
    """Deterministic captioner for tests: "A {loud|quiet} sound lasting {s:.1f} seconds."

    "loud" when the clip's RMS exceeds ``threshold``.

    Args:
        threshold: RMS threshold (linear amplitude).
        captioner_id: the ``id`` to report.

    Attributes:
        calls: number of ``caption`` calls.
    """

    def __init__(self, threshold: float = 0.1, captioner_id: str = "fake-captioner") -> None:
        self.threshold = threshold
        self.id = captioner_id
        self.prompt = ""
        self.calls = 0

    def caption(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> list[str]:
        """Captions from RMS and duration (see the class docstring)."""
        clips = check_waveforms(waveforms, sample_rate)
        self.calls += 1
        out = []
        for c in clips:
            level = "loud" if rms(c) > self.threshold else "quiet"
            out.append(f"A {level} sound lasting {c.size / sample_rate:.1f} seconds.")
        return out
