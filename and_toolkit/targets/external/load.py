"""Load a user's model: a transformers directory (``pretrained``) or a factory function.

Both give an :class:`~and_toolkit.targets.external.model.ExternalModel`; every bad input is a
:class:`~and_toolkit.errors.ConfigError` naming the directory, file or factory.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from and_toolkit.errors import ConfigError
from and_toolkit.targets.external.families import adapt, family_of
from and_toolkit.targets.external.model import ExternalModel, Prepared, Preprocess

__all__ = ["check_external", "check_pretrained", "factory_function", "load_external",
           "load_factory", "load_pretrained", "model_spec_kind"]

CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"


def _model_class(config: Any) -> Any:
    """The class named by ``config.architectures`` (keeps a fine-tuned head), else AutoModel."""
    import transformers

    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, str(name), None)
        if cls is not None and hasattr(cls, "from_pretrained"):
            return cls
    return transformers.AutoModel


def check_pretrained(path: str | Path, *, online: bool = False) -> bool:
    """What :func:`load_pretrained` checks before loading (nothing is loaded): the directory,
    its config and feature-extractor files, a supported model type.

    Returns:
        True for a local directory, False for a hub id (``online`` only).

    Raises:
        ConfigError: as :func:`load_pretrained`, naming the directory or file.
    """
    d = Path(path)
    if not d.is_dir():
        if online and not d.exists():
            return False
        raise ConfigError(f"{d}: pretrained model directory does not exist (a hub id is read "
                          "only online: --online, or online = true in the target)")
    for name, what in ((CONFIG_FILE, "model config"),
                       (PREPROCESSOR_FILE, "feature-extractor config")):
        if not (d / name).is_file():
            raise ConfigError(f"{d / name}: missing {what}; save the model and its feature "
                              "extractor with save_pretrained into this directory")
    try:
        model_type = json.loads((d / CONFIG_FILE).read_text("utf-8")).get("model_type", "")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise ConfigError(f"{d / CONFIG_FILE}: not a valid JSON config ({exc})") from None
    family_of(str(model_type), str(d / CONFIG_FILE))
    return True


def load_pretrained(path: str | Path, *, online: bool = False) -> ExternalModel:
    """A transformers audio model from a saved directory (or, online only, a hub id).

    Args:
        path: directory holding ``config.json``, the weights and ``preprocessor_config.json``
            (what ``save_pretrained`` of the model and its feature extractor write).
        online: allow a hub id and downloads; False (default) reads local files only.

    Raises:
        ConfigError: missing directory, missing config / feature-extractor file, an unsupported
            model type, or weights transformers cannot load (each naming the path).
    """
    if not check_pretrained(path, online=online):
        return _load(str(path), online=True)
    return _load(str(Path(path)), online=False)


def _load(name: str, *, online: bool) -> ExternalModel:
    from transformers import AutoConfig, AutoFeatureExtractor
    from transformers.utils import logging

    logging.disable_progress_bar()

    try:
        config = AutoConfig.from_pretrained(name, local_files_only=not online)
        family = family_of(str(config.model_type), f"{name}/{CONFIG_FILE}")
        fe = AutoFeatureExtractor.from_pretrained(name, local_files_only=not online)
        model = _model_class(config).from_pretrained(name, local_files_only=not online)
    except ConfigError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{name}: transformers cannot load the model: {exc}") from None
    source = {"pretrained": name, "class": type(model).__name__,
              "model_type": str(config.model_type), "family": family}
    return adapt(model, fe, family, source)


def factory_function(spec: str) -> Any:
    """The function ``"package.module:function"`` names (its module imported, not called).

    Raises:
        ConfigError: a malformed spec, an import failure, or a missing or non-callable
            function (naming the factory).
    """
    mod_name, sep, fn_name = spec.partition(":")
    if not sep or not mod_name or not fn_name:
        raise ConfigError(f"factory {spec!r}: expected 'package.module:function'")
    try:
        module = importlib.import_module(mod_name)
    except Exception as exc:
        raise ConfigError(f"factory {spec!r}: cannot import module {mod_name!r} "
                          f"({type(exc).__name__}: {exc})") from None
    fn = getattr(module, fn_name, None)
    if fn is None or not callable(fn):
        raise ConfigError(f"factory {spec!r}: module {mod_name!r} has no callable {fn_name!r}")
    return fn


def load_factory(spec: str) -> ExternalModel:
    """A model from ``"package.module:function"``; ``function()`` returns ``(module,
    preprocess)`` with ``preprocess`` a :class:`Preprocess` (callable with ``sample_rate``).

    The preprocess output is the model input (a tensor or a dict of tensors); every frame is
    pooled (no padding mask).

    Raises:
        ConfigError: a malformed spec, an import failure, a missing or non-callable function,
            an exception inside it, or a return value of the wrong type (naming the factory).
    """
    fn = factory_function(spec)
    try:
        out = fn()
    except Exception as exc:
        raise ConfigError(f"factory {spec!r}: raised {type(exc).__name__}: {exc}") from None
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], nn.Module)):
        raise ConfigError(f"factory {spec!r}: must return (torch.nn.Module, preprocess), got "
                          f"{_describe(out)}")
    net, pre = out
    rate = getattr(pre, "sample_rate", None)
    if not callable(pre) or not isinstance(pre, Preprocess) or not isinstance(rate, int) \
            or isinstance(rate, bool) or rate <= 0:
        raise ConfigError(f"factory {spec!r}: preprocess must be callable with an int "
                          f"sample_rate > 0 in Hz (e.g. and_toolkit.targets.external."
                          f"WaveformPreprocess(fn, 16000)); got {_describe(pre)} with "
                          f"sample_rate={rate!r}")

    def prepare(waves: Any) -> Prepared:
        x = pre(list(waves))
        if not isinstance(x, (torch.Tensor, dict)):
            raise ConfigError(f"factory {spec!r}: preprocess returned {_describe(x)}, expected "
                              "a tensor or a dict of tensors")
        return Prepared(x)

    net.eval()
    return ExternalModel(module=net, family="factory", sample_rate=int(rate), prepare=prepare,
                         source={"factory": spec, "class": type(net).__name__,
                                 "family": "factory"})


def _describe(x: Any) -> str:
    if isinstance(x, tuple):
        return "tuple(" + ", ".join(type(v).__name__ for v in x) + ")"
    return type(x).__name__


def load_external(*, pretrained: str | None = None, factory: str | None = None,
                  online: bool = False) -> ExternalModel:
    """Exactly one of ``pretrained`` (directory / hub id) or ``factory`` (``pkg.mod:fn``)."""
    if (pretrained is None) == (factory is None):
        raise ConfigError("give exactly one of pretrained (a transformers directory) or "
                          "factory ('package.module:function')")
    if pretrained is not None:
        return load_pretrained(pretrained, online=online)
    assert factory is not None
    return load_factory(factory)


def check_external(*, pretrained: str | None = None, factory: str | None = None,
                   online: bool = False) -> None:
    """What :func:`load_external` checks before loading or calling anything (the run's inputs
    are checked so before its directory is made).

    Raises:
        ConfigError: as :func:`check_pretrained` / :func:`factory_function`.
    """
    if pretrained is not None:
        check_pretrained(pretrained, online=online)
    if factory is not None:
        factory_function(factory)


def model_spec_kind(spec: str) -> str:
    """``"pretrained"`` for a path / hub id, ``"factory"`` for ``module:function`` (a spec with
    a colon that is not an existing path and has no path separator)."""
    if ":" in spec and not Path(spec).exists() and "/" not in spec.partition(":")[0] \
            and "\\" not in spec:
        return "factory"
    return "pretrained"


