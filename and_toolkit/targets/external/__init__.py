"""Users' own audio models: transformers directories (AST, wav2vec2, HuBERT, Whisper encoder,
CLAP audio tower) and factories returning ``(torch.nn.Module, preprocess)``."""

from and_toolkit.targets.external.families import FAMILIES
from and_toolkit.targets.external.load import (
    check_external,
    load_external,
    load_factory,
    load_pretrained,
    model_spec_kind,
)
from and_toolkit.targets.external.model import (
    ExternalModel,
    Prepared,
    Preprocess,
    WaveformPreprocess,
    batches_of,
    dummy_waveforms,
    weights_sha256,
)

__all__ = ["FAMILIES", "ExternalModel", "Prepared", "Preprocess", "WaveformPreprocess",
           "batches_of", "check_external", "dummy_waveforms", "load_external", "load_factory",
           "load_pretrained", "model_spec_kind", "weights_sha256"]
