"""Loading a GGUF checkpoint with transformers, the file parsed once by the fast reader.

transformers loads a GGUF chat model through ``from_pretrained(..., gguf_file=...)``: the config,
the tokenizer and the weights each parse the file again, with ``gguf.GGUFReader`` (inside
``load_gguf_checkpoint``, whose values then go one by one through ``_gguf_parse_value``) and with
its own ``integrations.gguf.reader.read_gguf_metadata``. For SmolLM2 that is seconds per parse,
mostly on the tokenizer's ~49k tokens and ~49k merges.

:func:`served_from` keeps every line of transformers' loading (config mapping, tokenizer
conversion, tensor-name mapping, Llama Q/K un-permutation, tied embeddings) and replaces only the
parsing: while it is active, those readers of the file are served from one
:func:`~and_toolkit.backends.gguf_read.read_gguf` parse, whose values are the ones they would have
produced, and Q4_1 / Q8_0 tensors are de-quantised by :mod:`~and_toolkit.backends.gguf_dequant`
(bit for bit ``gguf.dequantize``'s, faster). :func:`load_gguf_pretrained` loads tokenizer and
model that way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from and_toolkit.backends import gguf_dequant
from and_toolkit.backends.gguf_read import (
    ARRAY,
    STRING,
    GGUFContents,
    GGUFFormatError,
    read_gguf,
)
from and_toolkit.backends.hf_loading import gguf_name_maps_shared


class ParsedField(NamedTuple):
    """A metadata field as ``load_gguf_checkpoint`` reads one of ``gguf.GGUFReader.fields``:
    ``[_gguf_parse_value(parts[i], types) for i in data]``, unwrapped when of length 1. Here
    ``parts`` are the values already parsed (never numpy arrays, which is how
    :func:`parse_value` tells them from a real reader's)."""

    name: str
    parts: list[Any]
    data: range
    types: list[Any]


class ParsedTensor(NamedTuple):
    """A tensor as ``gguf.GGUFReader.tensors`` has it (the fields transformers reads)."""

    name: str
    tensor_type: Any  # gguf.GGMLQuantizationType
    shape: np.ndarray  # uint64 dims, fastest-moving first
    data: np.ndarray  # see gguf_read.TensorInfo.data


class ParsedReader:
    """Stands in for ``gguf.GGUFReader(path)`` in ``load_gguf_checkpoint``: ``fields`` (the
    three header pseudo-fields ``GGUF.version`` / ``GGUF.tensor_count`` / ``GGUF.kv_count``,
    then the metadata in file order) and ``tensors``, from parsed contents.

    Args:
        contents: the parsed file.
    """

    def __init__(self, contents: GGUFContents) -> None:
        from gguf import GGMLQuantizationType, GGUFValueType

        def field(name: str, values: list[Any], types: tuple[int, ...]) -> ParsedField:
            if types[0] == ARRAY and not values:
                types = types[:1]  # gguf.GGUFReader takes the element type from element 0
            return ParsedField(name, values, range(len(values)),
                               [GGUFValueType(t) for t in types])

        self.fields: dict[str, ParsedField] = {
            "GGUF.version": field("GGUF.version", [contents.version], (4,)),
            "GGUF.tensor_count": field("GGUF.tensor_count", [len(contents.tensors)], (10,)),
            "GGUF.kv_count": field("GGUF.kv_count", [len(contents.values)], (10,)),
        }
        for key, values in contents.values.items():
            self.fields[key] = field(key, values, contents.types[key])
        self.tensors = [
            ParsedTensor(t.name, GGMLQuantizationType(t.ggml_type),
                         np.asarray(t.dims, dtype=np.uint64), t.data)
            for t in contents.tensors]


def transformers_metadata(contents: GGUFContents,
                          string_arrays: Any = ()) -> tuple[dict[str, Any], tuple[str, ...]]:
    """What ``transformers.integrations.gguf.reader.read_gguf_metadata`` returns for the file.

    Args:
        contents: the parsed file.
        string_arrays: keys whose string arrays are returned in full; other string arrays are
            returned as their length (as transformers does).

    Returns:
        (key -> value: a scalar, a string, a list for an array; tensor names in file order).

    Raises:
        GGUFFormatError: if ``general.architecture`` is missing.
    """
    metadata: dict[str, Any] = {}
    for key, values in contents.values.items():
        types = contents.types[key]
        if types[0] != ARRAY:
            metadata[key] = values[0]
        elif types[1] == STRING and key not in string_arrays:
            metadata[key] = len(values)
        else:
            metadata[key] = list(values)
    contents.value("general.architecture")
    return metadata, tuple(t.name for t in contents.tensors)


def _sites() -> list[tuple[Any, str]]:
    """(module, attribute) of every reader transformers uses on a GGUF, that
    :func:`served_from` replaces: gguf's reader and de-quantiser and the value parser of
    ``load_gguf_checkpoint``, and ``read_gguf_metadata`` where the config, tokenizer and
    quantizer code look it up."""
    import gguf
    import transformers.integrations.gguf as hf_gguf
    import transformers.integrations.gguf.reader as hf_reader
    import transformers.modeling_gguf_pytorch_utils as hf_utils
    import transformers.quantizers.quantizer_gguf as hf_quantizer

    return [(gguf, "GGUFReader"), (gguf, "dequantize"), (hf_utils, "_gguf_parse_value"),
            (hf_reader, "read_gguf_metadata"), (hf_gguf, "read_gguf_metadata"),
            (hf_quantizer, "read_gguf_metadata")]


@contextmanager
def _replaced(module: Any, attribute: str, make: Callable[[Any], Any]) -> Iterator[None]:
    """``module.attribute`` set to ``make(original)`` for the block, then restored."""
    if not hasattr(module, attribute):
        import transformers

        raise RuntimeError(f"{module.__name__}.{attribute} not found (transformers "
                           f"{transformers.__version__}): the fast GGUF loading needs updating")
    original = getattr(module, attribute)
    setattr(module, attribute, make(original))
    try:
        yield
    finally:
        setattr(module, attribute, original)


@contextmanager
def served_from(contents: GGUFContents) -> Iterator[None]:
    """While the block runs, transformers' GGUF readers of ``contents.path`` use ``contents``.

    ``gguf.GGUFReader(path)`` gives a :class:`ParsedReader`; ``_gguf_parse_value`` (in
    ``load_gguf_checkpoint``) returns parsed values as they are; ``read_gguf_metadata(path)``
    gives :func:`transformers_metadata`. Other files are read as usual. ``gguf.dequantize`` is
    :func:`~and_toolkit.backends.gguf_dequant.dequantize` (the same values). GGUF name maps are
    shared (:func:`~and_toolkit.backends.hf_loading.gguf_name_maps_shared`). Not thread-safe (it
    swaps module attributes for the block's duration); loading happens in one thread.

    Args:
        contents: the parsed file.
    """
    target = os.path.realpath(contents.path)
    reader = ParsedReader(contents)

    def ours(file: Any) -> bool:
        return os.path.realpath(file) == target

    def make_reader(original: Any) -> Any:
        def gguf_reader(path: Any, mode: str = "r") -> Any:
            return reader if mode == "r" and ours(path) else original(path, mode)
        return gguf_reader

    def make_parse(original: Any) -> Any:
        def parse_value(value: Any, data_type: Any) -> Any:
            return original(value, data_type) if isinstance(value, np.ndarray) else value
        return parse_value

    def make_metadata(original: Any) -> Any:
        def read_gguf_metadata(path: Any, string_arrays: Any = ()) -> Any:
            if ours(path):
                return transformers_metadata(contents, string_arrays)
            return original(path, string_arrays)
        return read_gguf_metadata

    makers = {"GGUFReader": make_reader, "_gguf_parse_value": make_parse,
              "read_gguf_metadata": make_metadata,
              "dequantize": lambda original: gguf_dequant.dequantize}
    with ExitStack() as stack:
        for module, attribute in _sites():
            stack.enter_context(_replaced(module, attribute, makers[attribute]))
        stack.enter_context(gguf_name_maps_shared())
        yield


def load_gguf_pretrained(path: Path) -> tuple[Any, Any]:
    """Tokenizer and float32 causal LM of a GGUF file, as
    ``AutoTokenizer/AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)``
    give them, the file parsed once (:func:`served_from`). No network.

    Args:
        path: the ``.gguf`` file.

    Returns:
        (tokenizer, model).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        GGUFFormatError: naming the file and field, if the file is malformed, uses a feature
            the fast reader does not support, or has an architecture transformers reads with its
            own block-keeping GGUF path (which this does not serve).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.integrations.gguf import GGUF_ARCHS, GGUF_CONFIG_ARCHS

    contents = read_gguf(path)
    arch = contents.value("general.architecture")
    if arch in GGUF_ARCHS or arch in GGUF_CONFIG_ARCHS:
        raise GGUFFormatError(path, "general.architecture", f"{arch!r} is loaded by "
                              "transformers' own GGUF reader, which this does not serve; use "
                              "from_pretrained(..., gguf_file=...)")
    with served_from(contents):
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name,
                                                  local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                     local_files_only=True)
    return tokenizer, model
