"""Loading transformers models offline: local-or-hub resolution, weight fingerprints.

Shared by every transformers-backed wrapper (LLMs, the captioner, CLIP, vLLM's id). Loading never
touches the network unless ``allow_download=True`` (HF_HUB_OFFLINE semantics).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from and_toolkit.cache import sha256_file


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


@contextmanager
def gguf_name_maps_shared() -> Iterator[None]:
    """While the block runs, ``gguf.get_tensor_name_map`` builds one map per (architecture,
    blocks).

    transformers maps GGUF tensor names with a ``TensorNameMap`` built anew for every submodule
    of the model (hundreds, each the same); a map is read-only once built, so sharing it gives the
    same names. Not thread-safe (it swaps a ``gguf`` attribute for the block's duration).
    """
    import gguf

    name_map = gguf.get_tensor_name_map
    maps: dict[tuple[Any, int], Any] = {}

    def names(arch: Any, n_blocks: int) -> Any:
        if (arch, n_blocks) not in maps:
            maps[arch, n_blocks] = name_map(arch, n_blocks)
        return maps[arch, n_blocks]

    gguf.get_tensor_name_map = names  # type: ignore[assignment]
    try:
        yield
    finally:
        gguf.get_tensor_name_map = name_map


@contextmanager
def gguf_parsed_once(path: Path) -> Iterator[None]:
    """While the block runs, transformers' GGUF loading parses ``path`` once with
    ``gguf.GGUFReader``.

    transformers parses a GGUF file anew for each of the config, the tokenizer and the weights
    (``load_gguf_checkpoint`` builds a ``gguf.GGUFReader`` each time; SmolLM2's tokenizer
    metadata makes each parse take seconds). Here every reader of ``path`` is one reader, which
    is read-only once built (it memory-maps the file in mode "r"), so the loads get the same
    tensors and tokenizer; name maps are shared too (:func:`gguf_name_maps_shared`). Readers of
    other files or modes are built as usual. Not thread-safe (it swaps ``gguf`` attributes for
    the block's duration). This is transformers' own parse, the reference
    :mod:`~and_toolkit.backends.gguf_fast` is tested against; loading uses the latter.

    Args:
        path: the GGUF file.
    """
    import gguf

    reader_class = gguf.GGUFReader
    target = os.path.realpath(path)
    shared: list[Any] = []  # the one reader of ``path``, once built

    def reader(file: Any, mode: Any = "r") -> Any:
        if mode != "r" or os.path.realpath(file) != target:
            return reader_class(file, mode)
        if not shared:
            shared.append(reader_class(file, mode))
        return shared[0]

    gguf.GGUFReader = reader  # type: ignore[misc,assignment]
    try:
        with gguf_name_maps_shared():
            yield
    finally:
        gguf.GGUFReader = reader_class  # type: ignore[misc]
